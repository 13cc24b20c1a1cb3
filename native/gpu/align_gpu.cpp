// align_gpu: native test and benchmark driver of the CUDA build (no Go).
//
//   align_gpu kernels [--device D]
//       OUT_PROD(W, dyᵀ) (the frozen-weight input gradient, patched ggml-cuda)
//       for every base type against a double-precision CPU reference over the
//       dequantised weight: odd shapes, both layouts of dy, one tile and many
//       tiles (GGML_CUDA_OUT_PROD_TILE_BYTES) with a partial last tile.
//   align_gpu train --dir DIR [--device D]
//       a full training step on D against the CPU engine on the same tiny
//       fixture and batch (f32, f16, q8_0, q4_0, q4_k bases): log-prob sums,
//       gradients, and the adapter after 3 AdamW steps; zero nodes D cannot
//       run and zero graph tensors in host memory; device memory before and
//       after the trainer (no second copy of the base); each with and
//       without recompute (gradient checkpointing).
//   align_gpu gen --size 1b|8b --type q4_k|q8_0 --out PATH
//       a random-init benchmark model (native/src/modelgen.cpp).
//   align_gpu bench --model PATH [--device D] [--tokens 512] [--steps 8]
//       [--rank 16] [--peak-tflops 989] [--json PATH] [--label NAME] [--recompute 0|1]
//       DPO steps over a pair (2 x tokens, one micro-batch): tokens/s, MFU,
//       device memory, per-layer compute-buffer cost (for the 70B estimate);
//       --recompute 1: with gradient checkpointing.
//
// D defaults to the first GPU and falls back to the CPU (a dry run: the CPU
// path of every check, as scripts/gpu-check.sh --dry-run uses it). Exit
// status 0: every check passed; 1: a check failed; 2: usage.
#include "align.h"
#include "../src/train_internal.h"  // the trainer's graphs, for the node census

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

int g_failures = 0;

void check(bool ok, const std::string & what) {
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
    std::fflush(stdout);
    if (!ok) g_failures++;
}

std::string arg(const std::map<std::string, std::string> & a, const std::string & k, const std::string & def) {
    auto it = a.find(k);
    return it == a.end() ? def : it->second;
}

// the device to test: --device, else the first GPU, else the CPU
ggml_backend_dev_t pick_device(const std::string & want) {
    if (!want.empty()) {
        if (want == "CPU" || want == "cpu") return ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        return ggml_backend_dev_by_name(want.c_str());
    }
    ggml_backend_dev_t d = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
    return d ? d : ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
}

bool is_gpu(ggml_backend_dev_t d) { return ggml_backend_dev_type(d) == GGML_BACKEND_DEVICE_TYPE_GPU; }

double used_gib(ggml_backend_dev_t d) {
    size_t free = 0, total = 0;
    ggml_backend_dev_memory(d, &free, &total);
    return (double) (total - free) / (1024.0 * 1024.0 * 1024.0);
}

// ------------------------------------------------------------ kernels

// W's bytes of a type from F32 values (n_out rows of n_in)
std::vector<uint8_t> encode(ggml_type t, const std::vector<float> & w, int64_t n_in, int64_t n_out) {
    std::vector<uint8_t> out(ggml_row_size(t, n_in) * (size_t) n_out);
    if (t == GGML_TYPE_F32) std::memcpy(out.data(), w.data(), out.size());
    else if (t == GGML_TYPE_F16) ggml_fp32_to_fp16_row(w.data(), (ggml_fp16_t *) out.data(), n_in * n_out);
    else if (t == GGML_TYPE_BF16) ggml_fp32_to_bf16_row(w.data(), (ggml_bf16_t *) out.data(), n_in * n_out);
    else ggml_quantize_chunk(t, w.data(), out.data(), 0, n_out, n_in, nullptr);
    return out;
}

std::vector<float> decode(ggml_type t, const std::vector<uint8_t> & b, int64_t n) {
    std::vector<float> out((size_t) n);
    if (t == GGML_TYPE_F32) std::memcpy(out.data(), b.data(), (size_t) n * 4);
    else ggml_get_type_traits(t)->to_float(b.data(), out.data(), n);
    return out;
}

