package bindings

/*
#include <stdlib.h>
#include <stdint.h>
#include "align.h"

align_status align_go_generate(align_session * s, const int32_t * prompt, int32_t n_prompt,
		const align_sampler_params * p, uintptr_t handle, align_generate_result * res);
*/
import "C"

import (
	"context"
	"errors"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// LoRAScale attaches an adapter to a session with a user scale (llama.cpp
// multiplies it by alpha/rank).
type LoRAScale struct {
	LoRA  *LoRA
	Scale float32
}

// SessionOptions configure NewSession.
type SessionOptions struct {
	NCtx     int // <= 0: min(training context, 4096)
	NBatch   int // <= 0: 512
	Threads  int // <= 0: the model's
	Adapters []LoRAScale
}

// Session is an inference context with fixed adapters.
type Session struct {
	p      *C.align_session
	model  *Model
	loras  []*LoRA
	nVocab int // the model's vocabulary: the row length of every logits buffer
}

// NewSession creates an inference context for model.
func NewSession(model *Model, opt SessionOptions) (*Session, error) {
	defer lockThread()()
	if err := model.live(); err != nil {
		return nil, err
	}
	p := C.align_session_default_params()
	p.n_ctx = C.int32_t(opt.NCtx)
	p.n_batch = C.int32_t(opt.NBatch)
	p.n_threads = C.int32_t(opt.Threads)
	n := len(opt.Adapters)
	var loras []*LoRA
	if n > 0 {
		arr := C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(uintptr(0))))
		defer C.free(arr)
		sc := C.malloc(C.size_t(n) * 4)
		defer C.free(sc)
		ptrs := unsafe.Slice((**C.align_lora)(arr), n)
		scales := unsafe.Slice((*C.float)(sc), n)
		for i, a := range opt.Adapters {
			if a.LoRA == nil || a.LoRA.p == nil {
				return nil, errors.New("bindings: adapter is closed")
			}
			if a.LoRA.model != model {
				return nil, errors.New("bindings: adapter " + a.LoRA.path + " was loaded for another model")
			}
			ptrs[i] = a.LoRA.p
			scales[i] = C.float(a.Scale)
			loras = append(loras, a.LoRA)
		}
		p.loras = (**C.align_lora)(arr)
		p.lora_scales = (*C.float)(sc)
		p.n_loras = C.int32_t(n)
	}
	var ci C.align_model_info
	if err := check("align_model_get_info", C.align_model_get_info(model.p, &ci)); err != nil {
		return nil, err
	}
	var s *C.align_session
	if err := check("align_session_new", C.align_session_new(model.p, &p, &s)); err != nil {
		return nil, err
	}
	model.children.Add(1)
	for _, l := range loras {
		l.users.Add(1)
	}
	return &Session{p: s, model: model, loras: loras, nVocab: int(ci.n_vocab)}, nil
}

// Close frees the session (and releases its adapters, which may then be
// closed). Idempotent.
func (s *Session) Close() error {
	if s == nil || s.p == nil {
		return nil
	}
	C.align_session_free(s.p)
	s.p = nil
	for _, l := range s.loras {
		l.users.Add(-1)
	}
	s.loras = nil
	s.model.children.Add(-1)
	return nil
}

// Cancel asks the running call to stop; safe from any goroutine. The
// request is sticky: if no call is running, the next one returns an error
// matching ErrCancelled at once. A call that returns that error consumes
// the request; ResetCancel drops one that no call has seen.
func (s *Session) Cancel() {
	if s != nil && s.p != nil {
		C.align_session_cancel(s.p)
	}
}

// ResetCancel drops a pending Cancel request that no call has observed.
func (s *Session) ResetCancel() {
	if s != nil && s.p != nil {
		C.align_session_cancel_reset(s.p)
	}
}

// watch cancels the session's running call when ctx ends; call the returned
// stop when the call returns. stop waits for a cancel that ctx started and
// drops it if the call finished without seeing it, so a context that ends
// just after its call returned does not cancel the next call.
func (s *Session) watch(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	after := context.AfterFunc(ctx, func() {
		s.Cancel()
		close(done)
	})
	return func() {
		if !after() {
			<-done
			s.ResetCancel()
		}
	}
}

