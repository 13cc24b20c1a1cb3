// internal.h: shared helpers of the native library (not part of the C API).
#pragma once

#include "align.h"

#include <stdexcept>
#include <string>
#include <vector>

struct llama_model;
struct llama_adapter_lora;
struct llama_sampler;
struct align_model;

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
