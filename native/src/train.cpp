// train.cpp: the LoRA training engine over a frozen GGUF base.
//
// Forward: a cache-free Llama-family graph (llama, qwen2): token embedding ->
// n_layer x [RMSNorm, Q/K/V (+bias) with LoRA, RoPE (optionally with
// rope_freqs factors, llama3-style), GQA attention with causal + padding mask,
// output projection, RMSNorm, SwiGLU MLP] -> RMSNorm -> LM head, evaluated
// only at the positions whose next-token log-prob is scored.
//
// Backward: ggml's autodiff, with one change. For y = W·x with a frozen W,
// ggml emits OUT_PROD(W, dYᵀ) for dx, which is slow on CPU for quantized W
// and unsupported for F16 W (DESIGN.md §4.3). We rewrite each such node into
// MUL_MAT(Wᵀ, dY) over a transposed copy of W made once at load (Q8_0 when its
// rows allow, F16 otherwise, F32 when exact_backward). On CPU models are small
// and this is the fastest measured option; the CUDA backend will swap the
// copy for a blockwise dequantising input-gradient op so a 70B base is kept
// once (see DESIGN.md §4.3).
//
// The loss lives with the caller: forward returns per-sequence sums of scored
// token log-probs S_b; the caller computes dL/dS_b; backward seeds the graph
// with loss' = Σ_b w_b·S_b, w = dL/dS, so any sequence-level objective (SFT,
// DPO and variants, reward-weighted) shares one graph.
#include "internal.h"

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml-impl.h"  // ggml_graph_view (internal in this ggml copy)
#include "ggml.h"
#include "gguf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using align::fail;
using align::ok;

namespace {

constexpr int k_graph_size = 32768;

struct lora_t {
    std::string   base;       // base tensor name, e.g. blk.0.attn_q.weight
    int64_t       n_in = 0, n_out = 0;
    ggml_tensor * a = nullptr;  // (n_in, r)
    ggml_tensor * b = nullptr;  // (r, n_out)
    int64_t       off = 0;      // offset of A in the flat state; B follows
};

struct layer_t {
    ggml_tensor * attn_norm = nullptr, * wq = nullptr, * wk = nullptr, * wv = nullptr, * wo = nullptr;
    ggml_tensor * bq = nullptr, * bk = nullptr, * bv = nullptr;
    ggml_tensor * ffn_norm = nullptr, * gate = nullptr, * up = nullptr, * down = nullptr;
    lora_t * lq = nullptr, * lk = nullptr, * lv = nullptr, * lo = nullptr;
    lora_t * lgate = nullptr, * lup = nullptr, * ldown = nullptr;
};

struct rng_t {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    double uniform() { return (double) (next() >> 11) * (1.0 / 9007199254740992.0); }
};

uint64_t fnv1a(const std::string & s) {
    uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

struct ctx_deleter {
    void operator()(ggml_context * c) const { if (c) ggml_free(c); }
};
struct buf_deleter {
    void operator()(ggml_backend_buffer_t b) const { if (b) ggml_backend_buffer_free(b); }
};
using ctx_ptr = std::unique_ptr<ggml_context, ctx_deleter>;
using buf_ptr = std::unique_ptr<ggml_backend_buffer, buf_deleter>;

// Inputs and outputs of one built graph.
struct graph_t {
    ctx_ptr       ctx;
    ggml_cgraph * g = nullptr;
    int           n_fwd = 0;
    int32_t       n_seq = 0, n_tok = 0, n_sel = 0;
    ggml_tensor * tokens = nullptr, * pos = nullptr, * mask = nullptr, * sel = nullptr, * tgt = nullptr;
    ggml_tensor * seg = nullptr, * scale = nullptr, * w = nullptr, * eye = nullptr;
    ggml_tensor * sums = nullptr, * logp = nullptr, * loss = nullptr;
    // host copies of the input data
    std::vector<int32_t> h_tokens, h_pos, h_sel, h_tgt;
    std::vector<float>   h_mask, h_seg, h_eye;
};

}  // namespace

struct align_trainer {
    // hyper-parameters
    std::string arch;
    int32_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0, n_ctx_train = 0;
    int32_t head_dim = 0, n_rot = 0, rope_mode = 0;
    float   eps = 1e-5f, rope_base = 10000.0f, rope_freq_scale = 1.0f;
    align_trainer_params params{};
    float   lora_s = 1.0f;  // alpha / r

    ggml_backend_t backend = nullptr;
    ctx_ptr        wctx, tctx, lctx;
    buf_ptr        wbuf, tbuf, lbuf;
    // matmul weights in the CPU's extra buffer types (AMX, repacked), one
    // context and buffer per type, as llama.cpp places them for inference
    std::vector<ggml_backend_buffer_type_t> xbufts;
    std::vector<ctx_ptr>                    xctx;
    std::vector<buf_ptr>                    xbuf;
    ggml_tensor *  tok_embd = nullptr, * output = nullptr, * output_norm = nullptr, * rope_freqs = nullptr;
    std::vector<layer_t> layers;
    std::vector<std::unique_ptr<lora_t>> loras;
    std::unordered_map<const ggml_tensor *, ggml_tensor *> transposed;  // W -> Wᵀ
    int64_t n_base_params = 0, base_bytes = 0, transposed_bytes = 0;

    // optimiser state (host, F32)
    int64_t            n_params = 0;
    std::vector<float> grad, m, v;
    int64_t            step = 0;

    ggml_gallocr_t galloc = nullptr;
    graph_t        pending;        // graph of the last forward_grad
    bool           has_pending = false;

    ~align_trainer() {
        if (galloc) ggml_gallocr_free(galloc);
        pending.ctx.reset();
        lbuf.reset();
        tbuf.reset();
        xbuf.clear();
        wbuf.reset();
        if (backend) ggml_backend_free(backend);
    }
};

namespace {

// ---- GGUF metadata helpers

bool kv_u32(gguf_context * g, const std::string & key, int32_t & out) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return false;
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_UINT32: out = (int32_t) gguf_get_val_u32(g, id); return true;
        case GGUF_TYPE_INT32:  out = gguf_get_val_i32(g, id); return true;
        case GGUF_TYPE_UINT64: out = (int32_t) gguf_get_val_u64(g, id); return true;
        case GGUF_TYPE_UINT16: out = gguf_get_val_u16(g, id); return true;
        default: return false;
    }
}

bool kv_f32(gguf_context * g, const std::string & key, float & out) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0) return false;
    switch (gguf_get_kv_type(g, id)) {
        case GGUF_TYPE_FLOAT32: out = gguf_get_val_f32(g, id); return true;
        case GGUF_TYPE_FLOAT64: out = (float) gguf_get_val_f64(g, id); return true;
        default: return false;
    }
}

std::string kv_str(gguf_context * g, const std::string & key) {
    const int64_t id = gguf_find_key(g, key.c_str());
    if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_STRING) return "";
    return gguf_get_val_str(g, id);
}

