// train_io.cpp: adapter sets to and from files — reading a LoRA or heads
// GGUF's description, loading one into a set (SFT → DPO's reference and
// starting point, a trained reward model inside a PPO run), and writing a
// set's heads in a GGUF of our own (llama.cpp's adapter loader refuses
// tensors that are not .lora_a/.lora_b, so heads live in their own file).
#include "train_internal.h"

#include "gguf.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unistd.h>

using align::fail;
using align::ok;
using namespace align::train;

namespace {

using gguf_ptr = std::unique_ptr<gguf_context, void (*)(gguf_context *)>;

// The ALIGN_LORA_* bit of a base tensor name ("blk.3.attn_q.weight"), 0 if none.
uint32_t target_bit(const std::string & base) {
    for (const lora_target_t & t : k_lora_targets) {
        const size_t n = std::strlen(t.tensor);
        if (base.size() > n + 1 && base.compare(base.size() - n, n, t.tensor) == 0 && base[base.size() - n - 1] == '.') {
            return t.bit;
        }
    }
    return 0;
}

bool ends_with(const std::string & s, const char * suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Opens path's GGUF metadata (no tensor data) or fails with the file's name.
align_status open_meta(const char * path, gguf_ptr & out) {
    if (path == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter file: NULL path");
    FILE * f = std::fopen(path, "rb");
    if (f == nullptr) return fail(ALIGN_ERR_IO, std::string(path) + ": " + std::strerror(errno));
    std::fclose(f);
    gguf_init_params ip = {true, nullptr};
    gguf_context * g = gguf_init_from_file(path, ip);
    if (g == nullptr) return fail(ALIGN_ERR_FORMAT, std::string(path) + ": not a GGUF file");
    out.reset(g);
    return ALIGN_OK;
}

// The description of an open adapter GGUF.
align_status describe(const char * path, const gguf_context * g, align_adapter_file_info * info) {
    *info = align_adapter_file_info{};
    const std::string type = align::gguf_str(g, "general.type");
    const std::string arch = align::gguf_str(g, "general.architecture");
    std::snprintf(info->arch, sizeof info->arch, "%s", arch.c_str());
    const int64_t n = gguf_get_n_tensors(g);
    info->n_tensors = (int32_t) n;
    if (type == "adapter" && align::gguf_str(g, "adapter.type") == "lora") {
        std::snprintf(info->kind, sizeof info->kind, "lora");
        const int64_t ka = gguf_find_key(g, "adapter.lora.alpha");
        if (ka < 0 || gguf_get_kv_type(g, ka) != GGUF_TYPE_FLOAT32) {
            return fail(ALIGN_ERR_FORMAT, std::string(path) + ": LoRA adapter without adapter.lora.alpha");
        }
        info->alpha = gguf_get_val_f32(g, ka);
        for (int64_t i = 0; i < n; i++) {
            const std::string name = gguf_get_tensor_name(g, i);
            if (!ends_with(name, ".lora_a") && !ends_with(name, ".lora_b")) {
                return fail(ALIGN_ERR_FORMAT, std::string(path) + ": tensor " + name + " is not .lora_a or .lora_b");
            }
            const std::string base = name.substr(0, name.size() - 7);
            const uint32_t bit = target_bit(base);
            if (bit == 0) {
                return fail(ALIGN_ERR_UNSUPPORTED, std::string(path) + ": tensor " + name +
                                                       " adapts a weight align does not train (q, k, v, o, gate, up, down)");
            }
            info->targets |= bit;
        }
        // the rank is lora_b's ne[0] (llama.cpp's rule); all tensors share it
        // in files align writes, and a set has one rank
        return ALIGN_OK;
    }
    if (type == "align.heads") {
        std::snprintf(info->kind, sizeof info->kind, "heads");
        const int64_t kn = gguf_find_key(g, "align.heads.names");
        const int64_t kd = gguf_find_key(g, "align.heads.dims");
        if (kn < 0 || kd < 0 || gguf_get_kv_type(g, kn) != GGUF_TYPE_ARRAY || gguf_get_kv_type(g, kd) != GGUF_TYPE_ARRAY ||
            gguf_get_arr_type(g, kn) != GGUF_TYPE_STRING || gguf_get_arr_type(g, kd) != GGUF_TYPE_INT32 ||
            gguf_get_arr_n(g, kn) != gguf_get_arr_n(g, kd)) {
            return fail(ALIGN_ERR_FORMAT, std::string(path) + ": heads file without matching align.heads.names/dims");
        }
        const size_t nh = gguf_get_arr_n(g, kn);
        if (nh == 0 || nh > 16) return fail(ALIGN_ERR_FORMAT, std::string(path) + ": heads file must name 1 to 16 heads");
        info->n_heads = (int32_t) nh;
        const int32_t * dims = static_cast<const int32_t *>(gguf_get_arr_data(g, kd));
        for (size_t h = 0; h < nh; h++) {
            std::snprintf(info->head_names[h], sizeof info->head_names[h], "%s", gguf_get_arr_str(g, kn, h));
            info->head_dims[h] = dims[h];
            if (dims[h] <= 0 || dims[h] > 4096) return fail(ALIGN_ERR_FORMAT, std::string(path) + ": bad head size");
            info->n_head_out += dims[h];
        }
        return ALIGN_OK;
    }
    return fail(ALIGN_ERR_FORMAT, std::string(path) + ": not a LoRA adapter or heads file (general.type \"" + type + "\")");
}

align_status get_set_rw(align_trainer * tr, int32_t set, adapter_set ** out) {
    if (tr == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "NULL trainer");
    if (set < 0 || (size_t) set >= tr->sets.size()) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "no adapter set " + std::to_string(set));
    }
    *out = tr->sets[(size_t) set].get();
    return ALIGN_OK;
}

}  // namespace

