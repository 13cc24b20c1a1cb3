// align.h: the C API of align's native core (over ggml and llama.cpp).
//
// Conventions (see ../shared/STYLE.md):
// * every fallible call returns an align_status; on failure the message is in
//   align_last_error() (thread-local, valid until the next call on the same
//   thread);
// * handles are opaque; each *_load / *_new has a matching *_free that accepts
//   NULL;
// * output buffers belong to the caller; a call that needs more room returns
//   ALIGN_ERR_BUFFER_TOO_SMALL and stores the needed size in *n_out;
// * nothing here aborts the process, exits or prints to stdout: inputs are
//   validated before they reach ggml, and C++ exceptions stop at this boundary.
#ifndef ALIGN_H
#define ALIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum align_status {
    ALIGN_OK                   = 0,
    ALIGN_ERR_INVALID_ARGUMENT = 1,  // a parameter is out of range or NULL
    ALIGN_ERR_IO               = 2,  // file missing, unreadable or unwritable
    ALIGN_ERR_FORMAT           = 3,  // not a GGUF file, truncated or corrupt
    ALIGN_ERR_UNSUPPORTED      = 4,  // valid file, but a model/adapter we cannot use
    ALIGN_ERR_OUT_OF_MEMORY    = 5,
    ALIGN_ERR_CANCELLED        = 6,  // stopped by align_session_cancel or a callback
    ALIGN_ERR_BUFFER_TOO_SMALL = 7,  // see *n_out for the size needed
    ALIGN_ERR_INTERNAL         = 8,  // a bug: please report the message
} align_status;

// Message of the last failed call on this thread ("" if none). Owned by the
// library; valid until the next align_* call on this thread.
const char * align_last_error(void);

// Short name of a status ("ok", "format", ...). Static storage.
const char * align_status_name(align_status status);

// ---------------------------------------------------------------- library

// Log levels passed to the log callback.
enum { ALIGN_LOG_DEBUG = 1, ALIGN_LOG_INFO = 2, ALIGN_LOG_WARN = 3, ALIGN_LOG_ERROR = 4 };

// Receives every log line of align, llama.cpp and ggml (text may lack a
// trailing newline, or be a fragment of a line). May be called from any
// thread. NULL silences the libraries.
typedef void (*align_log_fn)(int level, const char * text, void * user_data);

// Initialises the backends once per process (later calls only replace the
// log callback). Thread-safe.
align_status align_init(align_log_fn log, void * user_data);

// Version string of this library and the ggml/llama.cpp it was built with.
const char * align_version(void);

// The name of the first GPU device this build and machine have ("CUDA0"),
// written to buf (NUL-terminated); false, with buf "", where there is none:
// a CPU-only build, or a CUDA build on a machine without a GPU or driver.
bool align_gpu_device(char * buf, int32_t buf_len);

// ---------------------------------------------------------------- model

typedef struct align_model align_model;

typedef struct align_model_params {
    int32_t n_threads;  // threads for later sessions; <= 0: all cores
    bool    use_mmap;   // map the file instead of reading it
    int32_t n_gpu_layers; // layers to offload where a GPU backend exists (0: none)
    bool    vocab_only;   // load the tokenizer and metadata only (no sessions)
    bool    no_extra_bufts; // keep weights in plain host memory: no repacked (CPU_REPACK) or
                            // AMX buffers, whose layouts the trainer cannot read (on AMX CPUs
                            // llama.cpp puts Q4_K/Q8_0 matrices of width >= 2048 there). Also
                            // set by the environment variable ALIGN_NO_EXTRA_BUFTS=1.
    bool    trainable;      // a trainer will run on the weights: where an extra buffer type
                            // the trainer cannot read (AMX, KleidiAI; anything but CPU_REPACK,
                            // which it reads through ggml-cpu's own kernels) took a weight, the
                            // model is loaded again without extra buffer types (plain host memory)
} align_model_params;

align_model_params align_model_default_params(void);

// Loads a GGUF model. On success *out owns it; free with align_model_free.
// Returns ALIGN_ERR_IO (missing/unreadable), ALIGN_ERR_FORMAT (not GGUF,
// truncated, corrupt) or ALIGN_ERR_UNSUPPORTED (e.g. unknown architecture).
align_status align_model_load(const char * path, const align_model_params * params, align_model ** out);
void         align_model_free(align_model * model);

