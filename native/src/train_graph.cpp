// train_graph.cpp: the training graphs.
//
// Body: a cache-free Llama-family graph (llama, qwen2, qwen3, gemma3): token
// embedding (gemma3: × sqrt(n_embd)) -> n_layer x [RMSNorm, Q/K/V (+bias)
// with LoRA, per-head Q/K RMSNorm (qwen3, gemma3), RoPE (optionally with
// rope_freqs factors, llama3-style; gemma3: per-layer base and scale), GQA
// attention with causal + padding mask (gemma3's local layers: + sliding
// window), output projection (gemma3: post-norm), RMSNorm, SwiGLU MLP
// (gemma3: GeGLU, post-norm)] -> RMSNorm. It returns the final states hs at
// the positions before each scored token, and the values of the adapter
// set's scalar heads at the chosen positions.
//
// Head: a separate graph, chunked over scored tokens, computes exact
// log p(target) from hs (final soft-capping when the file sets it) and, for
// training, dloss/dhs from one cotangent per scored token. The body's
// autodiff loss is then Σ hs ⊙ dhs + Σ hv ⊙ dhv
// with dhs and dhv as inputs, so any per-token objective (SFT, the DPO
// family, PPO/GRPO surrogates) and any head objective (value, reward) shares
// one body graph.
//
// Backward: ggml's autodiff with two rewrites after ggml_build_backward_expand:
//  1. OUT_PROD(W, dYᵀ) over a frozen W becomes MUL_MAT(Wᵀ, dY) over the
//     transposed copy made at load (DESIGN.md §4.3);
//  2. parents that RMS_NORM_BACK / SOFT_MAX_BACK / SILU_BACK read after they
//     start writing are marked as outputs, so ggml-alloc cannot compute those
//     nodes in place over them (upstream ggml issue 1491; tests/grad_ops.cpp).
//
// Recompute (gradient checkpointing): the training body is a forward that
// copies each layer's input x_l into a persistent buffer, and a backward of
// pieces built from the same build_layer / build_out / build_backward: the
// tail (x_L -> hs, hv; loss Σ hs ⊙ dhs + Σ hv ⊙ dhv) and, for l = L-1 … 0,
// layer l from x_l (loss Σ x_{l+1} ⊙ dx_{l+1}). Every graph of a body shares
// the body allocator (alloc_shared), so its buffer is the largest piece's.
#include "train_internal.h"
#include "train_ops.h"

#include "ggml-cpu.h"
#include "ggml-impl.h"

#include <algorithm>
#include <cmath>
#include <cstring>

using align::fail;
using align::ok;

namespace align::train {

namespace {

// Nodes a body graph needs, from the model's size (no fixed cap).
size_t body_graph_size(const align_trainer * tr, const adapter_set * s) {
    // measured: the 2-layer fixture with LoRA on all
    // seven projections takes 166-172 forward + 225 backward nodes and 55-61
    // leafs, about 190 a layer; twice that leaves room
    // (gemma3's norms and composed GELU add ~50 more)
    size_t per_layer = (s ? 400 : 160) + (tr->arch == "gemma3" || tr->arch == "qwen3" ? 128 : 0);
    // ALIGN_BACKWARD_TILES: each input gradient adds its tiles' nodes
    int64_t tiles = 0;
    for (const layer_t & L : tr->layers) {
        int64_t n = 0;
        for (const ggml_tensor * w : {L.wq, L.wk, L.wv, L.wo, L.gate, L.up, L.down}) {
            if (tr->tiled.count(w)) n += tiled_nodes(w);
        }
        tiles = std::max(tiles, n);
    }
    if (s != nullptr) per_layer += (size_t) tiles;
    return 512 + per_layer * (size_t) tr->n_layer;
}

// Inserts add (in order) into g before node pos: the nodes a rewrite
// makes for a backward node. False when g has no room.
bool insert_nodes(ggml_cgraph * g, int pos, const std::vector<ggml_tensor *> & add) {
    const int k = (int) add.size();
    if (k == 0) return true;
    if (g->n_nodes + k > g->size) return false;
    for (ggml_tensor * t : add) {
        if (ggml_hash_contains(&g->visited_hash_set, t)) return false;
    }
    std::memmove(g->nodes + pos + k, g->nodes + pos, sizeof(ggml_tensor *) * (size_t) (g->n_nodes - pos));
    for (int j = 0; j < k; j++) {
        const size_t h = ggml_hash_insert(&g->visited_hash_set, add[(size_t) j]);
        if (g->grads != nullptr) g->grads[h] = nullptr;
        if (g->grad_accs != nullptr) g->grad_accs[h] = nullptr;
        if (g->use_counts != nullptr) g->use_counts[h] = 0;
        g->nodes[pos + j] = add[(size_t) j];
    }
    g->n_nodes += k;
    return true;
}

ggml_tensor * proj(ggml_context * ctx, ggml_tensor * w, ggml_tensor * x, const adapter_set * s, ggml_tensor * bias,
                   ggml_tensor * scale) {
    ggml_tensor * y = ggml_mul_mat(ctx, w, x);  // (n_out, N)
    if (s != nullptr && scale != nullptr) {
        auto it = s->by_weight.find(w);
        if (it != s->by_weight.end()) {
            const lora_t * l = it->second;
            ggml_tensor * ax = ggml_mul_mat(ctx, l->a, x);     // (r, N)
            ggml_tensor * bax = ggml_mul_mat(ctx, l->b, ax);   // (n_out, N)
            y = ggml_add(ctx, y, ggml_mul(ctx, bax, scale));
        }
    }
    if (bias != nullptr) y = ggml_add(ctx, y, bias);
    return y;
}

// RMSNorm over rows times a weight broadcast over the other dimensions.
ggml_tensor * norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, float eps) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), w);
}

}  // namespace

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
    if ((int64_t) b->n_seq * b->n_tok > (1 << 22)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: too many tokens in one micro-batch");
    }
    int64_t n_scored = 0, n_head = 0;
    for (int32_t s = 0; s < b->n_seq; s++) {
        const int32_t len = b->lengths[s];
        if (len < 1 || len > b->n_tok) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: sequence " + std::to_string(s) + " has length " +
                                                        std::to_string(len) + " outside [1, " + std::to_string(b->n_tok) + "]");
        }
        for (int32_t t = 0; t < b->n_tok; t++) {
            const size_t i = (size_t) s * b->n_tok + t;
            const int32_t tok = b->tokens[i];
            const bool sc = b->scored[i] != 0;
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
            if (b->head_at != nullptr && b->head_at[i] != 0) {
                if (t >= len) {
                    return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: sequence " + std::to_string(s) +
                                                                " asks for head values at position " + std::to_string(t) +
                                                                " (must be in [0, length))");
                }
                n_head++;
            }
        }
    }
    if (n_scored == 0 && n_head == 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: no scored tokens and no head positions");
    }
    return ALIGN_OK;
}