extern "C" align_status align_adapter_file_describe(const char * path, align_adapter_file_info * out) {
    if (out == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_adapter_file_describe: NULL argument");
    ALIGN_TRY
    gguf_ptr g(nullptr, gguf_free);
    align_status st = open_meta(path, g);
    if (st != ALIGN_OK) return st;
    st = describe(path, g.get(), out);
    if (st != ALIGN_OK) return st;
    if (std::strcmp(out->kind, "lora") == 0) {
        for (int64_t i = 0; i < gguf_get_n_tensors(g.get()); i++) {
            const std::string name = gguf_get_tensor_name(g.get(), i);
            if (!ends_with(name, ".lora_b")) continue;
            // read lora_b's shape through a metadata-only ggml context
            ggml_context * meta = nullptr;
            gguf_init_params ip = {true, &meta};
            gguf_ptr g2(gguf_init_from_file(path, ip), gguf_free);
            std::unique_ptr<ggml_context, void (*)(ggml_context *)> mctx(meta, ggml_free);
            if (!g2 || !meta) return fail(ALIGN_ERR_FORMAT, std::string(path) + ": cannot read tensor shapes");
            ggml_tensor * b = ggml_get_tensor(meta, name.c_str());
            out->rank = b ? (int32_t) b->ne[0] : 0;
            break;
        }
    }
    return ok();
    ALIGN_CATCH
}

extern "C" align_status align_trainer_load_set(align_trainer * tr, int32_t set, const char * path) {
    adapter_set * s = nullptr;
    align_status st = get_set_rw(tr, set, &s);
    if (st != ALIGN_OK) return st;
    ALIGN_TRY
    gguf_ptr meta_g(nullptr, gguf_free);
    st = open_meta(path, meta_g);
    if (st != ALIGN_OK) return st;
    align_adapter_file_info info;
    st = describe(path, meta_g.get(), &info);
    if (st != ALIGN_OK) return st;
    meta_g.reset();
    const std::string where = std::string(path) + ": ";
    const std::string set_name = "adapter set \"" + s->name + "\"";
    const bool lora = std::strcmp(info.kind, "lora") == 0;
    if (!info.arch[0] || tr->arch != info.arch) {
        return fail(ALIGN_ERR_UNSUPPORTED, where + "written for architecture \"" + info.arch + "\", the model is \"" + tr->arch + "\"");
    }
    if (lora) {
        if (info.targets != s->targets) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, where + "adapts other projections than " + set_name + " (targets differ)");
        }
        if (std::fabs(info.alpha - s->alpha) > 1e-6f * std::fabs(s->alpha)) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, where + "alpha " + std::to_string(info.alpha) + " differs from " + set_name +
                                                        "'s " + std::to_string(s->alpha));
        }
    } else {
        if ((int32_t) s->heads.size() != info.n_heads) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, where + "has " + std::to_string(info.n_heads) + " heads, " + set_name + " " +
                                                        std::to_string(s->heads.size()));
        }
        for (size_t h = 0; h < s->heads.size(); h++) {
            if (s->heads[h].name != info.head_names[h] || s->heads[h].n_out != info.head_dims[h]) {
                return fail(ALIGN_ERR_INVALID_ARGUMENT, where + "head " + std::to_string(h) + " is \"" + info.head_names[h] +
                                                            "\" (" + std::to_string(info.head_dims[h]) + "), " + set_name +
                                                            " has \"" + s->heads[h].name + "\" (" +
                                                            std::to_string(s->heads[h].n_out) + ")");
            }
        }
    }
    // read the data: a ggml context holding every tensor of the file
    ggml_context * data = nullptr;
    gguf_init_params ip = {false, &data};
    gguf_ptr g(gguf_init_from_file(path, ip), gguf_free);
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> dctx(data, ggml_free);
    if (!g || !data) return fail(ALIGN_ERR_FORMAT, where + "cannot read tensor data");
    // the rows this file fills, checked before anything is written
    std::vector<std::pair<const param_t *, ggml_tensor *>> todo;
    for (const param_t & p : s->params) {
        const bool want = lora ? (p.kind == ALIGN_PARAM_LORA_A || p.kind == ALIGN_PARAM_LORA_B)
                               : (p.kind == ALIGN_PARAM_HEAD_WEIGHT || p.kind == ALIGN_PARAM_HEAD_BIAS);
        if (!want) continue;
        ggml_tensor * src = ggml_get_tensor(data, p.name.c_str());
        if (src == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, where + "has no tensor " + p.name + " (needed by " + set_name + ")");
        if (src->type != GGML_TYPE_F32 && src->type != GGML_TYPE_F16 && src->type != GGML_TYPE_BF16) {
            return fail(ALIGN_ERR_UNSUPPORTED, where + p.name + " has type " + ggml_type_name(src->type) + " (want f32, f16 or bf16)");
        }
        if (src->ne[0] != p.t->ne[0] || src->ne[1] != p.t->ne[1] || src->ne[2] != 1 || src->ne[3] != 1) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT,
                        where + p.name + " has shape [" + std::to_string(src->ne[0]) + ", " + std::to_string(src->ne[1]) + "], " +
                            set_name + " needs [" + std::to_string(p.t->ne[0]) + ", " + std::to_string(p.t->ne[1]) +
                            "] (rank " + std::to_string(s->rank) + ")");
        }
        todo.emplace_back(&p, src);
    }
    if ((int64_t) todo.size() != gguf_get_n_tensors(g.get())) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, where + "has " + std::to_string(gguf_get_n_tensors(g.get())) + " tensors, " + set_name +
                                                    " takes " + std::to_string(todo.size()) + " of them (other layers or targets?)");
    }
    std::vector<float> buf, zeros;
    for (const auto & [p, src] : todo) {
        const int64_t n = ggml_nelements(src);
        buf.resize((size_t) n);
        if (src->type == GGML_TYPE_F32) {
            std::memcpy(buf.data(), src->data, (size_t) n * sizeof(float));
        } else {
            ggml_get_type_traits(src->type)->to_float(src->data, buf.data(), n);
        }
        for (float x : buf) {
            if (!std::isfinite(x)) return fail(ALIGN_ERR_FORMAT, where + p->name + " holds a non-finite value");
        }
        zeros.assign((size_t) n, 0.0f);
        ggml_backend_tensor_set(p->t, buf.data(), 0, ggml_nbytes(p->t));
        ggml_backend_tensor_set(p->m, zeros.data(), 0, ggml_nbytes(p->m));
        ggml_backend_tensor_set(p->v, zeros.data(), 0, ggml_nbytes(p->v));
    }
    return ok();
    ALIGN_CATCH
}