typedef struct align_model_info {
    char     arch[64];        // general.architecture
    char     desc[128];       // llama.cpp's one-line description
    int32_t  n_vocab;
    int32_t  n_ctx_train;
    int32_t  n_embd;
    int32_t  n_layer;
    uint64_t n_params;
    uint64_t size_bytes;
    int32_t  token_bos;       // -1 when absent
    int32_t  token_eos;       // -1 when absent
    bool     add_bos;         // tokenizer adds BOS by default
    bool     has_chat_template;
    int32_t  token_eot;       // end of turn (<|eot_id|>, <|im_end|>, <end_of_turn>); -1 when absent
} align_model_info;

align_status align_model_get_info(const align_model * model, align_model_info * out);

// What a tokenization could not spell.
typedef struct align_tokenize_stats {
    int32_t n_unknown;      // characters that became the unknown token
    int32_t first_offset;   // byte offset in text of the first one; -1: none
    char    first_char[8];  // its UTF-8 bytes, NUL-terminated ("" if none)
} align_tokenize_stats;

// Tokenizes text (len bytes). On success *n_out is the token count. If
// n_max is too small, returns ALIGN_ERR_BUFFER_TOO_SMALL with the needed
// count in *n_out.
//
// A character the vocabulary cannot spell (no token for it and no byte
// tokens, e.g. "é" or "{" in a small SentencePiece vocabulary) becomes the
// vocabulary's unknown token, and the text after it is tokenized as after
// a control token; stats (may be NULL) counts these characters and gives
// the first one and its byte offset, so callers can warn. A vocabulary
// without an unknown token fails with ALIGN_ERR_UNSUPPORTED naming the
// character and its offset (stats is filled then too).
align_status align_model_tokenize(const align_model * model, const char * text, int32_t len,
                                  bool add_special, bool parse_special,
                                  int32_t * tokens, int32_t n_max, int32_t * n_out,
                                  align_tokenize_stats * stats);

// Converts tokens back to text (no NUL appended; *n_out bytes written or
// needed). render_special: print control tokens such as <|im_end|>.
align_status align_model_detokenize(const align_model * model, const int32_t * tokens, int32_t n_tokens,
                                    bool render_special, char * buf, int32_t buf_len, int32_t * n_out);

// True when the token ends a generation (EOS, EOT, ...).
bool align_model_token_is_eog(const align_model * model, int32_t token);

// The vocabulary's unknown token (what align_model_tokenize gives for a
// character it cannot spell); -1 when it has none.
int32_t align_model_token_unknown(const align_model * model);

// Renders a conversation with the model's chat template (or tmpl, if not
// NULL). roles/contents hold n_msg strings. Writes *n_out bytes (no NUL).
// Returns ALIGN_ERR_UNSUPPORTED when the model has no template llama.cpp
// knows, ALIGN_ERR_BUFFER_TOO_SMALL with the size needed.
align_status align_model_chat_apply(const align_model * model, const char * tmpl,
                                    const char * const * roles, const char * const * contents, int32_t n_msg,
                                    bool add_assistant, char * buf, int32_t buf_len, int32_t * n_out);

// Reads a metadata value as a string. Same buffer rules as above (*n_out
// excludes the NUL that is always written when it fits). ALIGN_ERR_INVALID_ARGUMENT
// when the key is absent.
align_status align_model_meta(const align_model * model, const char * key, char * buf, int32_t buf_len, int32_t * n_out);

// ---------------------------------------------------------------- LoRA

typedef struct align_lora align_lora;

// Loads a LoRA adapter GGUF for this model. Rejects adapters for another
// architecture or with mismatched shapes (ALIGN_ERR_UNSUPPORTED) and
// non-GGUF files (ALIGN_ERR_FORMAT). The adapter must be freed before its
// model.
align_status align_lora_load(align_model * model, const char * path, align_lora ** out);
void         align_lora_free(align_lora * lora);

// One adapted weight: W (ne = [n_in, n_out]) gains s·B·A with A: ne=[n_in, rank]
// and B: ne=[rank, n_out], both F32 row-major in ggml order (ne0 fastest).
typedef struct align_adapter_tensor {
    const char *  base_name;  // e.g. "blk.0.attn_q.weight"
    int64_t       n_in;
    int64_t       n_out;
    int64_t       rank;
    const float * a;          // n_in * rank floats
    const float * b;          // rank * n_out floats
} align_adapter_tensor;

// Writes a LoRA adapter GGUF in llama.cpp's format (DESIGN.md §4.5):
// general.type "adapter", adapter.type "lora", adapter.lora.alpha, tensors
// "<base>.lora_a" / "<base>.lora_b". Written atomically (temp + rename).
align_status align_adapter_write(const char * path, const char * arch, float alpha,
                                 const align_adapter_tensor * tensors, int32_t n_tensors);

