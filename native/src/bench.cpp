// bench.cpp: the machine-peak measurement behind MFU figures.
#include "internal.h"

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

#include <chrono>
#include <cstring>
#include <vector>

using align::fail;
using align::ok;

extern "C" align_status align_bench_matmul(int32_t n_threads, const char * type, int64_t m, int64_t n, int64_t k,
                                           int32_t reps, double * gflops) {
    if (type == nullptr || gflops == nullptr || m <= 0 || n <= 0 || k <= 0 || reps <= 0 || m * k > (1LL << 28)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_bench_matmul: bad argument");
    }
    ggml_type t;
    if (std::strcmp(type, "f32") == 0) t = GGML_TYPE_F32;
    else if (std::strcmp(type, "q8_0") == 0) t = GGML_TYPE_Q8_0;
    else return fail(ALIGN_ERR_INVALID_ARGUMENT, std::string("unknown type ") + type);
    if (k % ggml_blck_size(t) != 0) return fail(ALIGN_ERR_INVALID_ARGUMENT, "k must be a multiple of the block size");
    ALIGN_TRY
    ggml_backend_t be = ggml_backend_cpu_init();
    if (be == nullptr) return fail(ALIGN_ERR_INTERNAL, "no CPU backend");
    ggml_backend_cpu_set_n_threads(be, n_threads > 0 ? n_threads : 1);
    ggml_init_params ip = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * w = ggml_new_tensor_2d(ctx, t, k, m);
    ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
    ggml_tensor * y = ggml_mul_mat(ctx, w, x);
    ggml_cgraph * g = ggml_new_graph(ctx);
    ggml_build_forward_expand(g, y);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, be);
    std::vector<float> f((size_t) (k * std::max(m, n)));
    for (size_t i = 0; i < f.size(); i++) f[i] = (float) ((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    ggml_backend_tensor_set(x, f.data(), 0, ggml_nbytes(x));
    if (t == GGML_TYPE_F32) {
        ggml_backend_tensor_set(w, f.data(), 0, ggml_nbytes(w));
    } else {
        std::vector<uint8_t> q(ggml_nbytes(w));
        ggml_quantize_chunk(t, f.data(), q.data(), 0, m, k, nullptr);
        ggml_backend_tensor_set(w, q.data(), 0, q.size());
    }
    ggml_backend_graph_compute(be, g);  // warm-up
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; i++) ggml_backend_graph_compute(be, g);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    *gflops = 2.0 * (double) m * (double) n * (double) k * reps / s / 1e9;
    ggml_backend_buffer_free(buf);
    ggml_free(ctx);
    ggml_backend_free(be);
    return ok();
    ALIGN_CATCH
}
