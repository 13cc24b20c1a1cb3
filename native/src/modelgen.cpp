// modelgen.cpp: writes small Llama-family GGUF fixtures with seeded random
// weights and a small SentencePiece-style vocabulary. Deterministic: the same
// parameters give the same bytes on every machine (own PRNG, no std::
// distributions, whose output differs between standard libraries).
#include "internal.h"

#include "ggml.h"
#include "gguf.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>

using align::fail;
using align::ok;

namespace {

struct shape {
    int n_vocab_hint, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
};

// Words of the vocabulary: common English plus the reference use case's
// domain (a manga bookstore assistant). Each gets its "▁word" prefix chain so
// SentencePiece merging can reach it.
const char * const k_words[] = {
    "the", "a", "an", "and", "or", "but", "if", "then", "so", "because", "of", "to", "in", "on", "at", "for", "with",
    "from", "by", "about", "as", "into", "like", "through", "after", "over", "between", "out", "up", "down", "off",
    "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "do", "does", "did", "will", "would",
    "can", "could", "should", "may", "might", "must", "shall", "not", "no", "yes", "it", "its", "this", "that",
    "these", "those", "there", "here", "what", "which", "who", "whom", "whose", "when", "where", "why", "how",
    "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "only", "own", "same", "than",
    "too", "very", "just", "also", "now", "again", "still", "already", "i", "you", "he", "she", "we", "they",
    "me", "him", "her", "us", "them", "my", "your", "his", "our", "their", "mine", "yours", "hello", "hi", "hey",
    "thanks", "thank", "please", "sorry", "welcome", "glad", "happy", "help", "helping", "love", "great", "good",
    "nice", "wonderful", "sure", "absolutely", "of course", "okay", "ok", "well", "let", "know", "think", "want",
    "need", "find", "get", "give", "tell", "ask", "look", "see", "read", "reading", "recommend", "suggest",
    "try", "enjoy", "like", "prefer", "buy", "order", "stock", "store", "shop", "bookstore", "book", "books",
    "manga", "comic", "comics", "series", "volume", "volumes", "vol", "chapter", "chapters", "issue", "edition",
    "author", "authors", "artist", "written", "drawn", "illustrated", "published", "publisher", "complete",
    "completed", "ongoing", "finished", "total", "count", "number", "first", "second", "third", "last", "new",
    "latest", "next", "previous", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "twenty", "hundred", "age", "rating", "rated", "teen", "mature", "adult", "kids", "children", "child",
    "family", "all ages", "older", "younger", "years", "year", "old", "appropriate", "suitable", "content",
    "violence", "violent", "romance", "action", "adventure", "fantasy", "horror", "comedy", "drama", "mystery",
    "sports", "shonen", "shojo", "seinen", "josei", "isekai", "slice", "life", "genre", "genres", "title",
    "titles", "story", "stories", "character", "characters", "hero", "anime", "adaptation", "price", "prices",
    "dollar", "dollars", "sale", "discount", "shipping", "delivery", "return", "returns", "refund", "exchange",
    "account", "customer", "service", "team", "human", "agent", "person", "staff", "manager", "support",
    "connect", "transfer", "escalate", "contact", "call", "email", "frustrated", "frustrating", "annoyed",
    "angry", "upset", "problem", "problems", "wrong", "again", "still", "waiting", "ridiculous", "terrible",
    "understand", "apologize", "apologies", "inconvenience", "right", "away", "immediately", "today",
    "tomorrow", "week", "day", "days", "time", "minute", "moment", "question", "questions", "answer", "info",
    "information", "internal", "system", "policy", "detail", "details", "dear", "regards", "sincerely",
    "hereby", "therefore", "regarding", "inquiry", "assistance", "provide", "provided", "request", "requested",
    "naruto", "one piece", "bleach", "berserk", "dragon", "ball", "attack", "titan", "death", "note", "demon",
    "slayer", "jujutsu", "kaisen", "spy", "chainsaw", "man", "hunter", "fullmetal", "alchemist", "vagabond",
    "monster", "pluto", "yotsuba", "haikyu", "blue", "lock", "frieren", "oda", "kishimoto", "kubo", "miura",
    "toriyama", "isayama", "ohba", "obata", "gotouge", "akutami", "endo", "fujimoto", "togashi", "arakawa",
    "inoue", "urasawa", "azuma", "furudate", "yamada", "eiichiro", "masashi", "tite", "kentaro", "akira",
    "hajime", "tsugumi", "takeshi", "koyoharu", "gege", "tatsuya", "yoshihiro", "hiromu", "naoki", "kiyohiko",
    "haruichi", "assistant", "user", "system", "sounds", "fun", "exciting", "popular", "favorite", "classic",
    "best", "seller", "bestseller", "fan", "fans", "ages", "thirteen", "sixteen", "eighteen", "plus",
};

struct vocab {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
};

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_BYTE = 6 };