// ---------------------------------------------------------------- session

// A session is one inference context: KV cache, threads, attached adapters.
// Adapters are fixed at creation (llama.cpp ignores adapter changes after the
// first decode, DESIGN.md §4.5). Not safe for concurrent use, except
// align_session_cancel, which any thread may call.
typedef struct align_session align_session;

typedef struct align_session_params {
    int32_t n_ctx;      // context length; <= 0: min(model's n_ctx_train, 4096)
    int32_t n_batch;    // tokens per decode call; <= 0: 512
    int32_t n_threads;  // <= 0: the model's n_threads
    const align_lora * const * loras;  // n_loras adapters (may be NULL)
    const float * lora_scales;         // user scale per adapter (NULL: 1.0)
    int32_t n_loras;
} align_session_params;

align_session_params align_session_default_params(void);

align_status align_session_new(align_model * model, const align_session_params * params, align_session ** out);
void         align_session_free(align_session * session);

// Requests that the running call on this session stop as soon as possible;
// that call returns ALIGN_ERR_CANCELLED. The request is sticky: one that
// lands before a call starts (or between two calls) makes the next call
// return ALIGN_ERR_CANCELLED at once. A call that returns
// ALIGN_ERR_CANCELLED consumes the request, so the call after it runs;
// align_session_cancel_reset drops a request no call has observed yet.
void align_session_cancel(align_session * session);
void align_session_cancel_reset(align_session * session);

typedef struct align_sampler_params {
    float    temperature;  // <= 0: greedy
    float    top_p;        // 1: off
    int32_t  top_k;        // <= 0: off
    float    min_p;        // 0: off
    uint32_t seed;
    int32_t  max_tokens;   // tokens to generate (> 0)
    const char * const * stop;  // n_stop stop strings; output ends before the first match
    int32_t  n_stop;
    const char * grammar;  // optional GBNF grammar (root rule "root"), NULL: none
} align_sampler_params;

align_sampler_params align_sampler_default_params(void);

// Receives generated text as it becomes final (never a partial stop string
// or a partial UTF-8 character; a character the last generated tokens did
// not finish is dropped, not passed on). Return false to stop generation (the call
// then returns ALIGN_OK with stop reason "callback").
typedef bool (*align_token_fn)(const char * text, int32_t len, int32_t token, void * user_data);

enum {
    ALIGN_STOP_MAX_TOKENS = 0,
    ALIGN_STOP_EOG        = 1,
    ALIGN_STOP_STRING     = 2,
    ALIGN_STOP_CALLBACK   = 3,
    ALIGN_STOP_CONTEXT    = 4,  // context full
};

typedef struct align_generate_result {
    int32_t n_prompt;      // prompt tokens decoded
    int32_t n_generated;   // tokens sampled (stop/EOG tokens included)
    int32_t stop_reason;   // ALIGN_STOP_*
    double  prompt_ms;     // wall time of the prompt decode
    double  generate_ms;   // wall time of sampling + decoding generated tokens
} align_generate_result;

// Clears the session's cache, decodes the prompt and samples up to
// max_tokens tokens, streaming text through cb (may be NULL). The unknown
// token (align_model_token_unknown) is never sampled: it has no text, and a
// grammar cannot accept it.
align_status align_session_generate(align_session * session, const int32_t * prompt, int32_t n_prompt,
                                    const align_sampler_params * params, align_token_fn cb, void * user_data,
                                    align_generate_result * result);

// Log-probabilities of a token sequence under the session's model (and its
// adapters): out[i] = log p(tokens[i+1] | tokens[0..i]) for i in
// [0, n_tokens-1) (out holds n_tokens-1 floats). Decodes the whole sequence
// from an empty cache (in chunks of n_batch). If logits is not NULL it
// receives the raw logits of every position, (n_tokens, n_vocab) row-major,
// n_vocab being the model's (align_model_info.n_vocab); n_logits is the
// capacity of logits in floats, and a buffer smaller than n_tokens * n_vocab
// is ALIGN_ERR_BUFFER_TOO_SMALL before anything is decoded or written.
align_status align_session_logprobs(align_session * session, const int32_t * tokens, int32_t n_tokens,
                                    float * out, float * logits, int64_t n_logits);

