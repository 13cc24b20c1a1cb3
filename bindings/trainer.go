package bindings

/*
#include <stdlib.h>
#include "align.h"
*/
import "C"

import (
	"errors"
	"runtime"
	"unsafe"
)

// LoRA target bits (TrainerOptions.Targets).
const (
	TargetQ    = uint32(C.ALIGN_LORA_Q)
	TargetK    = uint32(C.ALIGN_LORA_K)
	TargetV    = uint32(C.ALIGN_LORA_V)
	TargetO    = uint32(C.ALIGN_LORA_O)
	TargetGate = uint32(C.ALIGN_LORA_GATE)
	TargetUp   = uint32(C.ALIGN_LORA_UP)
	TargetDown = uint32(C.ALIGN_LORA_DOWN)
)

// TrainerOptions configure NewTrainer.
type TrainerOptions struct {
	Threads       int
	Rank          int
	Alpha         float32
	Targets       uint32 // 0: q, k, v, o
	Seed          uint64
	ExactBackward bool // F32 transposed weights (gradient checks)
}

// Trainer is the native LoRA training engine over a frozen GGUF base.
type Trainer struct {
	p    *C.align_trainer
	info TrainerInfo
}

// TrainerInfo describes a trainer's model and adapters.
type TrainerInfo struct {
	Arch                                             string
	NVocab, NEmbd, NLayer, NHead, NHeadKV, NFF, NCtx int
	NBaseParams, NLoRAParams                         int64
	NLoRATensors                                     int
	BaseBytes, TransposedBytes                       int64
}

// NewTrainer loads the base model for training.
func NewTrainer(modelPath string, opt TrainerOptions) (*Trainer, error) {
	defer lockThread()()
	if err := Init(); err != nil {
		return nil, err
	}
	p := C.align_trainer_default_params()
	p.n_threads = C.int32_t(opt.Threads)
	if opt.Rank > 0 {
		p.lora_rank = C.int32_t(opt.Rank)
	}
	if opt.Alpha > 0 {
		p.lora_alpha = C.float(opt.Alpha)
	}
	p.targets = C.uint32_t(opt.Targets)
	p.seed = C.uint64_t(opt.Seed)
	p.exact_backward = C.bool(opt.ExactBackward)
	cpath := C.CString(modelPath)
	defer C.free(unsafe.Pointer(cpath))
	var t *C.align_trainer
	if err := check("align_trainer_new", C.align_trainer_new(cpath, &p, &t)); err != nil {
		return nil, err
	}
	tr := &Trainer{p: t}
	var ci C.align_trainer_info
	if err := check("align_trainer_get_info", C.align_trainer_get_info(t, &ci)); err != nil {
		C.align_trainer_free(t)
		return nil, err
	}
	tr.info = TrainerInfo{
		Arch: C.GoString(&ci.arch[0]), NVocab: int(ci.n_vocab), NEmbd: int(ci.n_embd), NLayer: int(ci.n_layer),
		NHead: int(ci.n_head), NHeadKV: int(ci.n_head_kv), NFF: int(ci.n_ff), NCtx: int(ci.n_ctx_train),
		NBaseParams: int64(ci.n_base_params), NLoRAParams: int64(ci.n_lora_params), NLoRATensors: int(ci.n_lora_tensors),
		BaseBytes: int64(ci.base_bytes), TransposedBytes: int64(ci.transposed_bytes),
	}
	return tr, nil
}

// Info describes the trainer.
func (t *Trainer) Info() TrainerInfo { return t.info }

// Close frees the trainer. Idempotent.
func (t *Trainer) Close() error {
	if t == nil || t.p == nil {
		return nil
	}
	C.align_trainer_free(t.p)
	t.p = nil
	return nil
}

func (t *Trainer) live() error {
	if t == nil || t.p == nil {
		return errors.New("bindings: trainer is closed")
	}
	return nil
}

// Batch is a micro-batch of NSeq sequences padded to NTok tokens, row-major.
// Scored[b*NTok+t] marks that log p(Tokens[b*NTok+t] | earlier tokens) counts.
type Batch struct {
	NSeq, NTok int
	Tokens     []int32
	Lengths    []int32
	Scored     []uint8
}

// c describes b to C. The slices are pinned (a C struct may hold Go pointers
// only to pinned memory); call pin.Unpin after the call.
func (b *Batch) c(pin *runtime.Pinner) (C.align_batch, error) {
	if b.NSeq <= 0 || b.NTok <= 0 || len(b.Tokens) != b.NSeq*b.NTok || len(b.Scored) != b.NSeq*b.NTok ||
		len(b.Lengths) != b.NSeq {
		return C.align_batch{}, errors.New("bindings: batch slices do not match NSeq x NTok")
	}
	pin.Pin(&b.Tokens[0])
	pin.Pin(&b.Lengths[0])
	pin.Pin(&b.Scored[0])
	return C.align_batch{
		n_seq: C.int32_t(b.NSeq), n_tok: C.int32_t(b.NTok),
		tokens:  (*C.int32_t)(unsafe.Pointer(&b.Tokens[0])),
		lengths: (*C.int32_t)(unsafe.Pointer(&b.Lengths[0])),
		scored:  (*C.uint8_t)(unsafe.Pointer(&b.Scored[0])),
	}, nil
}

// NScored counts scored positions.
func (b *Batch) NScored() int {
	n := 0
	for _, s := range b.Scored {
		if s != 0 {
			n++
		}
	}
	return n
}

