// train_weights.cpp: the frozen base of a trainer.
//
// The trainer runs on llama.cpp's own weight tensors (the align_model it is
// given): one resident copy of the base serves training and generation, and
// the weights sit where llama.cpp placed them for inference (CPU extra
// buffer types such as repacked GEMM or AMX; mmap for the rest). What the
// trainer adds is a transposed copy of each frozen matrix for the input
// gradient (repacked Q4_K for Q4_K weights where the CPU has the kernel,
// Q8_0 where rows allow, F16 otherwise, F32 with exact_backward;
// DESIGN.md §4.3), made from the file's bytes since repacked buffers cannot
// be read back; with ALIGN_BACKWARD_TILES none where the backward can make
// Wᵀ in tiles from W itself (train_tiles.cpp). Hyper-parameters come from the GGUF header with the same
// checks as before, so a model llama.cpp accepts but we cannot train (other
// architectures, per-layer FFN sizes, unknown rope scaling) is refused by name.
#include "train_internal.h"

#include "ggml-cpu.h"
#include "gguf.h"
#include "llama-model.h"  // llama.cpp internals of the pinned copy: the weight tensors

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>

using align::fail;
using align::ok;

namespace align::train {

namespace {

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

// The architectures the training graph implements, as llama.cpp names them
// in general.architecture. Mistral (7B, Nemo), SmolLM 1/2 and Llama 2/3
// files say "llama"; smollm3, mistral3, gemma2, qwen3moe, ... are other
// graphs in llama.cpp and are refused by name.
constexpr const char * k_supported = "llama, qwen2, qwen3, gemma3";

bool is_supported(const std::string & arch) {
    return arch == "llama" || arch == "qwen2" || arch == "qwen3" || arch == "gemma3";
}

// Reads the hyper-parameters the way llama.cpp's llm_load_hparams does for
// the supported architectures (llama-model.cpp of the pinned copy), so the
// training graph computes what inference computes.
align_status read_hparams(align_trainer * tr, gguf_context * g, const std::string & path) {
    tr->arch = align::gguf_str(g, "general.architecture");
    if (!is_supported(tr->arch)) {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": architecture \"" + tr->arch +
                                               "\" is not supported for training (supported: " + k_supported + ")");
    }
    const std::string a = tr->arch + ".";
    if (!kv_u32(g, a + "embedding_length", tr->n_embd) || !kv_u32(g, a + "block_count", tr->n_layer) ||
        !kv_u32(g, a + "attention.head_count", tr->n_head)) {
        return fail(ALIGN_ERR_FORMAT, path + ": missing " + a + "embedding_length, block_count or attention.head_count");
    }
    if (!kv_u32(g, a + "feed_forward_length", tr->n_ff)) {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": " + a + "feed_forward_length missing or per-layer (unsupported)");
    }
    int32_t n_expert = 0;
    if (kv_u32(g, a + "expert_count", n_expert) && n_expert > 0) {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": a mixture of experts (" + a + "expert_count " +
                                               std::to_string(n_expert) + ") is not supported for training");
    }
    if (!kv_u32(g, a + "attention.head_count_kv", tr->n_head_kv)) tr->n_head_kv = tr->n_head;
    kv_u32(g, a + "context_length", tr->n_ctx_train);
    kv_f32(g, a + "attention.layer_norm_rms_epsilon", tr->eps);
    kv_f32(g, a + "rope.freq_base", tr->rope_base);
    if (tr->n_embd <= 0 || tr->n_layer <= 0 || tr->n_head <= 0 || tr->n_head_kv <= 0 || tr->n_ff <= 0 ||
        tr->n_head % tr->n_head_kv != 0 || tr->n_layer > 4096) {
        return fail(ALIGN_ERR_FORMAT, path + ": inconsistent hyper-parameters");
    }
    // head size: n_embd / n_head unless the file says (Qwen3, Gemma 3 and
    // Mistral Nemo have n_head * head_dim != n_embd)
    tr->head_dim = tr->n_embd / tr->n_head;
    kv_u32(g, a + "attention.key_length", tr->head_dim);
    int32_t v_len = tr->head_dim;
    kv_u32(g, a + "attention.value_length", v_len);
    if (tr->head_dim <= 0 || tr->head_dim > 4096 || v_len != tr->head_dim) {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": attention.key_length " + std::to_string(tr->head_dim) +
                                               " and value_length " + std::to_string(v_len) +
                                               " must be equal and positive (unsupported)");
    }
    tr->n_rot = tr->head_dim;
    kv_u32(g, a + "rope.dimension_count", tr->n_rot);
    if (tr->n_rot <= 0 || tr->n_rot > tr->head_dim || tr->n_rot % 2 != 0) {
        return fail(ALIGN_ERR_FORMAT, path + ": rope.dimension_count " + std::to_string(tr->n_rot) + " does not fit the head size");
    }
    tr->rope_mode = tr->arch == "llama" ? GGML_ROPE_TYPE_NORMAL : GGML_ROPE_TYPE_NEOX;
    // rope scaling: llama.cpp's default type is linear, applied whenever a
    // factor is given; "none" never scales
    const std::string scaling = align::gguf_str(g, a + "rope.scaling.type");
    if (scaling.empty() || scaling == "linear") {
        float factor = 0.0f;
        if (!kv_f32(g, a + "rope.scaling.factor", factor)) kv_f32(g, a + "rope.scale_linear", factor);
        if (factor > 0) tr->rope_freq_scale = 1.0f / factor;
    } else if (scaling != "none") {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": rope scaling \"" + scaling + "\" is not supported for training");
    }
    tr->kq_scale = 1.0f / std::sqrt((float) tr->head_dim);
    tr->ffn_act = FFN_SILU;
    tr->layers.assign((size_t) tr->n_layer, layer_t());
    for (layer_t & L : tr->layers) {
        L.rope_base = tr->rope_base;
        L.rope_freq_scale = tr->rope_freq_scale;
    }
    if (tr->arch == "gemma3") {
        // llm_build_gemma3: embeddings times sqrt(n_embd), Q times the query
        // scale before Q·K (1/sqrt(head_dim); the 62-layer 27B model:
        // 1/sqrt(n_embd / n_head)), GeGLU, optional final soft-capping
        tr->embd_scale = std::sqrt((float) tr->n_embd);
        tr->kq_scale = tr->n_layer == 62 ? 1.0f / std::sqrt((float) (tr->n_embd / tr->n_head))
                                         : 1.0f / std::sqrt((float) tr->head_dim);
        tr->ffn_act = FFN_GELU_TANH;
        kv_f32(g, a + "final_logit_softcapping", tr->logit_softcap);
        if (!std::isfinite(tr->logit_softcap) || tr->logit_softcap < 0) {
            return fail(ALIGN_ERR_FORMAT, path + ": " + a + "final_logit_softcapping must be non-negative");
        }
        // sliding window on five of every six layers (the sixth is global),
        // with RoPE base 10000 and no scaling on the local layers: the
        // pinned llama.cpp sets this pattern itself and does not read
        // sliding_window_pattern or rope.local.freq_base from the file
        int32_t n_swa = 0;
        if (kv_u32(g, a + "attention.sliding_window", n_swa) && n_swa > 0) {
            tr->n_swa = n_swa;
            for (int32_t il = 0; il < tr->n_layer; il++) {
                layer_t & L = tr->layers[(size_t) il];
                L.swa = il % 6 < 5;
                if (L.swa) {
                    L.rope_base = 10000.0f;
                    L.rope_freq_scale = 1.0f;
                }
            }
        }
    }
    return ALIGN_OK;
}