// Decodes tokens appended to the session's cache (no clear) and copies the
// logits of the last one into logits, which holds n_logits floats: fewer
// than the model's n_vocab is ALIGN_ERR_BUFFER_TOO_SMALL before anything is
// decoded. For incremental use: call align_session_reset first.
align_status align_session_decode(align_session * session, const int32_t * tokens, int32_t n_tokens, float * logits,
                                  int32_t n_logits);
align_status align_session_reset(align_session * session);

// ---------------------------------------------------------------- batched generation

typedef struct align_batch_generate_params {
    int32_t n_threads;                 // <= 0: the model's n_threads
    const align_lora * const * loras;  // n_loras adapters (may be live trainer adapters)
    const float * lora_scales;         // user scale per adapter (NULL: 1.0)
    int32_t n_loras;
    align_sampler_params sampler;      // sequence i samples with seed + i; no stop
                                       // strings or grammar (use a session for those)
    const volatile int32_t * cancel;   // optional: set non-zero (any thread) to stop
} align_batch_generate_params;

align_batch_generate_params align_batch_generate_default_params(void);

// Generates up to sampler.max_tokens tokens for each of n_seq prompts
// (prompts[i] has n_prompt[i] tokens) in one batched decode: one context with
// a KV cache per sequence, each step decoding the next token of every live
// sequence together. Equal prompts are decoded once and the cache copied
// (GRPO's G samples per prompt). out_tokens holds n_seq rows of max_tokens
// tokens (EOG included when sampled); n_out[i] is row i's count. result
// (optional) sums prompt and generated tokens over all sequences.
align_status align_generate_batch(align_model * model, const align_batch_generate_params * params,
                                  const int32_t * const * prompts, const int32_t * n_prompt, int32_t n_seq,
                                  int32_t * out_tokens, int32_t * n_out, align_generate_result * result);

// ---------------------------------------------------------------- training
//
// A trainer runs on the frozen weights of a loaded align_model (llama.cpp's
// own tensors: one resident copy of the base serves training and
// generation) and holds named adapter sets: LoRA pairs A (ne = [n_in, r])
// and B (ne = [r, n_out]) on chosen projections, W·x + s·B·(A·x) with
// s = lora_scale · alpha / r, plus optional scalar heads on the final hidden
// state. Each set has its own rank, targets, heads, gradient accumulators,
// AdamW moments and step counter, all on the trainer's device.
//
// The loss is the caller's. Forward returns per-token log-probs of the
// scored tokens (and per-sequence sums) and the heads' values at chosen
// positions; backward takes one cotangent per scored token and per head
// value and accumulates (+=) parameter gradients. SFT and the DPO family
// broadcast dL/dsum over a sequence's tokens; PPO/GRPO give each token its
// own; a reward or value objective seeds the head values.
//
// Not safe for concurrent use, except align_trainer_cancel.

typedef struct align_trainer align_trainer;

// The projections a LoRA adapter set may adapt (bits of a uint32_t mask).
typedef enum align_lora_target {
    ALIGN_LORA_Q = 1, ALIGN_LORA_K = 2, ALIGN_LORA_V = 4, ALIGN_LORA_O = 8,
    ALIGN_LORA_GATE = 16, ALIGN_LORA_UP = 32, ALIGN_LORA_DOWN = 64,
} align_lora_target;

typedef struct align_trainer_params {
    int32_t  n_threads;       // <= 0: all cores
    bool     exact_backward;  // F32 transposed weights for the input gradient
                              // (gradient checks); else Q8_0/F16 copies
    const char * device;      // backend device: NULL or "CPU"; else a ggml
                              // device name ("CUDA0") where one is built in
    int64_t  head_chunk_bytes;  // LM-head working memory per chunk of scored
                                // tokens (<= 0: 64 MiB); the head's memory is
                                // O(n_vocab · chunk), not O(n_vocab · scored)
    int32_t  backward_weights;  // ALIGN_BACKWARD_*: the CPU trainer's transposed
                                // copies of the frozen weights (input gradient)
    bool     recompute;         // gradient checkpointing: forward_grad keeps
                                // only each layer's input and the backward
                                // recomputes one layer at a time (same
                                // gradients; activation memory of one layer
                                // plus n_layer + 1 inputs); forward unaffected
} align_trainer_params;