// Dequantises a whole 2-D tensor's host bytes to F32.
bool to_f32(ggml_type type, const void * src, float * dst, int64_t n) {
    if (type == GGML_TYPE_F32) {
        std::memcpy(dst, src, (size_t) n * sizeof(float));
        return true;
    }
    const ggml_type_traits * tr = ggml_get_type_traits(type);
    if (tr == nullptr || tr->to_float == nullptr) return false;
    tr->to_float(src, dst, n);
    return true;
}

int32_t cpu_threads(int32_t n) {
    if (n > 0) return n;
    unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 4 : (int32_t) hc;
}

// ---- graph construction

// RMSNorm from ops whose backward is right. ggml_rms_norm's backward
// (rms_norm_back) in this ggml copy disagrees with finite differences
// (measured: relative error > 1 on an 8x5 input; see native/tests/grad_ops.cpp),
// so: x · exp(-½·log(mean(x²) + eps)), the factor repeated explicitly.
ggml_tensor * rms_norm(ggml_context * ctx, ggml_tensor * x, float eps) {
    ggml_tensor * ms = ggml_scale_bias(ctx, ggml_sum_rows(ctx, ggml_sqr(ctx, x)), 1.0f / (float) x->ne[0], eps);  // (1, N)
    ggml_tensor * rinv = ggml_exp(ctx, ggml_scale(ctx, ggml_log(ctx, ms), -0.5f));                              // (1, N)
    return ggml_mul(ctx, x, ggml_repeat(ctx, rinv, x));
}

ggml_tensor * proj(ggml_context * ctx, ggml_tensor * w, ggml_tensor * x, const lora_t * l, ggml_tensor * bias,
                   ggml_tensor * scale) {
    ggml_tensor * y = ggml_mul_mat(ctx, w, x);  // (n_out, N)
    if (l != nullptr && scale != nullptr) {
        ggml_tensor * ax = ggml_mul_mat(ctx, l->a, x);     // (r, N)
        ggml_tensor * bax = ggml_mul_mat(ctx, l->b, ax);   // (n_out, N)
        y = ggml_add(ctx, y, ggml_mul(ctx, bax, scale));
    }
    if (bias != nullptr) y = ggml_add(ctx, y, bias);
    return y;
}

align_status validate_batch(const align_trainer * tr, const align_batch * b) {
    if (b == nullptr || b->n_seq <= 0 || b->n_tok <= 0 || b->tokens == nullptr || b->lengths == nullptr ||
        b->scored == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: need n_seq > 0, n_tok > 0, tokens, lengths and scored");
    }
    if (b->n_tok > std::max(tr->n_ctx_train, 1) && tr->n_ctx_train > 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: " + std::to_string(b->n_tok) +
                                                    " tokens per sequence exceed the model's training context " +
                                                    std::to_string(tr->n_ctx_train));
    }
    if ((int64_t) b->n_seq * b->n_tok > (1 << 20)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: too many tokens in one micro-batch");
    }
    int64_t n_scored = 0;
    for (int32_t s = 0; s < b->n_seq; s++) {
        const int32_t len = b->lengths[s];
        if (len < 1 || len > b->n_tok) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: sequence " + std::to_string(s) + " has length " +
                                                        std::to_string(len) + " outside [1, " + std::to_string(b->n_tok) + "]");
        }
        for (int32_t t = 0; t < b->n_tok; t++) {
            const int32_t tok = b->tokens[(size_t) s * b->n_tok + t];
            const bool sc = b->scored[(size_t) s * b->n_tok + t] != 0;
            if (t < len && (tok < 0 || tok >= tr->n_vocab)) {
                return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: token " + std::to_string(tok) + " (sequence " +
                                                            std::to_string(s) + ", position " + std::to_string(t) +
                                                            ") is outside the vocabulary");
            }
            if (sc && (t == 0 || t >= len)) {
                return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: sequence " + std::to_string(s) + " scores position " +
                                                            std::to_string(t) + " (must be in [1, length))");
            }
            n_scored += sc;
        }
    }
    if (n_scored == 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: no scored tokens");
    }
    if (n_scored > ALIGN_TRAIN_MAX_SCORED) {
        // the head's max selection holds (scored)² floats
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: " + std::to_string(n_scored) + " scored tokens in one micro-batch; at most " +
                                                    std::to_string(ALIGN_TRAIN_MAX_SCORED) + " (lower the token budget)");
    }
    return ALIGN_OK;
}

