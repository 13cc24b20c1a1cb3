// llama_gen_bench: llama.cpp's own generation loop (llama.h only, as in
// llama.cpp's "simple" example), to measure the engine's speed without align's
// layers. Same sampler chain as align_session_generate. Prints one JSON line.
//
// usage: llama_gen_bench MODEL PROMPT N_TOKENS THREADS SEED
#include "llama.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

static void quiet(ggml_log_level, const char *, void *) {}

int main(int argc, char ** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s MODEL PROMPT N_TOKENS THREADS SEED\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    const char * prompt = argv[2];
    const int n_gen = std::atoi(argv[3]);
    const int threads = std::atoi(argv[4]);
    const unsigned seed = (unsigned) std::strtoul(argv[5], nullptr, 10);
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) {
        std::fprintf(stderr, "cannot load %s\n", path);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_prompt = -llama_tokenize(vocab, prompt, (int) std::strlen(prompt), nullptr, 0, true, false);
    std::vector<llama_token> toks((size_t) n_prompt);
    llama_tokenize(vocab, prompt, (int) std::strlen(prompt), toks.data(), n_prompt, true, false);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) (n_prompt + n_gen + 1 < 512 ? 512 : n_prompt + n_gen + 1);
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    llama_sampler * smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(smpl, llama_sampler_init_top_k(40));
    llama_sampler_chain_add(smpl, llama_sampler_init_top_p(0.95f, 1));
    llama_sampler_chain_add(smpl, llama_sampler_init_min_p(0.05f, 1));
    llama_sampler_chain_add(smpl, llama_sampler_init_temp(0.8f));
    llama_sampler_chain_add(smpl, llama_sampler_init_dist(seed));

    auto t0 = std::chrono::steady_clock::now();
    llama_batch batch = llama_batch_get_one(toks.data(), n_prompt);
    if (llama_decode(ctx, batch) != 0) return 1;
    const double prompt_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t0 = std::chrono::steady_clock::now();
    int n = 0;
    llama_token tok;
    for (; n < n_gen;) {
        tok = llama_sampler_sample(smpl, ctx, -1);
        n++;
        if (llama_vocab_is_eog(vocab, tok) || n == n_gen) break;
        batch = llama_batch_get_one(&tok, 1);
        if (llama_decode(ctx, batch) != 0) return 1;
    }
    const double gen_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"prompt_tokens\": %d, \"prompt_tokens_per_s\": %.1f, \"generated_tokens\": %d, \"tokens_per_s\": %.1f}\n",
                n_prompt, n_prompt / prompt_s, n, n / gen_s);
    llama_sampler_free(smpl);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
