// Native tests of the C API: loading never aborts the process on bad input
// (truncated, corrupt or non-GGUF files), and errors carry messages.
// Prints "N passed, N failed" and exits non-zero on any failure.
#include "align.h"
#include "gguf.h"
#include "train_internal.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sys/stat.h>
#include <string>
#include <unistd.h>
#include <vector>

static int g_pass = 0, g_fail = 0;

#define EXPECT(cond, ...)                                             \
    do {                                                              \
        if (cond) {                                                   \
            g_pass++;                                                 \
        } else {                                                      \
            g_fail++;                                                 \
            std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            std::fprintf(stderr, __VA_ARGS__);                        \
            std::fprintf(stderr, "\n");                               \
        }                                                             \
    } while (0)

static std::vector<char> read_file(const std::string & p) {
    std::vector<char> b;
    FILE * f = std::fopen(p.c_str(), "rb");
    if (!f) return b;
    std::fseek(f, 0, SEEK_END);
    b.resize((size_t) std::ftell(f));
    std::fseek(f, 0, SEEK_SET);
    if (std::fread(b.data(), 1, b.size(), f) != b.size()) b.clear();
    std::fclose(f);
    return b;
}

static void write_file(const std::string & p, const char * data, size_t n) {
    FILE * f = std::fopen(p.c_str(), "wb");
    if (!f) { std::perror(p.c_str()); std::exit(2); }
    if (n) std::fwrite(data, 1, n, f);
    std::fclose(f);
}

// Loads path as a model; returns the status (freeing any model).
static align_status try_load(const std::string & path) {
    align_model * m = nullptr;
    align_model_params mp = align_model_default_params();
    mp.n_threads = 1;
    align_status st = align_model_load(path.c_str(), &mp, &m);
    align_model_free(m);
    return st;
}

// Cancel requests are sticky and consumed by the call that sees them;
// logits buffers smaller than the model's vocabulary are refused before
// anything is written.
static void test_sessions(const std::string & base) {
    align_model * m = nullptr;
    EXPECT(align_model_load(base.c_str(), nullptr, &m) == ALIGN_OK, "load: %s", align_last_error());
    if (!m) return;
    align_model_info info;
    align_model_get_info(m, &info);
    align_session_params sp = align_session_default_params();
    sp.n_ctx = 128;
    sp.n_threads = 2;
    align_session * s = nullptr;
    EXPECT(align_session_new(m, &sp, &s) == ALIGN_OK, "session: %s", align_last_error());
    if (!s) { align_model_free(m); return; }
    int32_t toks[64];
    int32_t n = 0;
    EXPECT(align_model_tokenize(m, "tell me a story", 15, true, false, toks, 64, &n, nullptr) == ALIGN_OK, "tokenize");
    align_sampler_params gp = align_sampler_default_params();
    gp.max_tokens = 4;
    gp.seed = 1;

    align_session_cancel(s);
    EXPECT(align_session_generate(s, toks, n, &gp, nullptr, nullptr, nullptr) == ALIGN_ERR_CANCELLED,
           "a cancel before the call is not lost");
    EXPECT(align_session_generate(s, toks, n, &gp, nullptr, nullptr, nullptr) == ALIGN_OK,
           "the cancelled call consumed the request: %s", align_last_error());
    align_session_cancel(s);
    align_session_cancel_reset(s);
    EXPECT(align_session_generate(s, toks, n, &gp, nullptr, nullptr, nullptr) == ALIGN_OK,
           "after cancel_reset: %s", align_last_error());
    std::vector<float> lp((size_t) n);
    align_session_cancel(s);
    EXPECT(align_session_logprobs(s, toks, n, lp.data(), nullptr, 0) == ALIGN_ERR_CANCELLED, "logprobs after cancel");

    const float canary = -12345.0f;
    const int32_t small = info.n_vocab / 2;
    std::vector<float> buf((size_t) small + 1, 0.0f);
    buf[(size_t) small] = canary;
    EXPECT(align_session_reset(s) == ALIGN_OK, "reset");
    EXPECT(align_session_decode(s, toks, n, buf.data(), small) == ALIGN_ERR_BUFFER_TOO_SMALL,
           "decode into %d floats with a %d-token vocabulary", small, info.n_vocab);
    EXPECT(buf[(size_t) small] == canary, "decode wrote past its buffer");
    std::vector<float> all((size_t) n * (size_t) small + 1, 0.0f);
    all.back() = canary;
    EXPECT(align_session_logprobs(s, toks, n, lp.data(), all.data(), (int64_t) all.size() - 1) == ALIGN_ERR_BUFFER_TOO_SMALL,
           "logprobs into a buffer for a smaller vocabulary");
    EXPECT(all.back() == canary, "logprobs wrote past its buffer");
    std::vector<float> row((size_t) info.n_vocab);
    EXPECT(align_session_decode(s, toks, n, row.data(), info.n_vocab) == ALIGN_OK, "decode: %s", align_last_error());

    align_session_free(s);
    align_model_free(m);
}