// One OUT_PROD case; returns false (and counts a failure) on a mismatch.
void out_prod_case(ggml_backend_t be, bool gpu, ggml_type type, int64_t n_in, int64_t n_out, int64_t N, bool transposed,
                   const char * tiles, std::mt19937 & rng) {
    char name[160];
    std::snprintf(name, sizeof(name), "out_prod %-5s W(%lld,%lld) dy(%lld,%lld) %s tiles=%s", ggml_type_name(type),
                  (long long) n_in, (long long) n_out, (long long) n_out, (long long) N,
                  transposed ? "dyT-view" : "B-contig", tiles);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> wf((size_t) (n_in * n_out)), dy((size_t) (n_out * N));
    for (auto & x : wf) x = nd(rng) / std::sqrt((float) n_in);
    for (auto & x : dy) x = nd(rng) * 1e-3f;  // gradient-sized values
    const std::vector<uint8_t> wb = encode(type, wf, n_in, n_out);
    const std::vector<float> wd = decode(type, wb, n_in * n_out);  // what the kernel must multiply

    ggml_init_params ip = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * W = ggml_new_tensor_2d(ctx, type, n_in, n_out);
    ggml_tensor * src1;
    ggml_tensor * D;
    if (transposed) {
        D = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_out, N);  // dy (n_out, N), as autodiff has it
        src1 = ggml_transpose(ctx, D);
    } else {
        D = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, N, n_out);  // B (N, n_out) contiguous
        src1 = D;
    }
    ggml_tensor * out = ggml_out_prod(ctx, W, src1);  // (n_in, N)
    ggml_cgraph * g = ggml_new_graph(ctx);
    ggml_build_forward_expand(g, out);
    const bool sup = ggml_backend_supports_op(be, out);
    if (!sup) {
        if (gpu) check(false, std::string(name) + ": not supported on the device (ggml without native/patches?)");
        else std::printf("SKIP %s: the CPU backend has no OUT_PROD for %s\n", name, ggml_type_name(type));
        ggml_free(ctx);
        return;
    }
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, be);
    ggml_backend_tensor_set(W, wb.data(), 0, wb.size());
    std::vector<float> dsrc((size_t) (n_out * N));
    if (transposed) dsrc = dy;
    else {
        for (int64_t k = 0; k < n_out; k++)
            for (int64_t j = 0; j < N; j++) dsrc[(size_t) (k * N + j)] = dy[(size_t) (j * n_out + k)];
    }
    ggml_backend_tensor_set(D, dsrc.data(), 0, dsrc.size() * 4);
    const ggml_status st = ggml_backend_graph_compute(be, g);
    std::vector<float> got((size_t) (n_in * N));
    ggml_backend_tensor_get(out, got.data(), 0, got.size() * 4);
    ggml_backend_buffer_free(buf);
    ggml_free(ctx);
    // reference: dst[i, j] = Σ_k W[i, k] · dy[k, j], in double
    double max_ref = 0, max_err = 0;
    for (int64_t j = 0; j < N; j++) {
        for (int64_t i = 0; i < n_in; i++) {
            double acc = 0;
            for (int64_t k = 0; k < n_out; k++) acc += (double) wd[(size_t) (k * n_in + i)] * dy[(size_t) (j * n_out + k)];
            max_ref = std::max(max_ref, std::fabs(acc));
            max_err = std::max(max_err, std::fabs(acc - got[(size_t) (j * n_in + i)]));
        }
    }
    const double rel = max_err / std::max(max_ref, 1e-30);
    // BF16 tiles: W and dy rounded to 8 significant bits (rel. 2^-9 each);
    // F32 on the GPU (cuBLAS SGEMM) and every CPU path are exact to ~1e-6
    const double tol = (gpu && type != GGML_TYPE_F32) ? 1.5e-2 : 1e-4;
    char msg[96];
    std::snprintf(msg, sizeof(msg), ": max err %.3g of max %.3g (rel %.2e, tol %.0e)", max_err, max_ref, rel, tol);
    check(st == GGML_STATUS_SUCCESS && std::isfinite(rel) && rel < tol, std::string(name) + msg);
}

