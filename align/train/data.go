package train

import (
	"errors"
	"fmt"

	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// Example is one tokenized pair: a shared prompt and two responses. For SFT
// only Chosen is used.
type Example struct {
	ID        string
	Objective string
	Beta      float64
	Prompt    []int32
	Chosen    []int32
	Rejected  []int32
	// RefW and RefL are the reference (frozen base) log-prob sums of the
	// responses, filled once before training for the DPO family.
	RefW, RefL float64
	// Margin is the reward model's per-pair margin m (--margin-from).
	Margin float64
	// KTO (LayoutUnpaired): Chosen is the one completion and Undesirable
	// its label. For KTO's reference point z0, KL is another example's
	// completion after this prompt (a mismatched sequence) and RefKL its
	// reference log-prob sum.
	Undesirable bool
	KL          []int32
	RefKL       float64
}

// Truncation counts what --max-length cut.
type Truncation struct {
	PromptsCut   int `json:"prompts_cut"`   // prompts shortened from the left
	ResponsesCut int `json:"responses_cut"` // responses shortened at the end (still trained on)
}

// Encoder turns pairs into tokens with align/prompt's formatter (the chat
// template, or the plain format with --raw or without a template), the one
// `sample` and the local backend use, so a model is sampled and judged on
// the text it learned from.
type Encoder struct {
	Model     *bindings.Model
	MaxLength int  // tokens per sequence (prompt + response)
	Raw       bool // no chat template: align/prompt's plain format
	format    *prompt.Formatter
}

// NewEncoder prepares an encoder for a (vocabulary-only) model under the
// model's own chat template (or the plain format with raw).
func NewEncoder(m *bindings.Model, maxLength int, raw bool) (*Encoder, error) {
	return NewEncoderWith(m, maxLength, prompt.Options{Raw: raw})
}

// NewEncoderWith is NewEncoder under a run's formatter options
// (run.Common.PromptOptions: --raw, --chat-template, --chat-template-kwargs).
func NewEncoderWith(m *bindings.Model, maxLength int, o prompt.Options) (*Encoder, error) {
	if maxLength < 8 {
		return nil, fmt.Errorf("--max-length must be at least 8 (got %d)", maxLength)
	}
	f, err := engine.NewFormatter(m, o)
	if err != nil {
		return nil, fmt.Errorf("--chat-template: %w", err)
	}
	return &Encoder{Model: m, MaxLength: maxLength, Raw: o.Raw, format: f}, nil
}

func toPrompt(ms []pairs.Message) []prompt.Message {
	out := make([]prompt.Message, len(ms))
	for i, m := range ms {
		out[i] = prompt.Message{Role: m.Role, Content: m.Content}
	}
	return out
}

// encode returns the prompt tokens and the tokens the response adds (its
// end-of-turn marker included).
func (e *Encoder) encode(prompt, response []pairs.Message) ([]int32, []int32, error) {
	p, r, u, err := e.format.EncodePair(toPrompt(prompt), toPrompt(response))
	if err == nil && u.Count > 0 {
		// a vocabulary without byte fallback (TinyStories-656K) maps such
		// characters to <unk>: training on them teaches <unk>, so refuse
		err = fmt.Errorf("the model's vocabulary cannot spell %q (%d such character(s) in the prompt and response)", u.First, u.Count)
	}
	return p, r, err
}

func equalPrefix(a, p []int32) bool {
	for i := range p {
		if a[i] != p[i] {
			return false
		}
	}
	return true
}

// fit applies --max-length: the prompt loses tokens from the left (its first
// token, BOS, is kept) until prompt + the longer response fit, keeping at
// least a quarter of the budget, so a prompt longer than the limit is cut
// too; a response longer than what is left is cut at its end and counted,
// never dropped.
func (e *Encoder) fit(p, w, l []int32, tr *Truncation) ([]int32, []int32, []int32, error) {
	longest := max(len(w), len(l))
	if len(p)+longest > e.MaxLength {
		// keep at least a quarter of the budget for the prompt
		keep := max(e.MaxLength-longest, min(len(p), e.MaxLength/4))
		if keep < len(p) {
			np := append([]int32{p[0]}, p[len(p)-(keep-1):]...)
			p = np
			tr.PromptsCut++
		}
		room := e.MaxLength - len(p)
		cut := false
		if len(w) > room {
			w = w[:room]
			cut = true
		}
		if len(l) > room {
			l = l[:room]
			cut = true
		}
		if cut {
			tr.ResponsesCut++
		}
	}
	return p, w, l, nil
}

// Encode tokenizes pairs. Errors name the pair id; with skipInvalid such
// pairs are skipped and counted instead.
func (e *Encoder) Encode(ps []pairs.Pair, betas BetaTable, skipInvalid bool) ([]Example, Truncation, int, error) {
	var out []Example
	var tr Truncation
	skipped := 0
	for i := range ps {
		p := &ps[i]
		pm, cm, rm := p.Messages()
		pt, ct, err := e.encode(pm, cm)
		var rt []int32
		if err == nil {
			_, rt, err = e.encode(pm, rm)
		}
		if err == nil {
			pt, ct, rt, err = e.fit(pt, ct, rt, &tr)
		}
		if err == nil && (len(ct) == 0 || len(rt) == 0) {
			err = errors.New("a response is empty after tokenization")
		}
		if err != nil {
			if skipInvalid {
				skipped++
				continue
			}
			return nil, tr, skipped, &pairError{id: p.ID, err: err}
		}
		out = append(out, Example{ID: p.ID, Objective: p.Objective, Beta: betas.Beta(p.Objective), Prompt: pt, Chosen: ct, Rejected: rt})
	}
	return out, tr, skipped, nil
}

// pairError is an encoding error of one pair.
type pairError struct {
	id  string
	err error
}

func (e *pairError) Error() string {
	return fmt.Sprintf("pair %q: %v (use --skip-invalid to skip such pairs)", e.id, e.err)
}
func (e *pairError) Unwrap() error { return e.err }

// lineOf is the line of path holding the pair with id (0: not found).
func lineOf(path, id string) int {
	if path == "-" {
		return 0
	}
	rc, err := jsonl.Open(path)
	if err != nil {
		return 0
	}
	defer rc.Close()
	jr := jsonl.NewReader(rc, path)
	for {
		raw, line, err := jr.NextRaw()
		if err != nil {
			return 0
		}
		if p, err := pairs.ParseLine(raw); err == nil && p.ID == id {
			return line
		}
		if u, err := pairs.ParseUnpaired(raw); err == nil && u.ID == id {
			return line
		}
	}
}

// MicroBatch is a group of examples that run as one native batch.
type MicroBatch struct {
	Examples []int // indices into the example slice
}

// EpochOrder is the shuffled example order of an epoch (run.EpochOrder).
func EpochOrder(n int, seed uint64, epoch int) []int { return run.EpochOrder(n, seed, epoch) }
