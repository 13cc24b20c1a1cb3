// model.cpp: model and adapter loading, tokenizer and chat template access.
#include "internal.h"

#include "llama.h"

#include <algorithm>
#include <cstring>
#include <thread>

using align::fail;
using align::ok;

namespace {

int32_t default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 4 : (int32_t) n;
}

void copy_str(char * dst, size_t cap, const std::string & s) {
    size_t n = std::min(cap - 1, s.size());
    std::memcpy(dst, s.data(), n);
    dst[n] = '\0';
}

}  // namespace

extern "C" {

align_model_params align_model_default_params(void) {
    align_model_params p;
    p.n_threads = 0;
    p.use_mmap = true;
    p.n_gpu_layers = 0;
    p.vocab_only = false;
    return p;
}

align_status align_model_load(const char * path, const align_model_params * params, align_model ** out) {
    if (path == nullptr || out == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_model_load: path and out must not be NULL");
    }
    *out = nullptr;
    ALIGN_TRY
    align_status st = align::check_gguf_file(path);
    if (st != ALIGN_OK) {
        return st;
    }
    align_model_params p = params ? *params : align_model_default_params();
    llama_model_params mp = llama_model_default_params();
    mp.use_mmap = p.use_mmap;
    mp.n_gpu_layers = p.n_gpu_layers;
    mp.vocab_only = p.vocab_only;
    align::log_capture_begin();
    llama_model * m = llama_model_load_from_file(path, mp);
    std::string cause = align::log_capture_text();
    if (m == nullptr) {
        align_status code = ALIGN_ERR_FORMAT;
        if (cause.find("unknown model architecture") != std::string::npos ||
            cause.find("not supported") != std::string::npos) {
            code = ALIGN_ERR_UNSUPPORTED;
        }
        // strip llama.cpp's "llama_model_load: error loading model: " prefix
        const char * tag = "error loading model: ";
        size_t at = cause.find(tag);
        if (at != std::string::npos) {
            cause = cause.substr(at + std::strlen(tag));
        }
        if (cause.empty()) {
            cause = "llama.cpp could not load the model";
        }
        return fail(code, std::string(path) + ": " + cause);
    }
    auto * am = new align_model;
    am->model = m;
    am->n_threads = p.n_threads > 0 ? p.n_threads : default_threads();
    am->path = path;
    am->vocab_only = p.vocab_only;
    *out = am;
    return ok();
    ALIGN_CATCH
}

void align_model_free(align_model * model) {
    if (model == nullptr) return;
    if (model->model) llama_model_free(model->model);
    delete model;
}

align_status align_model_get_info(const align_model * model, align_model_info * out) {
    if (model == nullptr || out == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_model_get_info: NULL argument");
    }
    ALIGN_TRY
    std::memset(out, 0, sizeof(*out));
    const llama_model * m = model->model;
    const llama_vocab * v = llama_model_get_vocab(m);
    char buf[256];
    if (llama_model_meta_val_str(m, "general.architecture", buf, sizeof(buf)) >= 0) {
        copy_str(out->arch, sizeof(out->arch), buf);
    }
    if (llama_model_desc(m, buf, sizeof(buf)) >= 0) {
        copy_str(out->desc, sizeof(out->desc), buf);
    }
    out->n_vocab = llama_vocab_n_tokens(v);
    out->n_ctx_train = llama_model_n_ctx_train(m);
    out->n_embd = llama_model_n_embd(m);
    out->n_layer = llama_model_n_layer(m);
    out->n_params = llama_model_n_params(m);
    out->size_bytes = llama_model_size(m);
    out->token_bos = llama_vocab_bos(v);
    out->token_eos = llama_vocab_eos(v);
    out->add_bos = llama_vocab_get_add_bos(v);
    out->has_chat_template = llama_model_chat_template(m, nullptr) != nullptr;
    return ok();
    ALIGN_CATCH
}

align_status align_model_tokenize(const align_model * model, const char * text, int32_t len, bool add_special,
                                  bool parse_special, int32_t * tokens, int32_t n_max, int32_t * n_out) {
    if (model == nullptr || n_out == nullptr || (text == nullptr && len > 0) || len < 0 || n_max < 0 ||
        (tokens == nullptr && n_max > 0)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_model_tokenize: bad argument");
    }
    ALIGN_TRY
    const llama_vocab * v = llama_model_get_vocab(model->model);
    int32_t n = llama_tokenize(v, text ? text : "", len, tokens, n_max, add_special, parse_special);
    if (n == INT32_MIN) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_model_tokenize: text too long");
    }
    if (n < 0) {
        *n_out = -n;
        return fail(ALIGN_ERR_BUFFER_TOO_SMALL, "token buffer too small");
    }
    *n_out = n;
    return ok();
    ALIGN_CATCH
}