int cmd_kernels(const std::map<std::string, std::string> & a) {
    ggml_backend_dev_t dev = pick_device(arg(a, "device", ""));
    if (dev == nullptr) { std::fprintf(stderr, "align_gpu: no such device\n"); return 2; }
    const bool gpu = is_gpu(dev);
    ggml_backend_t be = ggml_backend_dev_init(dev, nullptr);
    std::printf("# kernels on %s (%s)\n", ggml_backend_dev_name(dev), gpu ? "GPU" : "CPU dry run");
    const ggml_type types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                               GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
                               GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    std::mt19937 rng(42);
    for (ggml_type t : types) {
        // odd n_out and N; n_in a multiple of every block size (256)
        const int64_t n_in = 768, n_out = 67, N = 13;
        unsetenv("GGML_CUDA_OUT_PROD_TILE_BYTES");
        out_prod_case(be, gpu, t, n_in, n_out, N, true, "1", rng);
        out_prod_case(be, gpu, t, n_in, n_out, N, false, "1", rng);
        // tiles of 5 rows: 13 full tiles and a last one of 2 rows
        setenv("GGML_CUDA_OUT_PROD_TILE_BYTES", std::to_string(n_in * 2 * 5).c_str(), 1);
        out_prod_case(be, gpu, t, n_in, n_out, N, true, "5-row", rng);
        // one row per tile, a wider W and more columns
        setenv("GGML_CUDA_OUT_PROD_TILE_BYTES", "1", 1);
        out_prod_case(be, gpu, t, 256, 9, 33, true, "1-row", rng);
        unsetenv("GGML_CUDA_OUT_PROD_TILE_BYTES");
    }
    // more than 65,535 rows in B's converter (its grid.y limit): many tokens
    // (dyᵀ view), and a vocabulary-sized n_out (contiguous B)
    for (ggml_type t : {GGML_TYPE_Q4_K, GGML_TYPE_F16}) {
        out_prod_case(be, gpu, t, 256, 9, 70000, true, "1", rng);
        out_prod_case(be, gpu, t, 256, 70000, 3, false, "1", rng);
    }
    ggml_backend_free(be);
    return g_failures ? 1 : 0;
}

// ------------------------------------------------------------ training step

struct trainer_run {
    align_model * model = nullptr;
    align_trainer * tr = nullptr;
    ~trainer_run() {
        if (tr) align_trainer_free(tr);
        if (model) align_model_free(model);
    }
};

bool open_trainer(const std::string & path, const char * device, bool offload, bool exact, trainer_run & r,
                  bool recompute = false) {
    align_model_params mp = align_model_default_params();
    mp.n_gpu_layers = offload ? 999 : 0;
    mp.trainable = true;
    if (align_model_load(path.c_str(), &mp, &r.model) != ALIGN_OK) {
        std::printf("FAIL load %s: %s\n", path.c_str(), align_last_error());
        g_failures++;
        return false;
    }
    align_trainer_params tp = align_trainer_default_params();
    tp.device = device;
    tp.exact_backward = exact;
    tp.recompute = recompute;
    // a CPU run (the dry run) uses Q8_0 copies: the default repacked Q4_K
    // copies of a Q4_K base round W twice (gradient rel. L2 ~9e-2), which
    // the tolerances below, set for the device's BF16 tiles, do not cover
    tp.backward_weights = ALIGN_BACKWARD_Q8_0;
    if (align_trainer_new(r.model, &tp, &r.tr) != ALIGN_OK) {
        std::printf("FAIL trainer on %s (%s): %s\n", device, path.c_str(), align_last_error());
        g_failures++;
        return false;
    }
    align_adapter_set_params sp = align_adapter_set_default_params();
    sp.name = "policy";
    sp.lora_rank = 8;
    sp.targets = 127;  // all seven projections
    sp.seed = 7;
    int32_t id = -1;
    if (align_trainer_add_set(r.tr, &sp, &id) != ALIGN_OK || id != 0) {
        std::printf("FAIL policy set on %s (%s): %s\n", device, path.c_str(), align_last_error());
        g_failures++;
        return false;
    }
    return true;
}