// What the CPU trainer's transposed weight copies are (the input gradient
// dx = Wᵀ·dy through a frozen W; exact_backward overrides with F32):
//  AUTO: Q4_K on Q4_K weights (the CPU's repacked 4-bit GEMM, where it has
//        one: AVX2, NEON), else as Q8_0;
//  Q8_0: Q8_0 for quantized weights, F16 for F16/BF16, F32 for F32; about
//        18x less input-gradient error than Q4_K on a Q4_K base
//        (native/README.md), slower where the repacked GEMM is faster;
//  Q4_K: as AUTO;
//  TILES: no copies kept: each backward makes Wᵀ in bounded tiles (Q8_0,
//        a few MiB each, in the compute buffer) from W's blocks and
//        multiplies them; the accuracy of Q8_0 copies, the memory of none
//        (a base-sized saving), at the price of re-making them every step.
typedef enum align_backward_weights {
    ALIGN_BACKWARD_AUTO = 0,
    ALIGN_BACKWARD_Q8_0 = 1,
    ALIGN_BACKWARD_Q4_K = 2,
    ALIGN_BACKWARD_TILES = 3
} align_backward_weights;

align_trainer_params align_trainer_default_params(void);

// Creates a trainer over model's weights. The model must be loaded with
// weights (not vocab_only) in memory the device can use (for a CPU trainer:
// plain host memory or CPU_REPACK; load it with trainable set), and must
// outlive the trainer. Returns ALIGN_ERR_UNSUPPORTED for architectures the
// training graph does not cover and for weights in an extra buffer type
// whose layout the trainer cannot read. The trainer has no adapter set
// until align_trainer_add_set adds one.
align_status align_trainer_new(align_model * model, const align_trainer_params * params, align_trainer ** out);
void         align_trainer_free(align_trainer * trainer);

typedef struct align_trainer_info {
    char    arch[32];
    char    device[32];
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx_train;
    int64_t n_base_params;     // frozen weights
    int64_t n_lora_params;     // trainable floats of set 0 (0: no set yet)
    int32_t n_lora_tensors;    // adapted projections of set 0 (0: no set yet)
    int64_t base_bytes;        // frozen weights as stored
    int64_t transposed_bytes;  // cached transposed copies for the backward
    int32_t n_sets;
    int64_t body_compute_bytes;  // compute buffer of the last body graph (recompute: its largest piece)
    int64_t head_compute_bytes;  // compute buffer of the last LM-head graph
    int64_t checkpoint_bytes;    // recompute: what the last training body kept
                                 // between forward and backward (the layer
                                 // inputs, gradient seams, masks); else 0
} align_trainer_info;

align_status align_trainer_get_info(const align_trainer * trainer, align_trainer_info * out);

// ---- adapter sets and the parameter table

typedef struct align_adapter_set_params {
    const char * name;         // unique, e.g. "value", "reward"
    int32_t      lora_rank;
    float        lora_alpha;
    uint32_t     targets;      // ALIGN_LORA_* (0: no adapters, heads only)
    uint64_t     seed;
    int32_t      n_heads;      // scalar heads on the final hidden state
    const char * const * head_names;
    const int32_t *      head_dims;  // outputs per head (1 for a value or score)
} align_adapter_set_params;

align_adapter_set_params align_adapter_set_default_params(void);

// Adds a set; *id receives its index. A trainer starts with none: ids are
// 0, 1, ... in the order of the calls (align's Go side adds its "policy"
// set first; a reward-model run adds only its reward set).
align_status align_trainer_add_set(align_trainer * trainer, const align_adapter_set_params * params, int32_t * id);

typedef struct align_set_info {
    char     name[64];
    int32_t  lora_rank;
    float    lora_alpha;
    uint32_t targets;
    int64_t  n_params;     // length of the set's flat state vectors
    int32_t  n_tensors;    // rows of the parameter table
    int32_t  n_lora;       // adapted projections
    int32_t  n_heads;
    int32_t  n_head_out;   // Σ head_dims: values per head position
    int64_t  step;         // optimiser steps taken
} align_set_info;

align_status align_trainer_get_set_info(const align_trainer * trainer, int32_t set, align_set_info * out);

typedef enum align_param_kind {
    ALIGN_PARAM_LORA_A = 1,       // (n_in, r) of "<base>.lora_a"
    ALIGN_PARAM_LORA_B = 2,       // (r, n_out) of "<base>.lora_b"
    ALIGN_PARAM_HEAD_WEIGHT = 3,  // (n_embd, n_head_out) "heads.weight"
    ALIGN_PARAM_HEAD_BIAS = 4,    // (n_head_out) "heads.bias"
} align_param_kind;

// One row of a set's parameter table: the flat state (params, m, v, grads)
// is the rows concatenated in order, each row ne0-fastest.
typedef struct align_param_info {
    char    name[96];
    int32_t kind;     // ALIGN_PARAM_*
    int64_t ne0, ne1;
    int64_t offset;   // first float in the flat state
} align_param_info;

