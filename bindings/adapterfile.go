package bindings

/*
#include <stdlib.h>
#include "align.h"
*/
import "C"

import "unsafe"

// AdapterFile describes an adapter GGUF: a llama.cpp LoRA adapter (Kind
// "lora") or align's heads file (Kind "heads", see align.h).
type AdapterFile struct {
	Arch, Kind string
	Alpha      float32 // lora
	Rank       int     // lora
	Targets    uint32  // lora: Target* bits present
	NTensors   int
	Heads      []HeadSpec // heads
}

// ReadAdapterFile describes the adapter GGUF at path without loading it.
func ReadAdapterFile(path string) (AdapterFile, error) {
	defer lockThread()()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ci C.align_adapter_file_info
	if err := check("align_adapter_file_describe", C.align_adapter_file_describe(cpath, &ci)); err != nil {
		return AdapterFile{}, err
	}
	f := AdapterFile{Arch: C.GoString(&ci.arch[0]), Kind: C.GoString(&ci.kind[0]), Alpha: float32(ci.alpha),
		Rank: int(ci.rank), Targets: uint32(ci.targets), NTensors: int(ci.n_tensors)}
	for h := 0; h < int(ci.n_heads); h++ {
		f.Heads = append(f.Heads, HeadSpec{Name: C.GoString(&ci.head_names[h][0]), Dim: int(ci.head_dims[h])})
	}
	return f, nil
}

// Load loads a LoRA GGUF or a heads GGUF into a set's parameters (their
// Adam moments become zero). The set must have been made with the file's
// rank, alpha and targets (or heads); nothing changes when it fails.
func (h Set) Load(path string) error {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return check("align_trainer_load_set", C.align_trainer_load_set(t.p, C.int32_t(set), cpath))
}

// ExportHeads writes the set's heads as align's heads GGUF.
func (h Set) ExportHeads(path string) error {
	t, set := h.t, h.id
	defer lockThread()()
	if err := t.live(); err != nil {
		return err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return check("align_trainer_export_heads", C.align_trainer_export_heads(t.p, C.int32_t(set), cpath))
}
