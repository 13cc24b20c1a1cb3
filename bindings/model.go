package bindings

/*
#include <stdlib.h>
#include "align.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/align-dev/align/align/prompt"
)

// ModelOptions configure LoadModel.
type ModelOptions struct {
	Threads   int  // <= 0: all cores
	NoMmap    bool // read the file instead of mapping it
	GPULayers int  // layers to offload where a GPU backend is built in
	VocabOnly bool // tokenizer and metadata only; sessions cannot be created
	// NoExtraBuffers keeps the weights in plain host memory (no repacked or
	// AMX layouts, which the trainer cannot read; see align_model_params).
	NoExtraBuffers bool
	// Trainable: a trainer will run on the weights. On CPUs with an extra
	// buffer type the trainer cannot read (AMX takes Q4_K and Q8_0
	// matrices 2048 wide or more) the weights stay in plain host memory;
	// elsewhere llama.cpp's repacked layout stays, which the trainer reads.
	Trainable bool
}

// Model is a loaded GGUF model.
type Model struct {
	p        *C.align_model
	children atomic.Int64 // open sessions and adapters
	path     string
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	Arch            string
	Desc            string
	NVocab          int
	NCtxTrain       int
	NEmbd           int
	NLayer          int
	NParams         uint64
	SizeBytes       uint64
	BOS, EOS        int32
	EOT             int32 // end of turn; -1 when absent
	AddBOS          bool
	HasChatTemplate bool
}

// LoadModel loads a GGUF model file. Errors carry the file name and cause;
// a missing file is StatusIO, a corrupt one StatusFormat, an unknown
// architecture StatusUnsupported.
func LoadModel(path string, opt ModelOptions) (*Model, error) {
	defer lockThread()()
	if err := Init(); err != nil {
		return nil, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	p := C.align_model_default_params()
	p.n_threads = C.int32_t(opt.Threads)
	p.use_mmap = C.bool(!opt.NoMmap)
	p.n_gpu_layers = C.int32_t(opt.GPULayers)
	p.vocab_only = C.bool(opt.VocabOnly)
	p.no_extra_bufts = C.bool(opt.NoExtraBuffers)
	p.trainable = C.bool(opt.Trainable)
	var m *C.align_model
	if err := check("align_model_load", C.align_model_load(cpath, &p, &m)); err != nil {
		return nil, err
	}
	return &Model{p: m, path: path}, nil
}

// Path is the file the model was loaded from.
func (m *Model) Path() string { return m.path }

// Close frees the model. It fails while sessions or adapters of the model are
// still open. Closing twice is a no-op.
func (m *Model) Close() error {
	if m == nil || m.p == nil {
		return nil
	}
	if n := m.children.Load(); n > 0 {
		return errors.New("bindings: model closed while sessions or adapters are open")
	}
	C.align_model_free(m.p)
	m.p = nil
	return nil
}

func (m *Model) live() error {
	if m == nil || m.p == nil {
		return errors.New("bindings: model is closed")
	}
	return nil
}

// Info returns the model's description.
func (m *Model) Info() (ModelInfo, error) {
	defer lockThread()()
	if err := m.live(); err != nil {
		return ModelInfo{}, err
	}
	var ci C.align_model_info
	if err := check("align_model_get_info", C.align_model_get_info(m.p, &ci)); err != nil {
		return ModelInfo{}, err
	}
	return ModelInfo{
		Arch:            C.GoString(&ci.arch[0]),
		Desc:            C.GoString(&ci.desc[0]),
		NVocab:          int(ci.n_vocab),
		NCtxTrain:       int(ci.n_ctx_train),
		NEmbd:           int(ci.n_embd),
		NLayer:          int(ci.n_layer),
		NParams:         uint64(ci.n_params),
		SizeBytes:       uint64(ci.size_bytes),
		BOS:             int32(ci.token_bos),
		EOS:             int32(ci.token_eos),
		EOT:             int32(ci.token_eot),
		AddBOS:          bool(ci.add_bos),
		HasChatTemplate: bool(ci.has_chat_template),
	}, nil
}

// Tokenize converts text to tokens. addSpecial adds BOS (when the model
// wants it); parseSpecial turns control-token text such as <|im_start|> into
// control tokens. Characters the vocabulary cannot spell become its unknown
// token (see TokenizeReport to learn about them).
func (m *Model) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	toks, _, err := m.TokenizeReport(text, addSpecial, parseSpecial)
	return toks, err
}

// Unspelled describes the characters of a text the vocabulary could not
// spell (no token and no byte fallback): each became the unknown token.
type Unspelled struct {
	Count  int    // characters mapped to the unknown token (0: none)
	First  string // the first such character
	Offset int    // its byte offset in the text (-1 when Count is 0)
}

// TokenizeReport is Tokenize that also reports what could not be spelled,
// so callers can warn once. A vocabulary without an unknown token fails
// with StatusUnsupported naming the character and its offset.
func (m *Model) TokenizeReport(text string, addSpecial, parseSpecial bool) ([]int32, Unspelled, error) {
	defer lockThread()()
	if err := m.live(); err != nil {
		return nil, Unspelled{}, err
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	buf := make([]int32, len(text)+8)
	for {
		var n C.int32_t
		var stats C.align_tokenize_stats
		st := C.align_model_tokenize(m.p, ctext, C.int32_t(len(text)), C.bool(addSpecial), C.bool(parseSpecial),
			(*C.int32_t)(unsafe.Pointer(unsafe.SliceData(buf))), C.int32_t(len(buf)), &n, &stats)
		runtime.KeepAlive(buf)
		if st == C.ALIGN_ERR_BUFFER_TOO_SMALL {
			buf = make([]int32, int(n))
			continue
		}
		u := Unspelled{Count: int(stats.n_unknown), First: C.GoString(&stats.first_char[0]), Offset: int(stats.first_offset)}
		if err := check("align_model_tokenize", st); err != nil {
			return nil, u, err
		}
		return buf[:int(n)], u, nil
	}
}

// Detokenize converts tokens to text; renderSpecial prints control tokens.
func (m *Model) Detokenize(tokens []int32, renderSpecial bool) (string, error) {
	defer lockThread()()
	if err := m.live(); err != nil {
		return "", err
	}
	if len(tokens) == 0 {
		return "", nil
	}
	buf := make([]byte, 8*len(tokens)+16)
	for {
		var n C.int32_t
		st := C.align_model_detokenize(m.p, (*C.int32_t)(unsafe.Pointer(&tokens[0])), C.int32_t(len(tokens)),
			C.bool(renderSpecial), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), &n)
		if st == C.ALIGN_ERR_BUFFER_TOO_SMALL {
			buf = make([]byte, int(n)+1)
			continue
		}
		if err := check("align_model_detokenize", st); err != nil {
			return "", err
		}
		return string(buf[:int(n)]), nil
	}
}

// IsEOG reports whether token ends a generation.
func (m *Model) IsEOG(token int32) bool {
	if m.live() != nil {
		return false
	}
	return bool(C.align_model_token_is_eog(m.p, C.int32_t(token)))
}

// TokenUnknown is the vocabulary's unknown token, or -1 when it has none.
// Generation never samples it unless it also ends a generation.
func (m *Model) TokenUnknown() int32 {
	if m.live() != nil {
		return -1
	}
	return int32(C.align_model_token_unknown(m.p))
}

// Message is one chat turn (align/prompt's conversation type).
type Message = prompt.Message

// ChatApply renders messages with the model's chat template (or tmpl when
// not empty). addAssistant appends the assistant turn header.
func (m *Model) ChatApply(tmpl string, msgs []Message, addAssistant bool) (string, error) {
	defer lockThread()()
	if err := m.live(); err != nil {
		return "", err
	}
	n := len(msgs)
	croles := C.malloc(C.size_t(n+1) * C.size_t(unsafe.Sizeof(uintptr(0))))
	defer C.free(croles)
	ccont := C.malloc(C.size_t(n+1) * C.size_t(unsafe.Sizeof(uintptr(0))))
	defer C.free(ccont)
	roles := unsafe.Slice((**C.char)(croles), n+1)
	conts := unsafe.Slice((**C.char)(ccont), n+1)
	total := 0
	for i, msg := range msgs {
		roles[i] = C.CString(msg.Role)
		defer C.free(unsafe.Pointer(roles[i]))
		conts[i] = C.CString(msg.Content)
		defer C.free(unsafe.Pointer(conts[i]))
		total += len(msg.Role) + len(msg.Content)
	}
	var ctmpl *C.char
	if tmpl != "" {
		ctmpl = C.CString(tmpl)
		defer C.free(unsafe.Pointer(ctmpl))
	}
	buf := make([]byte, 2*total+256)
	for {
		var out C.int32_t
		st := C.align_model_chat_apply(m.p, ctmpl, (**C.char)(croles), (**C.char)(ccont), C.int32_t(n),
			C.bool(addAssistant), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), &out)
		if st == C.ALIGN_ERR_BUFFER_TOO_SMALL {
			buf = make([]byte, int(out)+1)
			continue
		}
		if err := check("align_model_chat_apply", st); err != nil {
			return "", err
		}
		return string(buf[:int(out)]), nil
	}
}

// Meta returns a metadata value as a string; ok is false when the key is absent.
func (m *Model) Meta(key string) (string, bool) {
	if m.live() != nil {
		return "", false
	}
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	buf := make([]byte, 256)
	for {
		var n C.int32_t
		st := C.align_model_meta(m.p, ckey, (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), &n)
		if st == C.ALIGN_ERR_BUFFER_TOO_SMALL {
			buf = make([]byte, int(n)+1)
			continue
		}
		if st != C.ALIGN_OK {
			return "", false
		}
		return string(buf[:int(n)]), true
	}
}

// LoRA is a loaded LoRA adapter, bound to the model it was loaded for.
type LoRA struct {
	p     *C.align_lora
	model *Model
	path  string
	users atomic.Int64 // open sessions the adapter is attached to
	// release, if set, runs once the adapter is freed (a live trainer
	// adapter tells its trainer)
	release func()
}

// LoadLoRA loads an adapter GGUF for model. An adapter made for another
// architecture or shape is StatusUnsupported.
func LoadLoRA(model *Model, path string) (*LoRA, error) {
	defer lockThread()()
	if err := model.live(); err != nil {
		return nil, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var l *C.align_lora
	if err := check("align_lora_load", C.align_lora_load(model.p, cpath, &l)); err != nil {
		return nil, err
	}
	model.children.Add(1)
	return &LoRA{p: l, model: model, path: path}, nil
}

// Path is the adapter's file.
func (l *LoRA) Path() string { return l.path }

// Close frees the adapter. It fails, freeing nothing, while a session that
// uses the adapter is open (close the sessions first). Idempotent.
func (l *LoRA) Close() error {
	if l == nil || l.p == nil {
		return nil
	}
	if n := l.users.Load(); n > 0 {
		return fmt.Errorf("bindings: adapter %s closed while %d session(s) use it", l.path, n)
	}
	C.align_lora_free(l.p)
	l.p = nil
	l.model.children.Add(-1)
	if l.release != nil {
		l.release()
	}
	return nil
}
