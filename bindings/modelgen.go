package bindings

/*
#include <stdlib.h>
#include "align.h"
*/
import "C"

import "unsafe"

// FixtureParams describe a generated test model (see align_modelgen_params).
type FixtureParams struct {
	Arch       string // "llama", "qwen2", "qwen3" or "gemma3"
	Type       string // "f32", "f16", "q8_0", "q4_0", "q4_k"
	Size       string // "tiny", "small", "1b", "8b" or a real shape: "llama3-1b", "llama3-8b", "qwen3-0.6b", "gemma3-1b"
	Seed       uint64
	TiedOutput bool // gemma3 is always tied
	Llama3Rope bool // llama only: rope_freqs.weight with Llama 3.1's factors

	// Overrides of the size's preset (zero: the preset's), for architecture
	// tests: shape, rope base, gemma3's sliding window (negative: none) and
	// final logit soft-cap, and general.name.
	NLayer, NEmbd, NHead, NHeadKV, HeadDim, NFF int
	RopeBase                                    float32
	SlidingWindow                               int
	LogitSoftcap                                float32
	Name                                        string

	// Vocab, when set, replaces the built-in test vocabulary with a real
	// tokenizer's.
	Vocab *FixtureVocab
}

// FixtureVocab is a real tokenizer as GGUF stores it (see
// align_modelgen_params): Model "gpt2" with Pre and Merges, or "llama" with
// Scores. Ids of -1 are not written.
type FixtureVocab struct {
	Model, Pre              string
	Tokens                  []string
	Scores                  []float32
	Types                   []int32
	Merges                  []string
	BOS, EOS, EOT, UNK, PAD int32
	AddBOS, AddEOS          bool
	AddSpacePrefix          bool
	ChatTemplate            string
}

// cStrings copies strs into one C block of NUL-terminated strings and a C
// pointer table; free releases both.
func cStrings(strs []string) (table **C.char, free func()) {
	size := 0
	for _, s := range strs {
		size += len(s) + 1
	}
	block := C.malloc(C.size_t(size + 1))
	ptrs := C.malloc(C.size_t(len(strs)+1) * C.size_t(unsafe.Sizeof((*C.char)(nil))))
	b := unsafe.Slice((*byte)(block), size+1)
	pt := unsafe.Slice((**C.char)(ptrs), len(strs)+1)
	off := 0
	for i, s := range strs {
		copy(b[off:], s)
		b[off+len(s)] = 0
		pt[i] = (*C.char)(unsafe.Pointer(&b[off]))
		off += len(s) + 1
	}
	return (**C.char)(ptrs), func() { C.free(ptrs); C.free(block) }
}

