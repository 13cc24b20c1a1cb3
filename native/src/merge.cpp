// merge.cpp: folds LoRA adapters into a base GGUF (`align merge`).
//
// W' = W + Σ_j s_j · B_j·A_j, s_j = user scale · alpha_j / r_j (llama.cpp's
// scale, llama-adapter.cpp). W: ne = [n_in, n_out]; A: ne = [n_in, r];
// B: ne = [r, n_out], so row o of W' (n_in values) is
// W[o] + Σ_j s_j Σ_k B_j[o][k] · A_j[k]. The base is read and written a bounded
// chunk of rows at a time (dequantise → add → quantise with ggml's quantisers),
// so a large model never needs twice its size in memory; tensors nothing
// changes are copied byte for byte.
#include "internal.h"

#include "ggml.h"
#include "gguf.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using align::fail;
using align::ok;

namespace {

using gguf_ptr = std::unique_ptr<gguf_context, void (*)(gguf_context *)>;
using ggml_ptr = std::unique_ptr<ggml_context, void (*)(ggml_context *)>;

// Working memory per chunk of rows (F32 rows plus their stored bytes).
constexpr size_t kChunkBytes = 64u << 20;

struct file_closer {
    void operator()(FILE * f) const {
        if (f) std::fclose(f);
    }
};
using file_ptr = std::unique_ptr<FILE, file_closer>;

// One adapter's factors for one base weight, as F32.
struct lora_pair {
    int64_t            rank = 0;
    float              scale = 0;  // user scale · alpha / r
    std::vector<float> a;          // (r, n_in) row-major: A[k][i]
    std::vector<float> b;          // (n_out, r) row-major: B[o][k]
};

// Parses a ggml type name in any case ("Q4_K", "q4_k", "f16").
bool parse_type(const std::string & name, ggml_type * out) {
    std::string want = name;
    for (auto & c : want) c = (char) std::tolower((unsigned char) c);
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * n = ggml_type_name((ggml_type) t);
        if (n == nullptr || ggml_blck_size((ggml_type) t) == 0) continue;
        std::string have = n;
        for (auto & c : have) c = (char) std::tolower((unsigned char) c);
        if (have == want) {
            *out = (ggml_type) t;
            return true;
        }
    }
    return false;
}

// Types align merge can write: ggml has a quantiser for them that needs no
// importance matrix.
bool writable(ggml_type t) {
    switch (t) {
        case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
        case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS:
            return !ggml_quantize_requires_imatrix(t);
        default:
            return false;
    }
}

// The type written for rows of n_in values when `want` does not divide them
// (llama.cpp's quantizer falls back the same way).
ggml_type fallback(ggml_type want, int64_t n_in) {
    ggml_type chain[4] = {want, GGML_TYPE_COUNT, GGML_TYPE_F16, GGML_TYPE_F32};
    switch (want) {
        case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_IQ4_XS: chain[1] = GGML_TYPE_Q4_0; break;
        case GGML_TYPE_Q4_K: chain[1] = GGML_TYPE_Q5_0; break;
        case GGML_TYPE_Q5_K: chain[1] = GGML_TYPE_Q5_1; break;
        default: chain[1] = GGML_TYPE_Q8_0; break;
    }
    for (ggml_type t : chain) {
        if (t != GGML_TYPE_COUNT && n_in % ggml_blck_size(t) == 0) return t;
    }
    return GGML_TYPE_F32;
}

