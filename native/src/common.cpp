// common.cpp: errors, logging and library initialisation.
#include "internal.h"

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace {

thread_local std::string tl_error;
thread_local std::string tl_log_errors;
thread_local bool        tl_capturing = false;
thread_local int         tl_guard_depth = 0;
thread_local std::string tl_last_assert;

std::mutex   g_log_mu;
align_log_fn g_log_fn = nullptr;
void *       g_log_ud = nullptr;
std::once_flag g_init_once;

int level_of(ggml_log_level l) {
    switch (l) {
        case GGML_LOG_LEVEL_DEBUG: return ALIGN_LOG_DEBUG;
        case GGML_LOG_LEVEL_WARN:  return ALIGN_LOG_WARN;
        case GGML_LOG_LEVEL_ERROR: return ALIGN_LOG_ERROR;
        default:                   return ALIGN_LOG_INFO;
    }
}

void log_trampoline(ggml_log_level level, const char * text, void * /*ud*/) {
    if (text == nullptr) {
        return;
    }
    if (level == GGML_LOG_LEVEL_ERROR && tl_capturing && tl_log_errors.size() < 4096) {
        tl_log_errors += text;
    }
    align_log_fn fn;
    void * ud;
    {
        std::lock_guard<std::mutex> lk(g_log_mu);
        fn = g_log_fn;
        ud = g_log_ud;
    }
    if (fn != nullptr && level != GGML_LOG_LEVEL_CONT) {
        fn(level_of(level), text, ud);
    } else if (fn != nullptr) {
        fn(ALIGN_LOG_DEBUG, text, ud);
    }
}

void abort_cb(const char * message) {
    if (tl_guard_depth > 0) {
        tl_last_assert = message ? message : "assertion failed";
        throw align::ggml_assert_error(tl_last_assert);
    }
    // unguarded (e.g. a compute worker thread): ggml aborts after we return
    std::fprintf(stderr, "align: fatal: %s\n", message ? message : "ggml abort");
}

}  // namespace

namespace align {

bool cpu_trainer_reads(const char * buft_name, bool is_host) {
    return is_host || (buft_name != nullptr && std::strcmp(buft_name, "CPU_REPACK") == 0);
}

std::string cpu_foreign_extra_buft() {
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (dev == nullptr) return "";
    using get_extra_t = ggml_backend_buffer_type_t * (*)(ggml_backend_dev_t);
    auto get_extra = (get_extra_t) ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev),
                                                                      "ggml_backend_dev_get_extra_bufts");
    if (get_extra == nullptr) return "";
    for (ggml_backend_buffer_type_t * b = get_extra(dev); b != nullptr && *b != nullptr; b++) {
        if (!cpu_trainer_reads(ggml_backend_buft_name(*b), ggml_backend_buft_is_host(*b))) return ggml_backend_buft_name(*b);
    }
    return "";
}

abort_guard::abort_guard() { tl_guard_depth++; }
abort_guard::~abort_guard() { tl_guard_depth--; }
std::string last_assert() { return tl_last_assert; }

align_status fail(align_status status, const std::string & msg) {
    tl_error = msg;
    return status;
}

align_status ok() {
    tl_error.clear();
    return ALIGN_OK;
}

void log_capture_begin() {
    tl_log_errors.clear();
    tl_last_assert.clear();
    tl_capturing = true;
}

std::string log_capture_text() {
    tl_capturing = false;
    std::string s = tl_log_errors;
    // keep the most specific line: llama.cpp prints the cause first and a
    // generic "failed to load" after it
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
        s.pop_back();
    }
    std::string best;
    size_t start = 0;
    while (start <= s.size()) {
        size_t end = s.find('\n', start);
        if (end == std::string::npos) end = s.size();
        std::string line = s.substr(start, end - start);
        if (!line.empty() && best.empty()) {
            best = line;
        }
        if (line.find("error loading model:") != std::string::npos ||
            (line.find("failed to") != std::string::npos && best.find(':') == std::string::npos)) {
            best = line;
        }
        start = end + 1;
    }
    return best;
}

