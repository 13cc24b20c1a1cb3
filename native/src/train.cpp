// train.cpp: the C API of the training engine (align.h, "training").
// See train_internal.h for how the engine is split.
#include "train_internal.h"

#include "ggml-cpu.h"
#include "ggml-impl.h"  // ggml_graph_view (internal in this ggml copy)
#include "llama-adapter.h"  // a live adapter over a set's tensors (llama.cpp internals, pinned copy)

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

using align::fail;
using align::ok;
using namespace align::train;

align_trainer::~align_trainer() {
    head = head_graph_t();
    body = graph_t();
    galloc.reset();
    head_galloc.reset();
    aux_galloc.reset();
    sets.clear();
    tbuf.reset();
    if (backend) ggml_backend_free(backend);
}

namespace {

bool abort_cb(void * data) { return static_cast<align_trainer *>(data)->cancel.load(std::memory_order_relaxed); }

align_status get_set(const align_trainer * tr, int32_t set, adapter_set ** out) {
    if (tr == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "NULL trainer");
    if (set < 0 || (size_t) set >= tr->sets.size()) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set " + std::to_string(set) + " does not exist (" +
                                                    std::to_string(tr->sets.size()) + " sets)");
    }
    *out = tr->sets[(size_t) set].get();
    return ALIGN_OK;
}

align_status init_backend(align_trainer * tr, const char * device) {
    const std::string want = device && *device ? device : "CPU";
    ggml_backend_dev_t dev = nullptr;
    if (want == "CPU" || want == "cpu") {
        dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    } else if (want == "cuda" || want == "gpu" || want == "CUDA" || want == "GPU") {
        // the first GPU device (CUDA0 in a CUDA build)
        dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
        if (dev == nullptr) {
            return fail(ALIGN_ERR_UNSUPPORTED, "device \"" + want + "\": no GPU device (a CPU-only build, or no GPU/driver here)");
        }
    } else {
        dev = ggml_backend_dev_by_name(want.c_str());
        if (dev == nullptr) {
            std::string have;
            for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
                have += (have.empty() ? "" : ", ") + std::string(ggml_backend_dev_name(ggml_backend_dev_get(i)));
            }
            return fail(ALIGN_ERR_UNSUPPORTED, "device \"" + want + "\" is not available (this build has: " + have + ")");
        }
    }
    if (dev == nullptr) return fail(ALIGN_ERR_INTERNAL, "no CPU device");
    tr->is_cpu = ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU;
    if (!tr->is_cpu && ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_GPU) {
        return fail(ALIGN_ERR_UNSUPPORTED, "device \"" + want + "\" is not a CPU or GPU device");
    }
    tr->device = ggml_backend_dev_name(dev);
    tr->backend = ggml_backend_dev_init(dev, nullptr);
    if (tr->backend == nullptr) return fail(ALIGN_ERR_INTERNAL, "cannot initialise device " + tr->device);
    if (tr->is_cpu) {
        ggml_backend_cpu_set_n_threads(tr->backend, align::threads_or_default(tr->params.n_threads));
        ggml_backend_cpu_set_abort_callback(tr->backend, abort_cb, tr);
    }
    ggml_backend_buffer_type_t buft = ggml_backend_get_default_buffer_type(tr->backend);
    tr->galloc.reset(ggml_gallocr_new(buft));
    tr->head_galloc.reset(ggml_gallocr_new(buft));
    tr->aux_galloc.reset(ggml_gallocr_new(buft));
    if (!tr->galloc || !tr->head_galloc || !tr->aux_galloc) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot create graph allocators");
    return ALIGN_OK;
}