// Checks one of llama.cpp's tensors against the shape the graph assumes.
align_status check_tensor(const std::string & path, const char * what, const ggml_tensor * t, int64_t ne0, int64_t ne1,
                          bool required) {
    if (t == nullptr) {
        return required ? fail(ALIGN_ERR_FORMAT, path + ": missing tensor " + what) : ALIGN_OK;
    }
    const bool is_vec = ne1 == 1;
    if (t->ne[0] != ne0 || (is_vec ? ggml_nrows(t) != 1 : (t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1))) {
        return fail(ALIGN_ERR_FORMAT, path + ": tensor " + ggml_get_name(t) + " has shape [" + std::to_string(t->ne[0]) +
                                          ", " + std::to_string(t->ne[1]) + "], expected [" + std::to_string(ne0) + ", " +
                                          std::to_string(ne1) + "]");
    }
    if (t->type != GGML_TYPE_F32 && ggml_get_type_traits(t->type)->to_float == nullptr) {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": tensor " + ggml_get_name(t) + " has type " + ggml_type_name(t->type) +
                                               ", which cannot be dequantised");
    }
    if (is_vec && t->type != GGML_TYPE_F32) {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": norm/bias tensor " + ggml_get_name(t) + " is " +
                                               ggml_type_name(t->type) + " (expected f32)");
    }
    return ALIGN_OK;
}

