// train_internal.h: the training engine's shared state (not part of the C API).
//
// The engine is split along the line a second backend cuts:
//   train_weights.cpp  hyper-parameters, the frozen base (llama.cpp's own
//                      weight tensors), transposed copies for the backward
//   train_graph.cpp    the body graph, the LM-head graph, the backward rewrites
//   train_optim.cpp    adapter sets: parameter table, gradient accumulators,
//                      AdamW on the backend, state copy-out/copy-in
//   train.cpp          the C API
#pragma once

#include "internal.h"

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

struct llama_adapter_lora;

namespace align::train {

struct ctx_deleter {
    void operator()(ggml_context * c) const { if (c) ggml_free(c); }
};
struct buf_deleter {
    void operator()(ggml_backend_buffer_t b) const { if (b) ggml_backend_buffer_free(b); }
};
struct galloc_deleter {
    void operator()(ggml_gallocr_t g) const { if (g) ggml_gallocr_free(g); }
};
using ctx_ptr    = std::unique_ptr<ggml_context, ctx_deleter>;
using buf_ptr    = std::unique_ptr<ggml_backend_buffer, buf_deleter>;
using galloc_ptr = std::unique_ptr<ggml_gallocr, galloc_deleter>;

// One adapted projection W·x + s·B·(A·x).
struct lora_t {
    std::string   base;                   // base tensor name, e.g. blk.0.attn_q.weight
    int64_t       n_in = 0, n_out = 0;
    ggml_tensor * a = nullptr;            // (n_in, r)
    ggml_tensor * b = nullptr;            // (r, n_out)
};

// A named scalar (or small vector) head on the final hidden state. A set's
// heads are stacked into one matrix (ggml has no backward for concat):
// head h owns rows [offset, offset + n_out) of y = W_headsᵀ·h + b_heads.
struct head_t {
    std::string name;                     // e.g. "value", "score"
    int32_t     n_out = 0;
    int32_t     offset = 0;
};

// One row of an adapter set's parameter table. Every trainable tensor of a
// set is one row; the flat state vectors (checkpoints, get/set state) are
// the rows' values concatenated in table order.
struct param_t {
    std::string   name;                   // "<base>.lora_a", "<base>.lora_b", "head.<name>.weight", ...
    int32_t       kind = 0;               // ALIGN_PARAM_*
    ggml_tensor * t = nullptr;            // the parameter
    ggml_tensor * g = nullptr;            // gradient accumulator (same shape)
    ggml_tensor * m = nullptr, * v = nullptr;  // AdamW moments
    int64_t       offset = 0;             // in the flat state
};

// A named set of adapters and heads over the shared base, with its own rank,
// targets, optimiser state and step counter. All its tensors live in one
// backend buffer; nothing round-trips through the host during training.
struct adapter_set {
    std::string name;
    int32_t     rank = 0;
    float       alpha = 0;
    uint32_t    targets = 0;
    uint64_t    seed = 0;
    std::vector<std::unique_ptr<lora_t>> loras;
    std::unordered_map<const ggml_tensor *, lora_t *> by_weight;  // frozen W -> its adapter
    std::vector<head_t>  heads;
    ggml_tensor * head_w = nullptr;       // (n_embd, n_head_out)
    ggml_tensor * head_b = nullptr;       // (n_head_out)
    std::vector<param_t> params;
    int64_t n_params = 0;
    int32_t n_head_out = 0;               // Σ heads' n_out
    int64_t step = 0;
    ctx_ptr ctx;
    buf_ptr buf;
    // AdamW hyper-parameters as a 7-float backend tensor (ggml_opt_step_adamw)
    ggml_tensor * adamw = nullptr;
    ggml_tensor * gscale = nullptr;       // 1 float: gradient scale of the step
};

struct layer_t {
    ggml_tensor * attn_norm = nullptr, * wq = nullptr, * wk = nullptr, * wv = nullptr, * wo = nullptr;
    ggml_tensor * bq = nullptr, * bk = nullptr, * bv = nullptr;
    ggml_tensor * ffn_norm = nullptr, * gate = nullptr, * up = nullptr, * down = nullptr;
    // qwen3, gemma3: RMSNorm of each head of Q and K before RoPE (head_dim)
    ggml_tensor * q_norm = nullptr, * k_norm = nullptr;
    // gemma3: RMSNorm of the attention and FFN outputs before the residual add
    ggml_tensor * attn_post_norm = nullptr, * ffn_post_norm = nullptr;
    bool  swa = false;                    // sliding-window attention (gemma3's local layers)
    float rope_base = 10000.0f, rope_freq_scale = 1.0f;  // this layer's RoPE
};

// The projections a LoRA set may adapt: the ALIGN_LORA_* bit, the weight's
// GGUF name after "blk.N.", and its tensor in layer_t. The one table of the
// adapter file reader (train_io.cpp) and the set builder (train_optim.cpp).
struct lora_target_t {
    uint32_t               bit;
    const char *           tensor;
    ggml_tensor * layer_t::*weight;
};
inline constexpr lora_target_t k_lora_targets[] = {
    {ALIGN_LORA_Q, "attn_q.weight", &layer_t::wq},          {ALIGN_LORA_K, "attn_k.weight", &layer_t::wk},
    {ALIGN_LORA_V, "attn_v.weight", &layer_t::wv},          {ALIGN_LORA_O, "attn_output.weight", &layer_t::wo},
    {ALIGN_LORA_GATE, "ffn_gate.weight", &layer_t::gate},   {ALIGN_LORA_UP, "ffn_up.weight", &layer_t::up},
    {ALIGN_LORA_DOWN, "ffn_down.weight", &layer_t::down},
};
// Every bit of k_lora_targets: a mask with another bit names no projection.
inline constexpr uint32_t k_lora_all = [] {
    uint32_t m = 0;
    for (const auto & t : k_lora_targets) m |= t.bit;
    return m;
}();

// The MLP's activation: SwiGLU (llama, qwen2, qwen3) or GeGLU with the
// tanh-approximated GELU (gemma3).
enum ffn_act_t { FFN_SILU = 0, FFN_GELU_TANH = 1 };

// One backward piece of a recomputed body (align_trainer_params.recompute):
// a layer's forward from its checkpointed input, or the tail's (final norm,
// row selection, heads), with its autodiff backward and both rewrites.
struct piece_t {
    ctx_ptr       ctx;
    ggml_cgraph * g = nullptr;            // null: nothing to train here
    ggml_tensor * loss = nullptr;
    uint64_t      id = 0;                 // allocation identity (alloc_shared)
};

// Gradient checkpointing: what a recomputed body keeps between its forward
// and its backward, in one persistent buffer, and the pieces the backward
// runs in turn (tail, then layers n_layer-1 … 0). The pieces and the body's
// forward share the body allocator: its buffer is the largest of them, not
// the sum.
struct recompute_t {
    ctx_ptr ctx;
    buf_ptr buf;
    std::vector<ggml_tensor *> xs;        // n_layer + 1 × (n_embd, N): xs[l] is layer l's input, xs[n_layer] the last output
    ggml_tensor * dx[2] = {};             // (n_embd, N): dloss/dx_{l+1} in, dloss/dx_l out (dx[l & 1] holds dloss/dx_l)
    piece_t tail;                         // xs[n_layer] -> hs, hv: dloss/dx_L and the heads' gradients
    std::vector<piece_t> layers;          // layer l from xs[l]: dloss/dx_l and its LoRA gradients (empty: no adapters)
    bool reserved = false;                // the body allocator is sized for every piece
};

// Inputs and outputs of one built body graph.
struct graph_t {
    ctx_ptr       ctx;
    ggml_cgraph * g = nullptr;
    int           n_fwd = 0;              // forward nodes; the backward follows
    bool          with_grad = false;
    int32_t       n_seq = 0, n_tok = 0, n_sel = 0, n_hpos = 0;
    int32_t       set = -1;               // adapter set in the graph (-1: none)
    ggml_tensor * tokens = nullptr, * pos = nullptr, * mask = nullptr, * sel = nullptr, * hsel = nullptr;
    ggml_tensor * mask_swa = nullptr;     // (T, T, 1, B) causal + padding + window; null when T <= n_swa
    std::vector<float>   h_mask_swa;
    ggml_tensor * scale = nullptr;
    ggml_tensor * hs = nullptr;           // (n_embd, n_sel) final normed states before scored tokens
    ggml_tensor * dhs = nullptr;          // (n_embd, n_sel) input: dloss/dhs (seeded by the head graph)
    ggml_tensor * hv = nullptr;           // (n_head_out, n_hpos) head values
    ggml_tensor * dhv = nullptr;          // (n_head_out, n_hpos) input: dloss/dhv
    ggml_tensor * loss = nullptr;
    ggml_tensor * embd = nullptr;         // (n_embd, N) device input: the tokens' embedding rows (train_device.cpp)
    // recompute (with_grad and align_trainer_params.recompute): g is the
    // forward only, which copies each layer's input into rc->xs; pos, mask,
    // mask_swa, scale, sel, hsel, hs, dhs and dhv are rc's persistent tensors
    bool          recompute = false;
    std::unique_ptr<recompute_t> rc;
    uint64_t      id = 0;                 // allocation identity (alloc_shared)
    std::vector<int32_t> h_tokens, h_pos, h_sel, h_hsel, h_tgt, h_seq;
    std::vector<float>   h_mask;
};

// The LM-head graph: log p(target) at the scored positions from hs, in
// chunks of scored tokens; with grad, also dloss/dhs from a cotangent per
// scored token. It is a graph of its own (no autodiff): its memory is
// O(n_vocab · chunk), and it needs no M×M matrix and no repeat of (V, M).
struct head_graph_t {
    ctx_ptr       ctx;
    ggml_cgraph * g = nullptr;
    int           n_fwd = 0;
    bool          with_grad = false;
    int32_t       n_sel = 0, chunk = 0;
    ggml_tensor * tgt = nullptr;          // (M) i32: j·V + target_j, the flat index of each target logit
    ggml_tensor * tgt64 = nullptr;        // (M) i64: the same, for set_rows
    ggml_tensor * cot = nullptr;          // (1, M) input: dloss/dlogp
    ggml_tensor * logp = nullptr;         // (1, M) output
};

}  // namespace align::train