// B non-zero from the start, so the first gradients reach A too
void perturb_b(align_trainer * tr) {
    align_set_info si;
    align_trainer_get_set_info(tr, 0, &si);
    std::vector<float> p((size_t) si.n_params);
    align_trainer_get_state(tr, 0, (int64_t) p.size(), p.data(), nullptr, nullptr, nullptr, nullptr);
    std::vector<align_param_info> rows((size_t) si.n_tensors);
    int32_t n = 0;
    align_trainer_get_params(tr, 0, rows.data(), (int32_t) rows.size(), &n);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (int32_t i = 0; i < n; i++) {
        if (rows[(size_t) i].kind != ALIGN_PARAM_LORA_B) continue;
        for (int64_t k = 0; k < rows[(size_t) i].ne0 * rows[(size_t) i].ne1; k++) p[(size_t) (rows[(size_t) i].offset + k)] = nd(rng);
    }
    align_trainer_set_state(tr, 0, (int64_t) p.size(), p.data(), nullptr, nullptr, nullptr);
}

double rel_l2(const std::vector<float> & a, const std::vector<float> & b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        num += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
        den += (double) b[i] * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

// Nodes of the trainer's last graphs the device cannot run or whose memory
// is the host's: what a scheduler would have computed on the CPU.
int32_t host_nodes(align_trainer * tr, int32_t * n_nodes, bool verbose) {
    int32_t bad = 0;
    *n_nodes = 0;
    std::vector<ggml_cgraph *> gs = {tr->body.g, tr->head.g};
    if (tr->body.rc) {  // recompute: the tail and every layer's backward piece
        gs.push_back(tr->body.rc->tail.g);
        for (const auto & pc : tr->body.rc->layers) gs.push_back(pc.g);
    }
    for (ggml_cgraph * g : gs) {
        if (g == nullptr) continue;
        for (int i = 0; i < ggml_graph_n_nodes(g); i++) {
            ggml_tensor * t = ggml_graph_node(g, i);
            (*n_nodes)++;
            const bool host = t->buffer != nullptr && ggml_backend_buffer_is_host(t->buffer);
            if (!ggml_backend_supports_op(tr->backend, t) || host) {
                if (verbose && bad < 5) std::printf("  host node %s %s\n", ggml_op_desc(t), ggml_get_name(t));
                bad++;
            }
        }
    }
    return bad;
}

struct step_result {
    std::vector<double> sums;
    std::vector<float> grads, params;
};

// forward_grad + backward with a DPO-like cotangent, then 3 AdamW steps
bool train_steps(align_trainer * tr, const align_batch & b, step_result & out) {
    align_set_info si;
    align_trainer_get_set_info(tr, 0, &si);
    out.sums.assign((size_t) b.n_seq, 0.0);
    int n_scored = 0;
    for (int i = 0; i < b.n_seq * b.n_tok; i++) n_scored += b.scored[i] != 0;
    std::vector<float> cot((size_t) n_scored);
    // sequence 0 chosen (+), 1 rejected (−): dL/dlogp = ∓ 0.05
    for (int i = 0, j = 0; i < b.n_seq * b.n_tok; i++) {
        if (b.scored[i]) cot[(size_t) j++] = (i / b.n_tok) % 2 == 0 ? -0.05f : 0.05f;
    }
    for (int step = 0; step < 3; step++) {
        align_outputs o = {};
        std::vector<double> sums((size_t) b.n_seq);
        o.sums = sums.data();
        o.n_sums = (int64_t) sums.size();
        if (align_trainer_forward_grad(tr, &b, 0, &o) != ALIGN_OK || align_trainer_backward(tr, cot.data(), (int64_t) cot.size(), nullptr, 0) != ALIGN_OK) {
            std::printf("FAIL step: %s\n", align_last_error());
            g_failures++;
            return false;
        }
        if (step == 0) {
            out.sums = sums;
            out.grads.assign((size_t) si.n_params, 0);
            align_trainer_get_state(tr, 0, si.n_params, nullptr, nullptr, nullptr, out.grads.data(), nullptr);
        }
        align_adamw_params ap = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f};
        if (align_trainer_adamw_step(tr, 0, &ap) != ALIGN_OK) {
            std::printf("FAIL adamw: %s\n", align_last_error());
            g_failures++;
            return false;
        }
    }
    out.params.assign((size_t) si.n_params, 0);
    align_trainer_get_state(tr, 0, si.n_params, out.params.data(), nullptr, nullptr, nullptr, nullptr);
    return true;
}