// Builds the forward graph (and the backward when with_grad) for a batch.
// with_lora: include the adapter branch (scale from the graph input).
align_status build_graph(align_trainer * tr, const align_batch * b, bool with_lora, bool with_grad, graph_t & gt) {
    const int32_t B = b->n_seq, T = b->n_tok, N = B * T;
    gt = graph_t();
    gt.n_seq = B;
    gt.n_tok = T;
    // host inputs
    gt.h_tokens.resize((size_t) N);
    for (int32_t s = 0; s < B; s++) {
        for (int32_t t = 0; t < T; t++) {
            const size_t i = (size_t) s * T + t;
            gt.h_tokens[i] = t < b->lengths[s] ? b->tokens[i] : 0;  // padding reads token 0
        }
    }
    gt.h_pos.resize((size_t) T);
    for (int32_t t = 0; t < T; t++) gt.h_pos[(size_t) t] = t;
    gt.h_mask.assign((size_t) T * T * B, -INFINITY);
    for (int32_t s = 0; s < B; s++) {
        const int32_t len = b->lengths[s];
        for (int32_t q = 0; q < T; q++) {
            for (int32_t k = 0; k <= q && k < len; k++) {
                gt.h_mask[((size_t) s * T + q) * T + k] = 0.0f;  // mask (T_k, T_q, 1, B)
            }
        }
    }
    for (int32_t s = 0; s < B; s++) {
        for (int32_t t = 1; t < b->lengths[s]; t++) {
            if (b->scored[(size_t) s * T + t]) {
                gt.h_sel.push_back(s * T + t - 1);
            }
        }
    }
    const int32_t M = (int32_t) gt.h_sel.size();
    gt.n_sel = M;
    gt.h_tgt.resize((size_t) M);
    gt.h_seg.assign((size_t) M * B, 0.0f);
    gt.h_eye.assign((size_t) M * M, 0.0f);
    for (int32_t j = 0; j < M; j++) gt.h_eye[(size_t) j * M + j] = 1.0f;
    for (int32_t j = 0; j < M; j++) {
        const int32_t flat = gt.h_sel[(size_t) j] + 1;  // the scored token
        gt.h_tgt[(size_t) j] = j * tr->n_vocab + gt.h_tokens[(size_t) flat];
        gt.h_seg[(size_t) (flat / T) * M + j] = 1.0f;  // seg (M, B)
    }

    const size_t mem = ggml_tensor_overhead() * k_graph_size + ggml_graph_overhead_custom(k_graph_size, with_grad);
    ggml_init_params ip = {mem, nullptr, /*no_alloc=*/true};
    gt.ctx.reset(ggml_init(ip));
    if (!gt.ctx) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate the graph context");
    ggml_context * ctx = gt.ctx.get();

    gt.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, N);
    gt.pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);
    gt.mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, T, T, 1, B);
    gt.sel = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, M);
    gt.tgt = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, M);
    gt.seg = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, M, B);
    gt.w = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, B);
    gt.eye = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, M, M);
    for (ggml_tensor * t : {gt.tokens, gt.pos, gt.mask, gt.sel, gt.tgt, gt.seg, gt.w, gt.eye}) ggml_set_input(t);
    if (with_lora) {
        gt.scale = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1);
        ggml_set_input(gt.scale);
    }

    const int32_t hd = tr->head_dim;
    const float kq_scale = 1.0f / std::sqrt((float) hd);
    ggml_tensor * x = ggml_get_rows(ctx, tr->tok_embd, gt.tokens);  // (n_embd, N)
    for (int32_t il = 0; il < tr->n_layer; il++) {
        const layer_t & L = tr->layers[(size_t) il];
        ggml_tensor * h = ggml_mul(ctx, rms_norm(ctx, x, tr->eps), L.attn_norm);
        ggml_tensor * q = proj(ctx, L.wq, h, L.lq, L.bq, gt.scale);  // (n_head*hd, N)
        ggml_tensor * k = proj(ctx, L.wk, h, L.lk, L.bk, gt.scale);  // (n_kv*hd, N)
        ggml_tensor * v = proj(ctx, L.wv, h, L.lv, L.bv, gt.scale);  // (n_kv*hd, N)
        q = ggml_reshape_4d(ctx, q, hd, tr->n_head, T, B);
        k = ggml_reshape_4d(ctx, k, hd, tr->n_head_kv, T, B);
        v = ggml_reshape_4d(ctx, v, hd, tr->n_head_kv, T, B);
        q = ggml_rope_ext(ctx, q, gt.pos, tr->rope_freqs, tr->n_rot, tr->rope_mode, tr->n_ctx_train, tr->rope_base,
                          tr->rope_freq_scale, 0.0f, 1.0f, 32.0f, 1.0f);
        k = ggml_rope_ext(ctx, k, gt.pos, tr->rope_freqs, tr->n_rot, tr->rope_mode, tr->n_ctx_train, tr->rope_base,
                          tr->rope_freq_scale, 0.0f, 1.0f, 32.0f, 1.0f);
        q = ggml_cont(ctx, ggml_permute(ctx, q, 0, 2, 1, 3));       // (hd, T, n_head, B)
        k = ggml_cont(ctx, ggml_permute(ctx, k, 0, 2, 1, 3));       // (hd, T, n_kv, B)
        ggml_tensor * vt = ggml_cont(ctx, ggml_permute(ctx, v, 1, 2, 0, 3));  // (T, hd, n_kv, B)
        if (tr->n_head_kv != tr->n_head) {
            // GQA: head h reads kv head h / g. ggml's broadcasting mul_mat has
            // no backward with a batch dimension (ne[3] > 1), so expand K and
            // V explicitly: (x, n_kv, B) -> (x, g, n_kv, B) -> (x, n_head, B)
            const int64_t g = tr->n_head / tr->n_head_kv;
            auto expand = [&](ggml_tensor * t) {
                ggml_tensor * t4 = ggml_reshape_4d(ctx, t, t->ne[0] * t->ne[1], 1, tr->n_head_kv, B);
                ggml_tensor * r = ggml_repeat_4d(ctx, t4, t->ne[0] * t->ne[1], g, tr->n_head_kv, B);
                return ggml_reshape_4d(ctx, r, t->ne[0], t->ne[1], tr->n_head, B);
            };
            k = expand(k);    // (hd, T, n_head, B)
            vt = expand(vt);  // (T, hd, n_head, B)
        }
        ggml_tensor * kq = ggml_mul_mat(ctx, k, q);                 // (T_k, T_q, n_head, B)
        kq = ggml_soft_max_ext(ctx, kq, gt.mask, kq_scale, 0.0f);
        ggml_tensor * kqv = ggml_mul_mat(ctx, vt, kq);              // (hd, T, n_head, B)
        ggml_tensor * o = ggml_cont(ctx, ggml_permute(ctx, kqv, 0, 2, 1, 3));  // (hd, n_head, T, B)
        o = ggml_reshape_2d(ctx, o, hd * tr->n_head, N);
        o = proj(ctx, L.wo, o, L.lo, nullptr, gt.scale);            // (n_embd, N)
        x = ggml_add(ctx, x, o);
        h = ggml_mul(ctx, rms_norm(ctx, x, tr->eps), L.ffn_norm);
        ggml_tensor * g = proj(ctx, L.gate, h, L.lgate, nullptr, gt.scale);  // (n_ff, N)
        ggml_tensor * u = proj(ctx, L.up, h, L.lup, nullptr, gt.scale);      // (n_ff, N)
        ggml_tensor * a = ggml_mul(ctx, ggml_silu(ctx, g), u);
        ggml_tensor * d = proj(ctx, L.down, a, L.ldown, nullptr, gt.scale);  // (n_embd, N)
        x = ggml_add(ctx, x, d);
    }
    x = ggml_mul(ctx, rms_norm(ctx, x, tr->eps), tr->output_norm);
    ggml_tensor * hs = ggml_get_rows(ctx, x, gt.sel);                 // (n_embd, M)
    ggml_tensor * logits = ggml_mul_mat(ctx, tr->output, hs);         // (n_vocab, M)
    // exact log-softmax at the targets: logp_j = (L[t_j, j] − c_j) −
    // log Σ_v exp(L[v, j] − c_j), c_j = max_v L[v, j]. The max is picked with
    // argmax (no gradient) and get_rows; gradient through c cancels, so it
    // need not be detached. (softmax-then-log would floor at F32's underflow.)
    const int64_t V = tr->n_vocab;
    ggml_tensor * am = ggml_argmax(ctx, logits);                                   // (M) i32
    ggml_tensor * lt = ggml_cont(ctx, ggml_transpose(ctx, logits));                // (M, V)
    ggml_tensor * cand = ggml_get_rows(ctx, lt, am);                               // (M, M): column j = L[am_j, :]
    ggml_tensor * c = ggml_sum_rows(ctx, ggml_mul(ctx, cand, gt.eye));             // (1, M): L[am_j, j]
    ggml_tensor * d = ggml_add(ctx, logits, ggml_repeat(ctx, ggml_scale(ctx, c, -1.0f), logits));  // (V, M)
    ggml_tensor * lse = ggml_log(ctx, ggml_sum_rows(ctx, ggml_exp(ctx, d)));       // (1, M)
    ggml_tensor * zt = ggml_get_rows(ctx, ggml_reshape_2d(ctx, d, 1, V * M), gt.tgt);  // (1, M): L[t_j, j] − c_j
    gt.logp = ggml_sub(ctx, zt, lse);                                              // (1, M)
    gt.sums = ggml_mul_mat(ctx, ggml_reshape_2d(ctx, gt.logp, M, 1), gt.seg);  // (1, B)
    gt.loss = ggml_sum(ctx, ggml_mul(ctx, gt.sums, gt.w));
    ggml_set_output(gt.logp);
    ggml_set_output(gt.sums);
    ggml_set_output(gt.loss);

    gt.g = ggml_new_graph_custom(ctx, k_graph_size, with_grad);
    ggml_build_forward_expand(gt.g, gt.loss);
    gt.n_fwd = ggml_graph_n_nodes(gt.g);
    if (!with_grad) return ALIGN_OK;

    ggml_set_loss(gt.loss);
    ggml_build_backward_expand(ctx, gt.g, nullptr);
    const int n = ggml_graph_n_nodes(gt.g);
    // ggml-alloc may compute a backward node in place over any parent,
    // src[1] included; SOFT_MAX_BACK(dy, y) then overwrites the forward
    // output y it still reads (measured: wrong gradients). Marking such
    // parents as outputs forbids that reuse.
    for (int i = gt.n_fwd; i < n; i++) {
        ggml_tensor * node = ggml_graph_node(gt.g, i);
        if ((node->op == GGML_OP_SOFT_MAX_BACK || node->op == GGML_OP_RMS_NORM_BACK || node->op == GGML_OP_SILU_BACK) &&
            node->src[1] != nullptr) {
            ggml_set_output(node->src[1]);
        }
    }
    // OUT_PROD(W, dYᵀ) over a frozen W  ->  MUL_MAT(Wᵀ, dY)
    for (int i = gt.n_fwd; i < n; i++) {
        ggml_tensor * node = ggml_graph_node(gt.g, i);
        if (node->op != GGML_OP_OUT_PROD) continue;
        auto it = tr->transposed.find(node->src[0]);
        if (it == tr->transposed.end()) continue;
        ggml_tensor * tv = node->src[1];
        if (tv->op != GGML_OP_TRANSPOSE || tv->src[0] == nullptr) {
            return fail(ALIGN_ERR_INTERNAL, "unexpected backward of a frozen matmul (no transpose)");
        }
        ggml_tensor * dy = tv->src[0];  // (n_out, N)
        ggml_tensor * wt = it->second;  // (n_out, n_in)
        if (dy->ne[0] != wt->ne[0] || node->ne[0] != wt->ne[1] || node->ne[1] != dy->ne[1] ||
            dy->nb[0] != sizeof(float) || dy->type != GGML_TYPE_F32) {
            return fail(ALIGN_ERR_INTERNAL, "unexpected shapes in the backward of a frozen matmul");
        }
        node->op = GGML_OP_MUL_MAT;
        std::memset(node->op_params, 0, sizeof(node->op_params));
        node->src[0] = wt;
        node->src[1] = dy;
    }
    return ALIGN_OK;
}