// A vocabulary without byte fallback: unspellable characters become <unk>
// and are counted, and no C++ exception text comes back.
static void test_unspellable(const char * path) {
    if (access(path, R_OK) != 0) {
        std::printf("skipping the no-byte-fallback tokenizer test: no %s (set ALIGN_NOBYTE_MODEL)\n", path);
        return;
    }
    align_model * m = nullptr;
    align_model_params mp = align_model_default_params();
    mp.n_threads = 2;
    EXPECT(align_model_load(path, &mp, &m) == ALIGN_OK, "load %s: %s", path, align_last_error());
    if (!m) return;
    const std::string text = "Once upon a time {a caf\xc3\xa9} ~";
    int32_t toks[128];
    int32_t n = 0;
    align_tokenize_stats st;
    align_status rc = align_model_tokenize(m, text.data(), (int32_t) text.size(), true, false, toks, 128, &n, &st);
    EXPECT(rc == ALIGN_OK, "tokenize: %s", align_last_error());
    EXPECT(std::strstr(align_last_error(), "unordered_map") == nullptr, "exception text: %s", align_last_error());
    EXPECT(st.n_unknown >= 3 && st.first_offset == (int32_t) text.find('{') && std::strcmp(st.first_char, "{") == 0,
           "stats: %d unknown, first \"%s\" at %d", st.n_unknown, st.first_char, st.first_offset);
    // a buffer too small still reports the size needed
    int32_t need = 0;
    EXPECT(align_model_tokenize(m, text.data(), (int32_t) text.size(), true, false, toks, 2, &need, nullptr) ==
               ALIGN_ERR_BUFFER_TOO_SMALL && need == n, "small buffer: need %d, want %d", need, n);

    // a grammar that needs "{" cannot be followed: a clear error, not
    // llama.cpp's exception text; and <unk> is never sampled
    align_session * s = nullptr;
    align_session_params sp = align_session_default_params();
    sp.n_ctx = 256;
    EXPECT(align_session_new(m, &sp, &s) == ALIGN_OK, "session: %s", align_last_error());
    if (s) {
        align_sampler_params gp = align_sampler_default_params();
        gp.max_tokens = 8;
        gp.grammar = "root ::= \"{\" [a-z]+ \"}\"";
        EXPECT(align_session_generate(s, toks, n, &gp, nullptr, nullptr, nullptr) == ALIGN_ERR_UNSUPPORTED,
               "grammar the vocabulary cannot spell: %s", align_last_error());
        EXPECT(std::strstr(align_last_error(), "grammar stack") == nullptr && std::strstr(align_last_error(), "vocabulary"),
               "message: %s", align_last_error());
        gp.grammar = nullptr;
        gp.max_tokens = 64;
        gp.temperature = 1.5f;
        gp.top_k = 0;
        gp.top_p = 1;
        gp.min_p = 0;
        struct seen { int32_t unk; bool hit; } sn = {align_model_token_unknown(m), false};
        EXPECT(sn.unk == 0, "unknown token %d, want 0", sn.unk);
        auto cb = [](const char *, int32_t, int32_t tok, void * ud) -> bool {
            auto * x = static_cast<seen *>(ud);
            if (tok == x->unk) x->hit = true;
            return true;
        };
        for (uint32_t seed = 1; seed <= 4; seed++) {
            gp.seed = seed;
            EXPECT(align_session_generate(s, toks, n, &gp, cb, &sn, nullptr) == ALIGN_OK, "generate: %s", align_last_error());
        }
        EXPECT(!sn.hit, "<unk> was sampled");
        align_session_free(s);
    }
    align_model_free(m);
}