namespace {

// Walks a GGUF header (key/values and tensor infos) checking every length
// against the bytes left in the file, before gguf_init_from_file sees it:
// that reader trusts lengths and would allocate gigabytes for a corrupt one.
// Returns "" when the structure is sound, else what is wrong.
std::string walk_gguf_header(FILE * f, uint64_t file_size) {
    uint64_t pos = 0;
    auto rd = [&](void * dst, size_t n) -> bool {
        if (pos + n > file_size || std::fread(dst, 1, n, f) != n) return false;
        pos += n;
        return true;
    };
    auto skip = [&](uint64_t n) -> bool {
        if (n > file_size - pos) return false;
        if (std::fseek(f, (long) n, SEEK_CUR) != 0) return false;
        pos += n;
        return true;
    };
    auto rd_u32 = [&](uint32_t & v) { return rd(&v, 4); };
    auto rd_u64 = [&](uint64_t & v) { return rd(&v, 8); };
    auto skip_str = [&]() -> bool {
        uint64_t n;
        return rd_u64(n) && skip(n);
    };
    // sizes of GGUF scalar value types 0..12 (8 = string, 9 = array)
    static const int k_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, -1, -1, 8, 8, 8};
    char magic[4];
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (!rd(magic, 4) || !rd_u32(version) || !rd_u64(n_tensors) || !rd_u64(n_kv)) return "header is truncated";
    if (version < 2 || version > 3) return "unsupported GGUF version " + std::to_string(version);
    if (n_tensors > file_size / 24 || n_kv > file_size / 12) return "implausible tensor or key count";
    for (uint64_t i = 0; i < n_kv; i++) {
        uint32_t type;
        if (!skip_str() || !rd_u32(type)) return "key/value " + std::to_string(i) + " is truncated";
        if (type > 12) return "key/value " + std::to_string(i) + " has unknown type " + std::to_string(type);
        if (type == 8) {
            if (!skip_str()) return "key/value " + std::to_string(i) + ": string runs past the end of the file";
        } else if (type == 9) {
            uint32_t et;
            uint64_t n;
            if (!rd_u32(et) || !rd_u64(n)) return "key/value " + std::to_string(i) + " is truncated";
            if (et > 12 || et == 9) return "key/value " + std::to_string(i) + " has bad array type";
            if (et == 8) {
                if (n > (file_size - pos) / 8) return "key/value " + std::to_string(i) + ": array runs past the end of the file";
                for (uint64_t k = 0; k < n; k++) {
                    if (!skip_str()) return "key/value " + std::to_string(i) + ": string runs past the end of the file";
                }
            } else if (n > (file_size - pos) / (uint64_t) k_size[et] || !skip(n * (uint64_t) k_size[et])) {
                return "key/value " + std::to_string(i) + ": array runs past the end of the file";
            }
        } else if (!skip((uint64_t) k_size[type])) {
            return "key/value " + std::to_string(i) + " is truncated";
        }
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        uint32_t n_dims, type;
        uint64_t ne, off;
        if (!skip_str() || !rd_u32(n_dims)) return "tensor info " + std::to_string(i) + " is truncated";
        if (n_dims > 4) return "tensor info " + std::to_string(i) + " has " + std::to_string(n_dims) + " dimensions";
        for (uint32_t d = 0; d < n_dims; d++) {
            if (!rd_u64(ne)) return "tensor info " + std::to_string(i) + " is truncated";
        }
        if (!rd_u32(type) || !rd_u64(off)) return "tensor info " + std::to_string(i) + " is truncated";
        if (type >= GGML_TYPE_COUNT) return "tensor info " + std::to_string(i) + " has unknown type " + std::to_string(type);
    }
    return "";
}

}  // namespace

align_status check_gguf_file(const std::string & path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
        return fail(ALIGN_ERR_IO, path + ": " + std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        return fail(ALIGN_ERR_IO, path + ": is a directory");
    }
    FILE * f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        return fail(ALIGN_ERR_IO, path + ": " + std::strerror(errno));
    }
    char magic[4] = {0, 0, 0, 0};
    size_t n = std::fread(magic, 1, 4, f);
    if (n < 4 || std::memcmp(magic, "GGUF", 4) != 0) {
        std::fclose(f);
        return fail(ALIGN_ERR_FORMAT, path + ": not a GGUF file (bad magic)");
    }
    std::rewind(f);
    std::string why = walk_gguf_header(f, (uint64_t) st.st_size);
    std::fclose(f);
    if (!why.empty()) {
        return fail(ALIGN_ERR_FORMAT, path + ": corrupt or truncated GGUF (" + why + ")");
    }
    // gguf_init_from_file validates the header, key/values and tensor infos
    // (bounds, overflow, alignment) without reading tensor data.
    log_capture_begin();
    gguf_init_params gp = {/*no_alloc =*/true, /*ctx =*/nullptr};
    gguf_context * g = gguf_init_from_file(path.c_str(), gp);
    std::string cause = log_capture_text();
    if (g == nullptr) {
        return fail(ALIGN_ERR_FORMAT, path + ": corrupt or truncated GGUF" + (cause.empty() ? "" : " (" + cause + ")"));
    }
    const size_t data_off = gguf_get_data_offset(g);
    size_t need = data_off;
    const int64_t nt = gguf_get_n_tensors(g);
    for (int64_t i = 0; i < nt; i++) {
        size_t end = data_off + gguf_get_tensor_offset(g, i) + gguf_get_tensor_size(g, i);
        if (end > need) need = end;
    }
    gguf_free(g);
    if ((uint64_t) st.st_size < need) {
        return fail(ALIGN_ERR_FORMAT, path + ": truncated GGUF (file has " + std::to_string((long long) st.st_size) +
                                          " bytes, tensor data needs " + std::to_string((unsigned long long) need) + ")");
    }
    return ok();
}