// Copies the table (n_max rows at most; *n_out = rows in the set).
align_status align_trainer_get_params(const align_trainer * trainer, int32_t set, align_param_info * rows, int32_t n_max,
                                      int32_t * n_out);

// Name and size of head h of a set (its values start at *offset in a head
// position's n_head_out values).
align_status align_trainer_get_head(const align_trainer * trainer, int32_t set, int32_t h, char * name, int32_t name_len,
                                    int32_t * n_out, int32_t * offset);

// ---- forward and backward

// A micro-batch of n_seq sequences padded to n_tok tokens (row-major
// [n_seq][n_tok]). scored[b*n_tok + t] != 0 marks that log p(tokens[b][t] |
// tokens[b][<t]) counts (needs 1 <= t < lengths[b]). head_at (optional)
// marks positions 0 <= t < lengths[b] where the set's heads read the final
// hidden state of token t.
typedef struct align_batch {
    int32_t         n_seq;
    int32_t         n_tok;
    const int32_t * tokens;
    const int32_t * lengths;
    const uint8_t * scored;
    const uint8_t * head_at;
} align_batch;

// Where forward writes; any pointer may be NULL. Token order: sequence 0's
// scored positions ascending, then sequence 1's, ...; head values: for each
// head position in the same order, the set's n_head_out values. Each
// non-NULL buffer carries its capacity in elements: one smaller than what
// the batch produces is ALIGN_ERR_INVALID_ARGUMENT (nothing is written).
typedef struct align_outputs {
    double * sums;           // n_seq: sum of each sequence's scored log-probs
    int64_t  n_sums;
    float *  token_logps;    // n_scored
    int64_t  n_token_logps;
    float *  head_values;    // n_head_at · n_head_out
    int64_t  n_head_values;
} align_outputs;

// Forward only with set's adapters at lora_scale (set -1, or scale 0: the
// frozen base, exactly: the DPO/PPO reference; heads are still evaluated
// when set >= 0).
align_status align_trainer_forward(align_trainer * trainer, const align_batch * batch, int32_t set, float lora_scale,
                                   align_outputs * out);

// Training step, part 1: forward with set's adapters at scale 1 keeping
// what the backward needs.
align_status align_trainer_forward_grad(align_trainer * trainer, const align_batch * batch, int32_t set,
                                        align_outputs * out);

// Part 2: backward for the batch of the last forward_grad with dloss/dlogp
// per scored token (token_cot, n_token = n_scored values; NULL with 0:
// zeros) and dloss/dvalue per head value (head_cot, n_head values in the
// layout of head_values; NULL with 0: zeros); adds (+=) the gradients to the
// set's accumulators. A count other than the batch's is
// ALIGN_ERR_INVALID_ARGUMENT (the pending forward stays pending).
align_status align_trainer_backward(align_trainer * trainer, const float * token_cot, int64_t n_token,
                                    const float * head_cot, int64_t n_head);

// Zeroes a set's gradient accumulators.
align_status align_trainer_zero_grad(align_trainer * trainer, int32_t set);

// L2 norm of a set's accumulated gradient (times grad_scale).
align_status align_trainer_grad_norm(align_trainer * trainer, int32_t set, double grad_scale, double * norm);

typedef struct align_adamw_params {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_scale;  // applied to the accumulated gradient first (1/accum · clip factor)
} align_adamw_params;

// lr 1e-4, beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0, grad_scale 1:
// the moment rates and ε every align method uses.
align_adamw_params align_adamw_default_params(void);

// One AdamW step of a set from its accumulated gradient (on the device);
// zeroes the accumulators.
align_status align_trainer_adamw_step(align_trainer * trainer, int32_t set, const align_adamw_params * params);

// A set's state for checkpoints and checks: params, Adam moments (m, v) and
// gradient accumulator, each n floats in parameter-table order; step
// counter. Any pointer may be NULL; n must be the set's n_params when a
// buffer is given (else ALIGN_ERR_INVALID_ARGUMENT, nothing copied).
align_status align_trainer_get_state(align_trainer * trainer, int32_t set, int64_t n, float * params, float * m, float * v,
                                     float * grads, int64_t * step);
align_status align_trainer_set_state(align_trainer * trainer, int32_t set, int64_t n, const float * params, const float * m,
                                     const float * v, const int64_t * step);

// Writes a set's adapters as a llama.cpp LoRA GGUF (alpha as configured).
align_status align_trainer_export(align_trainer * trainer, int32_t set, const char * path);