// Builds (or reuses, when the shape repeats) and allocates the body and head
// graphs for a batch, then sets their inputs.
align_status prepare(align_trainer * tr, const align_batch * batch, int32_t set, bool with_grad, float scale) {
    align_status st = validate_batch(tr, batch);
    if (st != ALIGN_OK) return st;
    graph_t next;
    st = prepare_body(tr, batch, set, with_grad, next);
    if (st != ALIGN_OK) return st;
    tr->has_pending = false;
    if (same_shape(tr->body, next) && (tr->head.n_sel == 0 || tr->head.with_grad == with_grad)) {
        // same nodes: swap in the new host inputs, keep graph and buffers
        tr->body.h_tokens.swap(next.h_tokens);
        tr->body.h_pos.swap(next.h_pos);
        tr->body.h_mask.swap(next.h_mask);
        tr->body.h_mask_swa.swap(next.h_mask_swa);
        tr->body.h_sel.swap(next.h_sel);
        tr->body.h_hsel.swap(next.h_hsel);
        tr->body.h_tgt.swap(next.h_tgt);
        tr->body.h_seq.swap(next.h_seq);
        // with recompute the backward's pieces took the shared buffer: the
        // forward is placed again (a no-op otherwise)
        const bool moved = tr->galloc_owner != tr->body.id;
        st = alloc_body(tr, tr->body);
        if (st == ALIGN_OK && moved && !tr->body.recompute) {
            // the head reads hs where the body keeps it
            tr->head = head_graph_t();
            st = build_head(tr, tr->body, with_grad, tr->head);
            if (st == ALIGN_OK) st = device_check_head(tr, tr->head);
            if (st == ALIGN_OK) st = alloc_head(tr, tr->head);
        }
        if (st != ALIGN_OK) {
            tr->head = head_graph_t();
            tr->body = graph_t();
            return st;
        }
    } else {
        tr->head = head_graph_t();
        tr->body = graph_t();
        tr->body = std::move(next);
        st = build_body(tr, tr->body);
        if (st == ALIGN_OK) st = device_rewrite_body(tr, tr->body);
        if (st == ALIGN_OK) st = alloc_body(tr, tr->body);
        if (st == ALIGN_OK) st = build_head(tr, tr->body, with_grad, tr->head);
        if (st == ALIGN_OK) st = device_check_head(tr, tr->head);
        if (st == ALIGN_OK) st = alloc_head(tr, tr->head);
        if (st != ALIGN_OK) {
            tr->head = head_graph_t();
            tr->body = graph_t();
            return st;
        }
    }
    st = set_body_inputs(tr, tr->body, scale);
    if (st == ALIGN_OK) st = device_set_inputs(tr, tr->body);
    if (st == ALIGN_OK) st = set_head_inputs(tr, tr->head, tr->body);
    return st;
}

// Runs the forward views of body and head and copies the outputs out.
align_status run_forward(align_trainer * tr, align_outputs * out) {
    graph_t & gt = tr->body;
    ggml_cgraph fwd = ggml_graph_view(gt.g, 0, gt.n_fwd);
    align_status st = compute(tr, &fwd);
    if (st != ALIGN_OK) return st;
    std::vector<float> lp((size_t) gt.n_sel);
    if (gt.n_sel > 0) {
        ggml_cgraph hf = ggml_graph_view(tr->head.g, 0, tr->head.n_fwd);
        st = compute(tr, &hf);
        if (st != ALIGN_OK) return st;
        ggml_backend_tensor_get(tr->head.logp, lp.data(), 0, ggml_nbytes(tr->head.logp));
    }
    for (float v : lp) {
        if (!std::isfinite(v)) return fail(ALIGN_ERR_INTERNAL, "non-finite log-probability in the forward pass");
    }
    if (out == nullptr) return ALIGN_OK;
    const int64_t n_hv = gt.hv ? ggml_nelements(gt.hv) : 0;
    if ((out->sums && out->n_sums < gt.n_seq) || (out->token_logps && out->n_token_logps < gt.n_sel) ||
        (out->head_values && out->n_head_values < n_hv)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_outputs: a buffer is smaller than the batch's " + std::to_string(gt.n_seq) +
                                                    " sums, " + std::to_string(gt.n_sel) + " token log-probs, " + std::to_string(n_hv) +
                                                    " head values");
    }
    if (out->sums) {
        std::fill(out->sums, out->sums + gt.n_seq, 0.0);
        for (int32_t j = 0; j < gt.n_sel; j++) out->sums[gt.h_seq[(size_t) j]] += lp[(size_t) j];
    }
    if (out->token_logps) std::copy(lp.begin(), lp.end(), out->token_logps);
    if (out->head_values && gt.hv) ggml_backend_tensor_get(gt.hv, out->head_values, 0, ggml_nbytes(gt.hv));
    return ALIGN_OK;
}

}  // namespace