// align::atomic_file: the file appears whole on commit and only then; an
// abandoned or failed write leaves no temporary file and the old file as it was.
static void test_atomic_file(const std::string & dir) {
    const std::string path = dir + "/atomic.bin";
    const std::string tmp = path + ".tmp." + std::to_string((long) getpid());
    auto exists = [](const std::string & p) { return access(p.c_str(), F_OK) == 0; };
    {
        align::atomic_file f;
        EXPECT(f.open(path) == ALIGN_OK, "open: %s", align_last_error());
        EXPECT(f.tmp() == tmp, "temporary name %s, want PATH.tmp.PID (align/mergefile.TempName)", f.tmp().c_str());
        std::fputs("half", f.file());
        std::fflush(f.file());
        EXPECT(exists(tmp) && !exists(path), "before commit: only the temporary file");
    }
    EXPECT(!exists(tmp) && !exists(path), "an abandoned write left %s%s", exists(tmp) ? "its temporary file" : "",
           exists(path) ? "the file" : "");
    {
        align::atomic_file f;
        EXPECT(f.open(path) == ALIGN_OK, "open: %s", align_last_error());
        std::fputs("whole", f.file());
        EXPECT(f.commit() == ALIGN_OK, "commit: %s", align_last_error());
    }
    std::vector<char> got = read_file(path);
    EXPECT(std::string(got.begin(), got.end()) == "whole" && !exists(tmp), "after commit: %zu bytes, temporary %d", got.size(),
           (int) exists(tmp));
    {
        // a writer that opens the file itself (gguf_write_to_file)
        align::atomic_file f;
        f.reserve(path);
        write_file(f.tmp(), "again", 5);
        EXPECT(f.commit() == ALIGN_OK, "commit after reserve: %s", align_last_error());
    }
    got = read_file(path);
    EXPECT(std::string(got.begin(), got.end()) == "again" && !exists(tmp), "reserve + commit");
    {
        // the rename fails (the path is a non-empty folder): the error
        // names the path, the temporary file goes, the folder stays
        const std::string busy = dir + "/busy";
        mkdir(busy.c_str(), 0755);
        write_file(busy + "/x", "x", 1);
        align::atomic_file f;
        EXPECT(f.open(busy) == ALIGN_OK, "open: %s", align_last_error());
        std::fputs("data", f.file());
        EXPECT(f.commit() == ALIGN_ERR_IO, "commit onto a folder");
        EXPECT(std::strstr(align_last_error(), busy.c_str()) != nullptr, "the error names the path: %s", align_last_error());
        EXPECT(!exists(busy + ".tmp." + std::to_string((long) getpid())), "a failed commit left its temporary file");
        EXPECT(exists(busy + "/x"), "a failed commit touched the folder");
        unlink((busy + "/x").c_str());
        rmdir(busy.c_str());
    }
    unlink(path.c_str());
}

// align::gguf_str reads string keys only.
static void test_gguf_str() {
    gguf_context * g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "llama");
    gguf_set_val_u32(g, "llama.block_count", 2);
    EXPECT(align::gguf_str(g, "general.architecture") == "llama", "string key");
    EXPECT(align::gguf_str(g, std::string("general.architecture")) == "llama", "string key (std::string)");
    EXPECT(align::gguf_str(g, "llama.block_count").empty(), "a u32 key read as a string");
    EXPECT(align::gguf_str(g, "general.name").empty(), "an absent key");
    gguf_free(g);
}

static void test_threads() {
    EXPECT(align::threads_or_default(3) == 3, "an explicit count");
    const int32_t d = align::threads_or_default(0);
    EXPECT(d >= 1 && d == align::threads_or_default(-1), "the default: %d", d);
}

