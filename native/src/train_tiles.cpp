// train_tiles.cpp: the input gradient through a frozen matrix without a
// resident transposed copy (ALIGN_BACKWARD_TILES).
//
// dx (n_in, N) = W·dy for W (n_in, n_out), stored as n_out rows of n_in
// quantised along n_in, and dy (n_out, N). ggml's MUL_MAT contracts the
// first dimension of both operands, so it needs Wᵀ, whose rows run along
// n_out. Instead of a copy of Wᵀ kept for the whole run (about the base's
// size again), each backward makes Wᵀ in tiles of J of W's rows: a custom
// op dequantises the tile one block width of W's columns at a time and
// writes those columns as Q8_0 rows of J (the scatter of one block width
// stays in cache), MUL_MAT multiplies the tile by dy's rows j0 … j0+J
// (ggml's Q8_0 GEMM, as over resident Q8_0 copies: the same numbers up to
// the quantiser's rounding mode), and the partial products add up. A tile
// is at most about 8.5 MiB and lives in the compute buffer only until its
// product is made. The price is re-making every tile each backward: a
// dequantisation and a quantisation of the matrix, next to a GEMM over it.
#include "train_internal.h"

#include "ggml-cpu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace align::train {

namespace {

constexpr int64_t k_tile_elems = 8 << 20;  // elements of Wᵀ per tile (Q8_0: ~8.5 MiB)

// J: W's rows per tile, a multiple of 32 (Q8_0 rows of Wᵀ).
int64_t tile_rows(const ggml_tensor * w) {
    int64_t elems = k_tile_elems;
    if (const char * e = std::getenv("ALIGN_TILE_ELEMS")) {  // tests: many small tiles
        const long long v = std::atoll(e);
        if (v > 0) elems = v;
    }
    const int64_t j = std::max<int64_t>(32, elems / std::max<int64_t>(1, w->ne[0]) / 32 * 32);
    return std::min(j, w->ne[1]);
}

// Columns of W dequantised at once: whole blocks, at least 64 columns
// where the row allows.
int64_t block_width(const ggml_tensor * w) {
    const int64_t qk = ggml_blck_size(w->type);
    const int64_t wide = std::max<int64_t>(qk, 64 / qk * qk);
    return w->ne[0] % wide == 0 ? wide : qk;
}

// dst Q8_0 (J, n_in) = transpose of src[0] (n_in, J): W's rows j0 … j0+J.
// Threads split W's columns by block width.
void make_wt_tile(ggml_tensor * dst, int ith, int nth, void *) {
    const ggml_tensor * w = dst->src[0];
    const int64_t n_in = w->ne[0], J = w->ne[1];
    const int64_t width = block_width(w);
    const int64_t n_chunks = n_in / width;
    const int64_t c0 = n_chunks * ith / nth, c1 = n_chunks * (ith + 1) / nth;
    if (c0 >= c1) return;
    const ggml_to_float_t to_float = ggml_get_type_traits(w->type)->to_float;
    const ggml_from_float_t to_q8 = ggml_get_type_traits_cpu(GGML_TYPE_Q8_0)->from_float;
    // t holds the chunk's columns as rows of J; the row stride is padded by
    // a cache line so the scatter's width rows do not share cache sets
    // (with J a power of two they would, and every write would miss)
    const int64_t ld = J + 16;
    thread_local std::vector<float> seg, t;
    seg.resize((size_t) width);
    t.resize((size_t) (width * ld));
    const uint8_t * src = static_cast<const uint8_t *>(w->data);
    uint8_t * out = static_cast<uint8_t *>(dst->data);
    for (int64_t c = c0; c < c1; c++) {
        const int64_t i0 = c * width;
        const size_t off = ggml_row_size(w->type, i0);  // whole blocks
        for (int64_t j = 0; j < J; j++) {
            const uint8_t * row = src + (size_t) j * w->nb[1] + off;
            const float * x = seg.data();
            if (w->type == GGML_TYPE_F32) {
                x = reinterpret_cast<const float *>(row);
            } else {
                to_float(row, seg.data(), width);
            }
            for (int64_t i = 0; i < width; i++) t[(size_t) (i * ld + j)] = x[i];
        }
        for (int64_t i = 0; i < width; i++) {
            to_q8(t.data() + (size_t) (i * ld), out + (size_t) (i0 + i) * dst->nb[1], J);
        }
    }
}

}  // namespace

bool tiles_supported(const ggml_tensor * w) {
    if (w == nullptr || w->data == nullptr || w->buffer == nullptr || !ggml_backend_buffer_is_host(w->buffer)) return false;
    // a repacked (or AMX) buffer holds the weights in its own layout
    const char * buft = ggml_backend_buft_name(ggml_backend_buffer_get_type(w->buffer));
    if (std::strcmp(buft, "CPU") != 0 && std::strcmp(buft, "CPU_Mapped") != 0) return false;
    if (w->ne[1] % 32 != 0 || w->ne[2] != 1 || w->ne[3] != 1) return false;
    if (w->ne[0] % ggml_blck_size(w->type) != 0) return false;
    return w->type == GGML_TYPE_F32 || ggml_get_type_traits(w->type)->to_float != nullptr;
}

int64_t tiled_nodes(const ggml_tensor * w) {
    const int64_t J = tile_rows(w);
    const int64_t n = (w->ne[1] + J - 1) / J;
    return 5 * n;  // a view of W and of dy, the tile, its product, the sum
}

ggml_tensor * tiled_input_grad(ggml_context * ctx, ggml_tensor * w, ggml_tensor * dy, std::vector<ggml_tensor *> * made) {
    const int64_t n_in = w->ne[0], n_out = w->ne[1], N = dy->ne[1];
    const int64_t J = tile_rows(w);
    auto note = [&](ggml_tensor * t) {
        made->push_back(t);
        return t;
    };
    ggml_tensor * acc = nullptr;
    for (int64_t j0 = 0; j0 < n_out; j0 += J) {
        const int64_t jn = std::min(J, n_out - j0);  // a multiple of 32: so are J and n_out
        ggml_tensor * wv = jn == n_out ? w : note(ggml_view_2d(ctx, w, n_in, jn, w->nb[1], (size_t) j0 * w->nb[1]));
        ggml_tensor * args[1] = {wv};
        ggml_tensor * wt = note(ggml_custom_4d(ctx, GGML_TYPE_Q8_0, jn, n_in, 1, 1, args, 1, make_wt_tile, GGML_N_TASKS_MAX, nullptr));
        ggml_tensor * dyv = jn == n_out ? dy : note(ggml_view_2d(ctx, dy, jn, N, dy->nb[1], (size_t) j0 * dy->nb[0]));
        ggml_tensor * p = note(ggml_mul_mat(ctx, wt, dyv));  // (n_in, N)
        acc = acc == nullptr ? p : note(ggml_add(ctx, acc, p));
    }
    return acc;
}

}  // namespace align::train