extern "C" {

align_trainer_params align_trainer_default_params(void) {
    align_trainer_params p;
    p.n_threads = 0;
    p.exact_backward = false;
    p.device = nullptr;
    p.head_chunk_bytes = 0;
    p.backward_weights = ALIGN_BACKWARD_AUTO;
    p.recompute = false;
    return p;
}

align_adamw_params align_adamw_default_params(void) {
    align_adamw_params p;
    p.lr = 1e-4f;
    p.beta1 = 0.9f;
    p.beta2 = 0.999f;
    p.eps = 1e-8f;
    p.weight_decay = 0.0f;
    p.grad_scale = 1.0f;
    return p;
}

align_adapter_set_params align_adapter_set_default_params(void) {
    align_adapter_set_params p;
    p.name = nullptr;
    p.lora_rank = 8;
    p.lora_alpha = 16.0f;
    p.targets = ALIGN_LORA_Q | ALIGN_LORA_K | ALIGN_LORA_V | ALIGN_LORA_O;
    p.seed = 1;
    p.n_heads = 0;
    p.head_names = nullptr;
    p.head_dims = nullptr;
    return p;
}

align_status align_trainer_new(align_model * model, const align_trainer_params * params, align_trainer ** out) {
    if (model == nullptr || out == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_new: NULL argument");
    *out = nullptr;
    align_trainer_params p = params ? *params : align_trainer_default_params();
    if (p.backward_weights < ALIGN_BACKWARD_AUTO || p.backward_weights > ALIGN_BACKWARD_TILES) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "trainer: backward_weights must be ALIGN_BACKWARD_AUTO, _Q8_0, _Q4_K or _TILES");
    }
    ALIGN_TRY
    auto tr = std::make_unique<align_trainer>();
    tr->params = p;
    tr->params.device = nullptr;  // not kept: the caller owns the string
    tr->model = model;
    align_status st = init_backend(tr.get(), p.device);
    if (st != ALIGN_OK) return st;
    st = load_base(tr.get(), model);
    if (st != ALIGN_OK) return st;
    *out = tr.release();  // no adapter set yet: align_trainer_add_set
    return ok();
    ALIGN_CATCH
}

void align_trainer_free(align_trainer * trainer) { delete trainer; }

