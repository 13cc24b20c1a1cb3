// session.cpp: inference contexts: generation with a sampler chain, stop
// strings and cancellation; log-probabilities of token sequences.
#include "internal.h"

#include "llama.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>

using align::fail;
using align::ok;

struct align_session {
    align_model *     model = nullptr;
    llama_context *   ctx = nullptr;
    int32_t           n_ctx = 0;
    int32_t           n_batch = 0;
    int32_t           n_past = 0;     // tokens in the cache (align_session_decode)
    std::atomic<bool> cancel{false}; // a pending cancel request (sticky, see align.h)
};

llama_sampler * align::sampler_chain(const align_model * model, const align_sampler_params & p, uint32_t seed,
                                     llama_sampler * grammar) {
    const llama_vocab * vocab = llama_model_get_vocab(model->model);
    llama_sampler * chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    const int32_t unk = align_model_token_unknown(model);
    if (unk >= 0 && !llama_vocab_is_eog(vocab, unk)) {
        const llama_logit_bias ban = {unk, -INFINITY};
        llama_sampler_chain_add(chain, llama_sampler_init_logit_bias(llama_vocab_n_tokens(vocab), 1, &ban));
    }
    if (grammar != nullptr) llama_sampler_chain_add(chain, grammar);
    if (p.temperature <= 0) {
        llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    } else {
        if (p.top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(p.top_k));
        if (p.top_p < 1) llama_sampler_chain_add(chain, llama_sampler_init_top_p(p.top_p, 1));
        if (p.min_p > 0) llama_sampler_chain_add(chain, llama_sampler_init_min_p(p.min_p, 1));
        llama_sampler_chain_add(chain, llama_sampler_init_temp(p.temperature));
        llama_sampler_chain_add(chain, llama_sampler_init_dist(seed));
    }
    return chain;
}

namespace {

bool abort_cb(void * data) {
    auto * s = static_cast<align_session *>(data);
    return s->cancel.load(std::memory_order_relaxed);
}

// Ends a call that observed a cancel request: the request is consumed, so
// the next call runs (align.h, align_session_cancel).
align_status cancelled(align_session * s) {
    s->cancel.store(false);
    return fail(ALIGN_ERR_CANCELLED, "cancelled");
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

align_status check_tokens(const align_session * s, const int32_t * tokens, int32_t n) {
    const int32_t nv = llama_vocab_n_tokens(llama_model_get_vocab(s->model->model));
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= nv) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "token " + std::to_string(tokens[i]) + " at position " +
                                                        std::to_string(i) + " is out of range [0, " + std::to_string(nv) + ")");
        }
    }
    return ALIGN_OK;
}

// Decodes tokens at positions [pos, pos+n) in chunks of n_batch. want_logits:
// request logits for every position (all) or only the last one.
// on_chunk(first, count) is called after each chunk while its logits are live.
template <typename F>
align_status decode_chunks(align_session * s, const int32_t * tokens, int32_t n, int32_t pos, bool all_logits, F on_chunk) {
    llama_batch batch = llama_batch_init(s->n_batch, 0, 1);
    align_status st = ALIGN_OK;
    for (int32_t i = 0; i < n && st == ALIGN_OK; i += s->n_batch) {
        const int32_t m = std::min(s->n_batch, n - i);
        batch.n_tokens = m;
        for (int32_t j = 0; j < m; j++) {
            batch.token[j] = tokens[i + j];
            batch.pos[j] = pos + i + j;
            batch.n_seq_id[j] = 1;
            batch.seq_id[j][0] = 0;
            batch.logits[j] = all_logits || (i + j == n - 1);
        }
        const int32_t rc = llama_decode(s->ctx, batch);
        if (rc == 2 || s->cancel.load()) {
            st = cancelled(s);
        } else if (rc != 0) {
            st = fail(ALIGN_ERR_INTERNAL, "llama_decode failed with code " + std::to_string(rc));
        } else {
            st = on_chunk(i, m);
        }
    }
    llama_batch_free(batch);
    return st;
}