// SamplerParams choose how tokens are drawn.
type SamplerParams struct {
	Temperature float32 // <= 0: greedy
	TopP        float32 // 1: off
	TopK        int     // <= 0: off
	MinP        float32 // 0: off
	Seed        uint32
	MaxTokens   int
	Stop        []string // output ends before the first occurrence
	Grammar     string   // GBNF with a "root" rule; "" for none
}

// DefaultSamplerParams mirrors align_sampler_default_params.
func DefaultSamplerParams() SamplerParams {
	d := C.align_sampler_default_params()
	return SamplerParams{
		Temperature: float32(d.temperature), TopP: float32(d.top_p), TopK: int(d.top_k),
		MinP: float32(d.min_p), Seed: uint32(d.seed), MaxTokens: int(d.max_tokens),
	}
}

// Stop reasons of a generation.
const (
	StopMaxTokens = int(C.ALIGN_STOP_MAX_TOKENS)
	StopEOG       = int(C.ALIGN_STOP_EOG)
	StopString    = int(C.ALIGN_STOP_STRING)
	StopCallback  = int(C.ALIGN_STOP_CALLBACK)
	StopContext   = int(C.ALIGN_STOP_CONTEXT)
)

// GenerateResult reports a finished generation.
type GenerateResult struct {
	PromptTokens    int
	GeneratedTokens int
	StopReason      int
	PromptMS        float64
	GenerateMS      float64
}

type genState struct {
	fn    func(text string) bool
	panic any
	// ctx and cancel: a piece's callback that cancelled ctx stops the
	// decode at once instead of when watch's goroutine next runs (on a
	// loaded machine, several tokens later)
	ctx    context.Context
	cancel func()
}

//export alignGoToken
func alignGoToken(text *C.char, n C.int32_t, _ C.int32_t, ud unsafe.Pointer) C.bool {
	st := cgo.Handle(uintptr(ud)).Value().(*genState)
	if st.fn == nil {
		return true
	}
	keep := true
	func() {
		defer func() {
			if r := recover(); r != nil {
				st.panic = r
				keep = false
			}
		}()
		keep = st.fn(C.GoStringN(text, n))
	}()
	if st.ctx != nil && st.ctx.Err() != nil {
		st.cancel()
	}
	return C.bool(keep)
}

// Generate samples a continuation of prompt, passing text to onText as it
// becomes final (onText may be nil; returning false stops generation).
// Cancelling ctx stops generation promptly with an error matching
// ErrCancelled.
func (s *Session) Generate(ctx context.Context, prompt []int32, sp SamplerParams, onText func(string) bool) (GenerateResult, error) {
	defer lockThread()()
	if s == nil || s.p == nil {
		return GenerateResult{}, errors.New("bindings: session is closed")
	}
	if len(prompt) == 0 {
		return GenerateResult{}, errors.New("bindings: empty prompt")
	}
	if err := ctx.Err(); err != nil {
		return GenerateResult{}, &Error{Op: "align_session_generate", Code: StatusCancelled, Msg: err.Error()}
	}
	p := C.align_sampler_params{
		temperature: C.float(sp.Temperature), top_p: C.float(sp.TopP), top_k: C.int32_t(sp.TopK),
		min_p: C.float(sp.MinP), seed: C.uint32_t(sp.Seed), max_tokens: C.int32_t(sp.MaxTokens),
	}
	if len(sp.Stop) > 0 {
		arr := C.malloc(C.size_t(len(sp.Stop)) * C.size_t(unsafe.Sizeof(uintptr(0))))
		defer C.free(arr)
		ptrs := unsafe.Slice((**C.char)(arr), len(sp.Stop))
		for i, st := range sp.Stop {
			ptrs[i] = C.CString(st)
			defer C.free(unsafe.Pointer(ptrs[i]))
		}
		p.stop = (**C.char)(arr)
		p.n_stop = C.int32_t(len(sp.Stop))
	}
	if sp.Grammar != "" {
		p.grammar = C.CString(sp.Grammar)
		defer C.free(unsafe.Pointer(p.grammar))
	}
	state := &genState{fn: onText, ctx: ctx, cancel: s.Cancel}
	h := cgo.NewHandle(state)
	defer h.Delete()
	stop := s.watch(ctx)
	var res C.align_generate_result
	st := C.align_go_generate(s.p, (*C.int32_t)(unsafe.Pointer(&prompt[0])), C.int32_t(len(prompt)), &p,
		C.uintptr_t(h), &res)
	stop()
	runtime.KeepAlive(prompt)
	out := GenerateResult{
		PromptTokens: int(res.n_prompt), GeneratedTokens: int(res.n_generated), StopReason: int(res.stop_reason),
		PromptMS: float64(res.prompt_ms), GenerateMS: float64(res.generate_ms),
	}
	if state.panic != nil {
		panic(state.panic)
	}
	if err := check("align_session_generate", st); err != nil {
		if ctx.Err() != nil {
			err.(*Error).Msg = "generation cancelled: " + ctx.Err().Error()
		}
		return out, err
	}
	return out, nil
}