int32_t head_chunk(const align_trainer * tr, int32_t n_sel) {
    // about four (V, chunk) F32 temporaries are live at once
    const int64_t bytes = tr->params.head_chunk_bytes > 0 ? tr->params.head_chunk_bytes : (64ll << 20);
    const int64_t c = bytes / (4ll * 4 * std::max(tr->n_vocab, 1));
    return (int32_t) std::max<int64_t>(1, std::min<int64_t>(c, std::max(n_sel, 1)));
}

align_status prepare_body(align_trainer * tr, const align_batch * b, int32_t set, bool with_grad, graph_t & gt) {
    const int32_t B = b->n_seq, T = b->n_tok, N = B * T;
    const adapter_set * s = set >= 0 ? tr->sets[(size_t) set].get() : nullptr;
    if (with_grad && s == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "training needs an adapter set");
    if (with_grad && s->n_params == 0) return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + s->name + "\" has no parameters");
    gt = graph_t();
    gt.n_seq = B;
    gt.n_tok = T;
    gt.set = set;
    gt.with_grad = with_grad;
    gt.recompute = with_grad && tr->params.recompute;
    // host inputs
    gt.h_tokens.resize((size_t) N);
    for (int32_t q = 0; q < B; q++) {
        for (int32_t t = 0; t < T; t++) {
            const size_t i = (size_t) q * T + t;
            gt.h_tokens[i] = t < b->lengths[q] ? b->tokens[i] : 0;  // padding reads token 0
        }
    }
    gt.h_pos.resize((size_t) T);
    for (int32_t t = 0; t < T; t++) gt.h_pos[(size_t) t] = t;
    gt.h_mask.assign((size_t) T * T * B, -INFINITY);
    for (int32_t q = 0; q < B; q++) {
        const int32_t len = b->lengths[q];
        for (int32_t i = 0; i < T; i++) {
            for (int32_t k = 0; k <= i && k < len; k++) {
                gt.h_mask[((size_t) q * T + i) * T + k] = 0.0f;  // mask (T_k, T_q, 1, B)
            }
        }
    }
    if (tr->n_swa > 0 && T > tr->n_swa) {
        // llama.cpp's standard window: query i sees key k iff i - k < n_swa.
        // Padding rows keep the causal mask: a row with no visible key would
        // be NaN, and NaN times a zero weight spreads to real rows
        gt.h_mask_swa = gt.h_mask;
        for (int32_t q = 0; q < B; q++) {
            for (int32_t i = tr->n_swa; i < b->lengths[q]; i++) {
                float * row = &gt.h_mask_swa[((size_t) q * T + i) * T];
                for (int32_t k = 0; k <= i - tr->n_swa; k++) row[k] = -INFINITY;
            }
        }
    }
    for (int32_t q = 0; q < B; q++) {
        for (int32_t t = 1; t < b->lengths[q]; t++) {
            const size_t i = (size_t) q * T + t;
            if (b->scored[i]) {
                gt.h_sel.push_back(q * T + t - 1);
                gt.h_tgt.push_back(gt.h_tokens[i]);
                gt.h_seq.push_back(q);
            }
        }
    }
    const bool heads = s != nullptr && !s->heads.empty() && b->head_at != nullptr;
    if (heads) {
        for (int32_t q = 0; q < B; q++) {
            for (int32_t t = 0; t < b->lengths[q]; t++) {
                if (b->head_at[(size_t) q * T + t]) gt.h_hsel.push_back(q * T + t);
            }
        }
    }
    gt.n_sel = (int32_t) gt.h_sel.size();
    gt.n_hpos = (int32_t) gt.h_hsel.size();
    if (gt.n_sel == 0 && gt.n_hpos == 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "batch: nothing to compute (no scored tokens, no head values)");
    }
    return ALIGN_OK;
}

bool same_shape(const graph_t & a, const graph_t & b) {
    return a.g != nullptr && a.set == b.set && a.with_grad == b.with_grad && a.recompute == b.recompute &&
           a.n_seq == b.n_seq && a.n_tok == b.n_tok &&
           a.n_sel == b.n_sel && a.n_hpos == b.n_hpos;
}