// Length of the longest suffix of text that is a proper prefix of a stop string.
size_t stop_holdback(const std::string & text, size_t from, const std::vector<std::string> & stops) {
    size_t best = 0;
    for (const auto & s : stops) {
        const size_t maxk = std::min(s.size() - 1, text.size() - from);
        for (size_t k = maxk; k > best; k--) {
            if (std::memcmp(text.data() + text.size() - k, s.data(), k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

// Bytes at the end of text that start an incomplete UTF-8 sequence.
size_t utf8_incomplete_tail(const std::string & text) {
    const size_t n = text.size();
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        const unsigned char c = (unsigned char) text[n - back];
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking
        size_t need = 1;
        if ((c & 0xE0) == 0xC0) need = 2;
        else if ((c & 0xF0) == 0xE0) need = 3;
        else if ((c & 0xF8) == 0xF0) need = 4;
        return need > back ? back : 0;
    }
    return 0;
}

struct sampler_guard {
    llama_sampler * s = nullptr;
    ~sampler_guard() { if (s) llama_sampler_free(s); }
};

}  // namespace

extern "C" {

align_session_params align_session_default_params(void) {
    align_session_params p;
    p.n_ctx = 0;
    p.n_batch = 0;
    p.n_threads = 0;
    p.loras = nullptr;
    p.lora_scales = nullptr;
    p.n_loras = 0;
    return p;
}

align_status align_session_new(align_model * model, const align_session_params * params, align_session ** out) {
    if (model == nullptr || out == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_session_new: NULL argument");
    }
    *out = nullptr;
    if (model->vocab_only) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "sessions need a model loaded with weights (not vocab_only)");
    }
    ALIGN_TRY
    align_session_params p = params ? *params : align_session_default_params();
    if (p.n_loras < 0 || (p.n_loras > 0 && p.loras == nullptr)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_session_new: bad adapter list");
    }
    for (int32_t i = 0; i < p.n_loras; i++) {
        if (p.loras[i] == nullptr || p.loras[i]->owner != model) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter " + std::to_string(i) + " was loaded for another model");
        }
        if (p.lora_scales && !std::isfinite(p.lora_scales[i])) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter " + std::to_string(i) + " has a non-finite scale");
        }
    }
    int32_t n_ctx = p.n_ctx;
    if (n_ctx <= 0) {
        n_ctx = std::min<int32_t>(std::max<int32_t>(llama_model_n_ctx_train(model->model), 256), 4096);
    }
    int32_t n_batch = p.n_batch > 0 ? std::min(p.n_batch, n_ctx) : std::min<int32_t>(512, n_ctx);
    auto s = std::make_unique<align_session>();
    s->model = model;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) n_ctx;
    cp.n_batch = (uint32_t) n_batch;
    cp.n_ubatch = (uint32_t) n_batch;
    cp.n_seq_max = 1;
    cp.n_threads = p.n_threads > 0 ? p.n_threads : model->n_threads;
    cp.n_threads_batch = cp.n_threads;
    cp.no_perf = true;
    cp.abort_callback = abort_cb;
    cp.abort_callback_data = s.get();
    align::log_capture_begin();
    s->ctx = llama_init_from_model(model->model, cp);
    std::string cause = align::log_capture_text();
    if (s->ctx == nullptr) {
        return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot create inference context" + (cause.empty() ? "" : ": " + cause));
    }
    // adapters must be attached before the first decode (DESIGN.md §4.5)
    for (int32_t i = 0; i < p.n_loras; i++) {
        const float scale = p.lora_scales ? p.lora_scales[i] : 1.0f;
        if (llama_set_adapter_lora(s->ctx, p.loras[i]->adapter, scale) != 0) {
            llama_free(s->ctx);
            return fail(ALIGN_ERR_INTERNAL, "cannot attach adapter " + std::to_string(i));
        }
    }
    *out = s.release();
    return ok();
    ALIGN_CATCH
}

void align_session_free(align_session * session) {
    if (session == nullptr) return;
    if (session->ctx) llama_free(session->ctx);
    delete session;
}

void align_session_cancel(align_session * session) {
    if (session) session->cancel.store(true);
}

void align_session_cancel_reset(align_session * session) {
    if (session) session->cancel.store(false);
}

align_sampler_params align_sampler_default_params(void) {
    align_sampler_params p;
    p.temperature = 0.8f;
    p.top_p = 0.95f;
    p.top_k = 40;
    p.min_p = 0.05f;
    p.seed = 0;
    p.max_tokens = 128;
    p.stop = nullptr;
    p.n_stop = 0;
    p.grammar = nullptr;
    return p;
}