// Fills Wᵀ from W's bytes as stored in the file, in tiles of whole
// quantisation blocks of W's rows: each tile is R rows of Wᵀ (R of W's
// columns), dequantised from W's blocks that hold them, transposed and
// converted into Wᵀ's type, then copied into place. The peak is one tile of
// F32 (about k_tile_floats, at least one block's width times W's rows)
// and its converted bytes, not two F32 copies of the whole matrix (2.1 GB
// for a 128,256 × 2048 head).
align_status fill_transposed(align_trainer * tr, const ggml_tensor * w, const void * raw, ggml_tensor * wt) {
    int64_t k_tile_floats = 4 << 20;  // 16 MiB of F32 per tile where the block width allows
    if (const char * e = std::getenv("ALIGN_TRANSPOSE_TILE_FLOATS")) {  // tests: many small tiles
        const long long v = std::atoll(e);
        if (v > 0) k_tile_floats = v;
    }
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    const int64_t blck = ggml_blck_size(w->type);
    if (n_in % blck != 0) return fail(ALIGN_ERR_UNSUPPORTED, std::string("row length of ") + ggml_get_name(w) + " is not whole blocks");
    const ggml_type_traits * tt = ggml_get_type_traits(w->type);
    if (w->type != GGML_TYPE_F32 && (tt == nullptr || tt->to_float == nullptr)) {
        return fail(ALIGN_ERR_UNSUPPORTED, std::string("cannot dequantise ") + ggml_get_name(w));
    }
    int64_t rows = std::max<int64_t>(1, k_tile_floats / std::max<int64_t>(1, n_out * blck)) * blck;  // Wᵀ rows per tile
    rows = std::min(rows, n_in);
    const size_t w_row = ggml_row_size(w->type, n_in), wt_row = ggml_row_size(wt->type, n_out);
    // a repacked buffer takes a tensor's bytes whole (it converts them on
    // the way in): there the converted tiles are gathered first, which costs
    // the copy's own size (Q4_K), never an F32 matrix
    const bool whole = wt->buffer != nullptr && !ggml_backend_buffer_is_host(wt->buffer);
    std::vector<float> seg((size_t) rows), tile((size_t) (rows * n_out));
    std::vector<uint8_t> out(wt->type == GGML_TYPE_F32 && !whole ? 0 : wt_row * (size_t) rows);
    std::vector<uint8_t> all(whole ? ggml_nbytes(wt) : 0);
    const uint8_t * src = static_cast<const uint8_t *>(raw);
    for (int64_t i0 = 0; i0 < n_in; i0 += rows) {
        const int64_t r = std::min(rows, n_in - i0);
        const size_t off = ggml_row_size(w->type, i0);  // i0 is whole blocks
        for (int64_t j = 0; j < n_out; j++) {
            to_f32(w->type, src + (size_t) j * w_row + off, seg.data(), r);
            for (int64_t i = 0; i < r; i++) tile[(size_t) (i * n_out + j)] = seg[(size_t) i];
        }
        const void * bytes = tile.data();
        if (wt->type == GGML_TYPE_F16) {
            ggml_fp32_to_fp16_row(tile.data(), reinterpret_cast<ggml_fp16_t *>(out.data()), r * n_out);
            bytes = out.data();
        } else if (wt->type != GGML_TYPE_F32) {
            ggml_quantize_chunk(wt->type, tile.data(), out.data(), 0, r, n_out, nullptr);
            bytes = out.data();
        }
        if (whole) {
            std::memcpy(all.data() + (size_t) i0 * wt_row, bytes, (size_t) r * wt_row);
        } else {
            ggml_backend_tensor_set(wt, bytes, (size_t) i0 * wt_row, (size_t) r * wt_row);
        }
    }
    if (whole) ggml_backend_tensor_set(wt, all.data(), 0, all.size());
    tr->transposed_bytes += (int64_t) ggml_nbytes(wt);
    return ALIGN_OK;
}

