// llama_gen_bench: llama.cpp's own generation loops (llama.h only, as in
// llama.cpp's "simple" and "batched" examples), to measure the engine's
// speed without align's layers. Same sampler chain as align's sessions and
// align_generate_batch (the unknown token banned, then top-k, top-p, min-p,
// temperature, a seeded draw). Prints one JSON line.
//
// usage: llama_gen_bench MODEL PROMPT N_TOKENS THREADS SEED [N_SEQ [ADAPTER]]
//
// N_SEQ 1 (the default) generates one sequence as align sample does. N_SEQ
// > 1 decodes N_SEQ sequences together as align_generate_batch does (PPO
// and GRPO rollouts): the prompt is decoded once and its cache copied to
// every sequence, sequence i samples with seed SEED + i, one llama_batch per
// step holds the next token of every live sequence, and a sequence stops at
// an end-of-generation token or after N_TOKENS. ADAPTER is a LoRA GGUF
// applied at scale 1 (align bench train --save-adapter writes the live
// policy's). tokens_per_s is generated tokens over the time from the first
// sampled token to the last (the prompt's decode is timed apart), as align
// reports it; generated_tokens says how many that was. With
// LLAMA_GEN_BENCH_KV_UNIFIED set, the batched context keeps one unified KV
// stream (align keeps one per sequence): in this llama.cpp, 8 streams with
// an adapter on all seven matrices of the ~100M fixture overflow the graph
// budget (GGML_ASSERT in ggml_backend_sched_alloc_graph); one stream does
// not.
#include "llama.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

static void quiet(ggml_log_level, const char *, void *) {}

// The vocabulary's unknown token: tokenizer.ggml.unknown_token_id, else a
// token marked unknown; LLAMA_TOKEN_NULL when there is none.
static llama_token unknown_token(const llama_model * model) {
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n = llama_vocab_n_tokens(vocab);
    char buf[32];
    if (llama_model_meta_val_str(model, "tokenizer.ggml.unknown_token_id", buf, sizeof(buf)) > 0) {
        char * end = nullptr;
        const long id = std::strtol(buf, &end, 10);
        if (end != buf && *end == '\0' && id >= 0 && id < n) return (llama_token) id;
    }
    for (llama_token t = 0; t < n; t++) {
        if (llama_vocab_get_attr(vocab, t) & LLAMA_TOKEN_ATTR_UNKNOWN) return t;
    }
    return LLAMA_TOKEN_NULL;
}

static llama_sampler * make_chain(const llama_model * model, unsigned seed) {
    const llama_vocab * vocab = llama_model_get_vocab(model);
    llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    const llama_token unk = unknown_token(model);
    if (unk != LLAMA_TOKEN_NULL && !llama_vocab_is_eog(vocab, unk)) {
        const llama_logit_bias ban = {unk, -INFINITY};
        llama_sampler_chain_add(smpl, llama_sampler_init_logit_bias(llama_vocab_n_tokens(vocab), 1, &ban));
    }
    llama_sampler_chain_add(smpl, llama_sampler_init_top_k(40));
    llama_sampler_chain_add(smpl, llama_sampler_init_top_p(0.95f, 1));
    llama_sampler_chain_add(smpl, llama_sampler_init_min_p(0.05f, 1));
    llama_sampler_chain_add(smpl, llama_sampler_init_temp(0.8f));
    llama_sampler_chain_add(smpl, llama_sampler_init_dist(seed));
    return smpl;
}