align_status align_session_generate(align_session * s, const int32_t * prompt, int32_t n_prompt,
                                    const align_sampler_params * params, align_token_fn cb, void * user_data,
                                    align_generate_result * result) {
    if (s == nullptr || params == nullptr || n_prompt <= 0 || prompt == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_session_generate: need a session, parameters and a non-empty prompt");
    }
    const align_sampler_params & p = *params;
    if (p.max_tokens <= 0) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "max_tokens must be positive");
    }
    if (!std::isfinite(p.temperature) || !std::isfinite(p.top_p) || p.top_p < 0 || p.top_p > 1 || !std::isfinite(p.min_p) ||
        p.min_p < 0 || p.min_p > 1) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "sampler: temperature must be finite, top_p and min_p in [0, 1]");
    }
    if (p.n_stop < 0 || (p.n_stop > 0 && p.stop == nullptr)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "sampler: bad stop list");
    }
    if (n_prompt >= s->n_ctx) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "prompt has " + std::to_string(n_prompt) + " tokens; the context holds " +
                                                    std::to_string(s->n_ctx));
    }
    ALIGN_TRY
    if (s->cancel.load()) return cancelled(s);
    align_status st = check_tokens(s, prompt, n_prompt);
    if (st != ALIGN_OK) return st;
    std::vector<std::string> stops;
    for (int32_t i = 0; i < p.n_stop; i++) {
        if (p.stop[i] == nullptr || p.stop[i][0] == '\0') {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "sampler: stop string " + std::to_string(i) + " is empty");
        }
        stops.emplace_back(p.stop[i]);
    }
    const llama_vocab * vocab = llama_model_get_vocab(s->model->model);

    sampler_guard chain;
    llama_sampler * grammar = nullptr;
    if (p.grammar != nullptr && p.grammar[0] != '\0') {
        align::log_capture_begin();
        grammar = llama_sampler_init_grammar(vocab, p.grammar, "root");
        std::string cause = align::log_capture_text();
        if (grammar == nullptr) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "invalid grammar" + (cause.empty() ? "" : ": " + cause));
        }
    }
    chain.s = align::sampler_chain(s->model, p, p.seed, grammar);

    align_generate_result res;
    std::memset(&res, 0, sizeof(res));
    res.n_prompt = n_prompt;
    llama_memory_clear(llama_get_memory(s->ctx), true);
    s->n_past = 0;

    auto t0 = std::chrono::steady_clock::now();
    st = decode_chunks(s, prompt, n_prompt, 0, false, [](int32_t, int32_t) { return ALIGN_OK; });
    res.prompt_ms = ms_since(t0);
    if (st != ALIGN_OK) {
        if (result) *result = res;
        return st;
    }
    int32_t n_past = n_prompt;

    std::string text;     // everything generated so far
    size_t emitted = 0;   // bytes of text already passed to cb
    bool stopped = false;
    res.stop_reason = ALIGN_STOP_MAX_TOKENS;
    auto emit = [&](size_t upto, int32_t tok) -> bool {
        if (upto <= emitted) return true;
        bool go = true;
        if (cb) go = cb(text.data() + emitted, (int32_t) (upto - emitted), tok, user_data);
        emitted = upto;
        return go;
    };
    t0 = std::chrono::steady_clock::now();
    char piece[256];
    for (int32_t i = 0; i < p.max_tokens && !stopped; i++) {
        if (s->cancel.load()) {
            st = cancelled(s);
            break;
        }
        llama_token tok;
        try {
            tok = llama_sampler_sample(chain.s, s->ctx, -1);
        } catch (const std::exception &) {
            if (p.grammar == nullptr || p.grammar[0] == '\0') throw;
            // llama.cpp's grammar throws when no token can continue the
            // output: the vocabulary cannot spell what the grammar needs
            st = fail(ALIGN_ERR_UNSUPPORTED, "the grammar allows no token of this vocabulary after " +
                                                 std::to_string(res.n_generated) +
                                                 " generated tokens (the vocabulary cannot spell what the grammar "
                                                 "needs next)");
            break;
        }
        res.n_generated++;
        if (llama_vocab_is_eog(vocab, tok)) {
            res.stop_reason = ALIGN_STOP_EOG;
            break;
        }
        int32_t n = llama_token_to_piece(vocab, tok, piece, sizeof(piece), 0, false);
        if (n < 0) n = 0;
        text.append(piece, (size_t) n);
        // a stop string can only start in the part not yet emitted (we hold
        // back any suffix that could begin one)
        size_t hit = std::string::npos;
        for (const auto & ss : stops) {
            size_t at = text.find(ss, emitted);
            if (at != std::string::npos && at < hit) hit = at;
        }
        if (hit != std::string::npos) {
            emit(hit, tok);
            res.stop_reason = ALIGN_STOP_STRING;
            break;
        }
        size_t hold = std::max(stop_holdback(text, emitted, stops), utf8_incomplete_tail(text));
        if (!emit(text.size() - hold, tok)) {
            res.stop_reason = ALIGN_STOP_CALLBACK;
            stopped = true;
            break;
        }
        if (i + 1 == p.max_tokens) break;
        if (n_past + 1 >= s->n_ctx) {
            res.stop_reason = ALIGN_STOP_CONTEXT;
            break;
        }
        llama_token t = tok;
        llama_batch b = llama_batch_get_one(&t, 1);
        const int32_t rc = llama_decode(s->ctx, b);
        if (rc == 2 || s->cancel.load()) {
            st = cancelled(s);
            break;
        }
        if (rc != 0) {
            st = fail(ALIGN_ERR_INTERNAL, "llama_decode failed with code " + std::to_string(rc));
            break;
        }
        n_past++;
    }
    if (st == ALIGN_OK && res.stop_reason != ALIGN_STOP_STRING && res.stop_reason != ALIGN_STOP_CALLBACK) {
        // what the stop strings held back, but never the start of a
        // character the last tokens did not finish (cut at max_tokens, the
        // context or end of generation): that would reach the text as U+FFFD
        emit(text.size() - utf8_incomplete_tail(text), -1);
    }
    res.generate_ms = ms_since(t0);
    s->n_past = n_past;
    if (result) *result = res;
    return st == ALIGN_OK ? ok() : st;
    ALIGN_CATCH
}