align_status align_trainer_get_info(const align_trainer * tr, align_trainer_info * out) {
    if (tr == nullptr || out == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_get_info: NULL argument");
    std::memset(out, 0, sizeof(*out));
    std::snprintf(out->arch, sizeof(out->arch), "%s", tr->arch.c_str());
    std::snprintf(out->device, sizeof(out->device), "%s", tr->device.c_str());
    out->n_vocab = tr->n_vocab;
    out->n_embd = tr->n_embd;
    out->n_layer = tr->n_layer;
    out->n_head = tr->n_head;
    out->n_head_kv = tr->n_head_kv;
    out->n_ff = tr->n_ff;
    out->n_ctx_train = tr->n_ctx_train;
    out->n_base_params = tr->n_base_params;
    out->n_lora_params = tr->sets.empty() ? 0 : tr->sets[0]->n_params;
    out->n_lora_tensors = tr->sets.empty() ? 0 : (int32_t) tr->sets[0]->loras.size();
    out->base_bytes = tr->base_bytes;
    out->transposed_bytes = tr->transposed_bytes;
    out->n_sets = (int32_t) tr->sets.size();
    out->body_compute_bytes = tr->galloc ? (int64_t) ggml_gallocr_get_buffer_size(tr->galloc.get(), 0) : 0;
    out->head_compute_bytes = tr->head_galloc ? (int64_t) ggml_gallocr_get_buffer_size(tr->head_galloc.get(), 0) : 0;
    out->checkpoint_bytes = tr->body.rc && tr->body.rc->buf ? (int64_t) ggml_backend_buffer_get_size(tr->body.rc->buf.get()) : 0;
    return ok();
}

align_status align_trainer_add_set(align_trainer * tr, const align_adapter_set_params * params, int32_t * id) {
    if (tr == nullptr || params == nullptr || id == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_add_set: NULL argument");
    ALIGN_TRY
    tr->has_pending = false;
    const align_status st = add_set(tr, *params, id);
    return st == ALIGN_OK ? ok() : st;
    ALIGN_CATCH
}

align_status align_trainer_get_set_info(const align_trainer * tr, int32_t set, align_set_info * out) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if (out == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_get_set_info: NULL argument");
    std::memset(out, 0, sizeof(*out));
    std::snprintf(out->name, sizeof(out->name), "%s", s->name.c_str());
    out->lora_rank = s->rank;
    out->lora_alpha = s->alpha;
    out->targets = s->targets;
    out->n_params = s->n_params;
    out->n_tensors = (int32_t) s->params.size();
    out->n_lora = (int32_t) s->loras.size();
    out->n_heads = (int32_t) s->heads.size();
    out->n_head_out = s->n_head_out;
    out->step = s->step;
    return ok();
}

align_status align_trainer_get_params(const align_trainer * tr, int32_t set, align_param_info * rows, int32_t n_max,
                                      int32_t * n_out) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if (n_out == nullptr || (rows == nullptr && n_max > 0)) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_get_params: NULL argument");
    *n_out = (int32_t) s->params.size();
    for (int32_t i = 0; i < std::min(n_max, *n_out); i++) {
        const param_t & p = s->params[(size_t) i];
        std::memset(&rows[i], 0, sizeof(rows[i]));
        std::snprintf(rows[i].name, sizeof(rows[i].name), "%s", p.name.c_str());
        rows[i].kind = p.kind;
        rows[i].ne0 = p.t->ne[0];
        rows[i].ne1 = p.t->ne[1];
        rows[i].offset = p.offset;
    }
    if (n_max < *n_out) return fail(ALIGN_ERR_BUFFER_TOO_SMALL, "parameter table has " + std::to_string(*n_out) + " rows");
    return ok();
}

align_status align_trainer_get_head(const align_trainer * tr, int32_t set, int32_t h, char * name, int32_t name_len,
                                    int32_t * n_out, int32_t * offset) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if (h < 0 || (size_t) h >= s->heads.size()) return fail(ALIGN_ERR_INVALID_ARGUMENT, "no head " + std::to_string(h));
    const head_t & hd = s->heads[(size_t) h];
    if (name && name_len > 0) std::snprintf(name, (size_t) name_len, "%s", hd.name.c_str());
    if (n_out) *n_out = hd.n_out;
    if (offset) *offset = hd.offset;
    return ok();
}