// llama_ftype of a uniform file of type t (general.file_type); -1: none.
int32_t ftype_of(ggml_type t) {
    switch (t) {
        case GGML_TYPE_F32: return 0;
        case GGML_TYPE_F16: return 1;
        case GGML_TYPE_Q4_0: return 2;
        case GGML_TYPE_Q4_1: return 3;
        case GGML_TYPE_Q8_0: return 7;
        case GGML_TYPE_Q5_0: return 8;
        case GGML_TYPE_Q5_1: return 9;
        case GGML_TYPE_Q2_K: return 10;
        case GGML_TYPE_Q3_K: return 12;  // Q3_K_M
        case GGML_TYPE_Q4_K: return 14;  // Q4_K_S: every matrix Q4_K
        case GGML_TYPE_Q5_K: return 16;  // Q5_K_S
        case GGML_TYPE_Q6_K: return 18;
        case GGML_TYPE_IQ4_NL: return 25;
        case GGML_TYPE_IQ4_XS: return 30;
        case GGML_TYPE_BF16: return 32;
        default: return -1;
    }
}

bool same_file(const std::string & a, const std::string & b) {
    struct stat sa, sb;
    return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// Converts n values of tensor t (F32 or F16 or any type with a
// dequantiser) to F32.
bool to_f32(const ggml_tensor * t, std::vector<float> & out) {
    const int64_t n = ggml_nelements(t);
    out.resize((size_t) n);
    if (t->type == GGML_TYPE_F32) {
        std::memcpy(out.data(), t->data, (size_t) n * sizeof(float));
        return true;
    }
    const ggml_type_traits * tr = ggml_get_type_traits(t->type);
    if (tr == nullptr || tr->to_float == nullptr || ggml_blck_size(t->type) == 0 || t->ne[0] % ggml_blck_size(t->type) != 0) {
        return false;
    }
    tr->to_float(t->data, out.data(), n);
    return true;
}

// Reads one adapter and adds its pairs to `by_base` (keyed by base tensor
// name). Shapes are checked against the base in the caller.
align_status read_lora(const align_merge_lora & l, const std::string & arch,
                       std::map<std::string, std::vector<lora_pair>> & by_base,
                       std::map<std::string, std::string> & origin, const gguf_context * base,
                       const ggml_context * base_meta) {
    const std::string path = l.path;
    align_status st = align::check_gguf_file(path);
    if (st != ALIGN_OK) return st;
    ggml_context * raw = nullptr;
    gguf_init_params gp = {/*no_alloc=*/false, &raw};
    gguf_ptr g(gguf_init_from_file(path.c_str(), gp), gguf_free);
    ggml_ptr data(raw, ggml_free);
    if (!g || !data) return fail(ALIGN_ERR_FORMAT, path + ": not a readable GGUF file");
    if (align::gguf_str(g.get(), "general.type") != "adapter" || align::gguf_str(g.get(), "adapter.type") != "lora") {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": not a LoRA adapter (general.type \"" +
                                               align::gguf_str(g.get(), "general.type") + "\", adapter.type \"" +
                                               align::gguf_str(g.get(), "adapter.type") + "\"; want \"adapter\", \"lora\")");
    }
    const std::string a_arch = align::gguf_str(g.get(), "general.architecture");
    if (a_arch != arch) {
        return fail(ALIGN_ERR_UNSUPPORTED, path + ": adapter for architecture \"" + a_arch + "\", base is \"" + arch + "\"");
    }
    float alpha = 0;
    const int64_t ka = gguf_find_key(g.get(), "adapter.lora.alpha");
    if (ka >= 0) {
        if (gguf_get_kv_type(g.get(), ka) != GGUF_TYPE_FLOAT32) {
            return fail(ALIGN_ERR_FORMAT, path + ": adapter.lora.alpha is not a float");
        }
        alpha = gguf_get_val_f32(g.get(), ka);
        if (!std::isfinite(alpha) || alpha < 0) {
            return fail(ALIGN_ERR_FORMAT, path + ": adapter.lora.alpha is " + std::to_string(alpha));
        }
    }
    const int64_t n = gguf_get_n_tensors(g.get());
    int n_pairs = 0;
    for (int64_t i = 0; i < n; i++) {
        const std::string name = gguf_get_tensor_name(g.get(), i);
        auto ends = [&](const char * suf) {
            const size_t ls = std::strlen(suf);
            return name.size() > ls && name.compare(name.size() - ls, ls, suf) == 0;
        };
        if (ends(".lora_b")) continue;  // read with its lora_a
        if (!ends(".lora_a")) {
            return fail(ALIGN_ERR_UNSUPPORTED, path + ": tensor " + name + " is not a LoRA factor (want <base>.lora_a / .lora_b)");
        }
        const std::string bname = name.substr(0, name.size() - 7);
        ggml_tensor * ta = ggml_get_tensor(data.get(), name.c_str());
        ggml_tensor * tb = ggml_get_tensor(data.get(), (bname + ".lora_b").c_str());
        if (tb == nullptr) return fail(ALIGN_ERR_UNSUPPORTED, path + ": " + name + " has no " + bname + ".lora_b");
        const ggml_tensor * w = ggml_get_tensor(const_cast<ggml_context *>(base_meta), bname.c_str());
        if (w == nullptr || gguf_find_tensor(base, bname.c_str()) < 0) {
            return fail(ALIGN_ERR_UNSUPPORTED, path + ": adapts " + bname + ", which the base does not have");
        }
        const int64_t n_in = w->ne[0], n_out = w->ne[1], r = ta->ne[1];
        if (ggml_n_dims(w) != 2 || ggml_n_dims(ta) > 2 || ggml_n_dims(tb) > 2 || ta->ne[0] != n_in || tb->ne[0] != r ||
            tb->ne[1] != n_out || r <= 0) {
            char msg[256];
            std::snprintf(msg, sizeof msg, ": %s: lora_a ne = [%lld, %lld], lora_b ne = [%lld, %lld] do not fit the base's ne = [%lld, %lld]",
                          bname.c_str(), (long long) ta->ne[0], (long long) ta->ne[1], (long long) tb->ne[0],
                          (long long) tb->ne[1], (long long) n_in, (long long) n_out);
            return fail(ALIGN_ERR_UNSUPPORTED, path + msg);
        }
        lora_pair p;
        p.rank = r;
        p.scale = alpha != 0 ? l.scale * alpha / (float) r : l.scale;
        if (!to_f32(ta, p.a) || !to_f32(tb, p.b)) {
            return fail(ALIGN_ERR_UNSUPPORTED, path + ": " + bname + ": cannot read LoRA factors of type " +
                                                   ggml_type_name(ta->type) + "/" + ggml_type_name(tb->type));
        }
        for (float v : p.a) {
            if (!std::isfinite(v)) return fail(ALIGN_ERR_FORMAT, path + ": " + name + " holds a non-finite value");
        }
        for (float v : p.b) {
            if (!std::isfinite(v)) return fail(ALIGN_ERR_FORMAT, path + ": " + bname + ".lora_b holds a non-finite value");
        }
        by_base[bname].push_back(std::move(p));
        origin[bname] = path;
        n_pairs++;
    }
    for (int64_t i = 0; i < n; i++) {  // a lora_b without its lora_a
        const std::string name = gguf_get_tensor_name(g.get(), i);
        if (name.size() > 7 && name.compare(name.size() - 7, 7, ".lora_b") == 0 &&
            gguf_find_tensor(g.get(), (name.substr(0, name.size() - 7) + ".lora_a").c_str()) < 0) {
            return fail(ALIGN_ERR_UNSUPPORTED, path + ": " + name + " has no lora_a");
        }
    }
    if (n_pairs == 0) return fail(ALIGN_ERR_UNSUPPORTED, path + ": adapter has no LoRA tensors");
    return ok();
}

}  // namespace

