// Native tests of the C API: loading never aborts the process on bad input
// (truncated, corrupt or non-GGUF files), and errors carry messages.
// Prints "N passed, N failed" and exits non-zero on any failure.
#include "align.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
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

    unlink(bad.c_str());
    unlink(base.c_str());
    rmdir(dir);
    std::printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
