// train_optim.cpp: adapter sets and their optimiser.
//
// A set holds LoRA pairs on chosen projections and optional scalar heads,
// each trainable tensor with a gradient accumulator and AdamW moments, all in
// one backend buffer. The body graph's backward adds (+=) into the
// accumulators (ggml_build_backward_expand's grad_accs), the step runs
// ggml_opt_step_adamw on the backend, and the norm is reduced there too:
// parameters cross to the host only for checkpoints and export.
#include "train_internal.h"

#include <cmath>
#include <cstring>

using align::fail;
using align::ok;

namespace align::train {

namespace {

// U(-bound, bound) from a seed and a name (PEFT's kaiming-uniform for A).
void fill_uniform(ggml_tensor * t, uint64_t seed, const std::string & name, double bound) {
    align::rng rg(seed ^ align::fnv1a(name));
    std::vector<float> a((size_t) ggml_nelements(t));
    for (auto & x : a) x = (float) ((2.0 * rg.uniform() - 1.0) * bound);
    ggml_backend_tensor_set(t, a.data(), 0, ggml_nbytes(t));
}

// Runs a small graph of the optimiser (norm, step) on the trainer's backend.
align_status run_aux(align_trainer * tr, ggml_cgraph * g) {
    if (!ggml_gallocr_alloc_graph(tr->aux_galloc.get(), g)) {
        return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate the optimiser graph");
    }
    const ggml_status st = ggml_backend_graph_compute(tr->backend, g);
    if (st != GGML_STATUS_SUCCESS) return fail(ALIGN_ERR_INTERNAL, std::string("optimiser graph failed: ") + ggml_status_to_string(st));
    return ALIGN_OK;
}

size_t aux_mem(size_t n_nodes) { return ggml_tensor_overhead() * n_nodes * 3 + ggml_graph_overhead_custom(n_nodes, false); }

}  // namespace

align_status add_set(align_trainer * tr, const align_adapter_set_params & p, int32_t * id) {
    const std::string name = p.name ? p.name : "";
    if (name.empty() || name.size() > 63) return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set: name must have 1 to 63 bytes");
    for (auto & s : tr->sets) {
        if (s->name == name) return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + name + "\" exists");
    }
    if ((p.targets & ~k_lora_all) != 0) return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + name + "\": unknown targets");
    if (p.targets != 0 && (p.lora_rank <= 0 || p.lora_rank > 4096 || !(p.lora_alpha > 0) || !std::isfinite(p.lora_alpha))) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + name + "\": rank must be in [1, 4096], alpha positive");
    }
    if (p.n_heads < 0 || p.n_heads > 64 || (p.n_heads > 0 && (p.head_names == nullptr || p.head_dims == nullptr))) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + name + "\": need 0 to 64 heads with names and sizes");
    }
    auto s = std::make_unique<adapter_set>();
    s->name = name;
    s->rank = p.targets ? p.lora_rank : 0;
    s->alpha = p.targets ? p.lora_alpha : 0;
    s->targets = p.targets;
    s->seed = p.seed;
    for (int32_t h = 0; h < p.n_heads; h++) {
        const std::string hn = p.head_names[h] ? p.head_names[h] : "";
        if (hn.empty() || p.head_dims[h] <= 0 || p.head_dims[h] > 4096) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + name + "\": head " + std::to_string(h) +
                                                        " needs a name and a size in [1, 4096]");
        }
        s->heads.push_back({hn, p.head_dims[h], s->n_head_out});
        s->n_head_out += p.head_dims[h];
    }
    if (s->targets == 0 && s->heads.empty()) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + name + "\": no targets and no heads");
    }
    // the set's tensors: each parameter with its accumulator and moments
    size_t n_lora = 0;
    for (int bit = 0; bit < 7; bit++) n_lora += (s->targets >> bit) & 1;
    const size_t n_tensors = (2 * n_lora * (size_t) tr->n_layer + 2) * 4 + 2;
    s->ctx.reset(ggml_init({ggml_tensor_overhead() * (n_tensors + 4), nullptr, true}));
    ggml_context * ctx = s->ctx.get();
    auto add_param = [&](ggml_tensor * t, const std::string & pname, int kind) {
        ggml_set_name(t, pname.c_str());
        ggml_set_param(t);
        param_t row;
        row.name = pname;
        row.kind = kind;
        row.t = t;
        row.g = ggml_dup_tensor(ctx, t);
        row.m = ggml_dup_tensor(ctx, t);
        row.v = ggml_dup_tensor(ctx, t);
        ggml_format_name(row.g, "%s.grad", pname.c_str());
        ggml_format_name(row.m, "%s.m", pname.c_str());
        ggml_format_name(row.v, "%s.v", pname.c_str());
        row.offset = s->n_params;
        s->n_params += ggml_nelements(t);
        s->params.push_back(row);
    };
    for (int32_t il = 0; il < tr->n_layer; il++) {
        layer_t & L = tr->layers[(size_t) il];
        for (const lora_target_t & target : k_lora_targets) {
            if (!(s->targets & target.bit)) continue;
            ggml_tensor * w = L.*target.weight;
            auto l = std::make_unique<lora_t>();
            l->base = ggml_get_name(w);
            l->n_in = w->ne[0];
            l->n_out = w->ne[1];
            l->a = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, l->n_in, s->rank);   // (n_in, r)
            l->b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, s->rank, l->n_out);  // (r, n_out)
            add_param(l->a, l->base + ".lora_a", ALIGN_PARAM_LORA_A);
            add_param(l->b, l->base + ".lora_b", ALIGN_PARAM_LORA_B);
            s->by_weight[w] = l.get();
            s->loras.push_back(std::move(l));
        }
    }
    if (!s->heads.empty()) {
        s->head_w = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, tr->n_embd, s->n_head_out);  // (n_embd, n_head_out)
        s->head_b = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, s->n_head_out);
        add_param(s->head_w, "heads.weight", ALIGN_PARAM_HEAD_WEIGHT);
        add_param(s->head_b, "heads.bias", ALIGN_PARAM_HEAD_BIAS);
    }
    s->adamw = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 7);
    s->gscale = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1);
    s->buf.reset(ggml_backend_alloc_ctx_tensors(ctx, tr->backend));
    if (!s->buf) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate adapter set \"" + name + "\"");
    ggml_backend_buffer_clear(s->buf.get(), 0);
    // PEFT's default: A ~ U(-1/sqrt(n_in), 1/sqrt(n_in)) (kaiming-uniform,
    // a=sqrt(5)), B = 0, so the policy starts as the frozen base. Heads:
    // PyTorch Linear's U(-1/sqrt(n_embd), 1/sqrt(n_embd)), bias 0.
    for (auto & l : s->loras) fill_uniform(l->a, s->seed, l->base, 1.0 / std::sqrt((double) l->n_in));
    if (s->head_w) fill_uniform(s->head_w, s->seed, "heads.weight", 1.0 / std::sqrt((double) tr->n_embd));
    *id = (int32_t) tr->sets.size();
    tr->sets.push_back(std::move(s));
    return ALIGN_OK;
}