struct align_trainer {
    // hyper-parameters
    std::string arch;
    std::string path;
    int32_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0, n_ctx_train = 0;
    int32_t head_dim = 0, n_rot = 0, rope_mode = 0;
    float   eps = 1e-5f, rope_base = 10000.0f, rope_freq_scale = 1.0f;
    // architecture variants (read_hparams sets them from the file as llama.cpp does)
    float   kq_scale = 0.0f;              // softmax scale of Q·K (1/sqrt(head_dim); gemma3: its query scale)
    float   embd_scale = 0.0f;            // token embeddings times this when > 0 (gemma3: sqrt(n_embd))
    float   logit_softcap = 0.0f;         // logits = c·tanh(logits / c) when > 0 (final_logit_softcapping)
    int32_t n_swa = 0;                    // sliding window of the layers marked swa (0: none)
    int32_t ffn_act = 0;                  // align::train::ffn_act_t
    align_trainer_params params{};
    std::string device;                   // backend device name ("CPU", "CUDA0", ...)

    align_model * model = nullptr;        // owner of the frozen base (llama.cpp's tensors)
    ggml_backend_t backend = nullptr;
    bool           is_cpu = true;
    int32_t        n_unsupported_body = 0, n_unsupported_head = 0;  // device nodes it cannot run (train_device.cpp)