extern "C" align_merge_params align_merge_default_params(void) {
    align_merge_params p;
    std::memset(&p, 0, sizeof p);
    return p;
}

extern "C" align_status align_merge(const char * base_path, const align_merge_lora * loras, int32_t n_loras,
                                    const char * out_path, const align_merge_params * params,
                                    align_merge_result * result) {
    if (base_path == nullptr || out_path == nullptr || (loras == nullptr && n_loras > 0) || n_loras < 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_merge: NULL argument");
    }
    const align_merge_params prm = params ? *params : align_merge_default_params();
    if (result) std::memset(result, 0, sizeof *result);
    ALIGN_TRY
    for (int32_t j = 0; j < n_loras; j++) {
        if (loras[j].path == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_merge: adapter " + std::to_string(j) + " has no path");
        if (!std::isfinite(loras[j].scale)) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, std::string(loras[j].path) + ": scale is not a finite number");
        }
    }
    const std::string base = base_path, out = out_path;
    ggml_type want = GGML_TYPE_COUNT;
    if (prm.type != nullptr && prm.type[0] != '\0') {
        if (!parse_type(prm.type, &want) || !writable(want)) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT,
                        std::string("unknown or unsupported output type \"") + prm.type +
                            "\" (want f32, f16, bf16, q8_0, q5_0, q5_1, q4_0, q4_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl or iq4_xs)");
        }
    }
    align_status st = align::check_gguf_file(base);
    if (st != ALIGN_OK) return st;
    if (same_file(base, out)) return fail(ALIGN_ERR_INVALID_ARGUMENT, out + ": is the base model itself; write the merge elsewhere");
    for (int32_t j = 0; j < n_loras; j++) {
        if (same_file(loras[j].path, out)) return fail(ALIGN_ERR_INVALID_ARGUMENT, out + ": is an input adapter; write the merge elsewhere");
    }
    struct stat os_;
    if (stat(out.c_str(), &os_) == 0) {
        if (S_ISDIR(os_.st_mode)) return fail(ALIGN_ERR_IO, out + ": is a directory");
        if (!prm.force) return fail(ALIGN_ERR_IO, out + ": exists (pass --force to replace it)");
    }

    // the base: metadata and tensor shapes only; data is read in chunks
    ggml_context * meta_raw = nullptr;
    gguf_init_params gp = {/*no_alloc=*/true, &meta_raw};
    gguf_ptr in(gguf_init_from_file(base.c_str(), gp), gguf_free);
    ggml_ptr meta(meta_raw, ggml_free);
    if (!in || !meta) return fail(ALIGN_ERR_FORMAT, base + ": not a readable GGUF file");
    const std::string arch = align::gguf_str(in.get(), "general.architecture");
    if (arch.empty()) return fail(ALIGN_ERR_FORMAT, base + ": no general.architecture");
    if (align::gguf_str(in.get(), "general.type") == "adapter") return fail(ALIGN_ERR_UNSUPPORTED, base + ": is an adapter, not a model");

    std::map<std::string, std::vector<lora_pair>> by_base;
    std::map<std::string, std::string> origin;
    for (int32_t j = 0; j < n_loras; j++) {
        if ((st = read_lora(loras[j], arch, by_base, origin, in.get(), meta.get())) != ALIGN_OK) return st;
    }

    // the output's header: every key of the base, the same tensors in the
    // same order, types changed where a merge or --type asks
    gguf_ptr og(gguf_init_empty(), gguf_free);
    gguf_context * g = og.get();
    gguf_set_kv(g, in.get());
    if (gguf_get_alignment(in.get()) != gguf_get_alignment(g)) {
        // a new gguf context lays tensors out at the default alignment: the
        // key would contradict it
        gguf_remove_key(g, "general.alignment");
    }
    const int64_t n = gguf_get_n_tensors(in.get());
    struct plan {
        ggml_tensor * t;       // base tensor (shape, stored type)
        ggml_type     type;    // written type
        size_t        offset;  // in the base's data section
        bool          merge;
    };
    std::vector<plan> plans;
    plans.reserve((size_t) n);
    int32_t n_fallback = 0;
    for (int64_t i = 0; i < n; i++) {
        const char * name = gguf_get_tensor_name(in.get(), i);
        ggml_tensor * t = ggml_get_tensor(meta.get(), name);
        if (t == nullptr) return fail(ALIGN_ERR_FORMAT, base + ": tensor " + name + " has no shape");
        plan p{t, t->type, gguf_get_tensor_offset(in.get(), i), by_base.count(name) > 0};
        const std::string nm = name;
        const bool matrix = ggml_n_dims(t) == 2 && nm.size() > 7 && nm.compare(nm.size() - 7, 7, ".weight") == 0;
        if (want != GGML_TYPE_COUNT && matrix) {
            p.type = fallback(want, t->ne[0]);
            if (p.type != want) n_fallback++;
        }
        const ggml_type_traits * tr = ggml_get_type_traits(t->type);
        if ((p.merge || p.type != t->type) && (tr == nullptr || (t->type != GGML_TYPE_F32 && tr->to_float == nullptr))) {
            return fail(ALIGN_ERR_UNSUPPORTED, base + ": cannot dequantise " + name + " (type " + ggml_type_name(t->type) + ")");
        }
        if (p.merge && !writable(p.type)) {
            return fail(ALIGN_ERR_UNSUPPORTED, base + ": " + name + " is " + ggml_type_name(t->type) +
                                                   ", which align cannot quantise back; pass --type (e.g. q8_0)");
        }
        gguf_add_tensor(g, t);
        if (p.type != t->type) gguf_set_tensor_type(g, name, p.type);
        plans.push_back(p);
    }
    if (want != GGML_TYPE_COUNT && ftype_of(want) >= 0) gguf_set_val_u32(g, "general.file_type", (uint32_t) ftype_of(want));

    file_ptr src(std::fopen(base.c_str(), "rb"));
    if (!src) return fail(ALIGN_ERR_IO, base + ": " + std::strerror(errno));
    align::atomic_file dst;
    if (align_status st = dst.open(out); st != ALIGN_OK) return st;
    FILE * const f = dst.file();
    const std::string & tmp = dst.tmp();

    std::vector<uint8_t> hdr(gguf_get_meta_size(g));
    gguf_get_meta_data(g, hdr.data());
    if (std::fwrite(hdr.data(), 1, hdr.size(), f) != hdr.size()) return fail(ALIGN_ERR_IO, tmp + ": " + std::strerror(errno));
    const size_t data0 = gguf_get_data_offset(in.get());
    const size_t al = gguf_get_alignment(g);
    size_t written = 0;  // bytes of the data section
    std::vector<uint8_t> raw, packed;
    std::vector<float> rows;
    auto read_at = [&](size_t off, void * buf, size_t nb) -> bool {
        return fseeko(src.get(), (off_t) (data0 + off), SEEK_SET) == 0 && std::fread(buf, 1, nb, src.get()) == nb;
    };
    auto put = [&](const void * buf, size_t nb) -> bool {
        written += nb;
        return std::fwrite(buf, 1, nb, f) == nb;
    };
    align_merge_result res;
    std::memset(&res, 0, sizeof res);
    res.n_fallback = n_fallback;
    for (size_t i = 0; i < plans.size(); i++) {
        if (prm.cancel != nullptr && *prm.cancel != 0) return fail(ALIGN_ERR_CANCELLED, "merge cancelled");
        const plan & p = plans[i];
        const ggml_tensor * t = p.t;
        const std::string name = ggml_get_name(t);
        const size_t want_off = gguf_get_tensor_offset(g, (int64_t) i);
        if (written != want_off) return fail(ALIGN_ERR_INTERNAL, "merge: data offset of " + name + " is off");
        const size_t in_bytes = ggml_nbytes(t);
        if (!p.merge && p.type == t->type) {
            // untouched: the base's bytes
            raw.resize(std::min(in_bytes, kChunkBytes));
            for (size_t o = 0; o < in_bytes; o += raw.size()) {
                const size_t nb = std::min(raw.size(), in_bytes - o);
                if (!read_at(p.offset + o, raw.data(), nb)) return fail(ALIGN_ERR_IO, base + ": short read in " + name);
                if (!put(raw.data(), nb)) return fail(ALIGN_ERR_IO, tmp + ": " + std::strerror(errno));
            }
            res.n_copied++;
        } else {
            const int64_t n_in = t->ne[0];
            const int64_t n_rows = ggml_nrows(t);
            const size_t in_row = ggml_row_size(t->type, n_in), out_row = ggml_row_size(p.type, n_in);
            const int64_t chunk = std::max<int64_t>(1, (int64_t) (kChunkBytes / (n_in * sizeof(float) + in_row + out_row)));
            const ggml_type_traits * tr = ggml_get_type_traits(t->type);
            const std::vector<lora_pair> * pairs = p.merge ? &by_base[name] : nullptr;
            if (p.type != GGML_TYPE_F32) ggml_quantize_init(p.type);
            for (int64_t r0 = 0; r0 < n_rows; r0 += chunk) {
                const int64_t nr = std::min(chunk, n_rows - r0);
                raw.resize((size_t) nr * in_row);
                rows.resize((size_t) (nr * n_in));
                if (!read_at(p.offset + (size_t) r0 * in_row, raw.data(), raw.size())) {
                    return fail(ALIGN_ERR_IO, base + ": short read in " + name);
                }
                if (t->type == GGML_TYPE_F32) {
                    std::memcpy(rows.data(), raw.data(), raw.size());
                } else {
                    tr->to_float(raw.data(), rows.data(), nr * n_in);
                }
                if (pairs) {
                    for (const lora_pair & lp : *pairs) {
                        for (int64_t o = 0; o < nr; o++) {
                            float * wrow = rows.data() + o * n_in;
                            const float * brow = lp.b.data() + (r0 + o) * lp.rank;
                            for (int64_t k = 0; k < lp.rank; k++) {
                                const float c = lp.scale * brow[k];
                                if (c == 0) continue;
                                const float * arow = lp.a.data() + k * n_in;
                                for (int64_t x = 0; x < n_in; x++) wrow[x] += c * arow[x];
                            }
                        }
                    }
                    for (int64_t x = 0; x < nr * n_in; x++) {
                        if (!std::isfinite(rows[(size_t) x])) {
                            return fail(ALIGN_ERR_UNSUPPORTED, name + ": merged weight is not finite (adapter " + origin[name] + ")");
                        }
                    }
                }
                if (p.type == GGML_TYPE_F32) {
                    if (!put(rows.data(), rows.size() * sizeof(float))) return fail(ALIGN_ERR_IO, tmp + ": " + std::strerror(errno));
                } else {
                    packed.resize((size_t) nr * out_row);
                    const size_t nb = ggml_quantize_chunk(p.type, rows.data(), packed.data(), 0, nr, n_in, nullptr);
                    if (nb != packed.size()) return fail(ALIGN_ERR_INTERNAL, "merge: quantising " + name + " gave " + std::to_string(nb) + " bytes");
                    if (!put(packed.data(), nb)) return fail(ALIGN_ERR_IO, tmp + ": " + std::strerror(errno));
                }
            }
            if (p.merge) res.n_merged++;
            if (p.type != t->type) res.n_converted++;
        }
        static const uint8_t zeros[256] = {0};
        const size_t pad = GGML_PAD(written, al) - written;
        if (pad && !put(zeros, pad)) return fail(ALIGN_ERR_IO, tmp + ": " + std::strerror(errno));
        res.n_tensors++;
        if (prm.progress != nullptr && !prm.progress((int32_t) (i + 1), (int32_t) plans.size(), prm.user_data)) {
            return fail(ALIGN_ERR_CANCELLED, "merge cancelled");
        }
    }
    if (align_status st = dst.commit(); st != ALIGN_OK) return st;
    res.bytes_written = (int64_t) (hdr.size() + written);
    if (result) *result = res;
    return ok();
    ALIGN_CATCH
}