align_status alloc_and_set(align_trainer * tr, graph_t & gt, float lora_scale) {
    if (!ggml_gallocr_alloc_graph(tr->galloc, gt.g)) {
        return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate compute buffers for the training graph");
    }
    ggml_backend_tensor_set(gt.tokens, gt.h_tokens.data(), 0, ggml_nbytes(gt.tokens));
    ggml_backend_tensor_set(gt.pos, gt.h_pos.data(), 0, ggml_nbytes(gt.pos));
    ggml_backend_tensor_set(gt.mask, gt.h_mask.data(), 0, ggml_nbytes(gt.mask));
    ggml_backend_tensor_set(gt.sel, gt.h_sel.data(), 0, ggml_nbytes(gt.sel));
    ggml_backend_tensor_set(gt.tgt, gt.h_tgt.data(), 0, ggml_nbytes(gt.tgt));
    ggml_backend_tensor_set(gt.seg, gt.h_seg.data(), 0, ggml_nbytes(gt.seg));
    ggml_backend_tensor_set(gt.eye, gt.h_eye.data(), 0, ggml_nbytes(gt.eye));
    std::vector<float> zeros((size_t) gt.n_seq, 0.0f);
    ggml_backend_tensor_set(gt.w, zeros.data(), 0, ggml_nbytes(gt.w));
    if (gt.scale) {
        const float s = lora_scale * tr->lora_s;
        ggml_backend_tensor_set(gt.scale, &s, 0, sizeof(float));
    }
    return ALIGN_OK;
}

align_status compute(align_trainer * tr, ggml_cgraph * g) {
    const ggml_status st = ggml_backend_graph_compute(tr->backend, g);
    if (st != GGML_STATUS_SUCCESS) {
        return fail(ALIGN_ERR_INTERNAL, std::string("graph compute failed: ") + ggml_status_to_string(st));
    }
    return ALIGN_OK;
}

void read_sums(const graph_t & gt, double * sums, float * token_logps) {
    std::vector<float> s((size_t) gt.n_seq);
    ggml_backend_tensor_get(gt.sums, s.data(), 0, ggml_nbytes(gt.sums));
    for (int32_t i = 0; i < gt.n_seq; i++) sums[i] = s[(size_t) i];
    if (token_logps) ggml_backend_tensor_get(gt.logp, token_logps, 0, ggml_nbytes(gt.logp));
}

// ---- loading

align_status make_transposed_tensors(align_trainer * tr);
align_status fill_transposed(align_trainer * tr, const ggml_tensor * w, const void * raw, ggml_tensor * wt);

// The CPU backend's extra buffer types (AMX, repacked weights for faster
// GEMM), in llama.cpp's order of preference.
std::vector<ggml_backend_buffer_type_t> cpu_extra_bufts(ggml_backend_dev_t * dev_out) {
    std::vector<ggml_backend_buffer_type_t> out;
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (dev == nullptr) return out;
    auto fn = (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev),
                                                                                      "ggml_backend_dev_get_extra_bufts");
    if (fn == nullptr) return out;
    *dev_out = dev;
    for (ggml_backend_buffer_type_t * b = fn(dev); b && *b; b++) out.push_back(*b);
    return out;
}

// Whether the device runs mul_mat with w stored in buft (llama.cpp's
// weight_buft_supported, for one op).
bool buft_supports_mul_mat(ggml_backend_dev_t dev, ggml_backend_buffer_type_t buft, const ggml_tensor * w) {
    ggml_init_params ip = {ggml_tensor_overhead() * 4, nullptr, true};
    ctx_ptr ctx(ggml_init(ip));
    ggml_tensor * wd = ggml_dup_tensor(ctx.get(), w);
    ggml_tensor * x = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, w->ne[0], 512);
    ggml_tensor * op = ggml_mul_mat(ctx.get(), wd, x);
    wd->buffer = ggml_backend_buft_alloc_buffer(buft, 0);
    const bool ok = ggml_backend_dev_supports_op(dev, op);
    ggml_backend_buffer_free(wd->buffer);
    wd->buffer = nullptr;
    return ok;
}