align_status align_trainer_forward(align_trainer * tr, const align_batch * batch, int32_t set, float lora_scale,
                                   align_outputs * out) {
    if (tr == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_forward: NULL trainer");
    if (!std::isfinite(lora_scale)) return fail(ALIGN_ERR_INVALID_ARGUMENT, "lora_scale must be finite");
    if (set < -1 || set >= (int32_t) tr->sets.size()) return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set " + std::to_string(set) + " does not exist");
    ALIGN_TRY
    // scale 0 leaves the adapter branch out (W·x + 0 is exactly W·x) unless
    // the set's heads are wanted
    int32_t use = set;
    if (use >= 0 && lora_scale == 0.0f && (tr->sets[(size_t) use]->heads.empty() || batch == nullptr || batch->head_at == nullptr)) use = -1;
    align_status st = prepare(tr, batch, use, false, lora_scale);
    if (st != ALIGN_OK) return st;
    st = run_forward(tr, out);
    return st == ALIGN_OK ? ok() : st;
    ALIGN_CATCH
}

align_status align_trainer_forward_grad(align_trainer * tr, const align_batch * batch, int32_t set, align_outputs * out) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    ALIGN_TRY
    st = prepare(tr, batch, set, true, 1.0f);
    if (st != ALIGN_OK) return st;
    st = run_forward(tr, out);
    if (st != ALIGN_OK) return st;
    tr->has_pending = true;
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_backward(align_trainer * tr, const float * token_cot, int64_t n_token, const float * head_cot,
                                    int64_t n_head) {
    if (tr == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_backward: NULL trainer");
    if (!tr->has_pending) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_backward: no pending forward_grad");
    ALIGN_TRY
    graph_t & gt = tr->body;
    const int64_t want_head = gt.dhv ? ggml_nelements(gt.dhv) : 0;
    if ((token_cot == nullptr && n_token != 0) || (token_cot && n_token != gt.n_sel)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_backward: " + std::to_string(n_token) + " token cotangents for " +
                                                    std::to_string(gt.n_sel) + " scored tokens");
    }
    if ((head_cot == nullptr && n_head != 0) || (head_cot && n_head != want_head)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_backward: " + std::to_string(n_head) + " head cotangents for " +
                                                    std::to_string(want_head) + " head values");
    }
    tr->has_pending = false;
    if (gt.n_sel > 0) {
        std::vector<float> cot((size_t) gt.n_sel, 0.0f);
        if (token_cot) std::copy(token_cot, token_cot + gt.n_sel, cot.begin());
        for (float v : cot) {
            if (!std::isfinite(v)) return fail(ALIGN_ERR_INVALID_ARGUMENT, "non-finite loss gradient");
        }
        ggml_backend_tensor_set(tr->head.cot, cot.data(), 0, ggml_nbytes(tr->head.cot));
        ggml_cgraph hb = ggml_graph_view(tr->head.g, tr->head.n_fwd, ggml_graph_n_nodes(tr->head.g));
        align_status st = compute(tr, &hb);  // writes dloss/dhs into the body's input
        if (st != ALIGN_OK) return st;
    }
    if (gt.dhv) {
        std::vector<float> hc((size_t) ggml_nelements(gt.dhv), 0.0f);
        if (head_cot) std::copy(head_cot, head_cot + hc.size(), hc.begin());
        for (float v : hc) {
            if (!std::isfinite(v)) return fail(ALIGN_ERR_INVALID_ARGUMENT, "non-finite head gradient");
        }
        ggml_backend_tensor_set(gt.dhv, hc.data(), 0, ggml_nbytes(gt.dhv));
    }
    if (gt.recompute) {
        const align_status st = backward_recompute(tr, gt);
        return st == ALIGN_OK ? ok() : st;
    }
    ggml_cgraph bwd = ggml_graph_view(gt.g, gt.n_fwd, ggml_graph_n_nodes(gt.g));
    align_status st = compute(tr, &bwd);
    return st == ALIGN_OK ? ok() : st;
    ALIGN_CATCH
}

align_status align_trainer_zero_grad(align_trainer * tr, int32_t set) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    ALIGN_TRY
    st = zero_grad(tr, *s);
    return st == ALIGN_OK ? ok() : st;
    ALIGN_CATCH
}

align_status align_trainer_grad_norm(align_trainer * tr, int32_t set, double grad_scale, double * norm) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if (norm == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_grad_norm: NULL argument");
    ALIGN_TRY
    st = grad_norm(tr, *s, norm);
    if (st != ALIGN_OK) return st;
    *norm *= std::fabs(grad_scale);
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_adamw_step(align_trainer * tr, int32_t set, const align_adamw_params * p) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if (p == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_adamw_step: NULL argument");
    if (!(p->lr >= 0) || !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) ||
        !(p->weight_decay >= 0) || !std::isfinite(p->grad_scale) || !std::isfinite(p->lr) || !std::isfinite(p->weight_decay)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "adamw: need lr >= 0, betas in [0, 1), eps > 0, weight_decay >= 0");
    }
    ALIGN_TRY
    st = adamw_step(tr, *s, *p);
    return st == ALIGN_OK ? ok() : st;
    ALIGN_CATCH
}