    ggml_tensor * tok_embd = nullptr, * output = nullptr, * output_norm = nullptr, * rope_freqs = nullptr;
    std::vector<align::train::layer_t> layers;
    int64_t n_base_params = 0, base_bytes = 0, transposed_bytes = 0;

    // transposed copies of the frozen matrices for the input gradient
    align::train::ctx_ptr tctx;
    align::train::buf_ptr tbuf;
    std::unordered_map<const ggml_tensor *, ggml_tensor *> transposed;  // W -> Wᵀ
    // ALIGN_BACKWARD_TILES: the frozen matrices whose Wᵀ is made in tiles
    // in each backward instead (tiled_input_grad)
    std::unordered_set<const ggml_tensor *> tiled;
    align::train::ctx_ptr tctx_repack;    // the Q4_K ones in the CPU's repacked buffer
    align::train::buf_ptr tbuf_repack;

    std::vector<std::unique_ptr<align::train::adapter_set>> sets;

    // the last built body and head graphs (reused while the shape repeats;
    // the body of a forward_grad is kept for its backward); each kind has
    // its own allocator
    align::train::galloc_ptr galloc, head_galloc, aux_galloc;
    uint64_t galloc_owner = 0;            // id of the graph last placed in galloc's buffer
    uint64_t next_graph_id = 0;
    align::train::graph_t      body;
    align::train::head_graph_t head;
    bool has_pending = false;

