// generate.cpp: batched generation (several sequences decoded together).
//
// One llama.cpp context holds n_seq sequences (a KV cache of its own each);
// every step decodes the next token of each live sequence in one batch, so
// GRPO's G samples per prompt cost about one decode per step rather than G.
// Prompts that are all equal are decoded once and the cache copied. The
// adapters may be live trainer adapters (align_trainer_lora): sampling from
// the current policy needs no file and no second copy of the base.
#include "internal.h"

#include "llama.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

using align::fail;
using align::ok;

namespace {

struct ctx_guard {
    llama_context * c = nullptr;
    ~ctx_guard() { if (c) llama_free(c); }
};
struct batch_guard {
    llama_batch b{};
    bool live = false;
    ~batch_guard() { if (live) llama_batch_free(b); }
};
struct chain_guard {
    std::vector<llama_sampler *> s;
    ~chain_guard() { for (auto * x : s) if (x) llama_sampler_free(x); }
};

bool batch_abort(void * data) { return *static_cast<const volatile int32_t *>(data) != 0; }

}  // namespace

extern "C" {

align_batch_generate_params align_batch_generate_default_params(void) {
    align_batch_generate_params p;
    std::memset(&p, 0, sizeof(p));
    p.sampler = align_sampler_default_params();
    p.n_threads = 0;
    p.cancel = nullptr;
    return p;
}

align_status align_generate_batch(align_model * model, const align_batch_generate_params * params,
                                  const int32_t * const * prompts, const int32_t * n_prompt, int32_t n_seq,
                                  int32_t * out_tokens, int32_t * n_out, align_generate_result * result) {
    if (model == nullptr || params == nullptr || prompts == nullptr || n_prompt == nullptr || out_tokens == nullptr ||
        n_out == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_generate_batch: NULL argument");
    }
    if (model->vocab_only) return fail(ALIGN_ERR_INVALID_ARGUMENT, "generation needs a model loaded with weights");
    const align_sampler_params & sp = params->sampler;
    if (n_seq <= 0 || n_seq > 256) return fail(ALIGN_ERR_INVALID_ARGUMENT, "n_seq must be in [1, 256]");
    if (sp.max_tokens <= 0) return fail(ALIGN_ERR_INVALID_ARGUMENT, "max_tokens must be positive");
    if (sp.n_stop != 0 || (sp.grammar != nullptr && sp.grammar[0] != '\0')) {
        return fail(ALIGN_ERR_UNSUPPORTED, "batched generation takes no stop strings or grammar (use a session)");
    }
    if (!std::isfinite(sp.temperature) || !std::isfinite(sp.top_p) || sp.top_p < 0 || sp.top_p > 1 || !std::isfinite(sp.min_p) ||
        sp.min_p < 0 || sp.min_p > 1) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "sampler: temperature must be finite, top_p and min_p in [0, 1]");
    }
    const llama_vocab * vocab = llama_model_get_vocab(model->model);
    const int32_t nv = llama_vocab_n_tokens(vocab);
    int32_t max_prompt = 0;
    bool same = true;
    for (int32_t i = 0; i < n_seq; i++) {
        if (prompts[i] == nullptr || n_prompt[i] <= 0) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "prompt " + std::to_string(i) + " is empty");
        }
        for (int32_t j = 0; j < n_prompt[i]; j++) {
            if (prompts[i][j] < 0 || prompts[i][j] >= nv) {
                return fail(ALIGN_ERR_INVALID_ARGUMENT, "prompt " + std::to_string(i) + ": token " + std::to_string(prompts[i][j]) +
                                                            " at position " + std::to_string(j) + " is out of range");
            }
        }
        max_prompt = std::max(max_prompt, n_prompt[i]);
        same = same && n_prompt[i] == n_prompt[0] && std::equal(prompts[i], prompts[i] + n_prompt[i], prompts[0]);
    }
    const int32_t n_ctx_train = llama_model_n_ctx_train(model->model);
    const int32_t per_seq = max_prompt + sp.max_tokens;
    if (n_ctx_train > 0 && per_seq > n_ctx_train) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "prompt + max_tokens = " + std::to_string(per_seq) +
                                                    " exceeds the model's context " + std::to_string(n_ctx_train));
    }
    // all prompts go in one llama_batch (llama.cpp splits it into ubatches
    // and keeps the logits asked for); later steps hold one token a sequence
    int32_t total = 0;
    for (int32_t i = 0; i < (same ? 1 : n_seq); i++) total += n_prompt[i];
    ALIGN_TRY
    const int32_t n_batch = std::max(total, n_seq);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) ((per_seq + 255) / 256 * 256) * (uint32_t) n_seq;
    cp.n_batch = (uint32_t) n_batch;
    cp.n_ubatch = (uint32_t) std::min(n_batch, 512);
    cp.n_seq_max = (uint32_t) n_seq;
    // one KV stream for every sequence (masks keep them apart): with a
    // stream per sequence the graph of a step over an adapter on all seven
    // targets outgrows this llama.cpp's node budget, max(1024, 8 x the
    // model's tensors), and ggml-backend asserts (hash_set.size >= nodes +
    // leafs) on the ~100M fixture with 4 sequences; the unified stream's
    // graph does not grow with the number of sequences
    cp.kv_unified = true;
    cp.n_threads = params->n_threads > 0 ? params->n_threads : model->n_threads;
    cp.n_threads_batch = cp.n_threads;
    cp.no_perf = true;
    if (params->cancel) {
        cp.abort_callback = batch_abort;
        cp.abort_callback_data = const_cast<int32_t *>(params->cancel);
    }
    align::log_capture_begin();
    ctx_guard ctx;
    ctx.c = llama_init_from_model(model->model, cp);
    if (ctx.c == nullptr) {
        std::string cause = align::log_capture_text();
        return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot create a batched context" + (cause.empty() ? "" : ": " + cause));
    }
    for (int32_t i = 0; i < params->n_loras; i++) {
        const float scale = params->lora_scales ? params->lora_scales[i] : 1.0f;
        if (params->loras[i] == nullptr || params->loras[i]->owner != model) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "adapter " + std::to_string(i) + " belongs to another model");
        }
        if (llama_set_adapter_lora(ctx.c, params->loras[i]->adapter, scale) != 0) {
            return fail(ALIGN_ERR_INTERNAL, "cannot attach adapter " + std::to_string(i));
        }
    }
    auto cancelled = [&] { return params->cancel && *params->cancel != 0; };
    chain_guard chains;
    for (int32_t i = 0; i < n_seq; i++) {
        chains.s.push_back(align::sampler_chain(model, sp, sp.seed + (uint32_t) i, nullptr));  // sequence i: seed + i
    }
    batch_guard bg;
    bg.b = llama_batch_init(n_batch, 0, 1);
    bg.live = true;
    llama_batch & batch = bg.b;
    std::vector<int32_t> logit_at((size_t) n_seq, -1);  // index of each sequence's last logits in the batch

    align_generate_result res;
    std::memset(&res, 0, sizeof(res));
    auto t0 = std::chrono::steady_clock::now();
    // prompts: all of them, or when equal the first and a cache copy
    const int32_t n_decode = same ? 1 : n_seq;
    int32_t k = 0;
    auto flush = [&]() -> align_status {
        if (k == 0) return ALIGN_OK;
        batch.n_tokens = k;
        const int32_t rc = llama_decode(ctx.c, batch);
        k = 0;
        if (rc == 2 || cancelled()) return fail(ALIGN_ERR_CANCELLED, "cancelled");
        if (rc != 0) return fail(ALIGN_ERR_INTERNAL, "llama_decode failed with code " + std::to_string(rc));
        return ALIGN_OK;
    };
    for (int32_t i = 0; i < n_decode; i++) {
        for (int32_t j = 0; j < n_prompt[i]; j++) {
            batch.token[k] = prompts[i][j];
            batch.pos[k] = j;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = i;
            batch.logits[k] = j == n_prompt[i] - 1;
            if (batch.logits[k]) logit_at[(size_t) i] = k;
            k++;
            res.n_prompt++;
        }
    }
    align_status st = flush();
    if (st != ALIGN_OK) return st;
    if (same) {
        for (int32_t i = 1; i < n_seq; i++) {
            llama_memory_seq_cp(llama_get_memory(ctx.c), 0, i, -1, -1);
            logit_at[(size_t) i] = logit_at[0];
        }
        res.n_prompt = n_prompt[0];
    }
    res.prompt_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> count((size_t) n_seq, 0);
    std::vector<bool> done((size_t) n_seq, false);
    int32_t n_live = n_seq;
    for (int32_t step = 0; step < sp.max_tokens && n_live > 0; step++) {
        if (cancelled()) return fail(ALIGN_ERR_CANCELLED, "cancelled");
        k = 0;
        for (int32_t i = 0; i < n_seq; i++) {
            if (done[(size_t) i]) continue;
            const llama_token tok = llama_sampler_sample(chains.s[(size_t) i], ctx.c, logit_at[(size_t) i]);
            out_tokens[(size_t) i * sp.max_tokens + count[(size_t) i]] = tok;
            count[(size_t) i]++;
            res.n_generated++;
            if (llama_vocab_is_eog(vocab, tok) || count[(size_t) i] == sp.max_tokens) {
                done[(size_t) i] = true;
                n_live--;
                continue;
            }
            batch.token[k] = tok;
            batch.pos[k] = n_prompt[same ? 0 : i] + count[(size_t) i] - 1;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = i;
            batch.logits[k] = true;
            logit_at[(size_t) i] = k;
            k++;
        }
        st = flush();
        if (st != ALIGN_OK) return st;
    }
    res.generate_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    res.stop_reason = ALIGN_STOP_MAX_TOKENS;
    std::copy(count.begin(), count.end(), n_out);
    if (result) *result = res;
    return ok();
    ALIGN_CATCH
}

}  // extern "C"
