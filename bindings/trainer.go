package bindings

/*
#include <stdlib.h>
#include "align.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
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

// Parameter kinds of the parameter table (ParamInfo.Kind).
const (
	ParamLoRAA      = int(C.ALIGN_PARAM_LORA_A)
	ParamLoRAB      = int(C.ALIGN_PARAM_LORA_B)
	ParamHeadWeight = int(C.ALIGN_PARAM_HEAD_WEIGHT)
	ParamHeadBias   = int(C.ALIGN_PARAM_HEAD_BIAS)
)

// TrainerOptions configure NewTrainer. Rank, Alpha, Targets and Seed shape
// the first adapter set, "policy" (set 0), which NewTrainer adds unless
// NoPolicySet (the native trainer starts with none).
type TrainerOptions struct {
	Threads        int
	NoPolicySet    bool // no "policy" set: the caller adds its own (a reward-model run)
	Rank           int
	Alpha          float32
	Targets        uint32 // 0: q, k, v, o
	Seed           uint64
	ExactBackward  bool   // F32 transposed weights (gradient checks)
	Device         string // "" or "CPU"; a ggml device name where one is built in
	HeadChunkBytes int64  // LM-head working memory per chunk (0: 64 MiB)
	// BackwardWeights: what the CPU trainer's transposed weight copies are
	// (align.h ALIGN_BACKWARD_*): "" or "auto" (repacked Q4_K for Q4_K
	// weights where the CPU has the kernel, else Q8_0), "q8_0", "q4_k",
	// "tiles" (no copies: each backward makes Wᵀ in Q8_0 tiles).
	BackwardWeights string
	Recompute       bool // gradient checkpointing: keep layer inputs, recompute each layer in the backward
}

// BackwardWeightsNames are the values TrainerOptions.BackwardWeights takes.
var BackwardWeightsNames = []string{"auto", "q8_0", "q4_k", "tiles"}

func backwardWeights(name string) (C.int32_t, error) {
	switch strings.ToLower(name) {
	case "", "auto":
		return C.ALIGN_BACKWARD_AUTO, nil
	case "q8_0":
		return C.ALIGN_BACKWARD_Q8_0, nil
	case "q4_k":
		return C.ALIGN_BACKWARD_Q4_K, nil
	case "tiles":
		return C.ALIGN_BACKWARD_TILES, nil
	}
	return 0, fmt.Errorf("backward weights %q: want auto, q8_0, q4_k or tiles", name)
}

// Trainer is the native LoRA training engine over the frozen weights of a
// Model. Not safe for concurrent use, except Cancel.
type Trainer struct {
	p     *C.align_trainer
	model *Model
	owned bool // the model was loaded by NewTrainerFromFile
	info  TrainerInfo
	lives atomic.Int64 // open live adapters (LiveLoRA) reading the trainer's tensors
	// gradSet is the set of the pending forward_grad (-2: none)
	gradSet int
}

// TrainerInfo describes a trainer's model and its first adapter set.
type TrainerInfo struct {
	Arch, Device                                     string
	NVocab, NEmbd, NLayer, NHead, NHeadKV, NFF, NCtx int
	NBaseParams, NLoRAParams                         int64
	NLoRATensors                                     int
	BaseBytes, TransposedBytes                       int64
	NSets                                            int
}

// NewTrainer creates a trainer over model's weights: the same resident copy
// serves training and generation (sessions of model). The model must be
// loaded with weights (ModelOptions.Trainable) and cannot be closed before
// the trainer.
func NewTrainer(model *Model, opt TrainerOptions) (*Trainer, error) {
	defer lockThread()()
	if err := model.live(); err != nil {
		return nil, err
	}
	p := C.align_trainer_default_params()
	p.n_threads = C.int32_t(opt.Threads)
	p.exact_backward = C.bool(opt.ExactBackward)
	p.head_chunk_bytes = C.int64_t(opt.HeadChunkBytes)
	bw, err := backwardWeights(opt.BackwardWeights)
	if err != nil {
		return nil, err
	}
	p.backward_weights = bw
	p.recompute = C.bool(opt.Recompute)
	if opt.Device != "" {
		cdev := C.CString(opt.Device)
		defer C.free(unsafe.Pointer(cdev))
		p.device = cdev
	}
	var t *C.align_trainer
	if err := check("align_trainer_new", C.align_trainer_new(model.p, &p, &t)); err != nil {
		return nil, err
	}
	tr := &Trainer{p: t, model: model, gradSet: -2}
	if err := tr.refreshInfo(); err != nil {
		C.align_trainer_free(t)
		return nil, err
	}
	model.children.Add(1)
	if opt.NoPolicySet {
		return tr, nil
	}
	// the native trainer starts with no set: set 0 is the policy, made here
	so := SetOptions{Name: "policy", Rank: 8, Alpha: 16, Targets: C.ALIGN_LORA_Q | C.ALIGN_LORA_K | C.ALIGN_LORA_V | C.ALIGN_LORA_O, Seed: opt.Seed}
	if opt.Rank > 0 {
		so.Rank = opt.Rank
	}
	if opt.Alpha > 0 {
		so.Alpha = opt.Alpha
	}
	if opt.Targets != 0 {
		so.Targets = opt.Targets
	}
	if _, err := tr.AddSet(so); err != nil {
		tr.Close() // not owned yet: the model stays open
		return nil, err
	}
	return tr, nil
}

// NewTrainerOwning is NewTrainer for a model the trainer then owns: Close
// closes it too. Where the model lives (GPU layers) is the caller's policy.
func NewTrainerOwning(model *Model, opt TrainerOptions) (*Trainer, error) {
	tr, err := NewTrainer(model, opt)
	if err != nil {
		return nil, err
	}
	tr.owned = true
	return tr, nil
}

// ModelOptions are the options of a CPU model a trainer with opt runs on:
// with weights, and with "tiles" backward weights in plain host memory
// (the tiles read W's own blocks; a repacked layout cannot be read back).
func (opt TrainerOptions) ModelOptions() ModelOptions {
	return ModelOptions{Threads: opt.Threads, Trainable: true, NoExtraBuffers: strings.EqualFold(opt.BackwardWeights, "tiles")}
}

// NewTrainerFromFile loads the model at path on the CPU (with weights) and
// creates a trainer that owns it; Model returns it for sessions. A device
// trainer's model is loaded by align/run.OpenTrainer, which offloads it.
func NewTrainerFromFile(path string, opt TrainerOptions) (*Trainer, error) {
	m, err := LoadModel(path, opt.ModelOptions())
	if err != nil {
		return nil, err
	}
	tr, err := NewTrainerOwning(m, opt)
	if err != nil {
		m.Close()
		return nil, err
	}
	return tr, nil
}

// must hold lockThread
func (t *Trainer) refreshInfo() error {
	var ci C.align_trainer_info
	if err := check("align_trainer_get_info", C.align_trainer_get_info(t.p, &ci)); err != nil {
		return err
	}
	t.info = TrainerInfo{
		Arch: C.GoString(&ci.arch[0]), Device: C.GoString(&ci.device[0]), NVocab: int(ci.n_vocab), NEmbd: int(ci.n_embd),
		NLayer: int(ci.n_layer), NHead: int(ci.n_head), NHeadKV: int(ci.n_head_kv), NFF: int(ci.n_ff), NCtx: int(ci.n_ctx_train),
		NBaseParams: int64(ci.n_base_params), NLoRAParams: int64(ci.n_lora_params), NLoRATensors: int(ci.n_lora_tensors),
		BaseBytes: int64(ci.base_bytes), TransposedBytes: int64(ci.transposed_bytes), NSets: int(ci.n_sets),
	}
	return nil
}

// Info describes the trainer.
func (t *Trainer) Info() TrainerInfo { return t.info }

// ComputeBytes returns the compute buffers the last body and LM-head graphs
// needed (the head's is O(n_vocab · chunk)).
func (t *Trainer) ComputeBytes() (body, head int64) {
	defer lockThread()()
	if t.live() != nil {
		return 0, 0
	}
	var ci C.align_trainer_info
	if C.align_trainer_get_info(t.p, &ci) != C.ALIGN_OK {
		return 0, 0
	}
	return int64(ci.body_compute_bytes), int64(ci.head_compute_bytes)
}

// CheckpointBytes returns what the last training body kept between its
// forward and backward with Recompute (layer inputs, gradient seams,
// masks); 0 without it.
func (t *Trainer) CheckpointBytes() int64 {
	defer lockThread()()
	if t.live() != nil {
		return 0
	}
	var ci C.align_trainer_info
	if C.align_trainer_get_info(t.p, &ci) != C.ALIGN_OK {
		return 0
	}
	return int64(ci.checkpoint_bytes)
}

// Model is the model whose weights the trainer runs on.
func (t *Trainer) Model() *Model { return t.model }

// Close frees the trainer (and its model when NewTrainerFromFile loaded it).
// Idempotent. It fails while live adapters of the trainer are open.
func (t *Trainer) Close() error {
	if t == nil || t.p == nil {
		return nil
	}
	if n := t.lives.Load(); n > 0 {
		return fmt.Errorf("bindings: trainer closed while %d live adapter(s) are open", n)
	}
	C.align_trainer_free(t.p)
	t.p = nil
	t.model.children.Add(-1)
	if t.owned {
		return t.model.Close()
	}
	return nil
}

func (t *Trainer) live() error {
	if t == nil || t.p == nil {
		return errors.New("bindings: trainer is closed")
	}
	return nil
}

// Cancel makes the running (or next) forward or backward return an error
// matching ErrCancelled. It is sticky until ClearCancel. Any goroutine may
// call it.
func (t *Trainer) Cancel() {
	if t != nil && t.p != nil {
		C.align_trainer_cancel(t.p)
	}
}

// ClearCancel re-arms the trainer after Cancel.
func (t *Trainer) ClearCancel() {
	if t != nil && t.p != nil {
		C.align_trainer_clear_cancel(t.p)
	}
}

// Watch cancels the trainer's native calls when ctx ends (a long forward
// stops within a graph node). The returned stop function ends the watch;
// a cancel that ctx caused stays set (ClearCancel re-arms the trainer).
func (t *Trainer) Watch(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-ctx.Done():
			t.Cancel()
		case <-done:
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// Batch is a micro-batch of NSeq sequences padded to NTok tokens, row-major.
// Scored[b*NTok+t] marks that log p(Tokens[b*NTok+t] | earlier tokens)
// counts; HeadAt (optional) marks positions where the set's heads read the
// final hidden state.
type Batch struct {
	NSeq, NTok int
	Tokens     []int32
	Lengths    []int32
	Scored     []uint8
	HeadAt     []uint8
}

// c describes b to C. The slices are pinned (a C struct may hold Go pointers
// only to pinned memory); call pin.Unpin after the call.
func (b *Batch) c(pin *runtime.Pinner) (C.align_batch, error) {
	if b.NSeq <= 0 || b.NTok <= 0 || len(b.Tokens) != b.NSeq*b.NTok || len(b.Scored) != b.NSeq*b.NTok ||
		len(b.Lengths) != b.NSeq || (b.HeadAt != nil && len(b.HeadAt) != b.NSeq*b.NTok) {
		return C.align_batch{}, errors.New("bindings: batch slices do not match NSeq x NTok")
	}
	pin.Pin(&b.Tokens[0])
	pin.Pin(&b.Lengths[0])
	pin.Pin(&b.Scored[0])
	cb := C.align_batch{
		n_seq: C.int32_t(b.NSeq), n_tok: C.int32_t(b.NTok),
		tokens:  (*C.int32_t)(unsafe.Pointer(&b.Tokens[0])),
		lengths: (*C.int32_t)(unsafe.Pointer(&b.Lengths[0])),
		scored:  (*C.uint8_t)(unsafe.Pointer(&b.Scored[0])),
	}
	if b.HeadAt != nil {
		pin.Pin(&b.HeadAt[0])
		cb.head_at = (*C.uint8_t)(unsafe.Pointer(&b.HeadAt[0]))
	}
	return cb, nil
}

// NScored counts scored positions.
func (b *Batch) NScored() int { return countNonZero(b.Scored) }

// NHeadAt counts head positions.
func (b *Batch) NHeadAt() int { return countNonZero(b.HeadAt) }

func countNonZero(x []uint8) int {
	n := 0
	for _, s := range x {
		if s != 0 {
			n++
		}
	}
	return n
}

// Outputs of a forward pass. Token order: sequence 0's scored positions
// ascending, then sequence 1's, ...; Heads: for each head position in the
// same order, the set's NHeadOut values.
type Outputs struct {
	Sums  []float64 // per sequence: sum of its scored token log-probs
	Logps []float32 // one per scored token
	Heads []float32 // NHeadAt · NHeadOut
}

// TokenSeq returns, for each scored token of b in Outputs order, its sequence.
func (b *Batch) TokenSeq() []int {
	out := make([]int, 0, b.NScored())
	for s := 0; s < b.NSeq; s++ {
		for t := 0; t < b.NTok; t++ {
			if b.Scored[s*b.NTok+t] != 0 {
				out = append(out, s)
			}
		}
	}
	return out
}

func (t *Trainer) forward(op string, b *Batch, set int, scale float32, grad bool) (Outputs, error) {
	defer lockThread()()
	if err := t.live(); err != nil {
		return Outputs{}, err
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	cb, err := b.c(&pin)
	if err != nil {
		return Outputs{}, err
	}
	out := Outputs{Sums: make([]float64, b.NSeq), Logps: make([]float32, b.NScored())}
	// align_outputs holds Go pointers: pin what it points to
	var co C.align_outputs
	pin.Pin(&out.Sums[0])
	co.sums, co.n_sums = (*C.double)(unsafe.Pointer(&out.Sums[0])), C.int64_t(len(out.Sums))
	if len(out.Logps) > 0 {
		pin.Pin(&out.Logps[0])
		co.token_logps, co.n_token_logps = (*C.float)(unsafe.Pointer(&out.Logps[0])), C.int64_t(len(out.Logps))
	}
	if nh := b.NHeadAt(); nh > 0 && set >= 0 {
		si, err := t.setInfo(set)
		if err != nil {
			return Outputs{}, err
		}
		if si.NHeadOut > 0 {
			out.Heads = make([]float32, nh*si.NHeadOut)
			pin.Pin(&out.Heads[0])
			co.head_values, co.n_head_values = (*C.float)(unsafe.Pointer(&out.Heads[0])), C.int64_t(len(out.Heads))
		}
	}
	var st C.align_status
	if grad {
		t.gradSet = -2
		st = C.align_trainer_forward_grad(t.p, &cb, C.int32_t(set), &co)
		if st == C.ALIGN_OK {
			t.gradSet = set
		}
	} else {
		st = C.align_trainer_forward(t.p, &cb, C.int32_t(set), C.float(scale), &co)
	}
	runtime.KeepAlive(b)
	runtime.KeepAlive(&out)
	if err := check(op, st); err != nil {
		return Outputs{}, err
	}
	return out, nil
}

// Set is one adapter set of a trainer: its own LoRA pairs and heads,
// gradient accumulators, AdamW moments and step counter over the shared
// base (AddSet makes one; Trainer.Set names one by index; Base is the base
// with no adapters, for forwards only).
type Set struct {
	t  *Trainer
	id int
}

// Set is the handle of adapter set id (0 is the first set, made by
// NewTrainer when its options name a rank).
func (t *Trainer) Set(id int) Set { return Set{t: t, id: id} }

// Base is the frozen base with adapters off: its Forward is the reference.
func (t *Trainer) Base() Set { return Set{t: t, id: -1} }

// ID is the set's index on its trainer (-1: the base).
func (h Set) ID() int { return h.id }

// Trainer is the trainer the set belongs to.
func (h Set) Trainer() *Trainer { return h.t }

// Forward scores b with the set's adapters at loraScale (0, or the Base
// set: the frozen base exactly) without keeping anything for a backward;
// the set's heads are read at b.HeadAt.
func (h Set) Forward(b *Batch, loraScale float32) (Outputs, error) {
	return h.t.forward("align_trainer_forward", b, h.id, loraScale, false)
}

// ForwardGrad runs the training forward of the set (adapters at scale 1)
// and keeps what Backward needs.
func (h Set) ForwardGrad(b *Batch) (Outputs, error) {
	return h.t.forward("align_trainer_forward_grad", b, h.id, 1, true)
}

// Backward accumulates (+=) the set's gradient of a loss with dLoss/dLogps
// = cot (one per scored token of the set's last ForwardGrad; nil: zeros)
// and dLoss/dHeads = headCot (Outputs.Heads' layout; nil: zeros). The
// lengths travel to C, which refuses any other count.
func (h Set) Backward(cot, headCot []float32) error {
	t := h.t
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	if t.gradSet != h.id {
		return &Error{Op: "align_trainer_backward", Code: StatusInvalidArgument,
			Msg: fmt.Sprintf("backward of set %d without a pending forward_grad of that set", h.id)}
	}
	var pc, ph *C.float
	if len(cot) > 0 {
		pc = (*C.float)(unsafe.Pointer(&cot[0]))
	}
	if len(headCot) > 0 {
		ph = (*C.float)(unsafe.Pointer(&headCot[0]))
	}
	// the counts let C refuse a slice shorter than the batch's outputs
	// (INVALID_ARGUMENT) instead of reading past it
	return check("align_trainer_backward", C.align_trainer_backward(t.p, pc, C.int64_t(len(cot)), ph, C.int64_t(len(headCot))))
}

// ZeroGrad clears the set's gradient accumulator.
func (h Set) ZeroGrad() error {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	return check("align_trainer_zero_grad", C.align_trainer_zero_grad(t.p, C.int32_t(set)))
}

// GradNorm is the L2 norm of the set's accumulated gradient times scale.
func (h Set) GradNorm(scale float64) (float64, error) {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return 0, err
	}
	var n C.double
	if err := check("align_trainer_grad_norm", C.align_trainer_grad_norm(t.p, C.int32_t(set), C.double(scale), &n)); err != nil {
		return 0, err
	}
	return float64(n), nil
}

// AdamW holds one optimiser step's settings.
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay, GradScale float32
}

// DefaultAdamW is align_adamw_default_params.
func DefaultAdamW() AdamW {
	p := C.align_adamw_default_params()
	return AdamW{LR: float32(p.lr), Beta1: float32(p.beta1), Beta2: float32(p.beta2), Eps: float32(p.eps),
		WeightDecay: float32(p.weight_decay), GradScale: float32(p.grad_scale)}
}

// Step applies AdamW to the set from its accumulated gradient and clears it.
func (h Set) Step(p AdamW) error {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	cp := C.align_adamw_params{lr: C.float(p.LR), beta1: C.float(p.Beta1), beta2: C.float(p.Beta2), eps: C.float(p.Eps),
		weight_decay: C.float(p.WeightDecay), grad_scale: C.float(p.GradScale)}
	return check("align_trainer_adamw_step", C.align_trainer_adamw_step(t.p, C.int32_t(set), &cp))
}

// SetOptions describe an adapter set (AddSet).
type SetOptions struct {
	Name    string
	Rank    int
	Alpha   float32
	Targets uint32 // 0: no adapters (heads only)
	Seed    uint64
	Heads   []HeadSpec
}

// HeadSpec names a scalar head and its number of outputs.
type HeadSpec struct {
	Name string
	Dim  int
}

// SetInfo describes an adapter set.
type SetInfo struct {
	Name                              string
	Rank                              int
	Alpha                             float32
	Targets                           uint32
	NParams                           int64
	NTensors, NLoRA, NHeads, NHeadOut int
	Step                              int64
}

// AddSet adds a named adapter set over the same base.
func (t *Trainer) AddSet(o SetOptions) (Set, error) {
	defer lockThread()()
	if err := t.live(); err != nil {
		return Set{}, err
	}
	p := C.align_adapter_set_default_params()
	name := C.CString(o.Name)
	defer C.free(unsafe.Pointer(name))
	p.name = name
	p.lora_rank = C.int32_t(o.Rank)
	p.lora_alpha = C.float(o.Alpha)
	p.targets = C.uint32_t(o.Targets)
	p.seed = C.uint64_t(o.Seed)
	var names []*C.char
	var dims []C.int32_t
	for _, h := range o.Heads {
		cs := C.CString(h.Name)
		defer C.free(unsafe.Pointer(cs))
		names = append(names, cs)
		dims = append(dims, C.int32_t(h.Dim))
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	if len(names) > 0 {
		cn := (**C.char)(C.malloc(C.size_t(len(names)) * C.size_t(unsafe.Sizeof(names[0]))))
		defer C.free(unsafe.Pointer(cn))
		copy(unsafe.Slice(cn, len(names)), names)
		pin.Pin(&dims[0])
		p.n_heads = C.int32_t(len(names))
		p.head_names = cn
		p.head_dims = (*C.int32_t)(unsafe.Pointer(&dims[0]))
	}
	var id C.int32_t
	if err := check("align_trainer_add_set", C.align_trainer_add_set(t.p, &p, &id)); err != nil {
		return Set{}, err
	}
	if err := t.refreshInfo(); err != nil {
		return Set{}, err
	}
	return Set{t: t, id: int(id)}, nil
}

// must hold lockThread
func (t *Trainer) setInfo(set int) (SetInfo, error) {
	var ci C.align_set_info
	if err := check("align_trainer_get_set_info", C.align_trainer_get_set_info(t.p, C.int32_t(set), &ci)); err != nil {
		return SetInfo{}, err
	}
	return SetInfo{Name: C.GoString(&ci.name[0]), Rank: int(ci.lora_rank), Alpha: float32(ci.lora_alpha),
		Targets: uint32(ci.targets), NParams: int64(ci.n_params), NTensors: int(ci.n_tensors), NLoRA: int(ci.n_lora),
		NHeads: int(ci.n_heads), NHeadOut: int(ci.n_head_out), Step: int64(ci.step)}, nil
}

// Info describes the set.
func (h Set) Info() (SetInfo, error) {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return SetInfo{}, err
	}
	return t.setInfo(set)
}

// ParamInfo is one row of a set's parameter table: the flat state vectors
// (GetState) are the rows concatenated, each ne0-fastest.
type ParamInfo struct {
	Name     string
	Kind     int // Param*
	Ne0, Ne1 int64
	Offset   int64
}

// NParams is the length of the set's flat state vectors.
func (h Set) NParams() (int64, error) {
	si, err := h.Info()
	return si.NParams, err
}

// Params returns the set's parameter table.
func (h Set) Params() ([]ParamInfo, error) {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return nil, err
	}
	var n C.int32_t
	st := C.align_trainer_get_params(t.p, C.int32_t(set), nil, 0, &n)
	if st != C.ALIGN_OK && st != C.ALIGN_ERR_BUFFER_TOO_SMALL {
		return nil, check("align_trainer_get_params", st)
	}
	if n == 0 {
		return nil, nil
	}
	rows := make([]C.align_param_info, int(n))
	if err := check("align_trainer_get_params", C.align_trainer_get_params(t.p, C.int32_t(set), &rows[0], n, &n)); err != nil {
		return nil, err
	}
	out := make([]ParamInfo, len(rows))
	for i, r := range rows {
		out[i] = ParamInfo{Name: C.GoString(&r.name[0]), Kind: int(r.kind), Ne0: int64(r.ne0), Ne1: int64(r.ne1), Offset: int64(r.offset)}
	}
	return out, nil
}

// State is an adapter set's optimisable state.
type State struct {
	Params, M, V, Grads []float32
	Step                int64
}

// GetState copies the set's parameters, moments and gradient accumulator.
func (h Set) GetState() (State, error) {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return State{}, err
	}
	si, err := t.setInfo(set)
	if err != nil {
		return State{}, err
	}
	n := int(si.NParams)
	s := State{Params: make([]float32, n), M: make([]float32, n), V: make([]float32, n), Grads: make([]float32, n)}
	var step C.int64_t
	st := C.align_trainer_get_state(t.p, C.int32_t(set), C.int64_t(n), (*C.float)(unsafe.Pointer(&s.Params[0])), (*C.float)(unsafe.Pointer(&s.M[0])),
		(*C.float)(unsafe.Pointer(&s.V[0])), (*C.float)(unsafe.Pointer(&s.Grads[0])), &step)
	if err := check("align_trainer_get_state", st); err != nil {
		return State{}, err
	}
	s.Step = int64(step)
	return s, nil
}

// SetState restores the set's parameters and moments (nil slices are left
// as they are) and its step counter.
func (h Set) SetState(params, m, v []float32, step int64) error {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	si, err := t.setInfo(set)
	if err != nil {
		return err
	}
	n := int(si.NParams)
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
	return check("align_trainer_set_state", C.align_trainer_set_state(t.p, C.int32_t(set), C.int64_t(n), pp, pm, pv, &cs))
}

// Export writes the set's adapters as a llama.cpp LoRA GGUF.
func (h Set) Export(path string) error {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return check("align_trainer_export", C.align_trainer_export(t.p, C.int32_t(set), cpath))
}

// LiveLoRA returns an adapter handle over the set's current tensors (no copy, no
// file) for sessions of Model(): a session made with it samples from the
// policy as trained so far, and sees later steps at its next generation.
// Close it before the trainer.
func (h Set) LiveLoRA() (*LoRA, error) {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return nil, err
	}
	var l *C.align_lora
	if err := check("align_trainer_lora", C.align_trainer_lora(t.p, C.int32_t(set), &l)); err != nil {
		return nil, err
	}
	t.model.children.Add(1)
	t.lives.Add(1)
	return &LoRA{p: l, model: t.model, path: fmt.Sprintf("(live adapter set %d)", set), release: func() { t.lives.Add(-1) }}, nil
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