vocab build_vocab(bool gemma_turns) {
    vocab v;
    std::set<std::string> seen;
    auto add = [&](const std::string & t, float score, int32_t type) {
        if (!seen.insert(t).second) return;
        v.tokens.push_back(t);
        v.scores.push_back(score);
        v.types.push_back(type);
    };
    add("<unk>", 0, TT_UNKNOWN);
    add("<s>", 0, TT_CONTROL);
    add("</s>", 0, TT_CONTROL);
    add("<|im_start|>", 0, TT_CONTROL);
    add("<|im_end|>", 0, TT_CONTROL);
    if (gemma_turns) {
        add("<start_of_turn>", 0, TT_CONTROL);
        add("<end_of_turn>", 0, TT_CONTROL);
    }
    char buf[16];
    for (int b = 0; b < 256; b++) {
        std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
        add(buf, 0, TT_BYTE);
    }
    const std::string sp = "\xE2\x96\x81";  // U+2581, SentencePiece's space
    add(sp, -1000, TT_NORMAL);
    for (int c = 33; c < 127; c++) {
        add(std::string(1, (char) c), -1000, TT_NORMAL);
        add(sp + std::string(1, (char) c), -900, TT_NORMAL);
    }
    // prefix chains; longer pieces score higher so merges prefer them
    for (const char * w : k_words) {
        std::string word = w;
        for (int cap = 0; cap < 2; cap++) {
            std::string s = word;
            if (cap) {
                if (s[0] < 'a' || s[0] > 'z') continue;
                s[0] = (char) (s[0] - 'a' + 'A');
            }
            for (auto & ch : s) if (ch == ' ') ch = '\0';  // multi-word entries: one chain per word
            size_t start = 0;
            while (start < s.size()) {
                size_t end = s.find('\0', start);
                if (end == std::string::npos) end = s.size();
                std::string part = s.substr(start, end - start);
                for (size_t k = 1; k <= part.size(); k++) {
                    add(sp + part.substr(0, k), (float) k, TT_NORMAL);
                }
                start = end + 1;
            }
        }
    }
    return v;
}

const char * k_chat_template =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Gemma's turn format (llama.cpp recognises it by <start_of_turn>): the
// system message opens the first user turn, the assistant is "model".
const char * k_gemma_template =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim "
    "+ '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}";

}  // namespace

