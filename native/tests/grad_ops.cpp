// grad_ops: finite-difference checks of the ggml backward passes the
// training graph relies on (native/src/train_graph.cpp), on the CPU backend
// of the pinned ggml. Two of them record facts about this ggml copy that the
// training graph works around; if ggml fixes them these tests say so.
//
//  * ggml-alloc may compute a backward node in place over a parent it still
//    reads. SOFT_MAX_BACK(dy, y) then corrupts y (src[1]); RMS_NORM_BACK(dz,
//    x) writes dx before it has read dz (src[0]; upstream ggml issue 1491).
//    Marking those parents as outputs (what the trainer does) makes both
//    exact; without it the gradients are wrong.
//
// It also checks the trainer's compositions for ops ggml has no backward for
// (train_ops.h: GELU-tanh for gemma3's GeGLU), forward and backward.
//
// Prints "N passed, N failed"; exits non-zero on failure.
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml-impl.h"
#include "ggml.h"
#include "train_ops.h"  // the trainer's GELU and protection rule

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

static int g_pass = 0, g_fail = 0;

using build_fn = std::function<ggml_tensor *(ggml_context *, ggml_tensor *, std::vector<ggml_tensor *> &)>;
using fill_fn = std::function<void(std::vector<ggml_tensor *> &)>;

// How the backward graph is protected against in-place aliasing.
enum protect_t {
    PROTECT_NONE = 0,
    PROTECT_SRC1 = 1,   // src[1] of SOFT_MAX_BACK / RMS_NORM_BACK / SILU_BACK (the trainer's old rule)
    PROTECT_TRAIN = 2,  // the trainer's rule: also src[0] of RMS_NORM_BACK
};