// The CPU backend's repacked buffer type ("CPU_REPACK") where it has a
// Q4_K kernel for this CPU (ggml-cpu/repack.cpp: AVX2, or NEON with i8mm or
// dotprod), or null.
ggml_backend_buffer_type_t cpu_repack_buft() {
    if (!ggml_cpu_has_avx2() && !(ggml_cpu_has_neon() && (ggml_cpu_has_matmul_int8() || ggml_cpu_has_dotprod()))) {
        return nullptr;
    }
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (dev == nullptr) return nullptr;
    using get_extra_t = ggml_backend_buffer_type_t * (*)(ggml_backend_dev_t);
    auto get_extra = (get_extra_t) ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev),
                                                                      "ggml_backend_dev_get_extra_bufts");
    if (get_extra == nullptr) return nullptr;
    for (ggml_backend_buffer_type_t * b = get_extra(dev); b != nullptr && *b != nullptr; b++) {
        if (std::strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) return *b;
    }
    return nullptr;
}

// Transposed copies of every frozen matrix whose input needs a gradient.
align_status make_transposed(align_trainer * tr, gguf_context * g, const std::string & path) {
    std::vector<ggml_tensor *> mats;
    for (auto & L : tr->layers) {
        for (ggml_tensor * w : {L.wq, L.wk, L.wv, L.wo, L.gate, L.up, L.down}) mats.push_back(w);
    }
    mats.push_back(tr->output);
    ggml_init_params ip = {ggml_tensor_overhead() * (mats.size() + 4), nullptr, true};
    tr->tctx.reset(ggml_init(ip));
    tr->tctx_repack.reset(ggml_init(ip));
    // On Q4_K weights, Q4_K copies in the CPU's repacked buffer (8x8
    // interleaved GEMM: AVX2, NEON i8mm) where Wᵀ's rows are whole Q4_K
    // blocks and its row count a multiple of 8; Q8_0 has no repacked kernel
    // on these CPUs. The price is a second 4-bit rounding of W: the input
    // gradient's NMSE against the dequantised reference rises from 4.5e-4
    // (Q8_0 copy) to 8.2e-3 (tiny fixture; native/README.md has the speed
    // and accuracy table). ALIGN_BACKWARD_Q8_0 keeps Q8_0 copies.
    const int32_t bw = tr->params.backward_weights;
    ggml_backend_buffer_type_t repack = tr->is_cpu && bw != ALIGN_BACKWARD_Q8_0 ? cpu_repack_buft() : nullptr;
    int n_repack = 0;
    for (ggml_tensor * w : mats) {
        if (tr->transposed.count(w) || tr->tiled.count(w)) continue;
        // TILES: no copy where the tiles can read W's blocks (plain host
        // memory; a repacked layout cannot be read back) and rows allow.
        // The head keeps its copy: its backward runs once per chunk of
        // scored tokens, and would re-make every tile each time.
        if (bw == ALIGN_BACKWARD_TILES && !tr->params.exact_backward && w != tr->output && tiles_supported(w)) {
            tr->tiled.insert(w);
            continue;
        }
        const int64_t n_in = w->ne[0], n_out = w->ne[1];
        ggml_type tt;
        bool in_repack = false;
        if (tr->params.exact_backward || w->type == GGML_TYPE_F32) tt = GGML_TYPE_F32;
        else if (w->type == GGML_TYPE_F16 || w->type == GGML_TYPE_BF16) tt = GGML_TYPE_F16;
        else if (w->type == GGML_TYPE_Q4_K && repack != nullptr && n_out % ggml_blck_size(GGML_TYPE_Q4_K) == 0 && n_in % 8 == 0) {
            tt = GGML_TYPE_Q4_K;
            in_repack = true;
        } else {
            tt = n_out % ggml_blck_size(GGML_TYPE_Q8_0) == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
        }
        ggml_tensor * wt = ggml_new_tensor_2d(in_repack ? tr->tctx_repack.get() : tr->tctx.get(), tt, n_out, n_in);  // (n_out, n_in)
        ggml_set_name(wt, (std::string(ggml_get_name(w)) + ".T").c_str());
        tr->transposed[w] = wt;
        n_repack += in_repack;
    }
    if (ggml_get_first_tensor(tr->tctx.get()) != nullptr) {
        tr->tbuf.reset(ggml_backend_alloc_ctx_tensors(tr->tctx.get(), tr->backend));
        if (!tr->tbuf) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate transposed weights");
    }
    if (n_repack > 0) {
        tr->tbuf_repack.reset(ggml_backend_alloc_ctx_tensors_from_buft(tr->tctx_repack.get(), repack));
        if (!tr->tbuf_repack) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate repacked transposed weights");
    }

    // The copies come from the loaded weights where they are plain host
    // memory (llama.cpp's mmap of the file: no second read of the base);
    // weights on a device or in a repacked layout are read from the file.
    std::unique_ptr<FILE, int (*)(FILE *)> fg(nullptr, std::fclose);
    const size_t data_off = gguf_get_data_offset(g);
    std::vector<uint8_t> staging;
    for (auto & [w, wt] : tr->transposed) {
        // a tied head is llama.cpp's duplicate of token_embd.weight
        const int64_t idx = gguf_find_tensor(g, ggml_get_name(w));
        if (idx < 0) return fail(ALIGN_ERR_FORMAT, path + ": tensor " + ggml_get_name(w) + " is not in the file");
        const size_t nb = ggml_nbytes(w);
        if (gguf_get_tensor_type(g, idx) != w->type || gguf_get_tensor_size(g, idx) != nb) {
            return fail(ALIGN_ERR_FORMAT, path + ": tensor " + ggml_get_name(w) + " differs from the loaded model");
        }
        const void * raw = nullptr;
        if (w->data != nullptr && w->buffer != nullptr && ggml_backend_buffer_is_host(w->buffer) &&
            std::strcmp(ggml_backend_buft_name(ggml_backend_buffer_get_type(w->buffer)), "CPU_REPACK") != 0) {
            raw = w->data;
        } else {
            if (!fg) {
                fg.reset(std::fopen(path.c_str(), "rb"));
                if (!fg) return fail(ALIGN_ERR_IO, path + ": " + std::strerror(errno));
            }
            staging.resize(nb);
            if (fseeko(fg.get(), (off_t) (data_off + gguf_get_tensor_offset(g, idx)), SEEK_SET) != 0 ||
                std::fread(staging.data(), 1, nb, fg.get()) != nb) {
                return fail(ALIGN_ERR_FORMAT, path + ": cannot read tensor " + std::string(ggml_get_name(w)));
            }
            raw = staging.data();
        }
        align_status st = fill_transposed(tr, w, raw, wt);
        if (st != ALIGN_OK) return st;
    }
    return ALIGN_OK;
}

}  // namespace