extern "C" {

align_modelgen_params align_modelgen_default_params(void) {
    align_modelgen_params p;
    p.arch = "llama";
    p.type = "q8_0";
    p.size = "tiny";
    p.seed = 1;
    p.tied_output = false;
    p.llama3_rope = false;
    p.n_layer = p.n_embd = p.n_head = p.n_head_kv = p.head_dim = p.n_ff = 0;
    p.rope_base = 0.0f;
    p.sliding_window = 0;
    p.logit_softcap = 0.0f;
    p.name = nullptr;
    p.tok_model = nullptr;
    p.tok_pre = nullptr;
    p.n_tokens = 0;
    p.tokens = nullptr;
    p.scores = nullptr;
    p.token_types = nullptr;
    p.n_merges = 0;
    p.merges = nullptr;
    p.bos_id = p.eos_id = p.eot_id = p.unk_id = p.pad_id = -1;
    p.add_bos = p.add_eos = p.add_space_prefix = false;
    p.chat_template = nullptr;
    return p;
}

align_status align_modelgen_write(const char * path, const align_modelgen_params * params) {
    if (path == nullptr || params == nullptr || params->arch == nullptr || params->type == nullptr ||
        params->size == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_modelgen_write: NULL argument");
    }
    ALIGN_TRY
    const std::string arch = params->arch, type = params->type, size = params->size;
    if (arch != "llama" && arch != "qwen2" && arch != "qwen3" && arch != "gemma3") {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "unknown architecture \"" + arch + "\" (want llama, qwen2, qwen3 or gemma3)");
    }
    const bool qwen3 = arch == "qwen3", gemma3 = arch == "gemma3";
    ggml_type wtype;
    uint32_t ftype;
    if (type == "f32") { wtype = GGML_TYPE_F32; ftype = 0; }
    else if (type == "f16") { wtype = GGML_TYPE_F16; ftype = 1; }
    else if (type == "q8_0") { wtype = GGML_TYPE_Q8_0; ftype = 7; }
    else if (type == "q4_0") { wtype = GGML_TYPE_Q4_0; ftype = 2; }
    else if (type == "q4_k") { wtype = GGML_TYPE_Q4_K; ftype = 15; }
    else return fail(ALIGN_ERR_INVALID_ARGUMENT, "unknown type \"" + type + "\" (want f32, f16, q8_0, q4_0 or q4_k)");
    shape sh;
    int head_dim = 0, n_swa = 0;
    float rope_base = 10000.0f, rope_linear = 0.0f, eps = 1e-5f;
    bool real_shape = false, preset_tied = false;
    // published shapes (config.json of each model); n_layer overrides the depth
    const std::string want_arch = size == "llama3-1b" || size == "llama3-8b" ? "llama"
                                  : size == "qwen3-0.6b"                    ? "qwen3"
                                  : size == "gemma3-1b"                     ? "gemma3"
                                                                            : "";
    if (!want_arch.empty() && arch != want_arch) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "shape \"" + size + "\" is a " + want_arch + " model (got arch " + arch + ")");
    }
    if (size == "llama3-1b") {  // Llama 3.2 1B
        sh = {0, 2048, 16, 32, 8, 8192, 8192};
        real_shape = preset_tied = true;
    } else if (size == "llama3-8b") {  // Llama 3.1 8B
        sh = {0, 4096, 32, 32, 8, 14336, 8192};
        real_shape = true;
    } else if (size == "qwen3-0.6b") {  // Qwen3 0.6B
        sh = {0, 1024, 28, 16, 8, 3072, 8192};
        head_dim = 128;
        real_shape = preset_tied = true;
    } else if (size == "gemma3-1b") {  // Gemma 3 1B: window 512, no rope scaling
        sh = {0, 1152, 26, 4, 1, 6912, 8192};
        head_dim = 256;
        n_swa = 512;
        real_shape = preset_tied = true;
    } else if (size == "tiny") {
        sh = {0, 256, 2, 4, 2, 512, 2048};
        if (qwen3) head_dim = 128;
        if (gemma3) { sh.n_layer = 6; sh.n_head_kv = 1; head_dim = 128; n_swa = 16; }
    } else if (size == "small") {
        sh = {0, 768, 12, 12, 4, 3072, 2048};
        if (qwen3) head_dim = 128;
        if (gemma3) { sh.n_head = 8; head_dim = 128; n_swa = 512; }
    } else if (size == "1b" && !qwen3 && !gemma3) {
        // benchmark shapes (GPU): Llama 3.2 1B and Llama 3.1 8B, 128,256-token vocabulary
        sh = {128256, 2048, 16, 32, 8, 8192, 8192};
    } else if (size == "8b" && !qwen3 && !gemma3) {
        sh = {128256, 4096, 32, 32, 8, 14336, 8192};
    } else {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "unknown size \"" + size + "\" (want tiny or small; 1b and 8b for llama/qwen2; "
                                                "llama3-1b, llama3-8b, qwen3-0.6b, gemma3-1b)");
    }
    const bool big = sh.n_vocab_hint > 0 || real_shape;
    if (qwen3 || gemma3) { rope_base = 1e6f; eps = 1e-6f; }
    if (gemma3 && size != "gemma3-1b") rope_linear = 8.0f;
    if (size == "llama3-1b" || size == "llama3-8b") rope_base = 500000.0f;
    if (params->n_layer > 0) sh.n_layer = params->n_layer;
    if (params->n_embd > 0) sh.n_embd = params->n_embd;
    if (params->n_head > 0) sh.n_head = params->n_head;
    if (params->n_head_kv > 0) sh.n_head_kv = params->n_head_kv;
    if (params->n_ff > 0) sh.n_ff = params->n_ff;
    if (params->head_dim > 0) head_dim = params->head_dim;
    if (params->rope_base > 0) rope_base = params->rope_base;
    if (params->sliding_window != 0) n_swa = params->sliding_window > 0 ? params->sliding_window : 0;
    if (head_dim == 0 && sh.n_head > 0) head_dim = sh.n_embd / sh.n_head;
    if (sh.n_layer <= 0 || sh.n_layer > 256 || sh.n_embd <= 0 || sh.n_embd > 16384 || sh.n_head <= 0 ||
        sh.n_head_kv <= 0 || sh.n_head % sh.n_head_kv != 0 || head_dim <= 0 || head_dim % 2 != 0 || sh.n_ff <= 0 ||
        head_dim > 1024 || sh.n_ff > 65536) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "inconsistent fixture shape (layers, width, heads, KV heads, head size, FFN)");
    }
    if ((params->sliding_window != 0 || params->logit_softcap != 0) && !gemma3) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "sliding_window and logit_softcap apply to the gemma3 architecture only");
    }
    if (!(params->logit_softcap >= 0) || !std::isfinite(params->logit_softcap)) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "logit_softcap must be non-negative");
    }
    const bool tied = params->tied_output || gemma3 || preset_tied;  // Gemma 3 ties its head

    const bool real_vocab = params->n_tokens > 0;
    vocab voc;
    if (real_vocab) {
        const std::string tm = params->tok_model ? params->tok_model : "";
        if (tm != "gpt2" && tm != "llama") return fail(ALIGN_ERR_INVALID_ARGUMENT, "tokenizer model must be gpt2 or llama");
        if (params->tokens == nullptr || params->token_types == nullptr || (tm == "llama" && params->scores == nullptr) ||
            (tm == "gpt2" && (params->n_merges <= 0 || params->merges == nullptr))) {
            return fail(ALIGN_ERR_INVALID_ARGUMENT, "tokenizer: tokens, types and " + std::string(tm == "gpt2" ? "merges" : "scores") + " are required");
        }
        for (int32_t i = 0; i < params->n_tokens; i++) {
            if (params->tokens[i] == nullptr) return fail(ALIGN_ERR_INVALID_ARGUMENT, "tokenizer: token " + std::to_string(i) + " is NULL");
            voc.tokens.emplace_back(params->tokens[i]);
            voc.types.push_back(params->token_types[i]);
            voc.scores.push_back(params->scores ? params->scores[i] : 0.0f);
        }
        const int32_t ids[] = {params->bos_id, params->eos_id, params->eot_id, params->unk_id, params->pad_id};
        for (int32_t id : ids) {
            if (id < -1 || id >= params->n_tokens) return fail(ALIGN_ERR_INVALID_ARGUMENT, "tokenizer: special token id out of range");
        }
    } else {
        voc = build_vocab(gemma3);
        for (int i = (int) voc.tokens.size(); i < sh.n_vocab_hint; i++) {  // filler tokens up to the shape's vocabulary
            voc.tokens.push_back("<unused" + std::to_string(i) + ">");
            voc.scores.push_back(0);
            voc.types.push_back(5);  // LLAMA_TOKEN_TYPE_UNUSED
        }
    }
    const int n_vocab = (int) voc.tokens.size();
    const int n_q = head_dim * sh.n_head, n_kv = head_dim * sh.n_head_kv;

    gguf_context * g = gguf_init_empty();
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> gguard(g, gguf_free);
    const std::string a = arch + ".";
    gguf_set_val_str(g, "general.architecture", arch.c_str());
    const std::string name = params->name ? std::string(params->name) : "align-fixture-" + arch + "-" + size + "-" + type;
    gguf_set_val_str(g, "general.name", name.c_str());
    gguf_set_val_u32(g, "general.file_type", ftype);
    gguf_set_val_u32(g, "general.quantization_version", 2);
    gguf_set_val_u32(g, (a + "context_length").c_str(), (uint32_t) sh.n_ctx);
    gguf_set_val_u32(g, (a + "embedding_length").c_str(), (uint32_t) sh.n_embd);
    gguf_set_val_u32(g, (a + "block_count").c_str(), (uint32_t) sh.n_layer);
    gguf_set_val_u32(g, (a + "feed_forward_length").c_str(), (uint32_t) sh.n_ff);
    gguf_set_val_u32(g, (a + "attention.head_count").c_str(), (uint32_t) sh.n_head);
    gguf_set_val_u32(g, (a + "attention.head_count_kv").c_str(), (uint32_t) sh.n_head_kv);
    if (qwen3 || gemma3 || head_dim * sh.n_head != sh.n_embd) {
        gguf_set_val_u32(g, (a + "attention.key_length").c_str(), (uint32_t) head_dim);
        gguf_set_val_u32(g, (a + "attention.value_length").c_str(), (uint32_t) head_dim);
    }
    gguf_set_val_u32(g, (a + "rope.dimension_count").c_str(), (uint32_t) head_dim);
    gguf_set_val_f32(g, (a + "rope.freq_base").c_str(), rope_base);
    gguf_set_val_f32(g, (a + "attention.layer_norm_rms_epsilon").c_str(), eps);
    if (rope_linear > 0) {
        gguf_set_val_str(g, (a + "rope.scaling.type").c_str(), "linear");
        gguf_set_val_f32(g, (a + "rope.scaling.factor").c_str(), rope_linear);
    }
    if (gemma3) {
        if (n_swa > 0) {
            gguf_set_val_u32(g, (a + "attention.sliding_window").c_str(), (uint32_t) n_swa);
            // what converters write beside the window (ollama's: local base and
            // per-layer pattern); the pinned llama.cpp reads neither and uses
            // these values itself: base 10000, five local layers of six
            gguf_set_val_f32(g, (a + "rope.local.freq_base").c_str(), 10000.0f);
            std::vector<int8_t> pattern((size_t) sh.n_layer);
            for (int l = 0; l < sh.n_layer; l++) pattern[(size_t) l] = l % 6 < 5;
            gguf_set_arr_data(g, (a + "attention.sliding_window_pattern").c_str(), GGUF_TYPE_BOOL, pattern.data(),
                              pattern.size());
        }
        if (params->logit_softcap > 0) gguf_set_val_f32(g, (a + "final_logit_softcapping").c_str(), params->logit_softcap);
    }
    gguf_set_val_u32(g, (a + "vocab_size").c_str(), (uint32_t) n_vocab);
    std::vector<const char *> tok_ptrs;
    for (const auto & t : voc.tokens) tok_ptrs.push_back(t.c_str());
    if (real_vocab) {
        const std::string tm = params->tok_model;
        gguf_set_val_str(g, "tokenizer.ggml.model", tm.c_str());
        if (tm == "gpt2") gguf_set_val_str(g, "tokenizer.ggml.pre", params->tok_pre ? params->tok_pre : "default");
        gguf_set_arr_str(g, "tokenizer.ggml.tokens", tok_ptrs.data(), tok_ptrs.size());
        if (tm == "llama") {
            gguf_set_arr_data(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, voc.scores.data(), voc.scores.size());
        }
        gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, voc.types.data(), voc.types.size());
        if (tm == "gpt2") gguf_set_arr_str(g, "tokenizer.ggml.merges", const_cast<const char **>(params->merges), (size_t) params->n_merges);
        const struct { const char * key; int32_t id; } ids[] = {
            {"tokenizer.ggml.bos_token_id", params->bos_id}, {"tokenizer.ggml.eos_token_id", params->eos_id},
            {"tokenizer.ggml.eot_token_id", params->eot_id}, {"tokenizer.ggml.unknown_token_id", params->unk_id},
            {"tokenizer.ggml.padding_token_id", params->pad_id},
        };
        for (const auto & k : ids) {
            if (k.id >= 0) gguf_set_val_u32(g, k.key, (uint32_t) k.id);
        }
        gguf_set_val_bool(g, "tokenizer.ggml.add_bos_token", params->add_bos);
        gguf_set_val_bool(g, "tokenizer.ggml.add_eos_token", params->add_eos);
        if (tm == "llama") gguf_set_val_bool(g, "tokenizer.ggml.add_space_prefix", params->add_space_prefix);
        if (params->chat_template && params->chat_template[0]) gguf_set_val_str(g, "tokenizer.chat_template", params->chat_template);
    } else {
        gguf_set_val_str(g, "tokenizer.ggml.model", "llama");
        gguf_set_arr_str(g, "tokenizer.ggml.tokens", tok_ptrs.data(), tok_ptrs.size());
        gguf_set_arr_data(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, voc.scores.data(), voc.scores.size());
        gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, voc.types.data(), voc.types.size());
        gguf_set_val_u32(g, "tokenizer.ggml.unknown_token_id", 0);
        gguf_set_val_u32(g, "tokenizer.ggml.bos_token_id", 1);
        gguf_set_val_u32(g, "tokenizer.ggml.eos_token_id", 2);
        gguf_set_val_u32(g, "tokenizer.ggml.eot_token_id", gemma3 ? 6 : 4);  // <end_of_turn> or <|im_end|>
        gguf_set_val_bool(g, "tokenizer.ggml.add_bos_token", true);
        gguf_set_val_bool(g, "tokenizer.ggml.add_eos_token", false);
        gguf_set_val_str(g, "tokenizer.chat_template", gemma3 ? k_gemma_template : k_chat_template);
    }

    // tensor list: name, ne0 (input), ne1 (output), kind
    enum kind { MATRIX, EMBED, NORM, BIAS, ROPE_FREQS };
    struct tdesc { std::string name; int64_t ne0, ne1; kind k; };
    std::vector<tdesc> ts;
    ts.push_back({"token_embd.weight", sh.n_embd, n_vocab, EMBED});
    for (int l = 0; l < sh.n_layer; l++) {
        const std::string b = "blk." + std::to_string(l) + ".";
        ts.push_back({b + "attn_norm.weight", sh.n_embd, 1, NORM});
        ts.push_back({b + "attn_q.weight", sh.n_embd, n_q, MATRIX});
        ts.push_back({b + "attn_k.weight", sh.n_embd, n_kv, MATRIX});
        ts.push_back({b + "attn_v.weight", sh.n_embd, n_kv, MATRIX});
        if (arch == "qwen2") {
            ts.push_back({b + "attn_q.bias", n_q, 1, BIAS});
            ts.push_back({b + "attn_k.bias", n_kv, 1, BIAS});
            ts.push_back({b + "attn_v.bias", n_kv, 1, BIAS});
        }
        if (qwen3 || gemma3) {
            ts.push_back({b + "attn_q_norm.weight", head_dim, 1, NORM});
            ts.push_back({b + "attn_k_norm.weight", head_dim, 1, NORM});
        }
        ts.push_back({b + "attn_output.weight", n_q, sh.n_embd, MATRIX});
        if (gemma3) ts.push_back({b + "post_attention_norm.weight", sh.n_embd, 1, NORM});
        ts.push_back({b + "ffn_norm.weight", sh.n_embd, 1, NORM});
        ts.push_back({b + "ffn_gate.weight", sh.n_embd, sh.n_ff, MATRIX});
        ts.push_back({b + "ffn_up.weight", sh.n_embd, sh.n_ff, MATRIX});
        ts.push_back({b + "ffn_down.weight", sh.n_ff, sh.n_embd, MATRIX});
        if (gemma3) ts.push_back({b + "post_ffw_norm.weight", sh.n_embd, 1, NORM});
    }
    ts.push_back({"output_norm.weight", sh.n_embd, 1, NORM});
    if (params->llama3_rope) {
        if (arch != "llama") return fail(ALIGN_ERR_INVALID_ARGUMENT, "llama3 rope factors apply to the llama architecture only");
        ts.push_back({"rope_freqs.weight", head_dim / 2, 1, ROPE_FREQS});
    }
    if (!tied) ts.push_back({"output.weight", sh.n_embd, n_vocab, MATRIX});

    // metadata-only ggml context describing each tensor for gguf_add_tensor
    ggml_init_params ip = {ggml_tensor_overhead() * (ts.size() + 4), nullptr, /*no_alloc=*/true};
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> meta(ggml_init(ip), ggml_free);
    if (!meta) return fail(ALIGN_ERR_OUT_OF_MEMORY, "ggml_init failed");
    std::vector<ggml_type> types;
    for (const auto & t : ts) {
        ggml_type tt = (t.k == NORM || t.k == BIAS || t.k == ROPE_FREQS) ? GGML_TYPE_F32 : wtype;
        if (t.ne0 % ggml_blck_size(tt) != 0) tt = GGML_TYPE_F32;
        ggml_tensor * x = t.ne1 == 1 && (t.k == NORM || t.k == BIAS || t.k == ROPE_FREQS) ? ggml_new_tensor_1d(meta.get(), tt, t.ne0)
                                                                     : ggml_new_tensor_2d(meta.get(), tt, t.ne0, t.ne1);
        ggml_set_name(x, t.name.c_str());
        gguf_add_tensor(g, x);
        types.push_back(tt);
    }

    align::atomic_file out;
    if (align_status st = out.open(path); st != ALIGN_OK) return st;
    FILE * const fp = out.file();
    std::vector<uint8_t> metabuf(gguf_get_meta_size(g));
    gguf_get_meta_data(g, metabuf.data());
    bool wr_ok = std::fwrite(metabuf.data(), 1, metabuf.size(), fp) == metabuf.size();
    const size_t align_to = gguf_get_alignment(g);
    std::vector<float> data;
    std::vector<uint8_t> qbuf;
    for (size_t i = 0; i < ts.size() && wr_ok; i++) {
        const auto & t = ts[i];
        const int64_t n = t.ne0 * t.ne1;
        data.resize((size_t) n);
        align::rng r(params->seed ^ align::fnv1a(t.name));
        const ggml_type tt = types[i];
        if (big && (t.k == EMBED || t.k == MATRIX)) {
            // billions of weights: rows in parallel, each 64-row chunk with
            // its own stream (deterministic for any thread count)
            const double sd = t.k == EMBED ? 1.0 : 1.0 / std::sqrt((double) t.ne0);
            const int64_t n_chunk = (t.ne1 + 63) / 64;
            const size_t rs = ggml_row_size(tt, t.ne0);
            qbuf.resize(rs * (size_t) t.ne1);
            std::atomic<int64_t> next{0};
            auto work = [&]() {
                for (int64_t c; (c = next.fetch_add(1)) < n_chunk;) {
                    const int64_t r0 = c * 64, nr = std::min<int64_t>(64, t.ne1 - r0);
                    align::rng rc(params->seed ^ align::fnv1a(t.name) ^ (0x9E3779B97F4A7C15ULL * (uint64_t) (c + 1)));
                    float * x = data.data() + r0 * t.ne0;
                    for (int64_t j = 0; j < nr * t.ne0; j++) x[j] = (float) (sd * rc.normal());
                    if (tt != GGML_TYPE_F32) ggml_quantize_chunk(tt, data.data(), qbuf.data(), r0 * t.ne0, nr, t.ne0, nullptr);
                }
            };
            std::vector<std::thread> th;
            const unsigned nt = (unsigned) align::threads_or_default(0);
            for (unsigned k = 0; k < nt; k++) th.emplace_back(work);
            for (auto & x : th) x.join();
            const uint8_t * bytes = tt == GGML_TYPE_F32 ? reinterpret_cast<const uint8_t *>(data.data()) : qbuf.data();
            const size_t nbytes = tt == GGML_TYPE_F32 ? sizeof(float) * (size_t) n : qbuf.size();
            wr_ok = std::fwrite(bytes, 1, nbytes, fp) == nbytes;
            const size_t pad = GGML_PAD(nbytes, align_to) - nbytes;
            static const uint8_t zeros[64] = {0};
            if (wr_ok && pad) wr_ok = std::fwrite(zeros, 1, pad, fp) == pad;
            continue;
        }
        if (t.k == ROPE_FREQS) {
            // Llama 3.1's rope scaling as its converters write it: per
            // frequency, 1 (short wavelengths), factor (long) or a blend
            const double factor = 8, lo = 1, hi = 4, old_ctx = 8192, pi = 3.141592653589793;
            for (int64_t i = 0; i < t.ne0; i++) {
                const double freq = std::pow(10000.0, -2.0 * (double) i / (double) head_dim);
                const double wavelen = 2 * pi / freq;
                double f;
                if (wavelen < old_ctx / hi) f = 1;
                else if (wavelen > old_ctx / lo) f = factor;
                else {
                    const double smooth = (old_ctx / wavelen - lo) / (hi - lo);
                    f = 1 / ((1 - smooth) / factor + smooth);
                }
                data[(size_t) i] = (float) f;
            }
        } else if (t.k == NORM) {
            for (auto & x : data) x = (float) (1.0 + 0.05 * r.normal());
        } else if (t.k == BIAS) {
            for (auto & x : data) x = (float) (0.02 * r.normal());
        } else if (t.k == EMBED) {
            // gemma3 multiplies embeddings by sqrt(n_embd) and ties its head
            // to them: N(0, 1/n_embd) gives unit inputs and unit logits
            const double sd = gemma3 ? 1.0 / std::sqrt((double) t.ne0) : 1.0;
            for (auto & x : data) x = (float) (sd * r.normal());
        } else {
            const double sd = 1.0 / std::sqrt((double) t.ne0);
            for (auto & x : data) x = (float) (sd * r.normal());
        }
        const uint8_t * bytes;
        size_t nbytes;
        if (tt == GGML_TYPE_F32) {
            bytes = reinterpret_cast<const uint8_t *>(data.data());
            nbytes = sizeof(float) * (size_t) n;
        } else {
            nbytes = ggml_row_size(tt, t.ne0) * (size_t) t.ne1;
            qbuf.resize(nbytes);
            ggml_quantize_chunk(tt, data.data(), qbuf.data(), 0, t.ne1, t.ne0, nullptr);
            bytes = qbuf.data();
        }
        wr_ok = std::fwrite(bytes, 1, nbytes, fp) == nbytes;
        const size_t pad = GGML_PAD(nbytes, align_to) - nbytes;
        static const uint8_t zeros[64] = {0};
        if (wr_ok && pad) wr_ok = std::fwrite(zeros, 1, pad, fp) == pad;
    }
    if (!wr_ok) return fail(ALIGN_ERR_IO, std::string(path) + ": write failed: " + std::strerror(errno));
    if (align_status st = out.commit(); st != ALIGN_OK) return st;
    return ok();
    ALIGN_CATCH
}

}  // extern "C"

