// internal.h: shared helpers of the native library (not part of the C API).
#pragma once

#include "align.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

struct llama_model;
struct llama_adapter_lora;
struct llama_sampler;
struct align_model;
struct gguf_context;

namespace align {

// Records msg as this thread's last error and returns status.
align_status fail(align_status status, const std::string & msg);
align_status ok();

// Error-level log lines llama.cpp/ggml printed on this thread since the last
// call to log_capture_begin; used to give load failures their real cause.
void        log_capture_begin();
std::string log_capture_text();

// Classifies a file before llama.cpp sees it: missing/unreadable -> IO,
// not GGUF / corrupt header -> FORMAT. Returns ALIGN_OK when it looks like
// GGUF whose tensor data fits in the file.
align_status check_gguf_file(const std::string & path);

// While an abort_guard lives on a thread, a GGML_ASSERT failing on that
// thread throws align::ggml_assert_error instead of aborting the process
// (ggml_set_abort_callback). llama.cpp's loaders catch exceptions and clean
// up, so bad files become errors. Asserts on ggml worker threads still abort:
// validate inputs before compute.
struct ggml_assert_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct abort_guard {
    abort_guard();
    ~abort_guard();
    abort_guard(const abort_guard &) = delete;
    abort_guard & operator=(const abort_guard &) = delete;
};

// The sampler chain of `sample` and of batched generation: <unk> banned
// (when the vocabulary has one), the grammar (may be NULL; the chain takes
// it), then greedy or top-k / top-p / min-p / temperature / dist(seed).
// The caller frees the chain (llama_sampler_free).
llama_sampler * sampler_chain(const align_model * model, const align_sampler_params & p, uint32_t seed, llama_sampler * grammar);

// Whether the CPU trainer can read weights in a buffer of this type: plain
// host memory, or the CPU backend's repacked buffer ("CPU_REPACK": its
// matrices are multiplied by ggml-cpu's own repack kernels, which dispatch
// on the buffer, and the trainer takes Wᵀ from the file's bytes). Other
// extra buffer types (AMX, KleidiAI, ...) hold layouts it cannot read.
bool cpu_trainer_reads(const char * buft_name, bool is_host);

// The first of the CPU backend's extra buffer types the trainer cannot
// read ("" when none: on AVX2 and AVX-512 CPUs without AMX only
// CPU_REPACK, which it reads).
std::string cpu_foreign_extra_buft();

// Message of the last GGML_ASSERT converted on this thread ("" if none);
// cleared by log_capture_begin.
std::string last_assert();

// The thread count of a CPU computation: n when positive, else every core
// the machine reports (4 when it reports none).
int32_t threads_or_default(int32_t n);

// A string value of GGUF metadata: "" when key is absent or not a string.
std::string gguf_str(const gguf_context * g, const char * key);
inline std::string gguf_str(const gguf_context * g, const std::string & key) { return gguf_str(g, key.c_str()); }

// FNV-1a of s: seeds a stream per tensor name, so values do not depend on
// the order tensors are made in.
inline uint64_t fnv1a(const std::string & s) {
    uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

// splitmix64: the deterministic stream of fixture weights and LoRA A
// initialisation (the same values on every platform).
struct rng {
    uint64_t s;
    explicit rng(uint64_t seed) : s(seed) {}
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    double uniform() { return (double) (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
    double normal() {  // Box-Muller
        double u1 = uniform(), u2 = uniform();
        if (u1 < 1e-300) u1 = 1e-300;
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
};

// A file written whole or not at all: the bytes go to PATH.tmp.PID, then
// fflush, fsync and a rename onto PATH, so a reader (or a crash) sees the
// old file or the complete new one. Until commit() succeeds, destroying it
// removes the temporary file (an error return, an exception). The name is
// the one align/mergefile.TempName expects (align merge removes those a
// killed merge left).
class atomic_file {
  public:
    atomic_file() = default;
    ~atomic_file();
    atomic_file(const atomic_file &) = delete;
    atomic_file & operator=(const atomic_file &) = delete;

    // Opens the temporary file for writing through file(); a failure
    // names the temporary file.
    align_status open(const std::string & path);
    // Only names the temporary file (tmp()), for a writer that opens it
    // itself (gguf_write_to_file); commit() reopens it to sync it.
    void                reserve(const std::string & path);
    FILE *              file() const { return f_; }
    const std::string & tmp() const { return tmp_; }
    // Flushes, syncs, closes and renames onto the path; on failure the
    // temporary file is removed and the error names the path.
    align_status commit();

  private:
    std::string path_, tmp_;
    FILE *      f_ = nullptr;
    bool        done_ = false;
};

}  // namespace align

struct align_model {
    llama_model * model = nullptr;
    int32_t       n_threads = 0;
    bool          vocab_only = false;
    std::string   path;
};

struct align_lora {
    llama_adapter_lora * adapter = nullptr;
    align_model *        owner = nullptr;
};

// Wraps a body so no C++ exception crosses the C boundary.
#define ALIGN_TRY try { align::abort_guard align_guard_;
#define ALIGN_CATCH                                                              \
    }                                                                            \
    catch (const align::ggml_assert_error & e) {                                 \
        return align::fail(ALIGN_ERR_INTERNAL, std::string("ggml: ") + e.what()); \
    }                                                                            \
    catch (const std::bad_alloc &) {                                             \
        return align::fail(ALIGN_ERR_OUT_OF_MEMORY, "out of memory");            \
    }                                                                            \
    catch (const std::exception & e) {                                           \
        return align::fail(ALIGN_ERR_INTERNAL, e.what());                        \
    }                                                                            \
    catch (...) {                                                                \
        return align::fail(ALIGN_ERR_INTERNAL, "unknown exception");             \
    }
