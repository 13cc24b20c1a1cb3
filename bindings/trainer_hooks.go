package bindings

/*
#include "align.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Direct calls of the trainer's C API with counts the Go wrappers never
// pass, for the tests that check C refuses a wrong buffer length (cgo is
// not allowed in _test.go files).

// cGetStateCount calls align_trainer_get_state on set 0 with buffers of n
// floats (n may differ from the set's size: the status says whether C
// accepted it).
func cGetStateCount(t *Trainer, n int64) Status {
	defer lockThread()()
	buf := make([]float32, max(n, 1))
	return Status(C.align_trainer_get_state(t.p, 0, C.int64_t(n), (*C.float)(unsafe.Pointer(&buf[0])), nil, nil, nil, nil))
}

// cSetStateCount is cGetStateCount for align_trainer_set_state (zeros).
func cSetStateCount(t *Trainer, n int64) Status {
	defer lockThread()()
	buf := make([]float32, max(n, 1))
	return Status(C.align_trainer_set_state(t.p, 0, C.int64_t(n), (*C.float)(unsafe.Pointer(&buf[0])), nil, nil, nil))
}

// cForwardSums runs align_trainer_forward of b (set 0, scale 1) into a sums
// buffer with room for n values.
func cForwardSums(t *Trainer, b *Batch, n int64) Status {
	defer lockThread()()
	var pin runtime.Pinner
	defer pin.Unpin()
	cb, err := b.c(&pin)
	if err != nil {
		return StatusInvalidArgument
	}
	sums := make([]float64, max(n, 1))
	pin.Pin(&sums[0])
	co := C.align_outputs{sums: (*C.double)(unsafe.Pointer(&sums[0])), n_sums: C.int64_t(n)}
	st := Status(C.align_trainer_forward(t.p, &cb, 0, 1, &co))
	runtime.KeepAlive(b)
	return st
}