// The LoRA target table, at both ends: a set made with one target exports
// exactly that projection's tensors, and the file reader maps them back to
// the same bit; bits outside the table are refused.
static void test_lora_targets(const std::string & base, const std::string & dir) {
    align_model * m = nullptr;
    EXPECT(align_model_load(base.c_str(), nullptr, &m) == ALIGN_OK, "load: %s", align_last_error());
    if (!m) return;
    const std::string out = dir + "/targets.gguf";
    align_model_info mi;
    align_model_get_info(m, &mi);
    auto round_trip = [&](uint32_t targets) -> uint32_t {
        align_trainer_params p = align_trainer_default_params();
        p.n_threads = 2;
        align_trainer * tr = nullptr;
        if (align_trainer_new(m, &p, &tr) != ALIGN_OK) {
            EXPECT(false, "trainer: %s", align_last_error());
            return 0;
        }
        align_adapter_set_params sp = align_adapter_set_default_params();
        sp.name = "policy";
        sp.lora_rank = 2;
        sp.lora_alpha = 4;
        sp.targets = targets;
        int32_t id = -1;
        if (align_trainer_add_set(tr, &sp, &id) != ALIGN_OK || id != 0) {
            EXPECT(false, "set with targets %u: id %d, %s", targets, id, align_last_error());
            align_trainer_free(tr);
            return 0;
        }
        EXPECT(align_trainer_export(tr, 0, out.c_str()) == ALIGN_OK, "export: %s", align_last_error());
        align_trainer_free(tr);
        align_adapter_file_info info;
        EXPECT(align_adapter_file_describe(out.c_str(), &info) == ALIGN_OK, "describe: %s", align_last_error());
        EXPECT(info.n_tensors == 2 * mi.n_layer * __builtin_popcount(targets), "targets %u: %d tensors for %d layers", targets,
               info.n_tensors, mi.n_layer);
        return info.targets;
    };
    for (const auto & t : align::train::k_lora_targets) {
        const uint32_t got = round_trip(t.bit);
        EXPECT(got == t.bit, "a set on %s (bit %u) reads back as targets %u", t.tensor, t.bit, got);
    }
    EXPECT(round_trip(align::train::k_lora_all) == align::train::k_lora_all, "all targets");
    EXPECT(align::train::k_lora_all == 127u, "k_lora_all %u: the ALIGN_LORA_* enum has seven bits", align::train::k_lora_all);
    align_trainer_params p = align_trainer_default_params();
    align_trainer * tr = nullptr;
    EXPECT(align_trainer_new(m, &p, &tr) == ALIGN_OK, "trainer: %s", align_last_error());
    align_trainer_info ti;
    EXPECT(tr != nullptr && align_trainer_get_info(tr, &ti) == ALIGN_OK && ti.n_sets == 0 && ti.n_lora_params == 0,
           "a new trainer has no adapter set (no implicit set 0)");
    EXPECT(align_trainer_export(tr, 0, out.c_str()) != ALIGN_OK, "export of a set that does not exist");
    align_adapter_set_params sp = align_adapter_set_default_params();
    sp.name = "x";
    sp.targets = align::train::k_lora_all + 1;
    int32_t id = -1;
    EXPECT(align_trainer_add_set(tr, &sp, &id) == ALIGN_ERR_INVALID_ARGUMENT, "a bit outside the table: %s", align_last_error());
    align_trainer_free(tr);
    unlink(out.c_str());
    align_model_free(m);
}

