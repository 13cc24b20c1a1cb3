package bindings

/*
#include <stdlib.h>
#include "align.h"
*/
import "C"

import (
	"context"
	"sync/atomic"
	"unsafe"
)

// MergeLoRA is one adapter to fold into a base, with llama.cpp's user scale.
type MergeLoRA struct {
	Path  string
	Scale float32
}

// MergeOptions configure Merge.
type MergeOptions struct {
	// Type is the output type of the weight matrices ("f16", "q8_0",
	// "q4_k", ...); "": every tensor keeps the base's type.
	Type  string
	Force bool // replace an existing output file
}

// MergeResult counts what Merge wrote.
type MergeResult struct {
	Tensors, Merged, Converted, Fallback, Copied int
	Bytes                                        int64
}

// Merge folds adapters into the base GGUF at base and writes the merged
// model to out atomically (see align_merge in align.h). A cancelled ctx
// stops it between tensors and leaves no file.
func Merge(ctx context.Context, base string, loras []MergeLoRA, out string, opt MergeOptions) (MergeResult, error) {
	defer lockThread()()
	if err := Init(); err != nil {
		return MergeResult{}, err
	}
	cbase := C.CString(base)
	defer C.free(unsafe.Pointer(cbase))
	cout := C.CString(out)
	defer C.free(unsafe.Pointer(cout))
	var cl *C.align_merge_lora
	if len(loras) > 0 {
		cl = (*C.align_merge_lora)(C.malloc(C.size_t(len(loras)) * C.size_t(unsafe.Sizeof(C.align_merge_lora{}))))
		defer C.free(unsafe.Pointer(cl))
		sl := unsafe.Slice(cl, len(loras))
		for i, l := range loras {
			cp := C.CString(l.Path)
			defer C.free(unsafe.Pointer(cp))
			sl[i] = C.align_merge_lora{path: cp, scale: C.float(l.Scale)}
		}
	}
	p := C.align_merge_default_params()
	if opt.Type != "" {
		ct := C.CString(opt.Type)
		defer C.free(unsafe.Pointer(ct))
		p._type = ct
	}
	p.force = C.bool(opt.Force)
	cancel := (*C.int32_t)(C.malloc(4))
	defer C.free(unsafe.Pointer(cancel))
	*cancel = 0
	p.cancel = (*C.int32_t)(unsafe.Pointer(cancel))
	stop := context.AfterFunc(ctx, func() { atomic.StoreInt32((*int32)(unsafe.Pointer(cancel)), 1) })
	defer stop()
	var r C.align_merge_result
	if err := check("align_merge", C.align_merge(cbase, cl, C.int32_t(len(loras)), cout, &p, &r)); err != nil {
		return MergeResult{}, err
	}
	return MergeResult{Tensors: int(r.n_tensors), Merged: int(r.n_merged), Converted: int(r.n_converted),
		Fallback: int(r.n_fallback), Copied: int(r.n_copied), Bytes: int64(r.bytes_written)}, nil
}