namespace {

// What every piece of one body reads besides its activations.
struct body_in_t {
    int32_t       B = 0, T = 0;
    ggml_tensor * pos = nullptr, * mask = nullptr, * mask_swa = nullptr, * scale = nullptr;
};

// Layer il: x_{l+1} (n_embd, N) from x_l (n_embd, N).
ggml_tensor * build_layer(align_trainer * tr, ggml_context * ctx, const body_in_t & in, const adapter_set * s, int32_t il,
                          ggml_tensor * x) {
    const int32_t B = in.B, T = in.T, N = B * T;
    const int32_t hd = tr->head_dim;
    const int64_t nq = (int64_t) hd * tr->n_head;
    // gemma3 scales Q before Q·K (llm_build_gemma3); the others scale in the softmax
    const bool q_prescale = tr->arch == "gemma3";
    const layer_t & L = tr->layers[(size_t) il];
    ggml_tensor * h = norm(ctx, x, L.attn_norm, tr->eps);
    ggml_tensor * q = proj(ctx, L.wq, h, s, L.bq, in.scale);  // (n_head*hd, N)
    ggml_tensor * k = proj(ctx, L.wk, h, s, L.bk, in.scale);  // (n_kv*hd, N)
    ggml_tensor * v = proj(ctx, L.wv, h, s, L.bv, in.scale);  // (n_kv*hd, N)
    q = ggml_reshape_4d(ctx, q, hd, tr->n_head, T, B);
    k = ggml_reshape_4d(ctx, k, hd, tr->n_head_kv, T, B);
    v = ggml_reshape_4d(ctx, v, hd, tr->n_head_kv, T, B);
    if (L.q_norm) q = norm(ctx, q, L.q_norm, tr->eps);  // per head, before RoPE (qwen3, gemma3)
    if (L.k_norm) k = norm(ctx, k, L.k_norm, tr->eps);
    q = ggml_rope_ext(ctx, q, in.pos, tr->rope_freqs, tr->n_rot, tr->rope_mode, tr->n_ctx_train, L.rope_base,
                      L.rope_freq_scale, 0.0f, 1.0f, 32.0f, 1.0f);
    k = ggml_rope_ext(ctx, k, in.pos, tr->rope_freqs, tr->n_rot, tr->rope_mode, tr->n_ctx_train, L.rope_base,
                      L.rope_freq_scale, 0.0f, 1.0f, 32.0f, 1.0f);
    q = ggml_cont(ctx, ggml_permute(ctx, q, 0, 2, 1, 3));                 // (hd, T, n_head, B)
    // after the cont, where its gradient is contiguous (ggml_scale needs that)
    if (q_prescale) q = ggml_scale(ctx, q, tr->kq_scale);
    k = ggml_cont(ctx, ggml_permute(ctx, k, 0, 2, 1, 3));                 // (hd, T, n_kv, B)
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
    kq = ggml_soft_max_ext(ctx, kq, L.swa && in.mask_swa ? in.mask_swa : in.mask, q_prescale ? 1.0f : tr->kq_scale, 0.0f);
    ggml_tensor * kqv = ggml_mul_mat(ctx, vt, kq);              // (hd, T, n_head, B)
    ggml_tensor * o = ggml_cont(ctx, ggml_permute(ctx, kqv, 0, 2, 1, 3));  // (hd, n_head, T, B)
    o = ggml_reshape_2d(ctx, o, nq, N);
    o = proj(ctx, L.wo, o, s, nullptr, in.scale);               // (n_embd, N)
    if (L.attn_post_norm) o = norm(ctx, o, L.attn_post_norm, tr->eps);
    x = ggml_add(ctx, x, o);
    h = norm(ctx, x, L.ffn_norm, tr->eps);
    ggml_tensor * g = proj(ctx, L.gate, h, s, nullptr, in.scale);  // (n_ff, N)
    ggml_tensor * u = proj(ctx, L.up, h, s, nullptr, in.scale);    // (n_ff, N)
    ggml_tensor * a = ggml_mul(ctx, tr->ffn_act == FFN_GELU_TANH ? gelu_tanh(ctx, g) : ggml_silu(ctx, g), u);
    ggml_tensor * d = proj(ctx, L.down, a, s, nullptr, in.scale);  // (n_embd, N)
    if (L.ffn_post_norm) d = norm(ctx, d, L.ffn_post_norm, tr->eps);
    return ggml_add(ctx, x, d);
}

// The body's end from the last layer's output x (n_embd, N): final norm,
// the states before scored tokens hs (n_embd, M) and the heads' values hv
// (n_head_out, K); with dhs / dhv, the autodiff loss Σ hs ⊙ dhs + Σ hv ⊙ dhv.
struct out_t {
    ggml_tensor * hs = nullptr, * hv = nullptr, * loss = nullptr;
};
out_t build_out(align_trainer * tr, ggml_context * ctx, const adapter_set * s, ggml_tensor * x, ggml_tensor * sel,
                ggml_tensor * hsel, ggml_tensor * dhs, ggml_tensor * dhv) {
    out_t o;
    x = norm(ctx, x, tr->output_norm, tr->eps);  // (n_embd, N)
    auto add_loss = [&](ggml_tensor * term) { o.loss = o.loss ? ggml_add(ctx, o.loss, term) : term; };
    if (sel) {
        o.hs = ggml_get_rows(ctx, x, sel);  // (n_embd, M)
        if (dhs) add_loss(ggml_sum(ctx, ggml_mul(ctx, o.hs, dhs)));
    }
    if (hsel) {
        ggml_tensor * hh = ggml_get_rows(ctx, x, hsel);  // (n_embd, K)
        o.hv = ggml_add(ctx, ggml_mul_mat(ctx, s->head_w, hh), s->head_b);  // (n_head_out, K)
        if (dhv) add_loss(ggml_sum(ctx, ggml_mul(ctx, o.hv, dhv)));
    }
    return o;
}

// The backward of g, whose loss is set and expanded: ggml's autodiff with
// the set's persistent accumulators as grad_accs (micro-batches add into
// them), then the two rewrites (the file's head comment). *n_fwd receives
// the forward node count; *any is false when no node of g is a parameter
// (nothing to differentiate: g is left forward-only).
align_status build_backward(align_trainer * tr, ggml_context * ctx, ggml_cgraph * g, const adapter_set * s, int * n_fwd,
                            bool * any) {
    *n_fwd = ggml_graph_n_nodes(g);
    *any = false;
    for (int i = 0; i < *n_fwd && !*any; i++) *any = (ggml_graph_node(g, i)->flags & GGML_TENSOR_FLAG_PARAM) != 0;
    if (!*any) return ALIGN_OK;
    // gradients accumulate (+=) into the set's persistent accumulators
    std::unordered_map<const ggml_tensor *, ggml_tensor *> acc;
    for (const param_t & p : s->params) acc[p.t] = p.g;
    std::vector<ggml_tensor *> grad_accs((size_t) *n_fwd, nullptr);
    for (int i = 0; i < *n_fwd; i++) {
        auto it = acc.find(ggml_graph_node(g, i));
        if (it != acc.end()) grad_accs[(size_t) i] = it->second;
    }
    ggml_build_backward_expand(ctx, g, grad_accs.data());
    protect_inplace_parents(g, *n_fwd);  // train_ops.h, checked by tests/grad_ops.cpp
    // OUT_PROD(W, dYᵀ) over a frozen W  ->  MUL_MAT(Wᵀ, dY) on the CPU, over
    // the transposed copy or, with ALIGN_BACKWARD_TILES, over Wᵀ made in
    // tiles by nodes inserted before it (train_tiles.cpp). On a device
    // backend there are no transposed copies: the OUT_PROD nodes stay
    // and the patched ggml-cuda dequantises W tile by tile
    // (native/patches/0001-*); device_rewrite_body checks that it runs them.
    for (int i = *n_fwd; i < ggml_graph_n_nodes(g) && tr->is_cpu; i++) {
        ggml_tensor * node = ggml_graph_node(g, i);
        if (node->op != GGML_OP_OUT_PROD) continue;
        const bool tiled = tr->tiled.count(node->src[0]) != 0;
        auto it = tr->transposed.find(node->src[0]);
        if (!tiled && it == tr->transposed.end()) continue;
        ggml_tensor * tv = node->src[1];
        if (tv->op != GGML_OP_TRANSPOSE || tv->src[0] == nullptr) {
            return fail(ALIGN_ERR_INTERNAL, "unexpected backward of a frozen matmul (no transpose)");
        }
        ggml_tensor * dy = tv->src[0];  // (n_out, N)
        if (tiled) {
            ggml_tensor * w = node->src[0];  // (n_in, n_out)
            if (dy->ne[0] != w->ne[1] || node->ne[0] != w->ne[0] || node->ne[1] != dy->ne[1] ||
                dy->nb[0] != sizeof(float) || dy->type != GGML_TYPE_F32 || node->type != GGML_TYPE_F32) {
                return fail(ALIGN_ERR_INTERNAL, "unexpected shapes in the backward of a frozen matmul");
            }
            std::vector<ggml_tensor *> made;
            ggml_tensor * dx = tiled_input_grad(ctx, w, dy, &made);
            // the node becomes the last op (consumers keep pointing at it);
            // the tensors before it go into g just before it
            if (made.empty() || made.back() != dx) return fail(ALIGN_ERR_INTERNAL, "tiled input gradient: no result");
            made.pop_back();
            node->op = dx->op;
            std::memcpy(node->op_params, dx->op_params, sizeof(node->op_params));
            for (int k = 0; k < GGML_MAX_SRC; k++) node->src[k] = dx->src[k];
            if (!insert_nodes(g, i, made)) return fail(ALIGN_ERR_INTERNAL, "the training graph has no room for the tiles");
            i += (int) made.size();
            continue;
        }
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

// The persistent tensors of a recomputed body (recompute_t), allocated on
// the trainer's backend; the body's shared inputs and seams point at them.
align_status build_checkpoints(align_trainer * tr, graph_t & gt, const adapter_set * s) {
    const int32_t B = gt.n_seq, T = gt.n_tok, N = B * T, M = gt.n_sel, K = gt.n_hpos, L = tr->n_layer;
    gt.rc = std::make_unique<recompute_t>();
    recompute_t & rc = *gt.rc;
    ggml_init_params ip = {ggml_tensor_overhead() * ((size_t) L + 16), nullptr, /*no_alloc=*/true};
    rc.ctx.reset(ggml_init(ip));
    if (!rc.ctx) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate the checkpoint context");
    ggml_context * ctx = rc.ctx.get();
    gt.pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);
    gt.mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, T, T, 1, B);
    if (tr->n_swa > 0 && T > tr->n_swa) gt.mask_swa = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, T, T, 1, B);
    if (s != nullptr && !s->loras.empty()) gt.scale = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1);
    if (M > 0) {
        gt.sel = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, M);
        gt.hs = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, tr->n_embd, M);
        gt.dhs = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, tr->n_embd, M);
    }
    if (K > 0) {
        gt.hsel = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, K);
        gt.dhv = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, s->n_head_out, K);
    }
    for (ggml_tensor * t : {gt.pos, gt.mask, gt.mask_swa, gt.scale, gt.sel, gt.hsel, gt.dhs, gt.dhv}) {
        if (t) ggml_set_input(t);
    }
    for (int32_t l = 0; l <= L; l++) rc.xs.push_back(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, tr->n_embd, N));
    for (ggml_tensor *& d : rc.dx) d = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, tr->n_embd, N);
    rc.buf.reset(ggml_backend_alloc_ctx_tensors(ctx, tr->backend));
    if (!rc.buf) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate the checkpoint buffer (" + std::to_string(L + 3) +
                                                         " x " + std::to_string((int64_t) tr->n_embd * N * 4) + " bytes)");
    return ALIGN_OK;
}