// Returns the worst relative error of 8 gradient elements of p for
// loss = Σ build(p) ⊙ r, r random.
static double grad_error(int64_t n0, int64_t n1, int64_t n2, int64_t n3, const build_fn & build, const fill_fn & fill,
                         int protect) {
    ggml_backend_t be = ggml_backend_cpu_init();
    ggml_init_params ip = {ggml_tensor_overhead() * 4096 + ggml_graph_overhead_custom(4096, true), nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    ggml_context * pctx = ggml_init({ggml_tensor_overhead() * 4, nullptr, true});
    ggml_tensor * p = ggml_new_tensor_4d(pctx, GGML_TYPE_F32, n0, n1, n2, n3);
    ggml_set_param(p);
    ggml_backend_buffer_t pbuf = ggml_backend_alloc_ctx_tensors(pctx, be);
    std::vector<ggml_tensor *> in;
    // the parameter passes through a scale (so it is not the graph input
    // itself) and a reshape (whose backward makes any view gradient
    // contiguous, as in the training graph)
    ggml_tensor * y = build(ctx, ggml_reshape_4d(ctx, ggml_scale(ctx, p, 1.0f), n0, n1, n2, n3), in);
    ggml_tensor * r = ggml_new_tensor(ctx, GGML_TYPE_F32, 4, y->ne);
    ggml_set_input(r);
    ggml_tensor * loss = ggml_sum(ctx, ggml_mul(ctx, y, r));
    ggml_set_loss(loss);
    ggml_set_output(loss);
    ggml_cgraph * g = ggml_new_graph_custom(ctx, 4096, true);
    ggml_build_forward_expand(g, loss);
    const int nf = ggml_graph_n_nodes(g);
    ggml_build_backward_expand(ctx, g, nullptr);
    // the trainer's own rule (train_ops.h), not a copy of it
    if (protect != PROTECT_NONE) align::train::protect_inplace_parents(g, nf, protect == PROTECT_TRAIN);
    ggml_gallocr_t ga = ggml_gallocr_new(ggml_backend_get_default_buffer_type(be));
    ggml_gallocr_alloc_graph(ga, g);
    uint32_t seed = 12345;
    auto rnd = [&] {
        seed = seed * 1664525u + 1013904223u;
        return ((seed >> 8) / 16777216.0f) * 2.0f - 1.0f;
    };
    std::vector<float> pv((size_t) ggml_nelements(p)), rv((size_t) ggml_nelements(r));
    for (auto & x : pv) x = rnd();
    for (auto & x : rv) x = rnd();
    auto set_inputs = [&] {
        ggml_backend_tensor_set(p, pv.data(), 0, ggml_nbytes(p));
        ggml_backend_tensor_set(r, rv.data(), 0, ggml_nbytes(r));
        fill(in);
    };
    set_inputs();
    ggml_graph_reset(g);
    ggml_cgraph fw = ggml_graph_view(g, 0, nf), bw = ggml_graph_view(g, nf, ggml_graph_n_nodes(g));
    ggml_backend_graph_compute(be, &fw);
    ggml_backend_graph_compute(be, &bw);
    std::vector<float> gr(pv.size());
    ggml_backend_tensor_get(ggml_graph_get_grad(g, p), gr.data(), 0, ggml_nbytes(p));
    double worst = 0;
    for (int k = 0; k < 8; k++) {
        const size_t i = ((size_t) k * 7919) % pv.size();
        const float o = pv[i], h = 1e-2f;
        float lp, lm;
        pv[i] = o + h;
        set_inputs();
        ggml_backend_graph_compute(be, &fw);
        ggml_backend_tensor_get(loss, &lp, 0, sizeof(float));
        pv[i] = o - h;
        set_inputs();
        ggml_backend_graph_compute(be, &fw);
        ggml_backend_tensor_get(loss, &lm, 0, sizeof(float));
        pv[i] = o;
        const double fd = (lp - lm) / (2.0 * h);
        worst = std::max(worst, std::fabs(fd - gr[i]) / std::max(1e-3, std::max(std::fabs(fd), std::fabs((double) gr[i]))));
    }
    ggml_gallocr_free(ga);
    ggml_backend_buffer_free(pbuf);
    ggml_free(pctx);
    ggml_free(ctx);
    ggml_backend_free(be);
    return worst;
}

static void expect(const char * name, double err, bool want_ok) {
    const bool is_ok = err < 1e-2;
    const bool pass = is_ok == want_ok;
    (pass ? g_pass : g_fail)++;
    std::printf("%-4s %-52s worst rel. error %.2e (%s)\n", pass ? "ok" : "FAIL", name, err,
                want_ok ? "expected right" : "expected wrong in this ggml copy");
}

// Forward values of build(x) for x = xs, on the CPU backend.
static std::vector<float> forward_values(const std::vector<float> & xs,
                                         const std::function<ggml_tensor *(ggml_context *, ggml_tensor *)> & build) {
    ggml_backend_t be = ggml_backend_cpu_init();
    ggml_init_params ip = {ggml_tensor_overhead() * 64 + ggml_graph_overhead(), nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * x = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, (int64_t) xs.size());
    ggml_set_input(x);
    ggml_tensor * y = build(ctx, x);
    ggml_set_output(y);
    ggml_cgraph * g = ggml_new_graph(ctx);
    ggml_build_forward_expand(g, y);
    ggml_gallocr_t ga = ggml_gallocr_new(ggml_backend_get_default_buffer_type(be));
    ggml_gallocr_alloc_graph(ga, g);
    ggml_backend_tensor_set(x, xs.data(), 0, ggml_nbytes(x));
    ggml_backend_graph_compute(be, g);
    std::vector<float> out(xs.size());
    ggml_backend_tensor_get(y, out.data(), 0, ggml_nbytes(y));
    ggml_gallocr_free(ga);
    ggml_free(ctx);
    ggml_backend_free(be);
    return out;
}

// The composed GELU against the formula in double precision (it must be the
// F32 formula up to rounding, finite for any input) and against ggml_gelu on
// the CPU (which rounds x to F16 for a table: close, not equal).
static void check_gelu_forward() {
    std::vector<float> xs;
    for (int i = -4000; i <= 4000; i++) xs.push_back((float) i * 0.003f);  // [-12, 12]
    for (float big : {-1e4f, -300.0f, -60.0f, -20.0f, 20.0f, 60.0f, 300.0f, 1e4f}) xs.push_back(big);
    const auto ours = forward_values(xs, [](ggml_context * c, ggml_tensor * x) { return align::train::gelu_tanh(c, x); });
    const auto ggml = forward_values(xs, [](ggml_context * c, ggml_tensor * x) { return ggml_gelu(c, x); });
    double worst_exact = 0, worst_table = 0;
    bool finite = true;
    for (size_t i = 0; i < xs.size(); i++) {
        const double x = xs[i];
        const double exact = 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * x * (1.0 + 0.044715 * x * x)));
        finite = finite && std::isfinite(ours[i]);
        worst_exact = std::max(worst_exact, std::fabs(ours[i] - exact) / (1e-6 + std::fabs(exact) + 1e-3 * std::fabs(x)));
        if (std::fabs(x) < 20) worst_table = std::max(worst_table, std::fabs((double) ours[i] - ggml[i]) / (1e-3 + std::fabs(x)));
    }
    const bool pass = finite && worst_exact < 1e-5 && worst_table < 2e-3;
    (pass ? g_pass : g_fail)++;
    std::printf("%-4s %-52s rel. error %.1e to the formula, %.1e to ggml_gelu (CPU F16 table)\n", pass ? "ok" : "FAIL",
                "gelu_tanh composed, forward on [-12, 12] and ±1e4", worst_exact, worst_table);
}