// LogProbs returns log p(tokens[i+1] | tokens[:i+1]) for each i, decoding
// the sequence from an empty cache.
func (s *Session) LogProbs(ctx context.Context, tokens []int32) ([]float32, error) {
	lp, _, err := s.logprobs(ctx, tokens, nil)
	return lp, err
}

// LogProbsAndLogits is LogProbs plus the raw logits of every position,
// row-major: len(tokens) rows of the model's vocabulary size.
func (s *Session) LogProbsAndLogits(ctx context.Context, tokens []int32) ([]float32, []float32, error) {
	if s == nil || s.p == nil {
		return nil, nil, errors.New("bindings: session is closed")
	}
	return s.logprobs(ctx, tokens, make([]float32, len(tokens)*s.nVocab))
}

// logprobs decodes tokens; logits, when not nil, receives the raw logits
// and its length is the capacity the native call may write.
func (s *Session) logprobs(ctx context.Context, tokens []int32, logits []float32) ([]float32, []float32, error) {
	defer lockThread()()
	if s == nil || s.p == nil {
		return nil, nil, errors.New("bindings: session is closed")
	}
	if len(tokens) == 0 {
		return nil, nil, errors.New("bindings: empty token sequence")
	}
	out := make([]float32, len(tokens))
	var lp *C.float
	if logits != nil {
		lp = (*C.float)(unsafe.Pointer(unsafe.SliceData(logits)))
	}
	stop := s.watch(ctx)
	st := C.align_session_logprobs(s.p, (*C.int32_t)(unsafe.Pointer(&tokens[0])), C.int32_t(len(tokens)),
		(*C.float)(unsafe.Pointer(&out[0])), lp, C.int64_t(len(logits)))
	stop()
	runtime.KeepAlive(tokens)
	runtime.KeepAlive(logits)
	if err := check("align_session_logprobs", st); err != nil {
		return nil, nil, err
	}
	return out[:len(tokens)-1], logits, nil
}

// Reset clears the session's cache (for incremental Decode).
func (s *Session) Reset() error {
	defer lockThread()()
	if s == nil || s.p == nil {
		return errors.New("bindings: session is closed")
	}
	return check("align_session_reset", C.align_session_reset(s.p))
}

// Decode appends tokens to the cache and returns the last position's logits
// (the model's vocabulary size of them).
func (s *Session) Decode(tokens []int32) ([]float32, error) {
	if s == nil || s.p == nil {
		return nil, errors.New("bindings: session is closed")
	}
	logits := make([]float32, s.nVocab)
	if err := s.decodeInto(tokens, logits); err != nil {
		return nil, err
	}
	return logits, nil
}

// decodeInto is Decode into a caller's buffer; len(logits) is the capacity
// the native call may write.
func (s *Session) decodeInto(tokens []int32, logits []float32) error {
	defer lockThread()()
	if s == nil || s.p == nil {
		return errors.New("bindings: session is closed")
	}
	if len(tokens) == 0 {
		return errors.New("bindings: Decode needs tokens")
	}
	st := C.align_session_decode(s.p, (*C.int32_t)(unsafe.Pointer(&tokens[0])), C.int32_t(len(tokens)),
		(*C.float)(unsafe.Pointer(unsafe.SliceData(logits))), C.int32_t(len(logits)))
	runtime.KeepAlive(tokens)
	runtime.KeepAlive(logits)
	return check("align_session_decode", st)
}
