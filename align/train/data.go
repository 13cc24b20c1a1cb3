package train

import (
	"fmt"

	"github.com/align-dev/align/align/encode"
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

// Truncation counts what --max-length cut (encode.Truncation).
type Truncation = encode.Truncation

// Encoder turns pairs into tokens (align/encode: align/prompt's formatter,
// the chat template or the plain format with --raw or without a template,
// the one `sample` and the local backend use, so a model is sampled and
// judged on the text it learned from) and into this package's examples.
type Encoder struct {
	*encode.Encoder
}

// NewEncoder prepares an encoder for a (vocabulary-only) model under the
// model's own chat template (or the plain format with raw).
func NewEncoder(m *bindings.Model, maxLength int, raw bool) (*Encoder, error) {
	return NewEncoderWith(m, maxLength, prompt.Options{Raw: raw})
}

// NewEncoderWith is NewEncoder under a run's formatter options
// (run.Common.PromptOptions: --raw, --chat-template, --chat-template-kwargs).
func NewEncoderWith(m *bindings.Model, maxLength int, o prompt.Options) (*Encoder, error) {
	if maxLength < encode.MinLength {
		return nil, fmt.Errorf("--max-length must be at least %d (got %d)", encode.MinLength, maxLength)
	}
	f, err := engine.NewFormatter(m, o)
	if err != nil {
		return nil, fmt.Errorf("--chat-template: %w", err)
	}
	e, err := encode.New(f, maxLength)
	return &Encoder{e}, err
}

// Encode tokenizes pairs into examples with their β. Errors name the pair
// id; with skipInvalid such pairs are skipped and counted instead.
func (e *Encoder) Encode(ps []pairs.Pair, betas BetaTable, skipInvalid bool) ([]Example, Truncation, int, error) {
	ts, tr, skipped, err := e.Pairs(ps, skipInvalid)
	if err != nil {
		return nil, tr, skipped, err
	}
	out := make([]Example, len(ts))
	for i, t := range ts {
		out[i] = Example{ID: t.ID, Objective: t.Objective, Beta: betas.Beta(t.Objective), Prompt: t.Prompt, Chosen: t.Chosen, Rejected: t.Rejected}
	}
	return out, tr, skipped, nil
}

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
