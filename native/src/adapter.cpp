// adapter.cpp: LoRA adapter export in the GGUF layout llama.cpp loads.
#include "internal.h"

#include "ggml.h"
#include "gguf.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <unistd.h>

using align::fail;
using align::ok;

extern "C" align_status align_adapter_write(const char * path, const char * arch, float alpha,
                                            const align_adapter_tensor * ts, int32_t n) {
    if (path == nullptr || arch == nullptr || (ts == nullptr && n > 0) || n < 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_adapter_write: NULL argument");
    }
    if (!std::isfinite(alpha) || alpha <= 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter alpha must be positive");
    }
    ALIGN_TRY
    for (int32_t i = 0; i < n; i++) {
        const auto & t = ts[i];
        if (t.base_name == nullptr || t.a == nullptr || t.b == nullptr || t.n_in <= 0 || t.n_out <= 0 || t.rank <= 0) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter tensor " + std::to_string(i) + " is incomplete");
        }
        if (std::strlen(t.base_name) + 8 > GGML_MAX_NAME - 1) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, std::string("tensor name too long: ") + t.base_name);
        }
    }
    gguf_context * g = gguf_init_empty();
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> gg(g, gguf_free);
    gguf_set_val_str(g, "general.type", "adapter");
    gguf_set_val_str(g, "general.architecture", arch);
    gguf_set_val_str(g, "adapter.type", "lora");
    gguf_set_val_f32(g, "adapter.lora.alpha", alpha);
    ggml_init_params ip = {ggml_tensor_overhead() * (size_t) (2 * n + 2), nullptr, true};
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> meta(ggml_init(ip), ggml_free);
    for (int32_t i = 0; i < n; i++) {
        const auto & t = ts[i];
        ggml_tensor * a = ggml_new_tensor_2d(meta.get(), GGML_TYPE_F32, t.n_in, t.rank);  // ne = [n_in, r]
        ggml_set_name(a, (std::string(t.base_name) + ".lora_a").c_str());
        ggml_tensor * b = ggml_new_tensor_2d(meta.get(), GGML_TYPE_F32, t.rank, t.n_out);  // ne = [r, n_out]
        ggml_set_name(b, (std::string(t.base_name) + ".lora_b").c_str());
        if (gguf_find_tensor(g, ggml_get_name(a)) >= 0) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, std::string("duplicate adapter tensor ") + t.base_name);
        }
        gguf_add_tensor(g, a);
        gguf_add_tensor(g, b);
    }
    align::atomic_file out;
    if (align_status st = out.open(path); st != ALIGN_OK) return st;
    FILE * f = out.file();
    std::vector<uint8_t> hdr(gguf_get_meta_size(g));
    gguf_get_meta_data(g, hdr.data());
    bool good = std::fwrite(hdr.data(), 1, hdr.size(), f) == hdr.size();
    const size_t al = gguf_get_alignment(g);
    static const uint8_t zeros[64] = {0};
    auto put = [&](const float * d, size_t count) {
        const size_t nb = count * sizeof(float);
        if (good) good = std::fwrite(d, 1, nb, f) == nb;
        const size_t pad = GGML_PAD(nb, al) - nb;
        if (good && pad) good = std::fwrite(zeros, 1, pad, f) == pad;
    };
    for (int32_t i = 0; i < n && good; i++) {
        put(ts[i].a, (size_t) (ts[i].n_in * ts[i].rank));
        put(ts[i].b, (size_t) (ts[i].rank * ts[i].n_out));
    }
    if (!good) return fail(ALIGN_ERR_IO, std::string(path) + ": " + std::strerror(errno));
    if (align_status st = out.commit(); st != ALIGN_OK) return st;
    return ok();
    ALIGN_CATCH
}
