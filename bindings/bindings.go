// Package bindings is the only cgo package of align: a thin layer over the
// native C API in native/include/align.h. It converts types, turns status
// codes into errors and manages handle lifetimes; it holds no policy.
//
// Each handle type (Model, LoRA, Session) wraps one C pointer, has an
// idempotent Close and is not safe for concurrent use, except
// Session.Cancel, which any goroutine may call.
package bindings

/*
#cgo CFLAGS: -I${SRCDIR}/../native/include
#cgo LDFLAGS: -L${SRCDIR}/../build/native -L${SRCDIR}/../build -L${SRCDIR}/../build/ggml
#cgo LDFLAGS: -Wl,--start-group -lalign_native -lllama -lggml -lggml-cpu -lggml-base -Wl,--end-group
#cgo LDFLAGS: -lstdc++ -lm -fopenmp -lpthread
#include <stdlib.h>
#include <stdint.h>
#include "align.h"

align_status align_go_init(int with_log);
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Status is a native status code (align_status).
type Status int

// Status codes, as in align.h.
const (
	StatusOK              Status = C.ALIGN_OK
	StatusInvalidArgument Status = C.ALIGN_ERR_INVALID_ARGUMENT
	StatusIO              Status = C.ALIGN_ERR_IO
	StatusFormat          Status = C.ALIGN_ERR_FORMAT
	StatusUnsupported     Status = C.ALIGN_ERR_UNSUPPORTED
	StatusOutOfMemory     Status = C.ALIGN_ERR_OUT_OF_MEMORY
	StatusCancelled       Status = C.ALIGN_ERR_CANCELLED
	StatusBufferTooSmall  Status = C.ALIGN_ERR_BUFFER_TOO_SMALL
	StatusInternal        Status = C.ALIGN_ERR_INTERNAL
)

func (s Status) String() string { return C.GoString(C.align_status_name(C.align_status(s))) }

// Error is a failed native call.
type Error struct {
	Op   string // the C function, e.g. "align_model_load"
	Code Status
	Msg  string // the native message
}

// Error prints the native message followed by the call and its status,
// e.g. "x.gguf: not a GGUF file (align_model_load: format)", so a report
// names the failing function and code without a debugger.
func (e *Error) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("%s: %s", e.Op, e.Code)
	}
	return fmt.Sprintf("%s (%s: %s)", e.Msg, e.Op, e.Code)
}

// Is lets errors.Is match on the code: errors.Is(err, &Error{Code: StatusCancelled}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Op == "" || t.Op == e.Op)
}

// ErrCancelled matches any cancelled call with errors.Is.
var ErrCancelled = &Error{Code: StatusCancelled}

// lockThread pins the goroutine to its OS thread until the returned func
// runs: align_last_error is thread-local, so the failing call and the read
// of its message must happen on the same thread.
func lockThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

// check turns a status into an error with the native message; the caller
// must hold lockThread since the call that returned st.
func check(op string, st C.align_status) error {
	if st == C.ALIGN_OK {
		return nil
	}
	return &Error{Op: op, Code: Status(st), Msg: C.GoString(C.align_last_error())}
}

// Log levels passed to a Logger.
const (
	LogDebug = int(C.ALIGN_LOG_DEBUG)
	LogInfo  = int(C.ALIGN_LOG_INFO)
	LogWarn  = int(C.ALIGN_LOG_WARN)
	LogError = int(C.ALIGN_LOG_ERROR)
)

// Logger receives log text from align, llama.cpp and ggml; it may be called
// from any thread and must not call back into this package.
type Logger func(level int, text string)

var (
	initOnce sync.Once
	initErr  error
	logger   atomic.Pointer[Logger]
)

// SetLogger routes native logs to fn (nil: discard). Safe at any time.
func SetLogger(fn Logger) {
	if fn == nil {
		logger.Store(nil)
		return
	}
	logger.Store(&fn)
}

//export alignGoLog
func alignGoLog(level C.int, text *C.char, _ *C.void) {
	if p := logger.Load(); p != nil {
		(*p)(int(level), C.GoString(text))
	}
}

// Init initialises the native backends; every constructor calls it, so
// calling it directly is optional.
func Init() error {
	defer lockThread()()
	initOnce.Do(func() {
		initErr = check("align_init", C.align_go_init(1))
	})
	return initErr
}

// Version describes the native library and the ggml/llama.cpp it wraps.
func Version() string { return C.GoString(C.align_version()) }

// GPUDevice is the name of the first GPU device ("CUDA0") of a CUDA build on
// a machine with a GPU and driver, or "" (a CPU-only build, or no GPU).
func GPUDevice() string {
	if Init() != nil {
		return ""
	}
	defer lockThread()()
	var buf [64]C.char
	if !C.align_gpu_device(&buf[0], C.int32_t(len(buf))) {
		return ""
	}
	return C.GoString(&buf[0])
}