// A piece's loss is built: its backward into the set's accumulators, then
// dloss/dx of its checkpointed input x (a parameter, or null) copied to dx.
align_status finish_piece(align_trainer * tr, piece_t & p, const adapter_set * s, ggml_tensor * x, ggml_tensor * dx) {
    ggml_context * ctx = p.ctx.get();
    ggml_set_loss(p.loss);
    ggml_set_output(p.loss);
    ggml_build_forward_expand(p.g, p.loss);
    int n_fwd = 0;
    bool any = false;
    align_status st = build_backward(tr, ctx, p.g, s, &n_fwd, &any);
    if (st != ALIGN_OK) return st;
    if (!any) {
        p = piece_t();  // no parameter reaches it: nothing to run
        return ALIGN_OK;
    }
    if (x != nullptr) {
        ggml_tensor * gx = ggml_graph_get_grad(p.g, x);
        if (gx == nullptr) return fail(ALIGN_ERR_INTERNAL, "recompute: a layer input has no gradient");
        ggml_build_forward_expand(p.g, ggml_cpy(ctx, gx, dx));
    }
    p.id = ++tr->next_graph_id;
    return ALIGN_OK;
}

align_status new_piece(piece_t & p, size_t n_nodes) {
    ggml_init_params ip = {ggml_tensor_overhead() * n_nodes * 2 + ggml_graph_overhead_custom(n_nodes, true), nullptr, true};
    p.ctx.reset(ggml_init(ip));
    if (!p.ctx) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate a recompute graph context");
    p.g = ggml_new_graph_custom(p.ctx.get(), n_nodes, true);
    return ALIGN_OK;
}