extern "C" align_status align_model_dequantize(const char * in_path, const char * out_path) {
    if (in_path == nullptr || out_path == nullptr) {
        return fail(ALIGN_ERR_INVALID_ARGUMENT, "align_model_dequantize: NULL argument");
    }
    ALIGN_TRY
    align_status st = align::check_gguf_file(in_path);
    if (st != ALIGN_OK) return st;
    ggml_context * data_raw = nullptr;
    gguf_init_params gp = {/*no_alloc=*/false, &data_raw};
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> in(gguf_init_from_file(in_path, gp), gguf_free);
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> data(data_raw, ggml_free);
    if (!in) return fail(ALIGN_ERR_FORMAT, std::string(in_path) + ": cannot read");
    gguf_context * out = gguf_init_empty();
    std::unique_ptr<gguf_context, void (*)(gguf_context *)> og(out, gguf_free);
    gguf_set_kv(out, in.get());
    gguf_set_val_u32(out, "general.file_type", 0);
    const int64_t n = gguf_get_n_tensors(in.get());
    size_t need = 0;
    for (int64_t i = 0; i < n; i++) {
        ggml_tensor * t = ggml_get_tensor(data.get(), gguf_get_tensor_name(in.get(), i));
        need += (size_t) ggml_nelements(t) * sizeof(float) + ggml_tensor_overhead();
    }
    ggml_init_params ip = {need + 1024, nullptr, false};
    std::unique_ptr<ggml_context, void (*)(ggml_context *)> fctx(ggml_init(ip), ggml_free);
    if (!fctx) return fail(ALIGN_ERR_OUT_OF_MEMORY, "cannot allocate the dequantized model");
    for (int64_t i = 0; i < n; i++) {
        ggml_tensor * t = ggml_get_tensor(data.get(), gguf_get_tensor_name(in.get(), i));
        ggml_tensor * f = ggml_new_tensor(fctx.get(), GGML_TYPE_F32, ggml_n_dims(t), t->ne);
        ggml_set_name(f, ggml_get_name(t));
        if (t->type == GGML_TYPE_F32) {
            std::memcpy(f->data, t->data, ggml_nbytes(t));
        } else {
            const ggml_type_traits * tr = ggml_get_type_traits(t->type);
            if (tr == nullptr || tr->to_float == nullptr) {
                return fail(ALIGN_ERR_UNSUPPORTED, std::string("cannot dequantize tensor ") + ggml_get_name(t));
            }
            tr->to_float(t->data, (float *) f->data, ggml_nelements(t));
        }
        gguf_add_tensor(out, f);
    }
    align::atomic_file file;
    file.reserve(out_path);
    if (!gguf_write_to_file(out, file.tmp().c_str(), false)) return fail(ALIGN_ERR_IO, std::string(out_path) + ": write failed");
    if (align_status st = file.commit(); st != ALIGN_OK) return st;
    return ok();
    ALIGN_CATCH
}