align_status zero_grad(align_trainer * tr, adapter_set & s) {
    for (const param_t & p : s.params) ggml_backend_tensor_memset(p.g, 0, 0, ggml_nbytes(p.g));
    return ALIGN_OK;
}

align_status grad_norm(align_trainer * tr, adapter_set & s, double * norm) {
    const size_t n_nodes = 3 * s.params.size() + 16;
    ctx_ptr ctx(ggml_init({aux_mem(n_nodes), nullptr, true}));
    ggml_cgraph * g = ggml_new_graph_custom(ctx.get(), n_nodes, false);
    ggml_tensor * sum = nullptr;
    for (const param_t & p : s.params) {
        ggml_tensor * t = ggml_sum(ctx.get(), ggml_sqr(ctx.get(), p.g));
        sum = sum ? ggml_add(ctx.get(), sum, t) : t;
    }
    ggml_set_output(sum);
    ggml_build_forward_expand(g, sum);
    align_status st = run_aux(tr, g);
    if (st != ALIGN_OK) return st;
    float v = 0;
    ggml_backend_tensor_get(sum, &v, 0, sizeof(float));
    *norm = std::sqrt((double) v);
    return ALIGN_OK;
}

align_status adamw_step(align_trainer * tr, adapter_set & s, const align_adamw_params & p) {
    s.step++;
    const double bc1 = 1.0 - std::pow((double) p.beta1, (double) s.step);
    const double bc2 = 1.0 - std::pow((double) p.beta2, (double) s.step);
    // ggml_opt_step_adamw: alpha, beta1, beta2, eps, wd, 1/(1-beta1^t), 1/(1-beta2^t)
    const float hp[7] = {p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, (float) (1.0 / bc1), (float) (1.0 / bc2)};
    ggml_backend_tensor_set(s.adamw, hp, 0, sizeof(hp));
    ggml_backend_tensor_set(s.gscale, &p.grad_scale, 0, sizeof(float));
    const size_t n_nodes = 6 * s.params.size() + 16;  // leafs: t, g, m, v per parameter
    ctx_ptr ctx(ggml_init({aux_mem(n_nodes), nullptr, true}));
    ggml_cgraph * g = ggml_new_graph_custom(ctx.get(), n_nodes, false);
    for (const param_t & q : s.params) {
        ggml_tensor * gs = ggml_mul(ctx.get(), q.g, s.gscale);
        ggml_build_forward_expand(g, ggml_opt_step_adamw(ctx.get(), q.t, gs, q.m, q.v, s.adamw));
    }
    align_status st = run_aux(tr, g);
    if (st != ALIGN_OK) {
        s.step--;
        return st;
    }
    return zero_grad(tr, s);
}

align_status get_flat(align_trainer * tr, adapter_set & s, int which, float * out) {
    for (const param_t & p : s.params) {
        ggml_tensor * t = which == 0 ? p.t : which == 1 ? p.m : which == 2 ? p.v : p.g;
        ggml_backend_tensor_get(t, out + p.offset, 0, ggml_nbytes(t));
    }
    return ALIGN_OK;
}

align_status set_flat(align_trainer * tr, adapter_set & s, int which, const float * in) {
    for (const param_t & p : s.params) {
        ggml_tensor * t = which == 0 ? p.t : which == 1 ? p.m : which == 2 ? p.v : p.g;
        ggml_backend_tensor_set(t, in + p.offset, 0, ggml_nbytes(t));
    }
    return ALIGN_OK;
}

}  // namespace align::train
