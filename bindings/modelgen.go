package bindings

/*
#include <stdlib.h>
#include "align.h"
*/
import "C"

import "unsafe"

// FixtureParams describe a generated test model (see align_modelgen_params).
type FixtureParams struct {
	Arch       string // "llama" or "qwen2"
	Type       string // "f32", "f16", "q8_0", "q4_0", "q4_k"
	Size       string // "tiny" or "small"
	Seed       uint64
	TiedOutput bool
}

// WriteFixture writes a deterministic random-weight model to path
// (atomically: a temporary file renamed into place).
func WriteFixture(path string, p FixtureParams) error {
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
	cp := C.align_modelgen_params{arch: carch, _type: ctype, size: csize, seed: C.uint64_t(p.Seed), tied_output: C.bool(p.TiedOutput)}
	return check("align_modelgen_write", C.align_modelgen_write(cpath, &cp))
}