// ---- adapter sets to and from files

// What an adapter GGUF holds: a llama.cpp LoRA adapter (kind "lora": alpha,
// rank, the ALIGN_LORA_* targets it adapts) or align's heads file (kind
// "heads": general.type "align.heads", the heads' names and sizes in
// align.heads.names / align.heads.dims, align.heads.n_embd, F32 tensors
// heads.weight ne = [n_embd, n_head_out] and heads.bias ne = [n_head_out]).
typedef struct align_adapter_file_info {
    char     arch[32];
    char     kind[16];       // "lora" or "heads"
    float    alpha;          // lora
    int32_t  rank;           // lora
    uint32_t targets;        // lora: ALIGN_LORA_* bits present
    int32_t  n_tensors;
    int32_t  n_heads;        // heads
    int32_t  n_head_out;     // heads: Σ head_dims
    char     head_names[16][64];
    int32_t  head_dims[16];
} align_adapter_file_info;

// Describes the adapter GGUF at path. ALIGN_ERR_FORMAT for other files.
align_status align_adapter_file_describe(const char * path, align_adapter_file_info * out);

// Loads a LoRA GGUF (into the set's A/B: the set's targets, alpha and rank
// must match the file's, and every tensor must be one of the set's) or a
// heads GGUF (into heads.weight/bias: names and sizes must match) into a
// set's parameters, and zeroes their Adam moments. The step counter is kept.
// Nothing changes when it fails.
align_status align_trainer_load_set(align_trainer * trainer, int32_t set, const char * path);

// Writes a set's heads as align's heads GGUF (atomically: temp + rename).
align_status align_trainer_export_heads(align_trainer * trainer, int32_t set, const char * path);

// A LoRA handle over a set's live adapter tensors (no copy, no file): attach
// it to a session of the trainer's model to sample from the current policy.
// The values are read at each decode, so later steps show up in the next
// generation. Free it (align_lora_free) before the trainer.
align_status align_trainer_lora(align_trainer * trainer, int32_t set, align_lora ** out);

// Requests that the running (or next) forward/backward stop; it returns
// ALIGN_ERR_CANCELLED. Sticky until align_trainer_clear_cancel, so a cancel
// that lands between calls is not lost. Any thread may call these.
void align_trainer_cancel(align_trainer * trainer);
void align_trainer_clear_cancel(align_trainer * trainer);

// Measures ggml's CPU matrix-multiply rate: W (k x m, type "f32" or "q8_0")
// times X (k x n, F32), reps times after one warm-up. *gflops receives
// 2·m·n·k·reps / seconds / 1e9: the machine peak used for MFU figures.
align_status align_bench_matmul(int32_t n_threads, const char * type, int64_t m, int64_t n, int64_t k, int32_t reps,
                                double * gflops);

// ---------------------------------------------------------------- fixtures

// Writes a small Llama-family model with seeded random weights and a small
// SentencePiece-style vocabulary (ASCII, byte fallback, common English and
// domain words, ChatML control tokens and template; gemma3: Gemma's turn
// tokens and template).
//
// Presets per architecture (tiny / small):
//   llama, qwen2  256 wide, 2 layers, 4 heads / 2 KV of 64  |  768, 12, 12 / 4 of 64
//   qwen3         256, 2 layers, 4 / 2 heads of 128 (n_head·head_dim > n_embd,
//                 as in Qwen3), rope base 1e6                |  768, 12, 12 / 4 of 128
//   gemma3        256, 6 layers (5 sliding-window of 16, 1 global), 4 / 1 heads of
//                 128, tied head, rope base 1e6 with linear scaling 8 on the
//                 global layers (as Gemma 3 4B)              |  768, 12, 8 / 4 of 128, window 512
typedef struct align_modelgen_params {
    const char * arch;    // "llama", "qwen2" (adds Q/K/V bias), "qwen3" (Q/K norms), "gemma3"
    const char * type;    // "f32", "f16", "q8_0", "q4_0", "q4_k"
    const char * size;    // "tiny" (~2.8M params), "small" (~100M params), the
                          // benchmark shapes "1b" / "8b" (Llama 3.2 1B / 3.1 8B, vocab 128,256),
                          // or a published model's shape (layers, width, heads, KV heads,
                          // head size, FFN, rope base, tied head) with the arch it needs:
                          // "llama3-1b", "llama3-8b" (llama), "qwen3-0.6b" (qwen3),
                          // "gemma3-1b" (gemma3); n_layer overrides the depth
    uint64_t     seed;
    bool         tied_output;  // no output.weight; the head reuses token_embd (gemma3: always)
    bool         llama3_rope;  // llama only: write rope_freqs.weight with Llama 3.1's
                               // frequency factors (factor 8, low 1, high 4, 8192 context)
    // overrides of the preset, for architecture tests (0 or NULL: the preset's)
    int32_t      n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff;
    float        rope_base;       // rope.freq_base
    int32_t      sliding_window;  // gemma3: attention.sliding_window (negative: none, all layers global)
    float        logit_softcap;   // gemma3: final_logit_softcapping (0: not written)
    const char * name;            // general.name (e.g. to look like a hub's Mistral or SmolLM file)

    // A real tokenizer instead of the built-in test vocabulary (n_tokens 0:
    // the built-in one). tok_model is tokenizer.ggml.model: "gpt2" (byte-level
    // BPE: merges and tok_pre, e.g. "llama-bpe" or "qwen2") or "llama"
    // (SentencePiece-style: scores). Arrays are copied; ids of -1 are not written.
    const char *         tok_model;
    const char *         tok_pre;
    int32_t              n_tokens;
    const char * const * tokens;
    const float *        scores;       // n_tokens (llama) or NULL
    const int32_t *      token_types;  // n_tokens, llama.cpp's token types
    int32_t              n_merges;
    const char * const * merges;       // "left right", by rank (gpt2)
    int32_t              bos_id, eos_id, eot_id, unk_id, pad_id;
    bool                 add_bos, add_eos, add_space_prefix;
    const char *         chat_template;  // tokenizer.chat_template (NULL: none written)
} align_modelgen_params;