// The backward pieces of a recomputed body: the tail from xs[n_layer], then
// layer l from xs[l] with the loss Σ x_{l+1} ⊙ dloss/dx_{l+1}, whose
// gradient at x_{l+1} is exactly dloss/dx_{l+1}: every node computes what
// the one-graph backward computes, in the same order.
align_status build_pieces(align_trainer * tr, graph_t & gt, const adapter_set * s) {
    recompute_t & rc = *gt.rc;
    const int32_t L = tr->n_layer;
    const bool lora = !s->loras.empty();  // else only the heads train: no layer needs a backward
    body_in_t in;
    in.B = gt.n_seq;
    in.T = gt.n_tok;
    in.pos = gt.pos;
    in.mask = gt.mask;
    in.mask_swa = gt.mask_swa;
    in.scale = gt.scale;
    {
        piece_t & p = rc.tail;
        align_status st = new_piece(p, 256);
        if (st != ALIGN_OK) return st;
        ggml_tensor * x = rc.xs[(size_t) L];
        if (lora) ggml_set_param(x);
        const out_t o = build_out(tr, p.ctx.get(), s, x, gt.sel, gt.hsel, gt.dhs, gt.dhv);
        if (o.hs) ggml_build_forward_expand(p.g, o.hs);
        if (o.hv) ggml_build_forward_expand(p.g, o.hv);
        p.loss = o.loss;
        st = finish_piece(tr, p, s, lora ? x : nullptr, rc.dx[L & 1]);
        if (st != ALIGN_OK) return st;
    }
    if (!lora) {
        if (rc.tail.g == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "no parameter of the adapter set reaches this batch");
        return ALIGN_OK;
    }
    rc.layers.resize((size_t) L);
    const size_t n_nodes = 256 + body_graph_size(tr, s) / std::max(L, 1);
    for (int32_t il = 0; il < L; il++) {
        piece_t & p = rc.layers[(size_t) il];
        align_status st = new_piece(p, n_nodes);
        if (st != ALIGN_OK) return st;
        ggml_context * ctx = p.ctx.get();
        ggml_tensor * x = rc.xs[(size_t) il];
        if (il > 0) ggml_set_param(x);  // x_0 (the embeddings) needs no gradient
        ggml_tensor * y = build_layer(tr, ctx, in, s, il, x);
        p.loss = ggml_sum(ctx, ggml_mul(ctx, y, rc.dx[(il + 1) & 1]));
        st = finish_piece(tr, p, s, il > 0 ? x : nullptr, rc.dx[il & 1]);
        if (st != ALIGN_OK) return st;
    }
    return ALIGN_OK;
}

}  // namespace

