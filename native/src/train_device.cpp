// train_device.cpp: what changes when the trainer's backend is a GPU (CUDA).
//
// The whole step runs on one device backend (ggml_backend_graph_compute on
// it: no scheduler, so no node can silently fall back to the CPU). What
// differs from the CPU path:
//  * weights: llama.cpp offloads every layer and the head (the model is
//    loaded with n_gpu_layers > n_layer); the trainer reads them there and
//    makes no transposed copies: no second resident copy of the base.
//  * input gradient through a frozen W: ggml's autodiff emits
//    OUT_PROD(W, dyᵀ); the patched ggml-cuda (native/patches/0001-*) runs it
//    for quantized/F16/BF16 W by dequantising bounded row tiles to BF16 and
//    multiplying with cuBLAS (F32 accumulation), so those nodes are left as
//    they are (DESIGN.md §4.3).
//  * token embeddings: llama.cpp keeps token_embd in host memory (its input
//    layer), and ggml-cuda's GET_ROWS cannot read K-quants, so the rows of the
//    batch's tokens are dequantised on the host and uploaded as an input: the
//    body's GET_ROWS(token_embd, tokens) node becomes that input.
//  * every node of each graph must be one the device runs; a node it cannot
//    run (one a scheduler would send to the CPU) is an error naming the op,
//    and the count is reported (align_trainer_graph_stats). With recompute
//    the body is a forward plus backward pieces (train_graph.cpp): only the
//    forward reads token_embd, and every piece is counted.
#include "train_internal.h"

#include <cstring>

using align::fail;
using align::ok;