// WriteFixture writes a deterministic random-weight model to path
// (atomically: a temporary file renamed into place).
func WriteFixture(path string, p FixtureParams) error {
	defer lockThread()()
	if err := Init(); err != nil {
		return err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	carch := C.CString(p.Arch)
	defer C.free(unsafe.Pointer(carch))
	ctype := C.CString(p.Type)
	defer C.free(unsafe.Pointer(ctype))
	csize := C.CString(p.Size)
	defer C.free(unsafe.Pointer(csize))
	cp := C.align_modelgen_default_params()
	cp.arch, cp._type, cp.size = carch, ctype, csize
	cp.seed, cp.tied_output, cp.llama3_rope = C.uint64_t(p.Seed), C.bool(p.TiedOutput), C.bool(p.Llama3Rope)
	cp.n_layer, cp.n_embd, cp.n_head = C.int32_t(p.NLayer), C.int32_t(p.NEmbd), C.int32_t(p.NHead)
	cp.n_head_kv, cp.head_dim, cp.n_ff = C.int32_t(p.NHeadKV), C.int32_t(p.HeadDim), C.int32_t(p.NFF)
	cp.rope_base, cp.sliding_window, cp.logit_softcap = C.float(p.RopeBase), C.int32_t(p.SlidingWindow), C.float(p.LogitSoftcap)
	if p.Name != "" {
		cname := C.CString(p.Name)
		defer C.free(unsafe.Pointer(cname))
		cp.name = cname
	}
	if v := p.Vocab; v != nil {
		n := len(v.Tokens)
		if n == 0 || len(v.Types) != n || (v.Scores != nil && len(v.Scores) != n) {
			return &Error{Op: "align_modelgen_write", Code: StatusInvalidArgument, Msg: "vocabulary: tokens, types and scores differ in length"}
		}
		cmodel := C.CString(v.Model)
		defer C.free(unsafe.Pointer(cmodel))
		cpre := C.CString(v.Pre)
		defer C.free(unsafe.Pointer(cpre))
		toks, freeToks := cStrings(v.Tokens)
		defer freeToks()
		types := C.malloc(C.size_t(4 * n))
		defer C.free(types)
		copy(unsafe.Slice((*int32)(types), n), v.Types)
		cp.tok_model, cp.tok_pre, cp.n_tokens, cp.tokens = cmodel, cpre, C.int32_t(n), toks
		cp.token_types = (*C.int32_t)(types)
		if v.Scores != nil {
			scores := C.malloc(C.size_t(4 * n))
			defer C.free(scores)
			copy(unsafe.Slice((*float32)(scores), n), v.Scores)
			cp.scores = (*C.float)(scores)
		}
		if len(v.Merges) > 0 {
			merges, freeMerges := cStrings(v.Merges)
			defer freeMerges()
			cp.n_merges, cp.merges = C.int32_t(len(v.Merges)), merges
		}
		cp.bos_id, cp.eos_id, cp.eot_id = C.int32_t(v.BOS), C.int32_t(v.EOS), C.int32_t(v.EOT)
		cp.unk_id, cp.pad_id = C.int32_t(v.UNK), C.int32_t(v.PAD)
		cp.add_bos, cp.add_eos, cp.add_space_prefix = C.bool(v.AddBOS), C.bool(v.AddEOS), C.bool(v.AddSpacePrefix)
		if v.ChatTemplate != "" {
			ct := C.CString(v.ChatTemplate)
			defer C.free(unsafe.Pointer(ct))
			cp.chat_template = ct
		}
	}
	return check("align_modelgen_write", C.align_modelgen_write(cpath, &cp))
}

// AdapterTensor is one adapted weight for WriteAdapter: A has NIn*Rank
// floats (ne = [n_in, r]), B has Rank*NOut floats (ne = [r, n_out]).
type AdapterTensor struct {
	BaseName        string
	NIn, NOut, Rank int
	A, B            []float32
}

// WriteAdapter writes a LoRA adapter GGUF that llama.cpp loads.
func WriteAdapter(path, arch string, alpha float32, ts []AdapterTensor) error {
	defer lockThread()()
	if err := Init(); err != nil {
		return err
	}
	n := len(ts)
	carr := C.malloc(C.size_t(n+1) * C.size_t(unsafe.Sizeof(C.align_adapter_tensor{})))
	defer C.free(carr)
	arr := unsafe.Slice((*C.align_adapter_tensor)(carr), n+1)
	for i, t := range ts {
		if len(t.A) != t.NIn*t.Rank || len(t.B) != t.Rank*t.NOut || t.Rank <= 0 {
			return &Error{Op: "align_adapter_write", Code: StatusInvalidArgument, Msg: "adapter tensor " + t.BaseName + ": A/B sizes do not match n_in, n_out, rank"}
		}
		name := C.CString(t.BaseName)
		defer C.free(unsafe.Pointer(name))
		// A and B are copied to C memory: a C struct may not hold Go pointers
		a := C.malloc(C.size_t(4 * len(t.A)))
		defer C.free(a)
		copy(unsafe.Slice((*float32)(a), len(t.A)), t.A)
		b := C.malloc(C.size_t(4 * len(t.B)))
		defer C.free(b)
		copy(unsafe.Slice((*float32)(b), len(t.B)), t.B)
		arr[i] = C.align_adapter_tensor{base_name: name, n_in: C.int64_t(t.NIn), n_out: C.int64_t(t.NOut),
			rank: C.int64_t(t.Rank), a: (*C.float)(a), b: (*C.float)(b)}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	carch := C.CString(arch)
	defer C.free(unsafe.Pointer(carch))
	return check("align_adapter_write", C.align_adapter_write(cpath, carch, C.float(alpha), (*C.align_adapter_tensor)(carr), C.int32_t(n)))
}

// Dequantize writes a copy of a model with every tensor in F32.
func Dequantize(inPath, outPath string) error {
	defer lockThread()()
	if err := Init(); err != nil {
		return err
	}
	cin := C.CString(inPath)
	defer C.free(unsafe.Pointer(cin))
	cout := C.CString(outPath)
	defer C.free(unsafe.Pointer(cout))
	return check("align_model_dequantize", C.align_model_dequantize(cin, cout))
}