int cmd_train(const std::map<std::string, std::string> & a) {
    ggml_backend_dev_t dev = pick_device(arg(a, "device", ""));
    if (dev == nullptr) { std::fprintf(stderr, "align_gpu: no such device\n"); return 2; }
    const bool gpu = is_gpu(dev);
    const std::string dname = ggml_backend_dev_name(dev);
    const std::string dir = arg(a, "dir", "/tmp");
    std::printf("# training step on %s vs the CPU engine (%s)\n", dname.c_str(), gpu ? "GPU" : "CPU dry run: CPU vs CPU exact");
    // tolerances: the device runs BF16 input-gradient tiles and quantises
    // activations in its quantized matmuls (mmq: q8_1), the CPU reference
    // uses F32 transposed weights (exact_backward) and q8 activations
    const double tol_sum = 2e-3, tol_grad = 5e-2, tol_param = 5e-2;
    for (const char * type : {"f32", "f16", "q8_0", "q4_0", "q4_k"}) {
        const std::string path = dir + "/align-gpu-tiny-" + type + ".gguf";
        align_modelgen_params gp = align_modelgen_default_params();
        gp.type = type;
        if (align_modelgen_write(path.c_str(), &gp) != ALIGN_OK) {
            check(false, std::string("write fixture ") + type + ": " + align_last_error());
            continue;
        }
        // a pair: 2 sequences of 48 tokens, the last 32 scored
        const int T = 48;
        std::vector<int32_t> tok(2 * T), len = {T, T - 5};
        std::vector<uint8_t> sc(2 * T, 0);
        std::mt19937 rng(11);
        for (auto & x : tok) x = 5 + (int32_t) (rng() % 200);
        for (int s = 0; s < 2; s++)
            for (int t = 16; t < len[(size_t) s]; t++) sc[(size_t) (s * T + t)] = 1;
        align_batch b = {2, T, tok.data(), len.data(), sc.data(), nullptr};

        // the device step with and without recompute (gradient checkpointing)
        for (const bool rcmp : {false, true}) {
        const std::string tag = std::string(type) + (rcmp ? "+rc" : "");
        const double before = gpu ? used_gib(dev) : 0;
        trainer_run ref, run;
        if (!open_trainer(path, "CPU", false, true, ref)) continue;
        if (!open_trainer(path, dname.c_str(), gpu, false, run, rcmp)) continue;
        const double after = gpu ? used_gib(dev) : 0;
        perturb_b(ref.tr);
        perturb_b(run.tr);
        step_result r0, r1;
        if (!train_steps(ref.tr, b, r0) || !train_steps(run.tr, b, r1)) continue;
        double dsum = 0;
        for (size_t i = 0; i < r0.sums.size(); i++) dsum = std::max(dsum, std::fabs(r0.sums[i] - r1.sums[i]) / std::fabs(r0.sums[i]));
        char m[200];
        std::snprintf(m, sizeof(m), "train %-7s log-prob sums %.4f %.4f vs %.4f %.4f (rel %.2e, tol %.0e)", tag.c_str(), r1.sums[0],
                      r1.sums[1], r0.sums[0], r0.sums[1], dsum, tol_sum);
        check(dsum < tol_sum, m);
        const double eg = rel_l2(r1.grads, r0.grads);
        std::snprintf(m, sizeof(m), "train %-7s gradients rel L2 %.2e (tol %.0e)", tag.c_str(), eg, tol_grad);
        check(std::isfinite(eg) && eg < tol_grad, m);
        const double ep = rel_l2(r1.params, r0.params);
        std::snprintf(m, sizeof(m), "train %-7s adapter after 3 AdamW steps rel L2 %.2e (tol %.0e)", tag.c_str(), ep, tol_param);
        check(std::isfinite(ep) && ep < tol_param, m);
        int32_t n_nodes = 0;
        const int32_t bad = host_nodes(run.tr, &n_nodes, gpu);
        std::snprintf(m, sizeof(m), "train %-7s %d of %d graph nodes off the device", tag.c_str(), bad, n_nodes);
        check(!gpu || bad == 0, m);
        if (gpu) {
            align_trainer_info ti;
            align_trainer_get_info(run.tr, &ti);
            std::snprintf(m, sizeof(m), "train %-7s device memory +%.1f MiB for model + trainer, transposed copies %lld bytes",
                          tag.c_str(), (after - before) * 1024, (long long) ti.transposed_bytes);
            check(ti.transposed_bytes == 0, m);
        }
        }
    }
    return g_failures ? 1 : 0;
}