namespace align::train {

align_status device_check_weights(align_trainer * tr) {
    if (tr->is_cpu) return ALIGN_OK;
    ggml_backend_dev_t dev = ggml_backend_get_device(tr->backend);
    std::vector<const ggml_tensor *> ws = {tr->output, tr->output_norm, tr->rope_freqs};
    for (const layer_t & L : tr->layers) {
        for (const ggml_tensor * w : {L.attn_norm, L.wq, L.wk, L.wv, L.wo, L.bq, L.bk, L.bv, L.ffn_norm, L.gate, L.up, L.down}) {
            ws.push_back(w);
        }
    }
    for (const ggml_tensor * w : ws) {
        if (w == nullptr) continue;
        ggml_backend_buffer_type_t bt = w->buffer ? ggml_backend_buffer_get_type(w->buffer) : nullptr;
        if (bt == nullptr || ggml_backend_buft_get_device(bt) != dev || ggml_backend_buft_is_host(bt)) {
            return fail(ALIGN_ERR_UNSUPPORTED, tr->path + ": tensor " + ggml_get_name(w) + " is not in " + tr->device +
                                                   " memory (load the model with n_gpu_layers > " +
                                                   std::to_string(tr->n_layer) + " to train on " + tr->device + ")");
        }
    }
    // token_embd stays where llama.cpp put it (host memory); its rows are
    // read with ggml_backend_tensor_get, which works for any buffer
    if (tr->tok_embd->buffer == nullptr) return fail(ALIGN_ERR_INTERNAL, "token_embd has no buffer");
    return ALIGN_OK;
}

namespace {

// Nodes of g the trainer's backend cannot run, with the first one's name.
int32_t count_unsupported(align_trainer * tr, ggml_cgraph * g, std::string * first) {
    int32_t n = 0;
    for (int i = 0; i < ggml_graph_n_nodes(g); i++) {
        ggml_tensor * node = ggml_graph_node(g, i);
        if (node->op == GGML_OP_NONE || ggml_is_empty(node)) continue;
        if (!ggml_backend_supports_op(tr->backend, node)) {
            if (n == 0 && first) {
                *first = std::string(ggml_op_desc(node)) + " (" + ggml_get_name(node) + ", src0 " +
                         (node->src[0] ? ggml_type_name(node->src[0]->type) : "-") + ")";
            }
            n++;
        }
    }
    return n;
}

}  // namespace

align_status device_rewrite_body(align_trainer * tr, graph_t & gt) {
    if (tr->is_cpu) return ALIGN_OK;
    gt.embd = nullptr;
    for (int i = 0; i < ggml_graph_n_nodes(gt.g); i++) {
        ggml_tensor * node = ggml_graph_node(gt.g, i);
        if (node->op != GGML_OP_GET_ROWS || node->src[0] != tr->tok_embd) continue;
        if (gt.embd != nullptr || node->src[1] != gt.tokens || node->type != GGML_TYPE_F32 ||
            node->ne[0] != tr->n_embd || node->ne[1] != ggml_nelements(gt.tokens)) {
            return fail(ALIGN_ERR_INTERNAL, "unexpected token-embedding lookup in the training graph");
        }
        // (n_embd, N): filled from the host rows by device_set_inputs
        node->op = GGML_OP_NONE;
        std::memset(node->op_params, 0, sizeof(node->op_params));
        node->src[0] = nullptr;
        node->src[1] = nullptr;
        ggml_set_input(node);
        gt.embd = node;
    }
    if (gt.embd == nullptr) return fail(ALIGN_ERR_INTERNAL, "no token-embedding lookup in the training graph");
    // with recompute, gt.g is the forward; the backward pieces (the tail and
    // each layer from its checkpoint) are counted with it
    std::string first;
    tr->n_unsupported_body = count_unsupported(tr, gt.g, &first);
    if (gt.rc) {
        std::vector<ggml_cgraph *> pieces = {gt.rc->tail.g};
        for (const piece_t & p : gt.rc->layers) pieces.push_back(p.g);
        for (ggml_cgraph * g : pieces) {
            if (g == nullptr) continue;
            std::string f;
            const int32_t n = count_unsupported(tr, g, &f);
            if (n > 0 && tr->n_unsupported_body == 0) first = f;
            tr->n_unsupported_body += n;
        }
    }
    if (tr->n_unsupported_body > 0) {
        return fail(ALIGN_ERR_UNSUPPORTED, tr->device + " cannot run " + std::to_string(tr->n_unsupported_body) +
                                               " node(s) of the training graph, first " + first +
                                               " (a ggml without native/patches?)");
    }
    return ALIGN_OK;
}

align_status device_check_head(align_trainer * tr, head_graph_t & hg) {
    if (tr->is_cpu || hg.g == nullptr) return ALIGN_OK;
    std::string first;
    tr->n_unsupported_head = count_unsupported(tr, hg.g, &first);
    if (tr->n_unsupported_head > 0) {
        return fail(ALIGN_ERR_UNSUPPORTED, tr->device + " cannot run " + std::to_string(tr->n_unsupported_head) +
                                               " node(s) of the LM-head graph, first " + first);
    }
    return ALIGN_OK;
}

align_status device_set_inputs(align_trainer * tr, graph_t & gt) {
    if (tr->is_cpu || gt.embd == nullptr) return ALIGN_OK;
    const ggml_tensor * E = tr->tok_embd;  // (n_embd, n_vocab), host memory
    const size_t row = ggml_row_size(E->type, E->ne[0]);
    const int64_t N = (int64_t) gt.h_tokens.size();
    std::vector<uint8_t> raw(row);
    std::vector<float> x((size_t) (N * tr->n_embd));
    const ggml_type_traits * tt = ggml_get_type_traits(E->type);
    for (int64_t i = 0; i < N; i++) {
        const int32_t tok = gt.h_tokens[(size_t) i];
        ggml_backend_tensor_get(E, raw.data(), (size_t) tok * E->nb[1], row);
        float * dst = x.data() + (size_t) i * tr->n_embd;
        if (E->type == GGML_TYPE_F32) std::memcpy(dst, raw.data(), row);
        else tt->to_float(raw.data(), dst, tr->n_embd);
    }
    ggml_backend_tensor_set(gt.embd, x.data(), 0, ggml_nbytes(gt.embd));
    return ALIGN_OK;
}

ggml_tensor * input_grad(align_trainer * tr, ggml_context * ctx, ggml_tensor * w, ggml_tensor * dy) {
    // dx (n_in, N) = W·dy for W (n_in, n_out), dy (n_out, N)
    if (tr->is_cpu) {
        auto it = tr->transposed.find(w);
        if (it == tr->transposed.end()) return nullptr;
        return ggml_mul_mat(ctx, it->second, dy);  // over the cached Wᵀ (n_out, n_in)
    }
    return ggml_out_prod(ctx, w, ggml_transpose(ctx, dy));  // dequantising tiles on the device
}

}  // namespace align::train
