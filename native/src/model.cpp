// model.cpp: model and adapter loading, tokenizer and chat template access.
#include "internal.h"

#include "ggml-backend.h"
#include "gguf.h"
#include "llama.h"
#include "llama-model.h"  // llama.cpp internals of the pinned copy: where the weights sit

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <unordered_map>

using align::fail;
using align::ok;

namespace {

void copy_str(char * dst, size_t cap, const std::string & s) {
    size_t n = std::min(cap - 1, s.size());
    std::memcpy(dst, s.data(), n);
    dst[n] = '\0';
}

// Whether a CPU trainer can read every weight of m that sits in CPU memory
// (align::cpu_trainer_reads).
bool trainer_reads_weights(const llama_model * m) {
    for (const auto & [name, t] : m->tensors_by_name) {
        if (t == nullptr || t->buffer == nullptr) continue;
        ggml_backend_buffer_type_t bt = ggml_backend_buffer_get_type(t->buffer);
        ggml_backend_dev_t dev = ggml_backend_buft_get_device(bt);
        if (dev != nullptr && ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU) continue;
        if (!align::cpu_trainer_reads(ggml_backend_buft_name(bt), ggml_backend_buffer_is_host(t->buffer))) return false;
    }
    return true;
}

// general.type of a GGUF file ("model", "adapter", ...; "" when absent or
// unreadable). Reads the metadata only.
std::string gguf_general_type(const char * path) {
    gguf_init_params gp = {/*no_alloc =*/true, /*ctx =*/nullptr};
    gguf_context * g = gguf_init_from_file(path, gp);
    if (g == nullptr) return "";
    const std::string type = align::gguf_str(g, "general.type");
    gguf_free(g);
    return type;
}

// Bytes of the UTF-8 character that starts with c (1 for a stray byte).
size_t utf8_len(unsigned char c) {
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

// The vocabulary's unknown token (tokenizer.ggml.unknown_token_id, else a
// token marked unknown), LLAMA_TOKEN_NULL when it has none.
llama_token unknown_token(const llama_model * m) {
    const llama_vocab * v = llama_model_get_vocab(m);
    const int32_t n = llama_vocab_n_tokens(v);
    char buf[32];
    if (llama_model_meta_val_str(m, "tokenizer.ggml.unknown_token_id", buf, sizeof(buf)) > 0) {
        char * end = nullptr;
        const long id = std::strtol(buf, &end, 10);
        if (end != buf && *end == '\0' && id >= 0 && id < n) return (llama_token) id;
    }
    for (llama_token t = 0; t < n; t++) {
        if (llama_vocab_get_attr(v, t) & LLAMA_TOKEN_ATTR_UNKNOWN) return t;
    }
    return LLAMA_TOKEN_NULL;
}

// llama_tokenize into a vector; throws what llama.cpp throws.
std::vector<llama_token> tokenize_vec(const llama_vocab * v, const char * text, int32_t len, bool add_special,
                                      bool parse_special) {
    std::vector<llama_token> out((size_t) len + 8);
    int32_t n = llama_tokenize(v, text, len, out.data(), (int32_t) out.size(), add_special, parse_special);
    if (n == INT32_MIN) throw std::length_error("text too long");
    if (n < 0) {
        out.resize((size_t) -n);
        n = llama_tokenize(v, text, len, out.data(), (int32_t) out.size(), add_special, parse_special);
    }
    out.resize((size_t) std::max(n, 0));
    return out;
}

// The slow path of align_model_tokenize, taken when llama.cpp's tokenizer
// throws because a character has no token and the vocabulary no byte
// fallback (unordered_map::at in byte_to_token). Each such character becomes
// the unknown token; the text between them is tokenized as llama.cpp
// tokenizes text after a control token. Whether a character can be spelled
// does not depend on its neighbours (SPM splits any symbol it cannot find
// down to single characters), so each is tried alone.
align_status tokenize_unknown(const llama_model * m, const char * text, int32_t len, bool add_special,
                              bool parse_special, std::vector<llama_token> & out, align_tokenize_stats & stats) {
    const llama_vocab * v = llama_model_get_vocab(m);
    std::unordered_map<std::string, bool> known;
    auto spellable = [&](const std::string & ch) {
        auto it = known.find(ch);
        if (it != known.end()) return it->second;
        bool ok = true;
        try {
            tokenize_vec(v, ch.data(), (int32_t) ch.size(), false, false);
        } catch (const std::out_of_range &) {
            ok = false;
        }
        known.emplace(ch, ok);
        return ok;
    };
    const llama_token unk = unknown_token(m);
    out.clear();
    if (add_special && llama_vocab_get_add_bos(v) && llama_vocab_bos(v) != LLAMA_TOKEN_NULL) {
        out.push_back(llama_vocab_bos(v));
    }
    auto flush = [&](size_t from, size_t to) {
        if (to <= from) return;
        auto part = tokenize_vec(v, text + from, (int32_t) (to - from), false, parse_special);
        out.insert(out.end(), part.begin(), part.end());
    };
    size_t seg = 0;
    for (size_t i = 0; i < (size_t) len;) {
        const size_t cl = std::min(utf8_len((unsigned char) text[i]), (size_t) len - i);
        const std::string ch(text + i, cl);
        if (!spellable(ch)) {
            if (stats.n_unknown == 0) {
                stats.first_offset = (int32_t) i;
                copy_str(stats.first_char, sizeof(stats.first_char), ch);
            }
            stats.n_unknown++;
            if (unk == LLAMA_TOKEN_NULL) {
                return fail(ALIGN_ERR_UNSUPPORTED, "character \"" + ch + "\" at byte " + std::to_string(i) +
                                                       " cannot be spelled: the vocabulary has no token for it, no "
                                                       "byte tokens and no unknown token");
            }
            flush(seg, i);
            out.push_back(unk);
            seg = i + cl;
        }
        i += cl;
    }
    flush(seg, (size_t) len);
    if (add_special && llama_vocab_get_add_eos(v) && llama_vocab_eos(v) != LLAMA_TOKEN_NULL) {
        out.push_back(llama_vocab_eos(v));
    }
    return ALIGN_OK;
}

}  // namespace

extern "C" {

align_model_params align_model_default_params(void) {
    align_model_params p;
    p.n_threads = 0;
    p.use_mmap = true;
    p.n_gpu_layers = 0;
    p.vocab_only = false;
    p.no_extra_bufts = false;
    p.trainable = false;
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
    if (gguf_general_type(path) == "adapter") {
        return fail(ALIGN_ERR_UNSUPPORTED, std::string(path) + " is a LoRA adapter, not a model");
    }
    align_model_params p = params ? *params : align_model_default_params();
    llama_model_params mp = llama_model_default_params();
    mp.use_mmap = p.use_mmap;
    mp.n_gpu_layers = p.n_gpu_layers;
    mp.vocab_only = p.vocab_only;
    const char * no_extra = std::getenv("ALIGN_NO_EXTRA_BUFTS");
    if (p.no_extra_bufts || (no_extra != nullptr && std::strcmp(no_extra, "1") == 0)) mp.use_extra_bufts = false;
    // llama.cpp has one switch for all extra buffer types. A trainable
    // model loads with them; where one the trainer cannot read took a
    // weight (AMX: Q4_K/Q8_0 matrices 2048 wide or more) it loads again
    // without any, CPU_REPACK included (narrower models keep it)
    const bool may_reload = p.trainable && mp.use_extra_bufts && !mp.vocab_only && !align::cpu_foreign_extra_buft().empty();
    align::log_capture_begin();
    llama_model * m = llama_model_load_from_file(path, mp);
    std::string cause = align::log_capture_text();
    if (m != nullptr && may_reload && !trainer_reads_weights(m)) {
        llama_model_free(m);
        mp.use_extra_bufts = false;
        align::log_capture_begin();
        m = llama_model_load_from_file(path, mp);
        cause = align::log_capture_text();
    }
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
    am->n_threads = align::threads_or_default(p.n_threads);
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
    out->token_eot = llama_vocab_eot(v);
    return ok();
    ALIGN_CATCH
}

align_status align_model_tokenize(const align_model * model, const char * text, int32_t len, bool add_special,
                                  bool parse_special, int32_t * tokens, int32_t n_max, int32_t * n_out,
                                  align_tokenize_stats * stats) {
    if (stats) {
        std::memset(stats, 0, sizeof(*stats));
        stats->first_offset = -1;
    }
    if (model == nullptr || n_out == nullptr || (text == nullptr && len > 0) || len < 0 || n_max < 0 ||
        (tokens == nullptr && n_max > 0)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_model_tokenize: bad argument");
    }
    ALIGN_TRY
    const llama_vocab * v = llama_model_get_vocab(model->model);
    int32_t n = 0;
    try {
        n = llama_tokenize(v, text ? text : "", len, tokens, n_max, add_special, parse_special);
    } catch (const std::out_of_range &) {
        // a character the vocabulary cannot spell (see tokenize_unknown)
        std::vector<llama_token> all;
        align_tokenize_stats st;
        std::memset(&st, 0, sizeof(st));
        st.first_offset = -1;
        align_status rc = tokenize_unknown(model->model, text, len, add_special, parse_special, all, st);
        if (stats) *stats = st;
        if (rc != ALIGN_OK) return rc;
        *n_out = (int32_t) all.size();
        if ((int32_t) all.size() > n_max) {
            return fail(ALIGN_ERR_BUFFER_TOO_SMALL, "token buffer too small");
        }
        std::copy(all.begin(), all.end(), tokens);
        return ok();
    }
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

int32_t align_model_token_unknown(const align_model * model) {
    if (model == nullptr) return -1;
    try {
        const llama_token t = unknown_token(model->model);
        return t == LLAMA_TOKEN_NULL ? -1 : t;
    } catch (...) {
        return -1;
    }
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
    const std::string type = gguf_general_type(path);
    if (type != "adapter") {
        return fail(ALIGN_ERR_UNSUPPORTED, std::string(path) + (type == "model" || type.empty()
                                                                    ? " is a model, not a LoRA adapter"
                                                                    : " is not a LoRA adapter (general.type is \"" + type + "\")"));
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