align_status build_body(align_trainer * tr, graph_t & gt) {
    const int32_t B = gt.n_seq, T = gt.n_tok, N = B * T, M = gt.n_sel, K = gt.n_hpos;
    // with recompute this graph is the forward only; the pieces hold the backward
    const bool with_grad = gt.with_grad && !gt.recompute;
    const adapter_set * s = gt.set >= 0 ? tr->sets[(size_t) gt.set].get() : nullptr;
    const size_t n_nodes = body_graph_size(tr, s);
    const size_t mem = ggml_tensor_overhead() * n_nodes * 2 + ggml_graph_overhead_custom(n_nodes, with_grad);
    ggml_init_params ip = {mem, nullptr, /*no_alloc=*/true};
    gt.ctx.reset(ggml_init(ip));
    if (!gt.ctx) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate the graph context");
    ggml_context * ctx = gt.ctx.get();
    gt.id = ++tr->next_graph_id;

    gt.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, N);
    ggml_set_input(gt.tokens);
    if (gt.recompute) {
        align_status st = build_checkpoints(tr, gt, s);
        if (st != ALIGN_OK) return st;
    } else {
        gt.pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, T);
        gt.mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, T, T, 1, B);
        for (ggml_tensor * t : {gt.pos, gt.mask}) ggml_set_input(t);
        if (s != nullptr && !s->loras.empty()) {
            gt.scale = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1);
            ggml_set_input(gt.scale);
        }
        // sliding-window layers get a mask of their own once the window can
        // cut (T > n_swa); below that it equals the causal mask
        if (tr->n_swa > 0 && T > tr->n_swa) {
            gt.mask_swa = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, T, T, 1, B);
            ggml_set_input(gt.mask_swa);
        }
        if (M > 0) {
            gt.sel = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, M);
            ggml_set_input(gt.sel);
        }
        if (K > 0) {
            gt.hsel = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, K);
            ggml_set_input(gt.hsel);
        }
        if (with_grad && M > 0) {
            gt.dhs = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, tr->n_embd, M);
            ggml_set_input(gt.dhs);
        }
        if (with_grad && K > 0) {
            gt.dhv = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, s->n_head_out, K);
            ggml_set_input(gt.dhv);
        }
    }
    body_in_t in;
    in.B = B;
    in.T = T;
    in.pos = gt.pos;
    in.mask = gt.mask;
    in.mask_swa = gt.mask_swa;
    in.scale = gt.scale;

    gt.g = ggml_new_graph_custom(ctx, (int) n_nodes, with_grad);
    // with recompute, each layer's input is copied out as soon as it exists,
    // so the forward's own buffer holds about one layer at a time
    auto keep = [&](ggml_tensor * x, int32_t l) {
        if (gt.recompute) ggml_build_forward_expand(gt.g, ggml_cpy(ctx, x, gt.rc->xs[(size_t) l]));
    };
    ggml_tensor * x = ggml_get_rows(ctx, tr->tok_embd, gt.tokens);  // (n_embd, N)
    if (tr->embd_scale > 0) x = ggml_scale(ctx, x, tr->embd_scale);
    for (int32_t il = 0; il < tr->n_layer; il++) {
        keep(x, il);
        x = build_layer(tr, ctx, in, s, il, x);
    }
    keep(x, tr->n_layer);
    const out_t o = build_out(tr, ctx, s, x, gt.sel, gt.hsel, with_grad ? gt.dhs : nullptr, with_grad ? gt.dhv : nullptr);
    if (o.hs) {
        if (gt.recompute) {
            ggml_build_forward_expand(gt.g, ggml_cpy(ctx, o.hs, gt.hs));  // the head graph reads the persistent copy
        } else {
            gt.hs = o.hs;
            ggml_set_output(gt.hs);
            ggml_build_forward_expand(gt.g, gt.hs);
        }
    }
    if (o.hv) {
        gt.hv = o.hv;
        ggml_set_output(gt.hv);
        ggml_build_forward_expand(gt.g, gt.hv);
    }
    if (!with_grad) {
        gt.n_fwd = ggml_graph_n_nodes(gt.g);
        return gt.recompute ? build_pieces(tr, gt, s) : ALIGN_OK;
    }
    gt.loss = o.loss;
    ggml_set_loss(gt.loss);
    ggml_set_output(gt.loss);
    ggml_build_forward_expand(gt.g, gt.loss);
    bool any = false;
    align_status st = build_backward(tr, ctx, gt.g, s, &gt.n_fwd, &any);
    if (st == ALIGN_OK && !any) st = fail(ALIGN_ERR_INVALID_ARGUMENT, "no parameter of the adapter set reaches this batch");
    return st;
}

align_status alloc_shared(align_trainer * tr, ggml_context * ctx, ggml_cgraph * g, uint64_t id) {
    if (tr->galloc_owner == id && id != 0) return ALIGN_OK;
    // ggml-alloc takes a tensor whose data is set as placed by the caller:
    // forget the places another graph's allocation may have overwritten
    // (views re-derive theirs from their sources; persistent tensors live in
    // other contexts and keep theirs)
    for (ggml_tensor * t = ggml_get_first_tensor(ctx); t != nullptr; t = ggml_get_next_tensor(ctx, t)) {
        t->data = nullptr;
        t->buffer = nullptr;
    }
    tr->galloc_owner = 0;
    // reserve first: with equal node counts ggml-alloc would reuse the last
    // graph's plan without looking at this one's topology
    if (!ggml_gallocr_reserve(tr->galloc.get(), g) || !ggml_gallocr_alloc_graph(tr->galloc.get(), g)) {
        return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate compute buffers for the training graph");
    }
    tr->galloc_owner = id;
    return ALIGN_OK;
}

align_status alloc_body(align_trainer * tr, graph_t & gt) {
    if (gt.rc && !gt.rc->reserved) {
        // size the shared buffer for every piece now: a batch too large
        // fails here, in forward_grad, not halfway through its backward
        std::vector<ggml_cgraph *> pieces = {gt.rc->tail.g};
        for (const piece_t & p : gt.rc->layers) pieces.push_back(p.g);
        for (ggml_cgraph * g : pieces) {
            if (g != nullptr && !ggml_gallocr_reserve(tr->galloc.get(), g)) {
                return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate compute buffers for the recomputed backward");
            }
        }
        gt.rc->reserved = true;
        tr->galloc_owner = 0;
    }
    return alloc_shared(tr, gt.ctx.get(), gt.g, gt.id);
}