align_status align_trainer_get_state(align_trainer * tr, int32_t set, int64_t n, float * params, float * m, float * v,
                                     float * grads, int64_t * step) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if ((params || m || v || grads) && n != s->n_params) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_get_state: buffers of " + std::to_string(n) + " floats for a set of " +
                                                    std::to_string(s->n_params) + " parameters");
    }
    ALIGN_TRY
    float * dst[4] = {params, m, v, grads};
    for (int which = 0; which < 4; which++) {
        if (dst[which] == nullptr) continue;
        st = get_flat(tr, *s, which, dst[which]);
        if (st != ALIGN_OK) return st;
    }
    if (step) *step = s->step;
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_set_state(align_trainer * tr, int32_t set, int64_t n, const float * params, const float * m,
                                     const float * v, const int64_t * step) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if ((params || m || v) && n != s->n_params) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_set_state: buffers of " + std::to_string(n) + " floats for a set of " +
                                                    std::to_string(s->n_params) + " parameters");
    }
    ALIGN_TRY
    if (params) {
        for (int64_t i = 0; i < s->n_params; i++) {
            if (!std::isfinite(params[i])) return fail(ALIGN_ERR_INVALID_ARGUMENT, "non-finite parameter in state");
        }
    }
    const float * src[3] = {params, m, v};
    for (int which = 0; which < 3; which++) {
        if (src[which] == nullptr) continue;
        st = set_flat(tr, *s, which, src[which]);
        if (st != ALIGN_OK) return st;
    }
    if (step) s->step = *step;
    tr->has_pending = false;
    return ok();
    ALIGN_CATCH
}

align_status align_trainer_export(align_trainer * tr, int32_t set, const char * path) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if (path == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_export: NULL path");
    if (s->loras.empty()) return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + s->name + "\" has no LoRA adapters to export");
    ALIGN_TRY
    std::vector<float> w((size_t) s->n_params);
    st = get_flat(tr, *s, 0, w.data());
    if (st != ALIGN_OK) return st;
    std::unordered_map<const ggml_tensor *, int64_t> off;
    for (const param_t & p : s->params) off[p.t] = p.offset;
    std::vector<align_adapter_tensor> ts;
    for (auto & l : s->loras) {
        align_adapter_tensor t;
        t.base_name = l->base.c_str();
        t.n_in = l->n_in;
        t.n_out = l->n_out;
        t.rank = s->rank;
        t.a = w.data() + off[l->a];
        t.b = w.data() + off[l->b];
        ts.push_back(t);
    }
    return align_adapter_write(path, tr->arch.c_str(), s->alpha, ts.data(), (int32_t) ts.size());
    ALIGN_CATCH
}

align_status align_trainer_lora(align_trainer * tr, int32_t set, align_lora ** out) {
    adapter_set * s = nullptr;
    align_status st = get_set(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if (out == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_lora: NULL argument");
    if (s->loras.empty()) return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + s->name + "\" has no LoRA adapters");
    ALIGN_TRY
    // llama.cpp looks adapters up by the base tensor's name and applies
    // scale · alpha / rank with rank = b->ne[0]: the same W·x + s·B·(A·x).
    // The adapter owns no tensors (no ctxs/bufs): freeing it leaves the set.
    auto * ad = new llama_adapter_lora();
    ad->alpha = s->alpha;
    for (auto & l : s->loras) ad->ab_map[l->base] = llama_adapter_lora_weight(l->a, l->b);
    auto * h = new align_lora();
    h->adapter = ad;
    h->owner = tr->model;
    *out = h;
    return ok();
    ALIGN_CATCH
}

void align_trainer_cancel(align_trainer * tr) {
    if (tr) tr->cancel.store(true);
}

void align_trainer_clear_cancel(align_trainer * tr) {
    if (tr) tr->cancel.store(false);
}

}  // extern "C"