align_status load_model(align_trainer * tr, const std::string & path) {
    align_status st = align::check_gguf_file(path);
    if (st != ALIGN_OK) return st;
    ggml_context * meta_raw = nullptr;
    gguf_init_params gp = {/*no_alloc=*/true, &meta_raw};
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> g(gguf_init_from_file(path.c_str(), gp), gguf_free);
    ctx_ptr meta(meta_raw);
    if (!g) return fail(ALIGN_ERR_FORMAT, path + ": cannot read GGUF metadata");
    tr->arch = kv_str(g.get(), "general.architecture");
    if (tr->arch != "llama" && tr->arch != "qwen2") {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": architecture \"" + tr->arch +
                                               "\" is not supported for training (supported: llama, qwen2)");
    }
    const std::string a = tr->arch + ".";
    if (!kv_u32(g.get(), a + "embedding_length", tr->n_embd) || !kv_u32(g.get(), a + "block_count", tr->n_layer) ||
        !kv_u32(g.get(), a + "attention.head_count", tr->n_head)) {
        return fail(ALIGN_ERR_FORMAT, path + ": missing " + a + "embedding_length, block_count or attention.head_count");
    }
    if (!kv_u32(g.get(), a + "feed_forward_length", tr->n_ff)) {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": " + a + "feed_forward_length missing or per-layer (unsupported)");
    }
    if (!kv_u32(g.get(), a + "attention.head_count_kv", tr->n_head_kv)) tr->n_head_kv = tr->n_head;
    kv_u32(g.get(), a + "context_length", tr->n_ctx_train);
    kv_f32(g.get(), a + "attention.layer_norm_rms_epsilon", tr->eps);
    kv_f32(g.get(), a + "rope.freq_base", tr->rope_base);
    if (tr->n_embd <= 0 || tr->n_layer <= 0 || tr->n_head <= 0 || tr->n_head_kv <= 0 || tr->n_ff <= 0 ||
        tr->n_head % tr->n_head_kv != 0 || tr->n_layer > 4096) {
        return fail(ALIGN_ERR_FORMAT, path + ": inconsistent hyper-parameters");
    }
    tr->head_dim = tr->n_embd / tr->n_head;
    int32_t key_len = 0;
    if (kv_u32(g.get(), a + "attention.key_length", key_len) && key_len != tr->head_dim) {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": attention.key_length differs from n_embd/n_head (unsupported)");
    }
    tr->n_rot = tr->head_dim;
    kv_u32(g.get(), a + "rope.dimension_count", tr->n_rot);
    tr->rope_mode = tr->arch == "qwen2" ? GGML_ROPE_TYPE_NEOX : GGML_ROPE_TYPE_NORMAL;
    const std::string scaling = kv_str(g.get(), a + "rope.scaling.type");
    if (scaling == "linear") {
        float factor = 1.0f;
        if (kv_f32(g.get(), a + "rope.scaling.factor", factor) && factor > 0) tr->rope_freq_scale = 1.0f / factor;
    } else if (!scaling.empty() && scaling != "none") {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": rope scaling \"" + scaling + "\" is not supported for training");
    }

    // which tensors we use, and their expected shapes
    struct want_t { std::string name; int64_t ne0, ne1; bool required; ggml_tensor ** dst; };
    std::vector<want_t> wants;
    const int64_t nq = (int64_t) tr->head_dim * tr->n_head, nkv = (int64_t) tr->head_dim * tr->n_head_kv;
    ggml_tensor * tok = ggml_get_tensor(meta.get(), "token_embd.weight");
    if (tok == nullptr) return fail(ALIGN_ERR_FORMAT, path + ": missing tensor token_embd.weight");
    tr->n_vocab = (int32_t) tok->ne[1];
    wants.push_back({"token_embd.weight", tr->n_embd, tr->n_vocab, true, &tr->tok_embd});
    wants.push_back({"output_norm.weight", tr->n_embd, 1, true, &tr->output_norm});
    wants.push_back({"output.weight", tr->n_embd, tr->n_vocab, false, &tr->output});
    wants.push_back({"rope_freqs.weight", tr->n_rot / 2, 1, false, &tr->rope_freqs});
    tr->layers.resize((size_t) tr->n_layer);
    for (int32_t il = 0; il < tr->n_layer; il++) {
        layer_t & L = tr->layers[(size_t) il];
        const std::string p = "blk." + std::to_string(il) + ".";
        wants.push_back({p + "attn_norm.weight", tr->n_embd, 1, true, &L.attn_norm});
        wants.push_back({p + "attn_q.weight", tr->n_embd, nq, true, &L.wq});
        wants.push_back({p + "attn_k.weight", tr->n_embd, nkv, true, &L.wk});
        wants.push_back({p + "attn_v.weight", tr->n_embd, nkv, true, &L.wv});
        wants.push_back({p + "attn_output.weight", nq, tr->n_embd, true, &L.wo});
        wants.push_back({p + "attn_q.bias", nq, 1, false, &L.bq});
        wants.push_back({p + "attn_k.bias", nkv, 1, false, &L.bk});
        wants.push_back({p + "attn_v.bias", nkv, 1, false, &L.bv});
        wants.push_back({p + "ffn_norm.weight", tr->n_embd, 1, true, &L.ffn_norm});
        wants.push_back({p + "ffn_gate.weight", tr->n_embd, tr->n_ff, true, &L.gate});
        wants.push_back({p + "ffn_up.weight", tr->n_embd, tr->n_ff, true, &L.up});
        wants.push_back({p + "ffn_down.weight", tr->n_ff, tr->n_embd, true, &L.down});
    }
    ggml_init_params ip = {ggml_tensor_overhead() * (wants.size() + 8), nullptr, true};
    tr->wctx.reset(ggml_init(ip));
    ggml_backend_dev_t cpu_dev = nullptr;
    // ALIGN_NO_EXTRA_BUFT=1 keeps every weight in the plain CPU buffer (to
    // compare speed against the extra buffer types)
    if (!getenv("ALIGN_NO_EXTRA_BUFT")) tr->xbufts = cpu_extra_bufts(&cpu_dev);
    for (size_t i = 0; i < tr->xbufts.size(); i++) tr->xctx.emplace_back(ggml_init(ip));
    auto is_matmul_weight = [](const std::string & n) {
        return n == "output.weight" || (n.rfind("blk.", 0) == 0 && n.find(".weight") != std::string::npos &&
                                        n.find("_norm") == std::string::npos);
    };
    std::vector<std::pair<ggml_tensor *, int64_t>> to_read;  // (tensor, gguf index)
    for (auto & w : wants) {
        ggml_tensor * src = ggml_get_tensor(meta.get(), w.name.c_str());
        if (src == nullptr) {
            if (w.required) return fail(ALIGN_ERR_FORMAT, path + ": missing tensor " + w.name);
            continue;
        }
        const bool is_vec = w.ne1 == 1;
        if (src->ne[0] != w.ne0 || (is_vec ? ggml_nrows(src) != 1 : (src->ne[1] != w.ne1 || src->ne[2] != 1 || src->ne[3] != 1))) {
            return fail(ALIGN_ERR_FORMAT, path + ": tensor " + w.name + " has shape [" + std::to_string(src->ne[0]) + ", " +
                                              std::to_string(src->ne[1]) + "], expected [" + std::to_string(w.ne0) + ", " +
                                              std::to_string(w.ne1) + "]");
        }
        if (src->type != GGML_TYPE_F32 && (ggml_get_type_traits(src->type)->to_float == nullptr)) {
            return fail(ALIGN_ERR_UNSUPPORTED, path + ": tensor " + w.name + " has type " + ggml_type_name(src->type) +
                                                   ", which cannot be dequantised");
        }
        if ((is_vec || w.name == "rope_freqs.weight") && src->type != GGML_TYPE_F32) {
            return fail(ALIGN_ERR_UNSUPPORTED, path + ": norm/bias tensor " + w.name + " is " + ggml_type_name(src->type) +
                                                   " (expected f32)");
        }
        ggml_context * dst_ctx = tr->wctx.get();
        if (is_matmul_weight(w.name)) {
            for (size_t i = 0; i < tr->xbufts.size(); i++) {
                if (buft_supports_mul_mat(cpu_dev, tr->xbufts[i], src)) {
                    dst_ctx = tr->xctx[i].get();
                    break;
                }
            }
        }
        ggml_tensor * t = ggml_dup_tensor(dst_ctx, src);
        ggml_set_name(t, w.name.c_str());
        *w.dst = t;
        to_read.emplace_back(t, gguf_find_tensor(g.get(), w.name.c_str()));
        tr->n_base_params += ggml_nelements(t);
        tr->base_bytes += (int64_t) ggml_nbytes(t);
    }
    if (tr->output == nullptr) tr->output = tr->tok_embd;  // tied head (kept in the plain buffer: get_rows reads it)
    tr->wbuf.reset(ggml_backend_alloc_ctx_tensors(tr->wctx.get(), tr->backend));
    if (!tr->wbuf) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate the base weights");
    ggml_backend_buffer_set_usage(tr->wbuf.get(), GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    for (size_t i = 0; i < tr->xbufts.size(); i++) {
        if (ggml_get_first_tensor(tr->xctx[i].get()) == nullptr) continue;
        buf_ptr b(ggml_backend_alloc_ctx_tensors_from_buft(tr->xctx[i].get(), tr->xbufts[i]));
        if (!b) return fail(ALIGN_ERR_OUT_OF_MEMORY, std::string("cannot allocate base weights in ") + ggml_backend_buft_name(tr->xbufts[i]));
        ggml_backend_buffer_set_usage(b.get(), GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        tr->xbuf.push_back(std::move(b));
    }
    st = make_transposed_tensors(tr);
    if (st != ALIGN_OK) return st;

    FILE * f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return fail(ALIGN_ERR_IO, path + ": " + std::strerror(errno));
    std::unique_ptr<FILE, int (*)(FILE *)> fg(f, std::fclose);
    const size_t data_off = gguf_get_data_offset(g.get());
    std::vector<uint8_t> staging;
    for (auto & [t, idx] : to_read) {
        const size_t nb = ggml_nbytes(t);
        staging.resize(nb);
        if (fseeko(f, (off_t) (data_off + gguf_get_tensor_offset(g.get(), idx)), SEEK_SET) != 0 ||
            std::fread(staging.data(), 1, nb, f) != nb) {
            return fail(ALIGN_ERR_FORMAT, path + ": cannot read tensor " + std::string(ggml_get_name(t)));
        }
        // the transposed copy comes from the file bytes: a repacked
        // buffer cannot be read back
        auto it = tr->transposed.find(t);
        if (it != tr->transposed.end()) {
            st = fill_transposed(tr, t, staging.data(), it->second);
            if (st != ALIGN_OK) return st;
        }
        ggml_backend_tensor_set(t, staging.data(), 0, nb);
    }
    return ALIGN_OK;
}

// Transposed copies of every frozen matrix whose input needs a gradient:
// the tensors, allocated before the weights are read.
align_status make_transposed_tensors(align_trainer * tr) {
    std::vector<ggml_tensor *> mats;
    for (auto & L : tr->layers) {
        for (ggml_tensor * w : {L.wq, L.wk, L.wv, L.wo, L.gate, L.up, L.down}) mats.push_back(w);
    }
    mats.push_back(tr->output);
    ggml_init_params ip = {ggml_tensor_overhead() * (mats.size() + 4), nullptr, true};
    tr->tctx.reset(ggml_init(ip));
    for (ggml_tensor * w : mats) {
        if (tr->transposed.count(w)) continue;
        const int64_t n_in = w->ne[0], n_out = w->ne[1];
        ggml_type tt;
        if (tr->params.exact_backward || w->type == GGML_TYPE_F32) tt = GGML_TYPE_F32;
        else if (w->type == GGML_TYPE_F16 || w->type == GGML_TYPE_BF16) tt = GGML_TYPE_F16;
        else tt = n_out % ggml_blck_size(GGML_TYPE_Q8_0) == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
        ggml_tensor * wt = ggml_new_tensor_2d(tr->tctx.get(), tt, n_out, n_in);  // (n_out, n_in)
        ggml_set_name(wt, (std::string(ggml_get_name(w)) + ".T").c_str());
        tr->transposed[w] = wt;
    }
    tr->tbuf.reset(ggml_backend_alloc_ctx_tensors(tr->tctx.get(), tr->backend));
    if (!tr->tbuf) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate transposed weights");
    return ALIGN_OK;
}

// Fills Wᵀ from W's bytes as stored in the file.
align_status fill_transposed(align_trainer * tr, const ggml_tensor * w, const void * raw, ggml_tensor * wt) {
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    std::vector<float> f((size_t) (n_in * n_out)), ft((size_t) (n_in * n_out));
    if (!to_f32(w->type, raw, f.data(), n_in * n_out)) {
        return fail(ALIGN_ERR_UNSUPPORTED, std::string("cannot dequantise ") + ggml_get_name(w));
    }
    for (int64_t j = 0; j < n_out; j++) {
        for (int64_t i = 0; i < n_in; i++) ft[(size_t) (i * n_out + j)] = f[(size_t) (j * n_in + i)];
    }
    std::vector<uint8_t> out(ggml_nbytes(wt));
    if (wt->type == GGML_TYPE_F32) {
        std::memcpy(out.data(), ft.data(), out.size());
    } else if (wt->type == GGML_TYPE_F16) {
        ggml_fp32_to_fp16_row(ft.data(), reinterpret_cast<ggml_fp16_t *>(out.data()), (int64_t) ft.size());
    } else {
        ggml_quantize_chunk(wt->type, ft.data(), out.data(), 0, n_in, n_out, nullptr);
    }
    ggml_backend_tensor_set(wt, out.data(), 0, out.size());
    tr->transposed_bytes += (int64_t) out.size();
    return ALIGN_OK;
}

align_status make_loras(align_trainer * tr) {
    const uint32_t tg = tr->params.targets;
    const int32_t r = tr->params.lora_rank;
    size_t count = 0;
    for (int bit = 0; bit < 7; bit++) count += (tg >> bit) & 1;
    ggml_init_params ip = {ggml_tensor_overhead() * (2 * count * (size_t) tr->n_layer + 4), nullptr, true};
    tr->lctx.reset(ggml_init(ip));
    for (int32_t il = 0; il < tr->n_layer; il++) {
        layer_t & L = tr->layers[(size_t) il];
        struct slot { uint32_t bit; ggml_tensor * w; lora_t ** dst; };
        const slot slots[] = {
            {ALIGN_LORA_Q, L.wq, &L.lq}, {ALIGN_LORA_K, L.wk, &L.lk}, {ALIGN_LORA_V, L.wv, &L.lv},
            {ALIGN_LORA_O, L.wo, &L.lo}, {ALIGN_LORA_GATE, L.gate, &L.lgate}, {ALIGN_LORA_UP, L.up, &L.lup},
            {ALIGN_LORA_DOWN, L.down, &L.ldown},
        };
        for (const slot & s : slots) {
            if (!(tg & s.bit)) continue;
            auto l = std::make_unique<lora_t>();
            l->base = ggml_get_name(s.w);
            l->n_in = s.w->ne[0];
            l->n_out = s.w->ne[1];
            l->a = ggml_new_tensor_2d(tr->lctx.get(), GGML_TYPE_F32, l->n_in, r);   // (n_in, r)
            l->b = ggml_new_tensor_2d(tr->lctx.get(), GGML_TYPE_F32, r, l->n_out);  // (r, n_out)
            ggml_set_name(l->a, (l->base + ".lora_a").c_str());
            ggml_set_name(l->b, (l->base + ".lora_b").c_str());
            ggml_set_param(l->a);
            ggml_set_param(l->b);
            l->off = tr->n_params;
            tr->n_params += l->n_in * r + (int64_t) r * l->n_out;
            *s.dst = l.get();
            tr->loras.push_back(std::move(l));
        }
    }
    tr->lbuf.reset(ggml_backend_alloc_ctx_tensors(tr->lctx.get(), tr->backend));
    if (!tr->lbuf) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate adapters");
    // PEFT's default: A ~ U(-1/sqrt(n_in), 1/sqrt(n_in)) (kaiming-uniform, a=sqrt(5)), B = 0
    for (auto & l : tr->loras) {
        rng_t rg{tr->params.seed ^ fnv1a(l->base)};
        const double bound = 1.0 / std::sqrt((double) l->n_in);
        std::vector<float> a((size_t) ggml_nelements(l->a));
        for (auto & x : a) x = (float) ((2.0 * rg.uniform() - 1.0) * bound);
        ggml_backend_tensor_set(l->a, a.data(), 0, ggml_nbytes(l->a));
        std::vector<float> b((size_t) ggml_nelements(l->b), 0.0f);
        ggml_backend_tensor_set(l->b, b.data(), 0, ggml_nbytes(l->b));
    }
    tr->grad.assign((size_t) tr->n_params, 0.0f);
    tr->m.assign((size_t) tr->n_params, 0.0f);
    tr->v.assign((size_t) tr->n_params, 0.0f);
    return ALIGN_OK;
}

void get_params(const align_trainer * tr, float * out) {
    for (auto & l : tr->loras) {
        ggml_backend_tensor_get(l->a, out + l->off, 0, ggml_nbytes(l->a));
        ggml_backend_tensor_get(l->b, out + l->off + ggml_nelements(l->a), 0, ggml_nbytes(l->b));
    }
}

void set_params(align_trainer * tr, const float * in) {
    for (auto & l : tr->loras) {
        ggml_backend_tensor_set(l->a, in + l->off, 0, ggml_nbytes(l->a));
        ggml_backend_tensor_set(l->b, in + l->off + ggml_nelements(l->a), 0, ggml_nbytes(l->b));
    }
}

}  // namespace