    std::atomic<bool> cancel{false};

    ~align_trainer();
};

namespace align::train {

// weights (train_weights.cpp)
align_status load_base(align_trainer * tr, align_model * model);

// graph (train_graph.cpp)
align_status validate_batch(const align_trainer * tr, const align_batch * b);
// prepare_body fills a graph's host inputs and shape from a batch;
// build_body builds its nodes (skipped when same_shape holds for the cached
// graph: the nodes depend on the shape only).
align_status prepare_body(align_trainer * tr, const align_batch * b, int32_t set, bool with_grad, graph_t & gt);
bool         same_shape(const graph_t & a, const graph_t & b);
align_status build_body(align_trainer * tr, graph_t & gt);
align_status alloc_body(align_trainer * tr, graph_t & gt);                 // allocates (galloc; a no-op while placed)
// Places g in tr->galloc unless it is the graph placed there last: the
// body's graphs (with recompute: its forward and every backward piece)
// overlap in that one buffer, so one that runs after another was placed is
// placed anew. ctx holds g's compute tensors.
align_status alloc_shared(align_trainer * tr, ggml_context * ctx, ggml_cgraph * g, uint64_t id);
// The backward of a recomputed body: the tail, then each layer from its
// checkpoint; the set's accumulators receive the same sums as without recompute.
align_status backward_recompute(align_trainer * tr, graph_t & gt);
align_status set_body_inputs(align_trainer * tr, graph_t & gt, float lora_scale);
align_status build_head(align_trainer * tr, const graph_t & body, bool with_grad, head_graph_t & hg);
align_status alloc_head(align_trainer * tr, head_graph_t & hg);
align_status set_head_inputs(align_trainer * tr, head_graph_t & hg, const graph_t & body);
align_status compute(align_trainer * tr, ggml_cgraph * g);
int32_t      head_chunk(const align_trainer * tr, int32_t n_sel);

// device backends (train_device.cpp); each is a no-op on the CPU
align_status  device_check_weights(align_trainer * tr);
align_status  device_rewrite_body(align_trainer * tr, graph_t & gt);     // and checks every recompute piece
align_status  device_check_head(align_trainer * tr, head_graph_t & hg);
align_status  device_set_inputs(align_trainer * tr, graph_t & gt);
// dx = W·dy through a frozen W (n_in, n_out), dy (n_out, N): MUL_MAT over
// the cached Wᵀ on the CPU (nullptr without one), OUT_PROD on a device
ggml_tensor * input_grad(align_trainer * tr, ggml_context * ctx, ggml_tensor * w, ggml_tensor * dy);
// dx = W·dy over Wᵀ made in tiles of whole Q8_0 rows (train_tiles.cpp),
// for the body's frozen matrices (the head keeps its copy): the tensors it
// creates, in creation order (a topological order), are appended to *made
bool          tiles_supported(const ggml_tensor * w);
ggml_tensor * tiled_input_grad(ggml_context * ctx, ggml_tensor * w, ggml_tensor * dy, std::vector<ggml_tensor *> * made);
// nodes per tiled input gradient of w, at most (graph sizes)
int64_t       tiled_nodes(const ggml_tensor * w);

// optimiser (train_optim.cpp)
align_status add_set(align_trainer * tr, const align_adapter_set_params & p, int32_t * id);
align_status zero_grad(align_trainer * tr, adapter_set & s);
align_status grad_norm(align_trainer * tr, adapter_set & s, double * norm);
align_status adamw_step(align_trainer * tr, adapter_set & s, const align_adamw_params & p);
align_status get_flat(align_trainer * tr, adapter_set & s, int which, float * out);  // which: 0 params, 1 m, 2 v, 3 grads
align_status set_flat(align_trainer * tr, adapter_set & s, int which, const float * in);

}  // namespace align::train
