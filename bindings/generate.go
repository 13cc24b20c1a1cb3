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
	"sync/atomic"
	"unsafe"
)

// BatchResult reports a batched generation: Tokens[i] are sequence i's
// tokens (an end-of-generation token included when one was sampled).
type BatchResult struct {
	Tokens          [][]int32
	PromptTokens    int // decoded prompt tokens (once for equal prompts)
	GeneratedTokens int // over all sequences
	PromptMS        float64
	GenerateMS      float64
}

// GenerateBatch samples up to sp.MaxTokens tokens for each prompt in one
// batched decode over model (with adapters, which may be live trainer
// adapters). Sequence i samples with seed sp.Seed+i, so sequence i of a
// batch equals a single generation seeded sp.Seed+i. Stop strings and
// grammars are not supported here.
func GenerateBatch(ctx context.Context, model *Model, adapters []LoRAScale, prompts [][]int32, sp SamplerParams, threads int) (BatchResult, error) {
	defer lockThread()()
	if err := model.live(); err != nil {
		return BatchResult{}, err
	}
	if len(prompts) == 0 {
		return BatchResult{}, errors.New("bindings: no prompts")
	}
	if len(sp.Stop) > 0 || sp.Grammar != "" {
		return BatchResult{}, errors.New("bindings: batched generation takes no stop strings or grammar")
	}
	if sp.MaxTokens <= 0 {
		return BatchResult{}, errors.New("bindings: MaxTokens must be positive")
	}
	n := len(prompts)
	// C memory: the params struct and the prompt table hold pointers
	cprompts := (**C.int32_t)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof((*C.int32_t)(nil)))))
	defer C.free(unsafe.Pointer(cprompts))
	pt := unsafe.Slice(cprompts, n)
	lens := make([]C.int32_t, n)
	for i, p := range prompts {
		if len(p) == 0 {
			return BatchResult{}, fmt.Errorf("bindings: prompt %d is empty", i)
		}
		buf := (*C.int32_t)(C.malloc(C.size_t(len(p)) * 4))
		defer C.free(unsafe.Pointer(buf))
		copy(unsafe.Slice((*int32)(unsafe.Pointer(buf)), len(p)), p)
		pt[i] = buf
		lens[i] = C.int32_t(len(p))
	}
	p := C.align_batch_generate_default_params()
	p.n_threads = C.int32_t(threads)
	p.sampler.temperature = C.float(sp.Temperature)
	p.sampler.top_p = C.float(sp.TopP)
	p.sampler.top_k = C.int32_t(sp.TopK)
	p.sampler.min_p = C.float(sp.MinP)
	p.sampler.seed = C.uint32_t(sp.Seed)
	p.sampler.max_tokens = C.int32_t(sp.MaxTokens)
	if len(adapters) > 0 {
		ls := (**C.align_lora)(C.malloc(C.size_t(len(adapters)) * C.size_t(unsafe.Sizeof((*C.align_lora)(nil)))))
		defer C.free(unsafe.Pointer(ls))
		sc := (*C.float)(C.malloc(C.size_t(len(adapters)) * 4))
		defer C.free(unsafe.Pointer(sc))
		lsl, scl := unsafe.Slice(ls, len(adapters)), unsafe.Slice(sc, len(adapters))
		for i, a := range adapters {
			if a.LoRA == nil || a.LoRA.p == nil {
				return BatchResult{}, errors.New("bindings: closed adapter")
			}
			if a.LoRA.model != model {
				return BatchResult{}, errors.New("bindings: adapter " + a.LoRA.path + " was loaded for another model")
			}
			lsl[i], scl[i] = a.LoRA.p, C.float(a.Scale)
		}
		p.loras = ls
		p.lora_scales = sc
		p.n_loras = C.int32_t(len(adapters))
	}
	cancel := (*C.int32_t)(C.malloc(4))
	defer C.free(unsafe.Pointer(cancel))
	*cancel = 0
	p.cancel = (*C.int32_t)(unsafe.Pointer(cancel))
	stop := context.AfterFunc(ctx, func() { atomic.StoreInt32((*int32)(unsafe.Pointer(cancel)), 1) })
	defer stop()

	out := make([]int32, n*sp.MaxTokens)
	counts := make([]C.int32_t, n)
	var res C.align_generate_result
	st := C.align_generate_batch(model.p, &p, cprompts, &lens[0], C.int32_t(n), (*C.int32_t)(unsafe.Pointer(&out[0])), &counts[0], &res)
	if err := check("align_generate_batch", st); err != nil {
		return BatchResult{}, err
	}
	br := BatchResult{Tokens: make([][]int32, n), PromptTokens: int(res.n_prompt), GeneratedTokens: int(res.n_generated),
		PromptMS: float64(res.prompt_ms), GenerateMS: float64(res.generate_ms)}
	for i := range br.Tokens {
		br.Tokens[i] = append([]int32(nil), out[i*sp.MaxTokens:i*sp.MaxTokens+int(counts[i])]...)
	}
	return br, nil
}