extern "C" {

align_trainer_params align_trainer_default_params(void) {
    align_trainer_params p;
    p.n_threads = 0;
    p.lora_rank = 8;
    p.lora_alpha = 16.0f;
    p.targets = ALIGN_LORA_Q | ALIGN_LORA_K | ALIGN_LORA_V | ALIGN_LORA_O;
    p.seed = 1;
    p.exact_backward = false;
    return p;
}

align_status align_trainer_new(const char * model_path, const align_trainer_params * params, align_trainer ** out) {
    if (model_path == nullptr || out == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_new: NULL argument");
    }
    *out = nullptr;
    align_trainer_params p = params ? *params : align_trainer_default_params();
    if (p.targets == 0) p.targets = align_trainer_default_params().targets;
    if (p.lora_rank <= 0 || p.lora_rank > 4096 || !(p.lora_alpha > 0) || !std::isfinite(p.lora_alpha) ||
        (p.targets & ~127u) != 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "trainer: rank must be in [1, 4096], alpha positive, targets a known set");
    }
    ALIGN_TRY
    auto tr = std::make_unique<align_trainer>();
    tr->params = p;
    tr->lora_s = p.lora_alpha / (float) p.lora_rank;
    tr->backend = ggml_backend_cpu_init();
    if (tr->backend == nullptr) return fail(ALIGN_ERR_INTERNAL, "cannot initialise the CPU backend");
    ggml_backend_cpu_set_n_threads(tr->backend, cpu_threads(p.n_threads));
    align_status st = load_model(tr.get(), model_path);
    if (st != ALIGN_OK) return st;
    st = make_loras(tr.get());
    if (st != ALIGN_OK) return st;
    tr->galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(tr->backend));
    if (tr->galloc == nullptr) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot create the graph allocator");
    *out = tr.release();
    return ok();
    ALIGN_CATCH
}