// ------------------------------------------------------------ benchmark

int cmd_gen(const std::map<std::string, std::string> & a) {
    align_modelgen_params gp = align_modelgen_default_params();
    const std::string size = arg(a, "size", "1b"), type = arg(a, "type", "q4_k"), out = arg(a, "out", "");
    if (out.empty()) { std::fprintf(stderr, "align_gpu gen: --out PATH is required\n"); return 2; }
    gp.size = size.c_str();
    gp.type = type.c_str();
    const auto t0 = std::chrono::steady_clock::now();
    if (align_modelgen_write(out.c_str(), &gp) != ALIGN_OK) {
        std::fprintf(stderr, "align_gpu gen: %s\n", align_last_error());
        return 1;
    }
    std::printf("wrote %s (%s %s) in %.1f s\n", out.c_str(), size.c_str(), type.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
}

int cmd_bench(const std::map<std::string, std::string> & a) {
    const std::string path = arg(a, "model", "");
    if (path.empty()) { std::fprintf(stderr, "align_gpu bench: --model PATH is required\n"); return 2; }
    ggml_backend_dev_t dev = pick_device(arg(a, "device", ""));
    if (dev == nullptr) { std::fprintf(stderr, "align_gpu: no such device\n"); return 2; }
    const bool gpu = is_gpu(dev);
    const int T = std::stoi(arg(a, "tokens", "512"));
    const int steps = std::stoi(arg(a, "steps", "8"));
    const int rank = std::stoi(arg(a, "rank", "16"));
    const double peak = std::stod(arg(a, "peak-tflops", gpu ? "989" : "0"));
    const std::string label = arg(a, "label", path);
    const bool recompute = arg(a, "recompute", "0") == "1";

    const double m0 = gpu ? used_gib(dev) : 0;
    align_model_params mp = align_model_default_params();
    mp.n_gpu_layers = gpu ? 999 : 0;
    mp.trainable = true;
    trainer_run r;
    if (align_model_load(path.c_str(), &mp, &r.model) != ALIGN_OK) {
        std::fprintf(stderr, "align_gpu bench: %s\n", align_last_error());
        return 1;
    }
    const double m1 = gpu ? used_gib(dev) : 0;
    align_trainer_params tp = align_trainer_default_params();
    const std::string dname = ggml_backend_dev_name(dev);
    tp.device = dname.c_str();
    tp.recompute = recompute;
    align_adapter_set_params sp = align_adapter_set_default_params();
    sp.name = "policy";
    sp.lora_rank = rank;
    sp.lora_alpha = 2.0f * rank;
    sp.targets = ALIGN_LORA_Q | ALIGN_LORA_K | ALIGN_LORA_V | ALIGN_LORA_O;
    int32_t set_id = -1;
    if (align_trainer_new(r.model, &tp, &r.tr) != ALIGN_OK || align_trainer_add_set(r.tr, &sp, &set_id) != ALIGN_OK) {
        std::fprintf(stderr, "align_gpu bench: %s\n", align_last_error());
        return 1;
    }
    const double m2 = gpu ? used_gib(dev) : 0;
    align_trainer_info ti;
    align_trainer_get_info(r.tr, &ti);
    // a pair: chosen and rejected, T tokens each, the last 7/8 scored
    const int prompt = T / 8;
    std::vector<int32_t> tok(2 * (size_t) T), len = {T, T};
    std::vector<uint8_t> sc(2 * (size_t) T, 0);
    std::mt19937 rng(5);
    for (auto & x : tok) x = 300 + (int32_t) (rng() % (uint32_t) std::min(ti.n_vocab - 300, 30000));
    for (int s = 0; s < 2; s++)
        for (int t = prompt; t < T; t++) sc[(size_t) (s * T + t)] = 1;
    align_batch b = {2, T, tok.data(), len.data(), sc.data(), nullptr};
    const int n_scored = 2 * (T - prompt);
    // the reference is cached once (DESIGN §4.2): a forward at scale 0
    std::vector<double> ref(2);
    align_outputs ro = {};
    ro.sums = ref.data();
    ro.n_sums = (int64_t) ref.size();
    if (align_trainer_forward(r.tr, &b, -1, 0.0f, &ro) != ALIGN_OK) {
        std::fprintf(stderr, "align_gpu bench: reference: %s\n", align_last_error());
        return 1;
    }
    const float beta = 0.1f;
    std::vector<float> cot((size_t) n_scored);
    double t_sum = 0;
    int timed = 0;
    double loss = 0;
    for (int step = 0; step < steps + 2; step++) {  // 2 warm-up steps
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<double> pol(2);
        align_outputs o = {};
        o.sums = pol.data();
        o.n_sums = (int64_t) pol.size();
        if (align_trainer_forward_grad(r.tr, &b, 0, &o) != ALIGN_OK) {
            std::fprintf(stderr, "align_gpu bench: forward: %s\n", align_last_error());
            return 1;
        }
        const double h = (pol[0] - ref[0]) - (pol[1] - ref[1]);
        const double sg = 1.0 / (1.0 + std::exp(beta * h));  // σ(−βh)
        loss = std::log1p(std::exp(-beta * h));
        for (int j = 0; j < n_scored; j++) cot[(size_t) j] = (float) (j < n_scored / 2 ? -beta * sg : beta * sg);
        align_adamw_params ap = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f};
        if (align_trainer_backward(r.tr, cot.data(), (int64_t) cot.size(), nullptr, 0) != ALIGN_OK || align_trainer_adamw_step(r.tr, 0, &ap) != ALIGN_OK) {
            std::fprintf(stderr, "align_gpu bench: step: %s\n", align_last_error());
            return 1;
        }
        // adamw_step and get_state synchronise the device
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (step >= 2) { t_sum += dt; timed++; }
    }
    const double m3 = gpu ? used_gib(dev) : 0;
    align_trainer_get_info(r.tr, &ti);
    const double tok_s = 2.0 * T * timed / t_sum;
    // model FLOPs per token of LoRA training on a frozen base: forward 2N and
    // input gradient 2N over the matmul weights (no weight gradient), plus
    // attention (PaLM's 12·L·d·T for forward and backward), LoRA terms ignored
    const double n_mat = (double) ti.n_layer * ((double) ti.n_embd * (ti.n_embd / ti.n_head) * (ti.n_head + 2 * ti.n_head_kv) +
                                                (double) ti.n_embd * ti.n_embd + 3.0 * ti.n_embd * ti.n_ff) +
                         (double) ti.n_embd * ti.n_vocab;
    const double flop_tok = 4.0 * n_mat + 12.0 * ti.n_layer * ti.n_embd * T;
    const double mfu = peak > 0 ? tok_s * flop_tok / (peak * 1e12) : 0;
    const double per_layer = (double) ti.body_compute_bytes / ti.n_layer / (1 << 30);
    std::printf("bench %s on %s: %d steps, %.1f tokens/s, %.3f s/step, MFU %.3f, device memory %.2f GiB (weights %.2f, "
                "trainer %.2f, after steps %.2f), body compute %.2f GiB (%.3f GiB/layer), head compute %.2f GiB, loss %.4f\n",
                label.c_str(), dname.c_str(), timed, tok_s, t_sum / timed, mfu, m3 - m0, m1 - m0, m2 - m1, m3 - m2,
                ti.body_compute_bytes / (double) (1 << 30), per_layer, ti.head_compute_bytes / (double) (1 << 30), loss);
    if (gpu) {
        // one resident copy of the base: creating the trainer (adapters,
        // optimiser state, no transposed copies) adds a small fraction of it
        char m[160];
        std::snprintf(m, sizeof(m), "bench %s: trainer adds %.3f GiB over weights of %.3f GiB (transposed copies %lld bytes)",
                      label.c_str(), m2 - m1, m1 - m0, (long long) ti.transposed_bytes);
        check(ti.transposed_bytes == 0 && m2 - m1 < 0.1 * (m1 - m0), m);
    }
    const std::string js = arg(a, "json", "");
    if (!js.empty()) {
        FILE * f = std::fopen(js.c_str(), "w");
        if (f == nullptr) return 1;
        std::fprintf(f,
                     "{\"engine\": \"align\", \"label\": \"%s\", \"device\": \"%s\", \"n_layer\": %d, \"n_embd\": %d, "
                     "\"n_ff\": %d, \"n_vocab\": %d, \"tokens_per_step\": %d, \"steps\": %d, \"tokens_per_s\": %.2f, "
                     "\"s_per_step\": %.4f, \"mfu\": %.4f, \"peak_tflops\": %.1f, \"flop_per_token\": %.4e, "
                     "\"mem_gib\": %.3f, \"weights_gib\": %.3f, \"trainer_gib\": %.3f, \"steps_gib\": %.3f, "
                     "\"base_bytes\": %lld, \"body_compute_gib\": %.3f, \"head_compute_gib\": %.3f, "
                     "\"per_layer_compute_gib\": %.4f, \"lora_params\": %lld, \"loss\": %.5f, \"n_head\": %d, "
                     "\"n_head_kv\": %d, \"base_params\": %lld, \"recompute\": %s, \"checkpoint_gib\": %.4f}\n",
                     label.c_str(), dname.c_str(), ti.n_layer, ti.n_embd, ti.n_ff, ti.n_vocab, 2 * T, timed, tok_s,
                     t_sum / timed, mfu, peak, flop_tok, m3 - m0, m1 - m0, m2 - m1, m3 - m2, (long long) ti.base_bytes,
                     ti.body_compute_bytes / (double) (1 << 30), ti.head_compute_bytes / (double) (1 << 30), per_layer,
                     (long long) ti.n_lora_params, loss, ti.n_head, ti.n_head_kv, (long long) ti.n_base_params,
                     recompute ? "true" : "false", ti.checkpoint_bytes / (double) (1 << 30));
        std::fclose(f);
    }
    return g_failures ? 1 : 0;
}

void quiet_log(int32_t, const char *, void *) {}

}  // namespace

int main(int argc, char ** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: align_gpu kernels|train|gen|bench [--flag value ...]\n");
        return 2;
    }
    std::map<std::string, std::string> a;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (std::strncmp(argv[i], "--", 2) != 0) {
            std::fprintf(stderr, "align_gpu: unexpected %s\n", argv[i]);
            return 2;
        }
        a[argv[i] + 2] = argv[i + 1];
    }
    align_init(nullptr, nullptr);
    const std::string cmd = argv[1];
    int rc;
    if (cmd == "kernels") rc = cmd_kernels(a);
    else if (cmd == "train") rc = cmd_train(a);
    else if (cmd == "gen") rc = cmd_gen(a);
    else if (cmd == "bench") rc = cmd_bench(a);
    else {
        std::fprintf(stderr, "align_gpu: unknown command %s\n", cmd.c_str());
        return 2;
    }
    if (cmd == "kernels" || cmd == "train") std::printf("# %s: %d failure(s)\n", cmd.c_str(), g_failures);
    (void) quiet_log;
    return rc;
}