align_status align_session_logprobs(align_session * s, const int32_t * tokens, int32_t n_tokens, float * out,
                                    float * logits, int64_t n_logits) {
    if (s == nullptr || tokens == nullptr || n_tokens < 1 || (out == nullptr && n_tokens > 1)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_session_logprobs: need a session, tokens and an output buffer");
    }
    if (n_tokens > s->n_ctx) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "sequence has " + std::to_string(n_tokens) + " tokens; the context holds " +
                                                    std::to_string(s->n_ctx));
    }
    ALIGN_TRY
    if (s->cancel.load()) return cancelled(s);
    align_status st = check_tokens(s, tokens, n_tokens);
    if (st != ALIGN_OK) return st;
    const int32_t nv = llama_vocab_n_tokens(llama_model_get_vocab(s->model->model));
    if (logits != nullptr && n_logits < (int64_t) n_tokens * nv) {
        return fail(ALIGN_ERR_BUFFER_TOO_SMALL, "logits buffer holds " + std::to_string(n_logits) + " floats; " +
                                                    std::to_string(n_tokens) + " positions of a " + std::to_string(nv) +
                                                    "-token vocabulary need " + std::to_string((int64_t) n_tokens * nv));
    }
    llama_memory_clear(llama_get_memory(s->ctx), true);
    s->n_past = 0;
    st = decode_chunks(s, tokens, n_tokens, 0, true, [&](int32_t first, int32_t count) -> align_status {
        for (int32_t j = 0; j < count; j++) {
            const int32_t pos = first + j;
            const float * row = llama_get_logits_ith(s->ctx, j);
            if (row == nullptr) {
                return fail(ALIGN_ERR_INTERNAL, "no logits for position " + std::to_string(pos));
            }
            if (logits) std::memcpy(logits + (size_t) pos * nv, row, sizeof(float) * (size_t) nv);
            if (pos + 1 < n_tokens) {
                double mx = row[0];
                for (int32_t k = 1; k < nv; k++) mx = std::max<double>(mx, row[k]);
                double sum = 0;
                for (int32_t k = 0; k < nv; k++) sum += std::exp((double) row[k] - mx);
                out[pos] = (float) ((double) row[tokens[pos + 1]] - mx - std::log(sum));
            }
        }
        return ALIGN_OK;
    });
    if (st != ALIGN_OK) return st;
    s->n_past = n_tokens;
    return ok();
    ALIGN_CATCH
}

align_status align_session_reset(align_session * s) {
    if (s == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_session_reset: NULL session");
    ALIGN_TRY
    llama_memory_clear(llama_get_memory(s->ctx), true);
    s->n_past = 0;
    return ok();
    ALIGN_CATCH
}

align_status align_session_decode(align_session * s, const int32_t * tokens, int32_t n_tokens, float * logits,
                                  int32_t n_logits) {
    if (s == nullptr || tokens == nullptr || n_tokens < 1 || logits == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_session_decode: bad argument");
    }
    if (s->n_past + n_tokens > s->n_ctx) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "context full");
    }
    ALIGN_TRY
    if (s->cancel.load()) return cancelled(s);
    align_status st = check_tokens(s, tokens, n_tokens);
    if (st != ALIGN_OK) return st;
    const int32_t nv = llama_vocab_n_tokens(llama_model_get_vocab(s->model->model));
    if (n_logits < nv) {
        return fail(ALIGN_ERR_BUFFER_TOO_SMALL, "logits buffer holds " + std::to_string(n_logits) +
                                                    " floats; the model's vocabulary has " + std::to_string(nv) + " tokens");
    }
    st = decode_chunks(s, tokens, n_tokens, s->n_past, false, [&](int32_t first, int32_t count) -> align_status {
        if (first + count == n_tokens) {
            const float * row = llama_get_logits_ith(s->ctx, count - 1);
            if (row == nullptr) return fail(ALIGN_ERR_INTERNAL, "no logits");
            std::memcpy(logits, row, sizeof(float) * (size_t) nv);
        }
        return ALIGN_OK;
    });
    if (st != ALIGN_OK) return st;
    s->n_past += n_tokens;
    return ok();
    ALIGN_CATCH
}

}  // extern "C"