void align_trainer_free(align_trainer * trainer) { delete trainer; }

align_status align_trainer_get_info(const align_trainer * tr, align_trainer_info * out) {
    if (tr == nullptr || out == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_get_info: NULL argument");
    std::memset(out, 0, sizeof(*out));
    std::snprintf(out->arch, sizeof(out->arch), "%s", tr->arch.c_str());
    out->n_vocab = tr->n_vocab;
    out->n_embd = tr->n_embd;
    out->n_layer = tr->n_layer;
    out->n_head = tr->n_head;
    out->n_head_kv = tr->n_head_kv;
    out->n_ff = tr->n_ff;
    out->n_ctx_train = tr->n_ctx_train;
    out->n_base_params = tr->n_base_params;
    out->n_lora_params = tr->n_params;
    out->n_lora_tensors = (int32_t) tr->loras.size();
    out->base_bytes = tr->base_bytes;
    out->transposed_bytes = tr->transposed_bytes;
    return ok();
}

align_status align_trainer_forward(align_trainer * tr, const align_batch * batch, float lora_scale, double * sums,
                                   float * token_logps) {
    if (tr == nullptr || sums == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_forward: NULL argument");
    if (!std::isfinite(lora_scale)) return fail(ALIGN_ERR_INVALID_ARGUMENT, "lora_scale must be finite");
    ALIGN_TRY
    align_status st = validate_batch(tr, batch);
    if (st != ALIGN_OK) return st;
    tr->has_pending = false;  // shares the allocator with the pending graph
    tr->pending = graph_t();
    graph_t gt;
    // scale 0: leave the adapter branch out; W·x + 0 is exactly W·x
    st = build_graph(tr, batch, lora_scale != 0.0f, false, gt);
    if (st != ALIGN_OK) return st;
    st = alloc_and_set(tr, gt, lora_scale);
    if (st != ALIGN_OK) return st;
    st = compute(tr, gt.g);
    if (st != ALIGN_OK) return st;
    read_sums(gt, sums, token_logps);
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_forward_grad(align_trainer * tr, const align_batch * batch, double * sums) {
    if (tr == nullptr || sums == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_forward_grad: NULL argument");
    ALIGN_TRY
    align_status st = validate_batch(tr, batch);
    if (st != ALIGN_OK) return st;
    tr->has_pending = false;
    tr->pending = graph_t();
    graph_t & gt = tr->pending;
    st = build_graph(tr, batch, true, true, gt);
    if (st != ALIGN_OK) return st;
    st = alloc_and_set(tr, gt, 1.0f);
    if (st != ALIGN_OK) return st;
    ggml_graph_reset(gt.g);  // zero gradients, d(loss) = 1
    ggml_cgraph fwd = ggml_graph_view(gt.g, 0, gt.n_fwd);
    st = compute(tr, &fwd);
    if (st != ALIGN_OK) return st;
    read_sums(gt, sums, nullptr);
    for (int32_t i = 0; i < gt.n_seq; i++) {
        if (!std::isfinite(sums[i])) return fail(ALIGN_ERR_INTERNAL, "non-finite log-probability in the forward pass");
    }
    tr->has_pending = true;
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_backward(align_trainer * tr, const double * dsums) {
    if (tr == nullptr || dsums == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_backward: NULL argument");
    if (!tr->has_pending) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_backward: no pending forward_grad");
    ALIGN_TRY
    graph_t & gt = tr->pending;
    std::vector<float> w((size_t) gt.n_seq);
    for (int32_t i = 0; i < gt.n_seq; i++) {
        if (!std::isfinite(dsums[i])) return fail(ALIGN_ERR_INVALID_ARGUMENT, "non-finite loss gradient");
        w[(size_t) i] = (float) dsums[i];
    }
    ggml_backend_tensor_set(gt.w, w.data(), 0, ggml_nbytes(gt.w));
    ggml_cgraph bwd = ggml_graph_view(gt.g, gt.n_fwd, ggml_graph_n_nodes(gt.g));
    align_status st = compute(tr, &bwd);
    tr->has_pending = false;
    if (st != ALIGN_OK) return st;
    std::vector<float> tmp;
    for (auto & l : tr->loras) {
        for (int k = 0; k < 2; k++) {
            ggml_tensor * p = k == 0 ? l->a : l->b;
            ggml_tensor * gr = ggml_graph_get_grad(gt.g, p);
            const int64_t off = l->off + (k == 0 ? 0 : ggml_nelements(l->a));
            if (gr == nullptr) continue;  // no path from this adapter to the loss
            tmp.resize((size_t) ggml_nelements(p));
            ggml_backend_tensor_get(gr, tmp.data(), 0, ggml_nbytes(gr));
            float * acc = tr->grad.data() + off;
            for (size_t i = 0; i < tmp.size(); i++) acc[i] += tmp[i];
        }
    }
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_zero_grad(align_trainer * tr) {
    if (tr == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_zero_grad: NULL trainer");
    std::fill(tr->grad.begin(), tr->grad.end(), 0.0f);
    return ok();
}

align_status align_trainer_grad_norm(align_trainer * tr, double grad_scale, double * norm) {
    if (tr == nullptr || norm == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_grad_norm: NULL argument");
    double s = 0;
    for (float g : tr->grad) s += (double) g * g;
    *norm = std::sqrt(s) * std::fabs(grad_scale);
    return ok();
}

align_status align_trainer_adamw_step(align_trainer * tr, const align_adamw_params * p) {
    if (tr == nullptr || p == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_adamw_step: NULL argument");
    if (!(p->lr >= 0) || !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) ||
        !(p->weight_decay >= 0) || !std::isfinite(p->grad_scale)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "adamw: need lr >= 0, betas in [0, 1), eps > 0, weight_decay >= 0");
    }
    ALIGN_TRY
    std::vector<float> w((size_t) tr->n_params);
    get_params(tr, w.data());
    tr->step++;
    const double bc1 = 1.0 - std::pow((double) p->beta1, (double) tr->step);
    const double bc2 = 1.0 - std::pow((double) p->beta2, (double) tr->step);
    for (size_t i = 0; i < w.size(); i++) {
        const float g = tr->grad[i] * p->grad_scale;
        tr->m[i] = p->beta1 * tr->m[i] + (1.0f - p->beta1) * g;
        tr->v[i] = p->beta2 * tr->v[i] + (1.0f - p->beta2) * g * g;
        const double mh = tr->m[i] / bc1, vh = tr->v[i] / bc2;
        w[i] = (float) (w[i] - p->lr * (mh / (std::sqrt(vh) + p->eps) + p->weight_decay * w[i]));
        tr->grad[i] = 0.0f;
    }
    set_params(tr, w.data());
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_get_state(const align_trainer * tr, float * params, float * m, float * v, float * grads,
                                     int64_t * step) {
    if (tr == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_get_state: NULL trainer");
    ALIGN_TRY
    if (params) get_params(tr, params);
    if (m) std::copy(tr->m.begin(), tr->m.end(), m);
    if (v) std::copy(tr->v.begin(), tr->v.end(), v);
    if (grads) std::copy(tr->grad.begin(), tr->grad.end(), grads);
    if (step) *step = tr->step;
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_set_state(align_trainer * tr, const float * params, const float * m, const float * v,
                                     const int64_t * step) {
    if (tr == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_set_state: NULL trainer");
    ALIGN_TRY
    if (params) {
        for (int64_t i = 0; i < tr->n_params; i++) {
            if (!std::isfinite(params[i])) return fail(ALIGN_ERR_INVALID_ARGUMENT, "non-finite parameter in state");
        }
        set_params(tr, params);
    }
    if (m) std::copy(m, m + tr->n_params, tr->m.begin());
    if (v) std::copy(v, v + tr->n_params, tr->v.begin());
    if (step) tr->step = *step;
    tr->has_pending = false;
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_export(const align_trainer * tr, const char * path) {
    if (tr == nullptr || path == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_export: NULL argument");
    ALIGN_TRY
    std::vector<float> w((size_t) tr->n_params);
    get_params(tr, w.data());
    std::vector<align_adapter_tensor> ts;
    for (auto & l : tr->loras) {
        align_adapter_tensor t;
        t.base_name = l->base.c_str();
        t.n_in = l->n_in;
        t.n_out = l->n_out;
        t.rank = tr->params.lora_rank;
        t.a = w.data() + l->off;
        t.b = w.data() + l->off + l->n_in * tr->params.lora_rank;
        ts.push_back(t);
    }
    return align_adapter_write(path, tr->arch.c_str(), tr->params.lora_alpha, ts.data(), (int32_t) ts.size());
    ALIGN_CATCH
}

}  // extern "C"