align_status load_base(align_trainer * tr, align_model * am) {
    if (am == nullptr || am->model == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "trainer: no model");
    if (am->vocab_only) return fail(ALIGN_ERR_INVALID_ARGUMENT, "trainer: the model was loaded vocab-only (no weights)");
    const std::string & path = am->path;
    tr->path = path;
    align_status st = align::check_gguf_file(path);
    if (st != ALIGN_OK) return st;
    gguf_init_params gp = {/*no_alloc=*/true, nullptr};
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> g(gguf_init_from_file(path.c_str(), gp), gguf_free);
    if (!g) return fail(ALIGN_ERR_FORMAT, path + ": cannot read GGUF metadata");
    st = read_hparams(tr, g.get(), path);
    if (st != ALIGN_OK) return st;

    const llama_model & m = *am->model;
    if ((int32_t) m.layers.size() != tr->n_layer) return fail(ALIGN_ERR_INTERNAL, path + ": layer count differs from llama.cpp's");
    if (m.tok_embd == nullptr) return fail(ALIGN_ERR_FORMAT, path + ": missing tensor token_embd.weight");
    tr->n_vocab = (int32_t) m.tok_embd->ne[1];
    const int64_t nq = (int64_t) tr->head_dim * tr->n_head, nkv = (int64_t) tr->head_dim * tr->n_head_kv;
    tr->tok_embd = m.tok_embd;
    tr->output_norm = m.output_norm;
    tr->output = m.output ? m.output : m.tok_embd;  // llama.cpp duplicates a tied head
    struct want_t { const char * what; ggml_tensor * t; int64_t ne0, ne1; bool required; };
    std::vector<want_t> wants = {
        {"token_embd.weight", tr->tok_embd, tr->n_embd, tr->n_vocab, true},
        {"output_norm.weight", tr->output_norm, tr->n_embd, 1, true},
        {"output.weight", tr->output, tr->n_embd, tr->n_vocab, true},
    };
    const bool qk_norm = tr->arch == "qwen3" || tr->arch == "gemma3", post_norm = tr->arch == "gemma3";
    for (int32_t il = 0; il < tr->n_layer; il++) {
        const llama_layer & s = m.layers[(size_t) il];
        layer_t & L = tr->layers[(size_t) il];  // swa and rope set by read_hparams
        L.attn_norm = s.attn_norm;
        L.wq = s.wq;
        L.wk = s.wk;
        L.wv = s.wv;
        L.wo = s.wo;
        // llama.cpp's qwen3 and gemma3 graphs add no Q/K/V bias
        const bool bias = !qk_norm;
        L.bq = bias ? s.bq : nullptr;
        L.bk = bias ? s.bk : nullptr;
        L.bv = bias ? s.bv : nullptr;
        L.ffn_norm = s.ffn_norm;
        L.gate = s.ffn_gate;
        L.up = s.ffn_up;
        L.down = s.ffn_down;
        L.q_norm = qk_norm ? s.attn_q_norm : nullptr;
        L.k_norm = qk_norm ? s.attn_k_norm : nullptr;
        L.attn_post_norm = post_norm ? s.attn_post_norm : nullptr;
        L.ffn_post_norm = post_norm ? s.ffn_post_norm : nullptr;
        if (qk_norm) {
            wants.push_back({"attn_q_norm.weight", L.q_norm, tr->head_dim, 1, true});
            wants.push_back({"attn_k_norm.weight", L.k_norm, tr->head_dim, 1, true});
        }
        if (post_norm) {
            wants.push_back({"post_attention_norm.weight", L.attn_post_norm, tr->n_embd, 1, true});
            wants.push_back({"post_ffw_norm.weight", L.ffn_post_norm, tr->n_embd, 1, true});
        }
        const std::vector<want_t> lw = {
            {"attn_norm.weight", L.attn_norm, tr->n_embd, 1, true},   {"attn_q.weight", L.wq, tr->n_embd, nq, true},
            {"attn_k.weight", L.wk, tr->n_embd, nkv, true},           {"attn_v.weight", L.wv, tr->n_embd, nkv, true},
            {"attn_output.weight", L.wo, nq, tr->n_embd, true},       {"attn_q.bias", L.bq, nq, 1, false},
            {"attn_k.bias", L.bk, nkv, 1, false},                     {"attn_v.bias", L.bv, nkv, 1, false},
            {"ffn_norm.weight", L.ffn_norm, tr->n_embd, 1, true},     {"ffn_gate.weight", L.gate, tr->n_embd, tr->n_ff, true},
            {"ffn_up.weight", L.up, tr->n_embd, tr->n_ff, true},      {"ffn_down.weight", L.down, tr->n_ff, tr->n_embd, true},
        };
        for (const want_t & w : lw) wants.push_back(w);
        if (il == 0 && tr->arch == "llama") tr->rope_freqs = s.rope_freqs;  // Llama 3.1 factors
    }
    if (tr->rope_freqs) wants.push_back({"rope_freqs.weight", tr->rope_freqs, tr->n_rot / 2, 1, true});
    for (const want_t & w : wants) {
        st = check_tensor(path, w.what, w.t, w.ne0, w.ne1, w.required);
        if (st != ALIGN_OK) return st;
        if (w.t == nullptr) continue;
        // the graph reads weights where llama.cpp put them; a device build
        // must find them in memory that backend can address, the CPU
        // trainer in host memory or CPU_REPACK (align::cpu_trainer_reads)
        if (w.t->buffer == nullptr) {
            return fail(ALIGN_ERR_UNSUPPORTED, path + ": tensor " + ggml_get_name(w.t) + " has no buffer");
        }
        if (tr->is_cpu) {
            ggml_backend_buffer_type_t bt = ggml_backend_buffer_get_type(w.t->buffer);
            const char * name = ggml_backend_buft_name(bt);
            if (!align::cpu_trainer_reads(name, ggml_backend_buffer_is_host(w.t->buffer))) {
                ggml_backend_dev_t dev = ggml_backend_buft_get_device(bt);
                const bool on_cpu = dev != nullptr && ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU;
                return fail(ALIGN_ERR_UNSUPPORTED,
                            path + ": tensor " + ggml_get_name(w.t) + " is in llama.cpp's " + name + " buffer, " +
                                (on_cpu ? "whose layout the trainer cannot read (load the model with trainable set)"
                                        : "not in host memory (offloaded?)"));
            }
        }
        if (w.t != tr->output || tr->output != tr->tok_embd) {
            tr->n_base_params += ggml_nelements(w.t);
            tr->base_bytes += (int64_t) ggml_nbytes(w.t);
        }
    }
    // a device trainer keeps one copy: no transposed copies (train_device.cpp)
    return tr->is_cpu ? make_transposed(tr, g.get(), path) : device_check_weights(tr);
}

}  // namespace align::train