int main() {
    char dir_tmpl[] = "/tmp/align-native-test-XXXXXX";
    const char * dir = mkdtemp(dir_tmpl);
    if (!dir) { std::perror("mkdtemp"); return 2; }
    const std::string base = std::string(dir) + "/tiny.gguf";
    const std::string bad = std::string(dir) + "/bad.gguf";
    EXPECT(align_init(nullptr, nullptr) == ALIGN_OK, "init: %s", align_last_error());

    align_modelgen_params gp = align_modelgen_default_params();
    gp.type = "q8_0";
    EXPECT(align_modelgen_write(base.c_str(), &gp) == ALIGN_OK, "modelgen: %s", align_last_error());
    EXPECT(try_load(base) == ALIGN_OK, "load fixture: %s", align_last_error());

    // missing file, directory, empty file, non-GGUF text
    EXPECT(try_load(std::string(dir) + "/missing.gguf") == ALIGN_ERR_IO, "missing file should be IO");
    EXPECT(std::strstr(align_last_error(), "missing.gguf") != nullptr, "message names the file: %s", align_last_error());
    EXPECT(try_load(dir) == ALIGN_ERR_IO, "directory should be IO");
    write_file(bad, "", 0);
    EXPECT(try_load(bad) == ALIGN_ERR_FORMAT, "empty file should be FORMAT: %s", align_last_error());
    write_file(bad, "hello world\n", 12);
    EXPECT(try_load(bad) == ALIGN_ERR_FORMAT, "text file should be FORMAT: %s", align_last_error());

    // every truncation point in the header and metadata, then a stride
    // through the tensor data
    std::vector<char> good = read_file(base);
    EXPECT(!good.empty(), "read fixture");
    // cut points, visited longest first so each is one truncate() of the
    // same file rather than a rewrite
    std::vector<size_t> cuts;
    for (size_t cut = 0; cut < good.size(); cut += cut < 70000 ? 1 + cut / 512 : 99991) cuts.push_back(cut);
    write_file(bad, good.data(), good.size());
    size_t n_trunc = 0, n_rejected = 0;
    for (auto it = cuts.rbegin(); it != cuts.rend(); ++it) {
        const size_t cut = *it;
        if (truncate(bad.c_str(), (off_t) cut) != 0) { std::perror("truncate"); return 2; }
        align_status st = try_load(bad);
        n_trunc++;
        if (st == ALIGN_ERR_FORMAT) n_rejected++;
        else EXPECT(false, "truncation at %zu: status %d (%s)", cut, (int) st, align_last_error());
    }
    std::printf("[%.1fs] ", (double) clock() / CLOCKS_PER_SEC);
    std::printf("truncations: %zu tried, %zu rejected with a format error\n", n_trunc, n_rejected);

    // random byte corruption in the first 64 KiB (header, metadata, tensor
    // infos): must never abort; any status is acceptable, but success must
    // give a usable model
    unsigned seed = 12345;
    size_t n_corrupt = 0, n_loaded = 0;
    for (int iter = 0; iter < 3000; iter++) {
        std::vector<char> c = good;
        const int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = 4 + (seed >> 8) % std::min<size_t>(c.size() - 4, 65536);
            seed = seed * 1103515245u + 12345u;
            c[at] = (char) (seed >> 16);
        }
        write_file(bad, c.data(), c.size());
        clock_t t0 = clock();
        align_status st = try_load(bad);
        if (getenv("ALIGN_TEST_VERBOSE") && clock() - t0 > CLOCKS_PER_SEC / 10)
            std::printf("slow corruption %d: %.2fs status %d: %s\n", iter, (double) (clock() - t0) / CLOCKS_PER_SEC, (int) st, align_last_error());
        n_corrupt++;
        if (st == ALIGN_OK) n_loaded++;
        else EXPECT(align_last_error()[0] != '\0', "corruption %d: error without message", iter);
    }
    std::printf("[%.1fs] ", (double) clock() / CLOCKS_PER_SEC);
    std::printf("corruptions: %zu tried, %zu still loaded\n", n_corrupt, n_loaded);

    // a model file is not an adapter
    align_model * m = nullptr;
    EXPECT(align_model_load(base.c_str(), nullptr, &m) == ALIGN_OK, "load: %s", align_last_error());
    align_lora * l = nullptr;
    EXPECT(align_lora_load(m, base.c_str(), &l) == ALIGN_ERR_UNSUPPORTED, "model as adapter: %s", align_last_error());
    align_lora_free(l);
    align_model_free(m);

    test_sessions(base);
    test_atomic_file(dir);
    test_gguf_str();
    test_threads();
    test_lora_targets(base, dir);
    test_unspellable(getenv("ALIGN_NOBYTE_MODEL") ? getenv("ALIGN_NOBYTE_MODEL")
                                                   : "../shared/models/TinyStories-656K-Q8_0.gguf");

    unlink(bad.c_str());
    unlink(base.c_str());
    rmdir(dir);
    std::printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