int32_t threads_or_default(int32_t n) {
    if (n > 0) return n;
    const unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 4 : (int32_t) hc;
}

std::string gguf_str(const gguf_context * g, const char * key) {
    const int64_t k = gguf_find_key(g, key);
    if (k < 0 || gguf_get_kv_type(g, k) != GGUF_TYPE_STRING) return "";
    return gguf_get_val_str(g, k);
}

atomic_file::~atomic_file() {
    if (f_ != nullptr) std::fclose(f_);
    if (!done_ && !tmp_.empty()) std::remove(tmp_.c_str());
}

void atomic_file::reserve(const std::string & path) {
    path_ = path;
    tmp_ = path + ".tmp." + std::to_string((long) getpid());
}

align_status atomic_file::open(const std::string & path) {
    reserve(path);
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (f_ == nullptr) return fail(ALIGN_ERR_IO, tmp_ + ": " + std::strerror(errno));
    return ALIGN_OK;
}

align_status atomic_file::commit() {
    if (f_ == nullptr) f_ = std::fopen(tmp_.c_str(), "rb+");
    bool good = f_ != nullptr && std::fflush(f_) == 0 && fsync(fileno(f_)) == 0;
    int err = good ? 0 : errno;
    if (f_ != nullptr && std::fclose(f_) != 0 && good) {
        good = false;
        err = errno;
    }
    f_ = nullptr;
    if (good && std::rename(tmp_.c_str(), path_.c_str()) != 0) {
        good = false;
        err = errno;
    }
    if (!good) {
        std::remove(tmp_.c_str());
        tmp_.clear();
        return fail(ALIGN_ERR_IO, path_ + ": " + std::strerror(err));
    }
    done_ = true;
    return ALIGN_OK;
}

}  // namespace align

extern "C" {

const char * align_last_error(void) { return tl_error.c_str(); }

const char * align_status_name(align_status s) {
    switch (s) {
        case ALIGN_OK:                   return "ok";
        case ALIGN_ERR_INVALID_ARGUMENT: return "invalid argument";
        case ALIGN_ERR_IO:               return "io";
        case ALIGN_ERR_FORMAT:           return "format";
        case ALIGN_ERR_UNSUPPORTED:      return "unsupported";
        case ALIGN_ERR_OUT_OF_MEMORY:    return "out of memory";
        case ALIGN_ERR_CANCELLED:        return "cancelled";
        case ALIGN_ERR_BUFFER_TOO_SMALL: return "buffer too small";
        case ALIGN_ERR_INTERNAL:         return "internal";
    }
    return "unknown";
}

align_status align_init(align_log_fn log, void * user_data) {
    {
        std::lock_guard<std::mutex> lk(g_log_mu);
        g_log_fn = log;
        g_log_ud = user_data;
    }
    try {
        std::call_once(g_init_once, [] {
            ggml_set_abort_callback(abort_cb);
            llama_log_set(log_trampoline, nullptr);
            ggml_log_set(log_trampoline, nullptr);
            llama_backend_init();
        });
    } catch (...) {
        return align::fail(ALIGN_ERR_INTERNAL, "backend initialisation failed");
    }
    return align::ok();
}

bool align_gpu_device(char * buf, int32_t buf_len) {
    if (buf != nullptr && buf_len > 0) buf[0] = '\0';
    // llama.cpp registers its backends statically; align_init (which the
    // caller has run) only adds logging and the abort hook
    ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
    if (dev == nullptr) return false;
    if (buf != nullptr && buf_len > 0) std::snprintf(buf, (size_t) buf_len, "%s", ggml_backend_dev_name(dev));
    return true;
}

const char * align_version(void) { return "align-native 0.1 (ggml/llama.cpp from github.com/ollama/ollama v0.17.4)"; }

}  // extern "C"