int main() {
    const int hd = 8, H = 2, T = 5, B = 2;
    check_gelu_forward();
    auto no_fill = [](std::vector<ggml_tensor *> &) {};
    auto pos_fill = [&](std::vector<ggml_tensor *> & in) {
        std::vector<int32_t> v(T);
        for (int i = 0; i < T; i++) v[(size_t) i] = i;
        ggml_backend_tensor_set(in[0], v.data(), 0, sizeof(int32_t) * T);
    };
    auto rope = [&](ggml_context * c, ggml_tensor * p, std::vector<ggml_tensor *> & in) {
        ggml_tensor * pos = ggml_new_tensor_1d(c, GGML_TYPE_I32, T);
        ggml_set_input(pos);
        in.push_back(pos);
        return ggml_rope_ext(c, p, pos, nullptr, hd, 0, 2048, 10000, 1, 0, 1, 32, 1);
    };
    expect("rope (hd, heads, T, B)", grad_error(hd, H, T, B, rope, pos_fill, PROTECT_TRAIN), true);
    auto masked_softmax = [&](ggml_context * c, ggml_tensor * p, std::vector<ggml_tensor *> & in) {
        ggml_tensor * m = ggml_new_tensor_4d(c, GGML_TYPE_F32, T, T, 1, B);
        ggml_set_input(m);
        in.push_back(m);
        return ggml_soft_max_ext(c, p, m, 0.3f, 0.0f);
    };
    auto mask_fill = [&](std::vector<ggml_tensor *> & in) {
        std::vector<float> v((size_t) T * T * B);
        for (int b = 0; b < B; b++)
            for (int q = 0; q < T; q++)
                for (int k = 0; k < T; k++) v[(size_t) ((b * T + q) * T + k)] = k <= q ? 0.0f : -INFINITY;
        ggml_backend_tensor_set(in[0], v.data(), 0, v.size() * sizeof(float));
    };
    expect("soft_max_ext with causal mask (T, T, heads, B)", grad_error(T, T, H, B, masked_softmax, mask_fill, PROTECT_TRAIN), true);
    auto pick = [&](ggml_context * c, ggml_tensor * p, std::vector<ggml_tensor *> & in) {
        ggml_tensor * ix = ggml_new_tensor_1d(c, GGML_TYPE_I32, 3);
        ggml_set_input(ix);
        in.push_back(ix);
        ggml_tensor * sm = ggml_soft_max(c, p);
        return ggml_log(c, ggml_scale_bias(c, ggml_get_rows(c, ggml_reshape_2d(c, sm, 1, 21), ix), 1.0f, 1e-30f));
    };
    auto pick_fill = [](std::vector<ggml_tensor *> & in) {
        const int32_t v[3] = {4, 9, 20};
        ggml_backend_tensor_set(in[0], v, 0, sizeof(v));
    };
    expect("log softmax picked by get_rows, protected", grad_error(7, 3, 1, 1, pick, pick_fill, PROTECT_TRAIN), true);
    expect("log softmax picked by get_rows, unprotected", grad_error(7, 3, 1, 1, pick, pick_fill, PROTECT_NONE), false);
    auto manual_rms = [](ggml_context * c, ggml_tensor * x, std::vector<ggml_tensor *> &) {
        ggml_tensor * ms = ggml_scale_bias(c, ggml_sum_rows(c, ggml_sqr(c, x)), 1.0f / (float) x->ne[0], 1e-5f);
        ggml_tensor * rinv = ggml_exp(c, ggml_scale(c, ggml_log(c, ms), -0.5f));
        return ggml_mul(c, x, ggml_repeat(c, rinv, x));
    };
    expect("RMSNorm composed from ops", grad_error(64, 9, 1, 1, manual_rms, no_fill, PROTECT_TRAIN), true);
    auto ggml_rms = [](ggml_context * c, ggml_tensor * x, std::vector<ggml_tensor *> &) { return ggml_rms_norm(c, x, 1e-5f); };
    expect("ggml_rms_norm, src[0] and src[1] protected", grad_error(8, 5, 1, 1, ggml_rms, no_fill, PROTECT_TRAIN), true);
    expect("ggml_rms_norm, only src[1] protected", grad_error(8, 5, 1, 1, ggml_rms, no_fill, PROTECT_SRC1), false);
    expect("ggml_rms_norm, unprotected", grad_error(8, 5, 1, 1, ggml_rms, no_fill, PROTECT_NONE), false);
    // as the trainer uses it: scaled by the norm weight, in a residual stream
    auto rms_block = [](ggml_context * c, ggml_tensor * x, std::vector<ggml_tensor *> &) {
        ggml_tensor * h = ggml_rms_norm(c, x, 1e-5f);
        return ggml_add(c, x, ggml_mul(c, ggml_sqr(c, h), h));
    };
    expect("x + rms_norm(x)^3, protected", grad_error(64, 9, 1, 1, rms_block, no_fill, PROTECT_TRAIN), true);
    auto swiglu = [](ggml_context * c, ggml_tensor * x, std::vector<ggml_tensor *> &) { return ggml_mul(c, ggml_silu(c, x), x); };
    expect("silu(x) * x", grad_error(8, 5, 1, 1, swiglu, no_fill, PROTECT_TRAIN), true);
    auto gqa_expand = [&](ggml_context * c, ggml_tensor * x, std::vector<ggml_tensor *> &) {
        ggml_tensor * t4 = ggml_reshape_4d(c, x, hd * T, 1, 2, B);
        return ggml_reshape_4d(c, ggml_repeat_4d(c, t4, hd * T, 2, 2, B), hd, T, 4, B);
    };
    expect("GQA expansion by repeat_4d", grad_error(hd, T, 2, B, gqa_expand, no_fill, PROTECT_TRAIN), true);
    auto attn = [&](ggml_context * c, ggml_tensor * q, std::vector<ggml_tensor *> & in) {
        ggml_tensor * k = ggml_new_tensor_4d(c, GGML_TYPE_F32, hd, T, H, B);
        ggml_set_input(k);
        in.push_back(k);
        return ggml_mul_mat(c, k, ggml_cont(c, ggml_permute(c, q, 0, 2, 1, 3)));
    };
    auto k_fill = [&](std::vector<ggml_tensor *> & in) {
        std::vector<float> v((size_t) hd * T * H * B);
        for (size_t i = 0; i < v.size(); i++) v[i] = std::sin((float) i);
        ggml_backend_tensor_set(in[0], v.data(), 0, v.size() * sizeof(float));
    };
    expect("K·Q over permuted Q (hd, heads, T, B)", grad_error(hd, H, T, B, attn, k_fill, PROTECT_TRAIN), true);
    auto vt = [&](ggml_context * c, ggml_tensor * v, std::vector<ggml_tensor *> &) {
        return ggml_scale(c, ggml_cont(c, ggml_permute(c, v, 1, 2, 0, 3)), 1.0f);
    };
    expect("Vᵀ by permute(1, 2, 0, 3) + cont", grad_error(hd, H, T, B, vt, no_fill, PROTECT_TRAIN), true);
    // gemma3's GeGLU: gelu(g)·u, on inputs of magnitude up to 1 and 4
    auto geglu = [](float s) {
        return [s](ggml_context * c, ggml_tensor * x, std::vector<ggml_tensor *> &) {
            ggml_tensor * g = ggml_scale(c, x, s);
            return ggml_mul(c, align::train::gelu_tanh(c, g), ggml_sqr(c, x));
        };
    };
    expect("gelu_tanh(x) * x^2 (composed GELU)", grad_error(8, 5, 1, 1, geglu(1.0f), no_fill, PROTECT_TRAIN), true);
    expect("gelu_tanh(4x) * x^2", grad_error(8, 5, 1, 1, geglu(4.0f), no_fill, PROTECT_TRAIN), true);
    // qwen3 and gemma3: RMSNorm of each head of Q times a (hd) weight, then
    // RoPE; gemma3 then scales Q after the permute
    auto qk_norm = [&](ggml_context * c, ggml_tensor * q, std::vector<ggml_tensor *> & in) {
        ggml_tensor * w = ggml_new_tensor_1d(c, GGML_TYPE_F32, hd);
        ggml_tensor * pos = ggml_new_tensor_1d(c, GGML_TYPE_I32, T);
        ggml_set_input(pos);
        ggml_set_input(w);
        in.push_back(pos);
        in.push_back(w);
        ggml_tensor * h = ggml_rope_ext(c, ggml_mul(c, ggml_rms_norm(c, q, 1e-6f), w), pos, nullptr, hd,
                                        GGML_ROPE_TYPE_NEOX, 2048, 1e6f, 1, 0, 1, 32, 1);
        return ggml_scale(c, ggml_cont(c, ggml_permute(c, h, 0, 2, 1, 3)), 0.125f);
    };
    auto qk_fill = [&](std::vector<ggml_tensor *> & in) {
        pos_fill(in);
        std::vector<float> w(hd);
        for (int i = 0; i < hd; i++) w[(size_t) i] = 1.0f + 0.1f * std::sin((float) i);
        ggml_backend_tensor_set(in[1], w.data(), 0, sizeof(float) * hd);
    };
    expect("per-head Q norm · w, NEOX rope, scale (hd, heads, T, B)", grad_error(hd, H, T, B, qk_norm, qk_fill, PROTECT_TRAIN), true);
    std::printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