align_modelgen_params align_modelgen_default_params(void);

align_status align_modelgen_write(const char * path, const align_modelgen_params * params);

// Writes a copy of a GGUF model with every quantized or F16 tensor
// dequantized to F32 (the reference for checks of quantized paths).
align_status align_model_dequantize(const char * in_path, const char * out_path);

// ---------------------------------------------------------------- merge

// One adapter to fold into a base: a llama.cpp LoRA GGUF and its user scale
// (the weight gains scale · alpha / r · B·A, as llama.cpp applies it).
typedef struct align_merge_lora {
    const char * path;
    float        scale;
} align_merge_lora;

// Progress of align_merge: tensors written so far of n_total. Return false
// to stop (the call then returns ALIGN_ERR_CANCELLED and leaves no file).
typedef bool (*align_merge_progress_fn)(int32_t n_done, int32_t n_total, void * user_data);

typedef struct align_merge_params {
    const char * type;     // output type of the weight matrices ("f16", "q8_0",
                           // "q4_k", ... ggml's names, any case); NULL or "":
                           // every tensor keeps the base's type
    bool         force;    // replace an existing out_path
    align_merge_progress_fn progress;  // may be NULL
    void *       user_data;
    const volatile int32_t * cancel;   // optional: set non-zero (any thread) to stop
} align_merge_params;

align_merge_params align_merge_default_params(void);

typedef struct align_merge_result {
    int32_t n_tensors;     // tensors written
    int32_t n_merged;      // tensors that gained at least one adapter's B·A
    int32_t n_converted;   // tensors written in a type other than the base's
    int32_t n_fallback;    // of those, tensors whose rows the requested type's
                           // block does not divide (written as a near type:
                           // q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0, ...)
    int32_t n_copied;      // tensors copied byte for byte from the base
    int64_t bytes_written; // size of out_path
} align_merge_result;

// Folds n_loras adapters into the base GGUF at base_path and writes the
// merged model to out_path: W' = W + Σ scale · alpha / r · B·A for every
// adapted weight, dequantised, summed in F32 and quantised back with
// ggml's quantisers to the base tensor's type (or params->type). Every
// metadata key is copied (general.file_type follows params->type); tensors
// no adapter touches and no type change applies to are copied byte for
// byte. Streams: one tensor's rows at a time are in memory (a bounded
// chunk), never the model. Written atomically (temp + fsync + rename); an
// existing out_path is refused unless params->force, and out_path may not be
// the base or an adapter. Adapters must be LoRA GGUFs for the base's
// architecture whose tensors all name base weights with matching shapes
// (ALIGN_ERR_UNSUPPORTED names the file and tensor otherwise). result may be
// NULL.
align_status align_merge(const char * base_path, const align_merge_lora * loras, int32_t n_loras,
                         const char * out_path, const align_merge_params * params, align_merge_result * result);

#ifdef __cplusplus
}
#endif

#endif  // ALIGN_H