static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int main(int argc, char ** argv) {
    if (argc < 6 || argc > 8) {
        std::fprintf(stderr, "usage: %s MODEL PROMPT N_TOKENS THREADS SEED [N_SEQ [ADAPTER]]\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    const char * prompt = argv[2];
    const int n_gen = std::atoi(argv[3]);
    const int threads = std::atoi(argv[4]);
    const unsigned seed = (unsigned) std::strtoul(argv[5], nullptr, 10);
    const int n_seq = argc > 6 ? std::atoi(argv[6]) : 1;
    const char * adapter_path = argc > 7 ? argv[7] : nullptr;
    if (n_gen < 1 || threads < 1 || n_seq < 1 || n_seq > 256) {
        std::fprintf(stderr, "N_TOKENS and THREADS must be positive, N_SEQ in [1, 256]\n");
        return 2;
    }
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) {
        std::fprintf(stderr, "cannot load %s\n", path);
        return 1;
    }
    llama_adapter_lora * adapter = nullptr;
    if (adapter_path != nullptr) {
        adapter = llama_adapter_lora_init(model, adapter_path);
        if (!adapter) {
            std::fprintf(stderr, "cannot load adapter %s\n", adapter_path);
            return 1;
        }
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_prompt = -llama_tokenize(vocab, prompt, (int) std::strlen(prompt), nullptr, 0, true, false);
    std::vector<llama_token> toks((size_t) n_prompt);
    llama_tokenize(vocab, prompt, (int) std::strlen(prompt), toks.data(), n_prompt, true, false);

    llama_context_params cp = llama_context_default_params();
    if (n_seq == 1) {
        cp.n_ctx = (uint32_t) (n_prompt + n_gen + 1 < 512 ? 512 : n_prompt + n_gen + 1);
        cp.n_batch = 512;
        cp.n_ubatch = 512;
    } else {
        // as align_generate_batch sizes it: a stream of the prompt plus the
        // tokens per sequence, rounded up to 256
        const int per_seq = n_prompt + n_gen;
        const int n_batch = n_prompt > n_seq ? n_prompt : n_seq;
        cp.n_ctx = (uint32_t) ((per_seq + 255) / 256 * 256) * (uint32_t) n_seq;
        cp.n_batch = (uint32_t) n_batch;
        cp.n_ubatch = (uint32_t) (n_batch < 512 ? n_batch : 512);
        cp.n_seq_max = (uint32_t) n_seq;
        cp.kv_unified = std::getenv("LLAMA_GEN_BENCH_KV_UNIFIED") != nullptr;  // align: false
    }
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        std::fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    if (adapter != nullptr && llama_set_adapter_lora(ctx, adapter, 1.0f) != 0) {
        std::fprintf(stderr, "cannot attach the adapter\n");
        return 1;
    }
    std::vector<llama_sampler *> chains;
    for (int i = 0; i < n_seq; i++) chains.push_back(make_chain(model, seed + (unsigned) i));

    int n = 0;             // generated tokens over all sequences
    int n_short = 0;       // sequences that ended before n_gen
    double prompt_s = 0, gen_s = 0;
    if (n_seq == 1) {
        auto t0 = std::chrono::steady_clock::now();
        llama_batch batch = llama_batch_get_one(toks.data(), n_prompt);
        if (llama_decode(ctx, batch) != 0) return 1;
        prompt_s = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        llama_token tok;
        while (n < n_gen) {
            tok = llama_sampler_sample(chains[0], ctx, -1);
            n++;
            if (llama_vocab_is_eog(vocab, tok) || n == n_gen) break;
            batch = llama_batch_get_one(&tok, 1);
            if (llama_decode(ctx, batch) != 0) return 1;
        }
        gen_s = seconds_since(t0);
        n_short = n < n_gen ? 1 : 0;
    } else {
        llama_batch batch = llama_batch_init((int32_t) cp.n_batch, 0, 1);
        auto t0 = std::chrono::steady_clock::now();
        for (int j = 0; j < n_prompt; j++) {
            batch.token[j] = toks[(size_t) j];
            batch.pos[j] = j;
            batch.n_seq_id[j] = 1;
            batch.seq_id[j][0] = 0;
            batch.logits[j] = j == n_prompt - 1;
        }
        batch.n_tokens = n_prompt;
        if (llama_decode(ctx, batch) != 0) return 1;
        for (int i = 1; i < n_seq; i++) llama_memory_seq_cp(llama_get_memory(ctx), 0, i, -1, -1);
        prompt_s = seconds_since(t0);
        std::vector<int> logit_at((size_t) n_seq, n_prompt - 1);  // each sequence's last logits in the batch
        std::vector<int> count((size_t) n_seq, 0);
        std::vector<bool> done((size_t) n_seq, false);
        int live = n_seq;
        t0 = std::chrono::steady_clock::now();
        for (int step = 0; step < n_gen && live > 0; step++) {
            int k = 0;
            for (int i = 0; i < n_seq; i++) {
                if (done[(size_t) i]) continue;
                const llama_token tok = llama_sampler_sample(chains[(size_t) i], ctx, logit_at[(size_t) i]);
                count[(size_t) i]++;
                n++;
                if (llama_vocab_is_eog(vocab, tok) || count[(size_t) i] == n_gen) {
                    done[(size_t) i] = true;
                    live--;
                    if (count[(size_t) i] < n_gen) n_short++;
                    continue;
                }
                batch.token[k] = tok;
                batch.pos[k] = n_prompt + count[(size_t) i] - 1;
                batch.n_seq_id[k] = 1;
                batch.seq_id[k][0] = i;
                batch.logits[k] = true;
                logit_at[(size_t) i] = k;
                k++;
            }
            if (k == 0) break;
            batch.n_tokens = k;
            if (llama_decode(ctx, batch) != 0) return 1;
        }
        gen_s = seconds_since(t0);
        llama_batch_free(batch);
    }
    std::printf("{\"n_seq\": %d, \"prompt_tokens\": %d, \"prompt_tokens_per_s\": %.1f, \"requested_tokens\": %d, "
                "\"generated_tokens\": %d, \"short_sequences\": %d, \"generate_ms\": %.3f, \"tokens_per_s\": %.1f, "
                "\"seed\": %u, \"adapter\": %s}\n",
                n_seq, n_prompt, n_prompt / prompt_s, n_gen * n_seq, n, n_short, 1000 * gen_s, n / gen_s, seed,
                adapter_path ? "true" : "false");
    for (llama_sampler * s : chains) llama_sampler_free(s);
    llama_free(ctx);
    if (adapter) llama_adapter_lora_free(adapter);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