// Forward returns per-sequence sums of scored log-probs at the given adapter
// scale (0: the frozen base) and, when tokens is true, every scored log-prob.
func (t *Trainer) Forward(b *Batch, loraScale float32, tokens bool) ([]float64, []float32, error) {
	defer lockThread()()
	if err := t.live(); err != nil {
		return nil, nil, err
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	cb, err := b.c(&pin)
	if err != nil {
		return nil, nil, err
	}
	sums := make([]float64, b.NSeq)
	var lps []float32
	var lp *C.float
	if tokens {
		lps = make([]float32, max(b.NScored(), 1))
		lp = (*C.float)(unsafe.Pointer(&lps[0]))
	}
	st := C.align_trainer_forward(t.p, &cb, C.float(loraScale), (*C.double)(unsafe.Pointer(&sums[0])), lp)
	runtime.KeepAlive(b)
	if err := check("align_trainer_forward", st); err != nil {
		return nil, nil, err
	}
	if tokens {
		lps = lps[:b.NScored()]
	}
	return sums, lps, nil
}

// ForwardGrad runs the training forward (adapters at scale 1) and keeps what
// Backward needs.
func (t *Trainer) ForwardGrad(b *Batch) ([]float64, error) {
	defer lockThread()()
	if err := t.live(); err != nil {
		return nil, err
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	cb, err := b.c(&pin)
	if err != nil {
		return nil, err
	}
	sums := make([]float64, b.NSeq)
	st := C.align_trainer_forward_grad(t.p, &cb, (*C.double)(unsafe.Pointer(&sums[0])))
	runtime.KeepAlive(b)
	if err := check("align_trainer_forward_grad", st); err != nil {
		return nil, err
	}
	return sums, nil
}

// Backward accumulates the gradient of a loss with dloss/dsum = dsums.
func (t *Trainer) Backward(dsums []float64) error {
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	if len(dsums) == 0 {
		return errors.New("bindings: empty loss gradient")
	}
	return check("align_trainer_backward", C.align_trainer_backward(t.p, (*C.double)(unsafe.Pointer(&dsums[0]))))
}

// ZeroGrad clears the gradient accumulator.
func (t *Trainer) ZeroGrad() error {
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	return check("align_trainer_zero_grad", C.align_trainer_zero_grad(t.p))
}

// GradNorm is the L2 norm of the accumulated gradient times scale.
func (t *Trainer) GradNorm(scale float64) (float64, error) {
	defer lockThread()()
	if err := t.live(); err != nil {
		return 0, err
	}
	var n C.double
	if err := check("align_trainer_grad_norm", C.align_trainer_grad_norm(t.p, C.double(scale), &n)); err != nil {
		return 0, err
	}
	return float64(n), nil
}

// AdamW holds one optimiser step's settings.
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay, GradScale float32
}

// Step applies AdamW from the accumulated gradient and clears it.
func (t *Trainer) Step(p AdamW) error {
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	cp := C.align_adamw_params{lr: C.float(p.LR), beta1: C.float(p.Beta1), beta2: C.float(p.Beta2), eps: C.float(p.Eps),
		weight_decay: C.float(p.WeightDecay), grad_scale: C.float(p.GradScale)}
	return check("align_trainer_adamw_step", C.align_trainer_adamw_step(t.p, &cp))
}

// State is the trainer's optimisable state.
type State struct {
	Params, M, V, Grads []float32
	Step                int64
}

// GetState copies parameters, moments and gradient accumulator.
func (t *Trainer) GetState() (State, error) {
	defer lockThread()()
	if err := t.live(); err != nil {
		return State{}, err
	}
	n := int(t.info.NLoRAParams)
	s := State{Params: make([]float32, n), M: make([]float32, n), V: make([]float32, n), Grads: make([]float32, n)}
	var step C.int64_t
	st := C.align_trainer_get_state(t.p, (*C.float)(unsafe.Pointer(&s.Params[0])), (*C.float)(unsafe.Pointer(&s.M[0])),
		(*C.float)(unsafe.Pointer(&s.V[0])), (*C.float)(unsafe.Pointer(&s.Grads[0])), &step)
	if err := check("align_trainer_get_state", st); err != nil {
		return State{}, err
	}
	s.Step = int64(step)
	return s, nil
}

// SetState restores parameters and moments (nil slices are left as they are).
func (t *Trainer) SetState(params, m, v []float32, step int64) error {
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	n := int(t.info.NLoRAParams)
	ptr := func(x []float32) (*C.float, error) {
		if x == nil {
			return nil, nil
		}
		if len(x) != n {
			return nil, errors.New("bindings: state vector has the wrong length")
		}
		return (*C.float)(unsafe.Pointer(&x[0])), nil
	}
	pp, err := ptr(params)
	if err != nil {
		return err
	}
	pm, err := ptr(m)
	if err != nil {
		return err
	}
	pv, err := ptr(v)
	if err != nil {
		return err
	}
	cs := C.int64_t(step)
	return check("align_trainer_set_state", C.align_trainer_set_state(t.p, pp, pm, pv, &cs))
}

// Export writes the adapters as a llama.cpp LoRA GGUF.
func (t *Trainer) Export(path string) error {
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return check("align_trainer_export", C.align_trainer_export(t.p, cpath))
}

// BenchMatmul measures ggml's CPU matmul rate in GFLOP/s (type "f32" or
// "q8_0" weights of k x m times an F32 k x n input).
func BenchMatmul(threads int, typ string, m, n, k, reps int) (float64, error) {
	defer lockThread()()
	if err := Init(); err != nil {
		return 0, err
	}
	ct := C.CString(typ)
	defer C.free(unsafe.Pointer(ct))
	var g C.double
	err := check("align_bench_matmul", C.align_bench_matmul(C.int32_t(threads), ct, C.int64_t(m), C.int64_t(n), C.int64_t(k), C.int32_t(reps), &g))
	return float64(g), err
}
