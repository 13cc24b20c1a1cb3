//go:build cuda

package bindings

// The CUDA variant (`make cuda`, `go build -tags cuda`): ggml's CUDA backend
// and the CUDA runtime libraries. It comes after bindings.go's group, so
// -lggml-base and -lggml again resolve what libggml-cuda needs; the runtime
// is linked dynamically and libcuda (the driver) is not linked at all
// (GGML_CUDA_NO_VMM), so the binary starts and trains on the CPU where no
// NVIDIA driver is installed. The Makefile puts the CUDA build's library
// folders first on the search path (CGO_LDFLAGS).

/*
#cgo LDFLAGS: -lggml-cuda -lggml -lggml-base -lcudart -lcublas -lcublasLt -ldl -lrt -lpthread
*/
import "C"