extern "C" align_status align_trainer_export_heads(align_trainer * tr, int32_t set, const char * path) {
    adapter_set * s = nullptr;
    align_status st = get_set_rw(tr, set, &s);
    if (st != ALIGN_OK) return st;
    if (path == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_trainer_export_heads: NULL path");
    if (s->heads.empty()) return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter set \"" + s->name + "\" has no heads to export");
    ALIGN_TRY
    gguf_ptr g(gguf_init_empty(), gguf_free);
    gguf_set_val_str(g.get(), "general.type", "align.heads");
    gguf_set_val_str(g.get(), "general.architecture", tr->arch.c_str());
    gguf_set_val_u32(g.get(), "align.heads.n_embd", (uint32_t) tr->n_embd);
    std::vector<const char *> names;
    std::vector<int32_t> dims;
    for (const head_t & h : s->heads) {
        names.push_back(h.name.c_str());
        dims.push_back(h.n_out);
    }
    gguf_set_arr_str(g.get(), "align.heads.names", names.data(), names.size());
    gguf_set_arr_data(g.get(), "align.heads.dims", GGUF_TYPE_INT32, dims.data(), dims.size());
    std::vector<float> w((size_t) ggml_nelements(s->head_w)), b((size_t) ggml_nelements(s->head_b));
    ggml_backend_tensor_get(s->head_w, w.data(), 0, ggml_nbytes(s->head_w));
    ggml_backend_tensor_get(s->head_b, b.data(), 0, ggml_nbytes(s->head_b));
    ggml_init_params cp = {ggml_tensor_overhead() * 4, nullptr, true};
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> meta(ggml_init(cp), ggml_free);
    ggml_tensor * tw = ggml_new_tensor_2d(meta.get(), GGML_TYPE_F32, tr->n_embd, s->n_head_out);  // (n_embd, n_head_out)
    ggml_set_name(tw, "heads.weight");
    ggml_tensor * tb = ggml_new_tensor_1d(meta.get(), GGML_TYPE_F32, s->n_head_out);
    ggml_set_name(tb, "heads.bias");
    tw->data = w.data();
    tb->data = b.data();
    gguf_add_tensor(g.get(), tw);
    gguf_add_tensor(g.get(), tb);
    align::atomic_file out;
    out.reserve(path);
    if (!gguf_write_to_file(g.get(), out.tmp().c_str(), false)) return fail(ALIGN_ERR_IO, std::string(path) + ": cannot write");
    if (align_status st = out.commit(); st != ALIGN_OK) return st;
    return ok();
    ALIGN_CATCH
}