align_status backward_recompute(align_trainer * tr, graph_t & gt) {
    recompute_t & rc = *gt.rc;
    std::vector<piece_t *> order = {&rc.tail};
    for (size_t l = rc.layers.size(); l-- > 0;) order.push_back(&rc.layers[l]);
    const float one = 1.0f;
    for (piece_t * p : order) {
        if (p->g == nullptr) continue;
        align_status st = alloc_shared(tr, p->ctx.get(), p->g, p->id);
        if (st != ALIGN_OK) return st;
        // d(loss) = 1 (the accumulators are not touched: they sum micro-batches)
        ggml_tensor * gl = ggml_graph_get_grad_acc(p->g, p->loss);
        if (gl == nullptr) return fail(ALIGN_ERR_INTERNAL, "recompute graph has no loss gradient");
        ggml_backend_tensor_set(gl, &one, 0, sizeof(float));
        st = compute(tr, p->g);
        if (st != ALIGN_OK) return st;
    }
    return ALIGN_OK;
}

align_status set_body_inputs(align_trainer * tr, graph_t & gt, float lora_scale) {
    ggml_backend_tensor_set(gt.tokens, gt.h_tokens.data(), 0, ggml_nbytes(gt.tokens));
    ggml_backend_tensor_set(gt.pos, gt.h_pos.data(), 0, ggml_nbytes(gt.pos));
    // a model whose layers all slide uses no causal-only mask (unallocated)
    if (gt.mask->buffer) ggml_backend_tensor_set(gt.mask, gt.h_mask.data(), 0, ggml_nbytes(gt.mask));
    if (gt.mask_swa) ggml_backend_tensor_set(gt.mask_swa, gt.h_mask_swa.data(), 0, ggml_nbytes(gt.mask_swa));
    if (gt.sel) ggml_backend_tensor_set(gt.sel, gt.h_sel.data(), 0, ggml_nbytes(gt.sel));
    if (gt.hsel) ggml_backend_tensor_set(gt.hsel, gt.h_hsel.data(), 0, ggml_nbytes(gt.hsel));
    if (gt.scale) {
        const adapter_set & s = *tr->sets[(size_t) gt.set];
        const float v = s.rank > 0 ? lora_scale * s.alpha / (float) s.rank : 0.0f;
        ggml_backend_tensor_set(gt.scale, &v, 0, sizeof(float));
    }
    if (gt.with_grad && !gt.recompute) {
        // d(loss) = 1 (the accumulators are not touched: they sum micro-batches)
        ggml_tensor * gl = ggml_graph_get_grad_acc(gt.g, gt.loss);
        if (gl == nullptr) return fail(ALIGN_ERR_INTERNAL, "training graph has no loss gradient");
        const float one = 1.0f;
        ggml_backend_tensor_set(gl, &one, 0, sizeof(float));
    }
    return ALIGN_OK;
}

