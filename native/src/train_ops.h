// train_ops.h: compositions of ggml ops for the training graph, where ggml
// has the forward but no backward. Header-only, so tests/grad_ops.cpp checks
// the very function the trainer builds.
#pragma once

#include "ggml.h"

namespace align::train {

// GELU with the tanh approximation (gemma3's GeGLU), from ops that have a
// backward in ggml (ggml_gelu has none):
//   0.5·x·(1 + tanh(c·(x + a·x³))) = x·σ(2c·(x + a·x³)) = silu(x·k) / k,
//   k = 2c·(1 + a·x²) ≥ 2c > 0,
// so there is no division by zero and no exp that overflows (silu is stable
// for any argument). This is the F32 formula, as ggml's CUDA kernel computes
// it; ggml's CPU gelu rounds x to F16 and reads a table (|Δ| ≤ ~1e-3·|x|).
inline ggml_tensor * gelu_tanh(ggml_context * ctx, ggml_tensor * x) {
    const float c = 0.79788456080286535587989211986876f;  // sqrt(2/pi), ggml's SQRT_2_OVER_PI
    const float a = 0.044715f;                            // ggml's GELU_COEF_A
    ggml_tensor * k = ggml_scale_bias(ctx, ggml_sqr(ctx, x), 2.0f * c * a, 2.0f * c);  // (same shape as x)
    return ggml_div(ctx, ggml_silu(ctx, ggml_mul(ctx, x, k)), k);
}

// The protection rule of the trainer's backward: ggml's CPU kernels of
// RMS_NORM_BACK, SOFT_MAX_BACK and SILU_BACK read src[1] (and RMS_NORM_BACK
// src[0], dz) after they have begun writing their output, which the graph
// allocator may place in the memory of a parent it considers dead. Marking
// those parents outputs keeps them alive. Applied to the nodes from `from`
// on (the backward part of g); rms_src0 false is the older rule without
// RMS_NORM_BACK's src[0] (grad_ops shows it is not enough).
inline void protect_inplace_parents(ggml_cgraph * g, int from, bool rms_src0 = true) {
    const int n = ggml_graph_n_nodes(g);
    for (int i = from; i < n; i++) {
        ggml_tensor * node = ggml_graph_node(g, i);
        switch (node->op) {
            case GGML_OP_RMS_NORM_BACK:
                // the CPU kernel writes dx before it has read dz = src[0]
                if (rms_src0 && node->src[0]) ggml_set_output(node->src[0]);
                if (node->src[1]) ggml_set_output(node->src[1]);
                break;
            case GGML_OP_SOFT_MAX_BACK:
            case GGML_OP_SILU_BACK:
                if (node->src[1]) ggml_set_output(node->src[1]);
                break;
            default:
                break;
        }
    }
}

}  // namespace align::train