align_status align_model_detokenize(const align_model * model, const int32_t * tokens, int32_t n_tokens,
                                    bool render_special, char * buf, int32_t buf_len, int32_t * n_out) {
    if (model == nullptr || n_out == nullptr || n_tokens < 0 || (tokens == nullptr && n_tokens > 0) || buf_len < 0 ||
        (buf == nullptr && buf_len > 0)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_model_detokenize: bad argument");
    }
    ALIGN_TRY
    const llama_vocab * v = llama_model_get_vocab(model->model);
    const int32_t nv = llama_vocab_n_tokens(v);
    for (int32_t i = 0; i < n_tokens; i++) {
        if (tokens[i] < 0 || tokens[i] >= nv) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "token " + std::to_string(tokens[i]) + " out of range [0, " +
                                                        std::to_string(nv) + ")");
        }
    }
    int32_t n = llama_detokenize(v, tokens, n_tokens, buf, buf_len, false, render_special);
    if (n < 0) {
        *n_out = -n;
        return fail(ALIGN_ERR_BUFFER_TOO_SMALL, "text buffer too small");
    }
    *n_out = n;
    return ok();
    ALIGN_CATCH
}

bool align_model_token_is_eog(const align_model * model, int32_t token) {
    if (model == nullptr) return false;
    const llama_vocab * v = llama_model_get_vocab(model->model);
    if (token < 0 || token >= llama_vocab_n_tokens(v)) return false;
    return llama_vocab_is_eog(v, token);
}

align_status align_model_chat_apply(const align_model * model, const char * tmpl, const char * const * roles,
                                    const char * const * contents, int32_t n_msg, bool add_assistant, char * buf,
                                    int32_t buf_len, int32_t * n_out) {
    if (model == nullptr || n_out == nullptr || n_msg < 0 || (n_msg > 0 && (roles == nullptr || contents == nullptr)) ||
        buf_len < 0 || (buf == nullptr && buf_len > 0)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_model_chat_apply: bad argument");
    }
    ALIGN_TRY
    const char * t = tmpl ? tmpl : llama_model_chat_template(model->model, nullptr);
    if (t == nullptr) {
        return fail(ALIGN_ERR_UNSUPPORTED, "model has no chat template");
    }
    std::vector<llama_chat_message> msgs((size_t) n_msg);
    for (int32_t i = 0; i < n_msg; i++) {
        if (roles[i] == nullptr || contents[i] == nullptr) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "chat message " + std::to_string(i) + " has a NULL role or content");
        }
        msgs[(size_t) i] = {roles[i], contents[i]};
    }
    int32_t n = llama_chat_apply_template(t, msgs.data(), msgs.size(), add_assistant, buf, buf_len);
    if (n < 0) {
        return fail(ALIGN_ERR_UNSUPPORTED, "chat template not supported by llama.cpp (use raw prompts)");
    }
    *n_out = n;
    if (n > buf_len) {
        return fail(ALIGN_ERR_BUFFER_TOO_SMALL, "text buffer too small");
    }
    return ok();
    ALIGN_CATCH
}

align_status align_model_meta(const align_model * model, const char * key, char * buf, int32_t buf_len,
                              int32_t * n_out) {
    if (model == nullptr || key == nullptr || n_out == nullptr || buf_len < 0 || (buf == nullptr && buf_len > 0)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_model_meta: bad argument");
    }
    ALIGN_TRY
    char tmp[1];
    int32_t n = llama_model_meta_val_str(model->model, key, buf_len > 0 ? buf : tmp, buf_len > 0 ? (size_t) buf_len : 1);
    if (n < 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, std::string("no metadata key ") + key);
    }
    *n_out = n;
    if (n + 1 > buf_len) {
        return fail(ALIGN_ERR_BUFFER_TOO_SMALL, "text buffer too small");
    }
    return ok();
    ALIGN_CATCH
}

align_status align_lora_load(align_model * model, const char * path, align_lora ** out) {
    if (model == nullptr || path == nullptr || out == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_lora_load: NULL argument");
    }
    *out = nullptr;
    ALIGN_TRY
    if (model->vocab_only) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapters need a model loaded with weights (not vocab_only)");
    }
    align_status st = align::check_gguf_file(path);
    if (st != ALIGN_OK) {
        return st;
    }
    align::log_capture_begin();
    llama_adapter_lora * a = llama_adapter_lora_init(model->model, path);
    std::string cause = align::log_capture_text();
    if (a == nullptr) {
        const char * tag = "failed to apply lora adapter: ";
        size_t at = cause.find(tag);
        if (at != std::string::npos) {
            cause = cause.substr(at + std::strlen(tag));
        }
        if (cause.empty()) cause = "llama.cpp could not load the adapter";
        return fail(ALIGN_ERR_UNSUPPORTED, std::string(path) + ": " + cause);
    }
    auto * l = new align_lora;
    l->adapter = a;
    l->owner = model;
    *out = l;
    return ok();
    ALIGN_CATCH
}

void align_lora_free(align_lora * lora) {
    if (lora == nullptr) return;
    if (lora->adapter) llama_adapter_lora_free(lora->adapter);
    delete lora;
}

}  // extern "C"
