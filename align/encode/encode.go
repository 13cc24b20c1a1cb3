// Package encode turns conversations into the tokens a model trains on, is
// evaluated on and is scored on: one prompt and the tokens each response
// adds after it, formatted by align/prompt (the chat template, or the plain
// format with --raw or without a template) and fitted to --max-length.
// align/train's examples, align/eval's pair scores and align/reward's
// reward-model scores all come from here, so a model is trained, evaluated
// and rewarded on the same tokens.
//
// The package needs no cgo: it reaches the model through a
// prompt.Formatter (engine.NewFormatter makes one for a loaded model).
package encode

import (
	"errors"
	"fmt"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/prompt"
)

// MinLength is the smallest --max-length an Encoder takes.
const MinLength = 8

// Truncation counts what --max-length cut.
type Truncation struct {
	PromptsCut   int `json:"prompts_cut"`   // prompts shortened from the left
	ResponsesCut int `json:"responses_cut"` // responses shortened at the end (still trained on)
}

// Add returns the sum of two counts.
func (t Truncation) Add(u Truncation) Truncation {
	return Truncation{t.PromptsCut + u.PromptsCut, t.ResponsesCut + u.ResponsesCut}
}

// Encoder formats and tokenizes conversations for one model under one
// formatter, with a budget of MaxLength tokens per sequence (prompt +
// response). Safe for concurrent use when its formatter is.
type Encoder struct {
	Format    *prompt.Formatter
	MaxLength int
}

// New returns the encoder of f with maxLength tokens per sequence.
func New(f *prompt.Formatter, maxLength int) (*Encoder, error) {
	if maxLength < MinLength {
		return nil, fmt.Errorf("--max-length must be at least %d (got %d)", MinLength, maxLength)
	}
	return &Encoder{Format: f, MaxLength: maxLength}, nil
}

// Response returns the prompt tokens and the tokens response adds after
// them (its end-of-turn marker included). A character the vocabulary cannot
// spell is an error: a vocabulary without byte fallback (TinyStories-656K)
// maps it to <unk>, and training on it would teach <unk>.
func (e *Encoder) Response(prompt, response []prompt.Message) ([]int32, []int32, error) {
	p, r, u, err := e.Format.EncodePair(prompt, response)
	if err == nil && u.Count > 0 {
		err = fmt.Errorf("the model's vocabulary cannot spell %q (%d such character(s) in the prompt and response)", u.First, u.Count)
	}
	return p, r, err
}

// Sampled is the response tokens of a sampled completion as Response gives
// them for its text: body (the sampled tokens without the end-of-generation
// token the sampler stopped at) ended by the formatter's end-of-turn marker
// (prompt.Formatter.EndResponse).
func (e *Encoder) Sampled(body []int32) []int32 { return e.Format.EndResponse(body) }

// Fit applies --max-length to a prompt and its responses (l may be nil for
// one response): the prompt loses tokens from the left (its first token,
// BOS, is kept) until prompt + the longer response fit, keeping at least a
// quarter of the budget, so a prompt longer than the limit is cut too; a
// response longer than what is left is cut at its end and counted, never
// dropped.
func (e *Encoder) Fit(p, w, l []int32, tr *Truncation) ([]int32, []int32, []int32) {
	longest := max(len(w), len(l))
	if len(p)+longest <= e.MaxLength {
		return p, w, l
	}
	keep := max(e.MaxLength-longest, min(len(p), e.MaxLength/4))
	if keep < len(p) {
		p = append([]int32{p[0]}, p[len(p)-(keep-1):]...)
		tr.PromptsCut++
	}
	room := e.MaxLength - len(p)
	cut := false
	if len(w) > room {
		w, cut = w[:room], true
	}
	if len(l) > room {
		l, cut = l[:room], true
	}
	if cut {
		tr.ResponsesCut++
	}
	return p, w, l
}

// Triple is one encoded preference pair: a shared prompt and the tokens of
// the chosen and the rejected response after it.
type Triple struct {
	ID, Objective            string
	Prompt, Chosen, Rejected []int32
}

// Pairs encodes preference pairs, fitted to MaxLength. An error names the
// pair; with skipInvalid such pairs are skipped and counted instead.
func (e *Encoder) Pairs(ps []pairs.Pair, skipInvalid bool) ([]Triple, Truncation, int, error) {
	return each(len(ps), skipInvalid, func(i int) string { return ps[i].ID }, func(i int, tr *Truncation) (Triple, error) {
		p := &ps[i]
		pm, cm, rm := p.Messages()
		pt, ct, err := e.Response(pm, cm)
		if err != nil {
			return Triple{}, err
		}
		_, rt, err := e.Response(pm, rm)
		if err != nil {
			return Triple{}, err
		}
		pt, ct, rt = e.Fit(pt, ct, rt, tr)
		if len(ct) == 0 || len(rt) == 0 {
			return Triple{}, errors.New("a response is empty after tokenization")
		}
		return Triple{ID: p.ID, Objective: p.Objective, Prompt: pt, Chosen: ct, Rejected: rt}, nil
	})
}

// each encodes records 0..n-1 with enc: the first error is returned as a
// PairError naming id(i), or with skipInvalid every failing record is
// skipped and counted.
func each[T any](n int, skipInvalid bool, id func(int) string, enc func(int, *Truncation) (T, error)) ([]T, Truncation, int, error) {
	var out []T
	var tr Truncation
	skipped := 0
	for i := 0; i < n; i++ {
		t, err := enc(i, &tr)
		if err != nil {
			if skipInvalid {
				skipped++
				continue
			}
			return nil, tr, skipped, &PairError{ID: id(i), Err: err}
		}
		out = append(out, t)
	}
	return out, tr, skipped, nil
}

// PairError is the encoding error of one pair (or unpaired example).
type PairError struct {
	ID  string
	Err error
}

func (e *PairError) Error() string {
	return fmt.Sprintf("pair %q: %v (use --skip-invalid to skip such pairs)", e.ID, e.Err)
}
func (e *PairError) Unwrap() error { return e.Err }

// Single is one encoded unpaired example (KTO): a prompt, one completion
// after it and its label.
type Single struct {
	ID, Objective      string
	Prompt, Completion []int32
	Undesirable        bool
}

// Unpaired encodes unpaired examples as Pairs does pairs.
func (e *Encoder) Unpaired(us []pairs.Unpaired, skipInvalid bool) ([]Single, Truncation, int, error) {
	return each(len(us), skipInvalid, func(i int) string { return us[i].ID }, func(i int, tr *Truncation) (Single, error) {
		u := &us[i]
		pm, cm := u.Messages()
		pt, ct, err := e.Response(pm, cm)
		if err != nil {
			return Single{}, err
		}
		pt, ct, _ = e.Fit(pt, ct, nil, tr)
		if len(ct) == 0 {
			return Single{}, errors.New("the completion is empty after tokenization")
		}
		return Single{ID: u.ID, Objective: u.Objective, Prompt: pt, Completion: ct, Undesirable: !u.Label}, nil
	})
}