align_status build_head(align_trainer * tr, const graph_t & body, bool with_grad, head_graph_t & hg) {
    hg = head_graph_t();
    const int32_t M = body.n_sel;
    hg.n_sel = M;
    hg.with_grad = with_grad;
    if (M == 0) return ALIGN_OK;
    const int64_t V = tr->n_vocab;
    const int32_t C = head_chunk(tr, M);
    hg.chunk = C;
    const int32_t n_chunks = (M + C - 1) / C;
    const size_t n_nodes = (size_t) n_chunks * (with_grad ? 64 : 32) + 64;
    ggml_init_params ip = {ggml_tensor_overhead() * n_nodes * 2 + ggml_graph_overhead_custom(n_nodes, false), nullptr, true};
    hg.ctx.reset(ggml_init(ip));
    if (!hg.ctx) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate the head graph context");
    ggml_context * ctx = hg.ctx.get();
    hg.tgt = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, M);
    ggml_set_input(hg.tgt);
    hg.logp = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, M);
    ggml_set_output(hg.logp);
    if (with_grad) {
        hg.tgt64 = ggml_new_tensor_1d(ctx, GGML_TYPE_I64, M);
        hg.cot = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, M);
        ggml_set_input(hg.tgt64);
        ggml_set_input(hg.cot);
    }
    hg.g = ggml_new_graph_custom(ctx, n_nodes, false);
    // hs and dhs enter as leafs aliasing the body graph's (allocated)
    // tensors: a view would make the graph walk into the whole body
    auto alias = [&](ggml_tensor * t) {
        ggml_tensor * a = ggml_new_tensor(ctx, t->type, GGML_MAX_DIMS, t->ne);
        ggml_backend_tensor_alloc(t->buffer, a, t->data);
        return a;
    };
    ggml_tensor * hs = alias(body.hs);
    ggml_tensor * dhs = with_grad ? alias(body.dhs) : nullptr;
    ggml_tensor * W = tr->output;  // (n_embd, V)
    struct fwd_t { ggml_tensor * p, * logp, * t; };
    std::vector<fwd_t> fw;
    const float cap = tr->logit_softcap;
    // exact log-softmax at the target: with μ_j = Σ_v p_vj·L_vj (within
    // log V of the row max, since lse − log V ≤ μ ≤ max), lse_j = μ_j +
    // log Σ_v exp(L_vj − μ_j) neither overflows (terms ≤ V) nor underflows
    // (the largest term ≥ 1); log p_t = L_tj − lse_j. No argmax, no M×M.
    // with final soft-capping (gemma3 when the file sets it), as llm_build_gemma3:
    // L = cap·tanh(z / cap); *t receives tanh(z / cap) for the backward
    auto logits_of = [&](int32_t j0, int32_t c, ggml_tensor ** t) {
        ggml_tensor * h = ggml_view_2d(ctx, hs, tr->n_embd, c, hs->nb[1], (size_t) j0 * hs->nb[1]);
        ggml_tensor * z = ggml_mul_mat(ctx, W, h);  // (V, c)
        *t = nullptr;
        if (cap <= 0) return z;
        *t = ggml_tanh(ctx, ggml_scale(ctx, z, 1.0f / cap));
        return ggml_scale(ctx, *t, cap);
    };
    for (int32_t j0 = 0; j0 < M; j0 += C) {
        const int32_t c = std::min(C, M - j0);
        ggml_tensor * t = nullptr;
        ggml_tensor * L = logits_of(j0, c, &t);                                          // (V, c)
        ggml_tensor * p = ggml_soft_max(ctx, L);                                         // (V, c)
        ggml_tensor * mu = ggml_sum_rows(ctx, ggml_mul(ctx, p, L));                      // (1, c)
        ggml_tensor * lse = ggml_add(ctx, mu, ggml_log(ctx, ggml_sum_rows(ctx, ggml_exp(ctx, ggml_sub(ctx, L, mu)))));
        ggml_tensor * idx = ggml_view_1d(ctx, hg.tgt, c, (size_t) j0 * sizeof(int32_t));  // j·V + t_j, chunk-local
        ggml_tensor * lt = ggml_get_rows(ctx, ggml_reshape_2d(ctx, L, 1, V * c), idx);  // (1, c)
        ggml_tensor * lp = ggml_sub(ctx, lt, lse);                                       // (1, c)
        ggml_tensor * dst = ggml_view_2d(ctx, hg.logp, 1, c, hg.logp->nb[1], (size_t) j0 * hg.logp->nb[1]);
        ggml_build_forward_expand(hg.g, ggml_cpy(ctx, lp, dst));
        fw.push_back({p, lp, t});
    }
    hg.n_fwd = ggml_graph_n_nodes(hg.g);
    if (!with_grad) return ALIGN_OK;
    // dloss/dL_vj = g_j·(1[v = t_j] − p_vj); dloss/dh = Wᵀ-product over the
    // transposed copy of the head (the same rewrite the body uses)
    for (int32_t j0 = 0, k = 0; j0 < M; j0 += C, k++) {
        const int32_t c = std::min(C, M - j0);
        ggml_tensor * p = fw[(size_t) k].p, * t = fw[(size_t) k].t;
        if (n_chunks > 1) p = ggml_soft_max(ctx, logits_of(j0, c, &t));  // recompute: keep memory O(V·chunk)
        ggml_tensor * g = ggml_view_2d(ctx, hg.cot, 1, c, hg.cot->nb[1], (size_t) j0 * hg.cot->nb[1]);  // (1, c)
        ggml_tensor * dL = ggml_mul(ctx, p, ggml_scale(ctx, g, -1.0f));                                 // (V, c)
        // at the target: g·(1 − p_t) = g·(1 − exp(log p_t))
        ggml_tensor * at = ggml_mul(ctx, g, ggml_scale_bias(ctx, ggml_exp(ctx, fw[(size_t) k].logp), -1.0f, 1.0f));
        ggml_tensor * idx = ggml_view_1d(ctx, hg.tgt64, c, (size_t) j0 * sizeof(int64_t));
        ggml_tensor * dLs = ggml_set_rows(ctx, ggml_reshape_2d(ctx, dL, 1, V * c), at, idx);
        dLs = ggml_reshape_2d(ctx, dLs, V, c);
        if (t != nullptr) dLs = ggml_mul(ctx, dLs, ggml_scale_bias(ctx, ggml_sqr(ctx, t), -1.0f, 1.0f));  // dz = dL·(1 − t²)
        ggml_tensor * dh = input_grad(tr, ctx, W, dLs);  // (n_embd, c)
        if (dh == nullptr) return fail(ALIGN_ERR_INTERNAL, "no transposed copy of the LM head");
        ggml_tensor * dst = ggml_view_2d(ctx, dhs, tr->n_embd, c, dhs->nb[1], (size_t) j0 * dhs->nb[1]);
        ggml_build_forward_expand(hg.g, ggml_cpy(ctx, dh, dst));
    }
    return ALIGN_OK;
}

align_status alloc_head(align_trainer * tr, head_graph_t & hg) {
    if (hg.g == nullptr) return ALIGN_OK;
    if (!ggml_gallocr_alloc_graph(tr->head_galloc.get(), hg.g)) {
        return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate compute buffers for the LM head");
    }
    return ALIGN_OK;
}

align_status set_head_inputs(align_trainer * tr, head_graph_t & hg, const graph_t & body) {
    if (hg.g == nullptr) return ALIGN_OK;
    const int64_t V = tr->n_vocab;
    std::vector<int32_t> idx((size_t) hg.n_sel);
    for (int32_t j = 0; j < hg.n_sel; j++) {
        const int32_t local = j % hg.chunk;  // index inside its chunk's (1, V·c) view
        idx[(size_t) j] = (int32_t) (local * V + body.h_tgt[(size_t) j]);
    }
    ggml_backend_tensor_set(hg.tgt, idx.data(), 0, ggml_nbytes(hg.tgt));
    if (hg.tgt64) {
        std::vector<int64_t> i64(idx.begin(), idx.end());
        ggml_backend_tensor_set(hg.tgt64, i64.data(), 0, ggml_nbytes(hg.tgt64));
    }
    return ALIGN_OK;
}

align_status compute(align_trainer * tr, ggml_cgraph * g) {
    if (tr->cancel.load(std::memory_order_relaxed)) return fail(ALIGN_ERR_CANCELLED, "cancelled");
    const ggml_status st = ggml_backend_graph_compute(tr->backend, g);
    if (st == GGML_STATUS_ABORTED || tr->cancel.load(std::memory_order_relaxed)) {
        return fail(ALIGN_ERR_CANCELLED, "cancelled");
    }
    if (st != GGML_STATUS_SUCCESS) {
        return fail(ALIGN_ERR_INTERNAL, std::string("graph compute failed: ") + ggml_status_to_string(st));
    }
    return ALIGN_OK;
}

}  // namespace align::train
