package train

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
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
}

// Truncation counts what --max-length cut.
type Truncation struct {
	PromptsCut   int `json:"prompts_cut"`   // prompts shortened from the left
	ResponsesCut int `json:"responses_cut"` // responses shortened at the end (still trained on)
}

// Encoder turns pairs into tokens with the model's chat template.
type Encoder struct {
	Model     *bindings.Model
	MaxLength int  // tokens per sequence (prompt + response)
	Raw       bool // no chat template: prompt + response + EOS
	templated bool
	eos       int32
}

// NewEncoder prepares an encoder for a (vocabulary-only) model.
func NewEncoder(m *bindings.Model, maxLength int, raw bool) (*Encoder, error) {
	info, err := m.Info()
	if err != nil {
		return nil, err
	}
	if maxLength < 8 {
		return nil, fmt.Errorf("--max-length must be at least 8 (got %d)", maxLength)
	}
	return &Encoder{Model: m, MaxLength: maxLength, Raw: raw, templated: info.HasChatTemplate && !raw, eos: info.EOS}, nil
}

func toMessages(ms []pairs.Message) []bindings.Message {
	out := make([]bindings.Message, len(ms))
	for i, m := range ms {
		out[i] = bindings.Message{Role: m.Role, Content: m.Content}
	}
	return out
}

// encodeResponse returns the prompt tokens and the tokens the response adds
// (its end-of-turn marker included) under the chat template.
func (e *Encoder) encode(prompt, response []pairs.Message) ([]int32, []int32, error) {
	if !e.templated {
		var sb strings.Builder
		for _, m := range prompt {
			sb.WriteString(m.Content)
			sb.WriteString("\n")
		}
		p, err := e.Model.Tokenize(sb.String(), true, false)
		if err != nil {
			return nil, nil, err
		}
		var rb strings.Builder
		for _, m := range response {
			rb.WriteString(m.Content)
		}
		r, err := e.Model.Tokenize(rb.String(), false, false)
		if err != nil {
			return nil, nil, err
		}
		if e.eos >= 0 {
			r = append(r, e.eos)
		}
		return p, r, nil
	}
	pm := toMessages(prompt)
	ptext, err := e.Model.ChatApply("", pm, true)
	if err != nil {
		return nil, nil, err
	}
	full, err := e.Model.ChatApply("", append(pm, toMessages(response)...), false)
	if err != nil {
		return nil, nil, err
	}
	if !strings.HasPrefix(full, ptext) {
		return nil, nil, errors.New("chat template does not extend the prompt with the response")
	}
	p, err := e.Model.Tokenize(ptext, true, true)
	if err != nil {
		return nil, nil, err
	}
	all, err := e.Model.Tokenize(full, true, true)
	if err != nil {
		return nil, nil, err
	}
	if len(all) > len(p) && equalPrefix(all, p) {
		return p, all[len(p):], nil
	}
	// the boundary merged differently: tokenize the response text alone
	r, err := e.Model.Tokenize(full[len(ptext):], false, true)
	if err != nil {
		return nil, nil, err
	}
	return p, r, nil
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
	}
}

// MicroBatch is a group of examples that run as one native batch.
type MicroBatch struct {
	Examples []int // indices into the example slice
}

// seqLen is the longest sequence an example contributes.
func seqLen(ex *Example, sft bool) int {
	if sft {
		return len(ex.Prompt) + len(ex.Chosen)
	}
	return len(ex.Prompt) + max(len(ex.Chosen), len(ex.Rejected))
}

// MaxScored is the native trainer's limit on scored tokens per micro-batch.
const MaxScored = 4096

func scoredOf(ex *Example, sft bool) int {
	if sft {
		return len(ex.Chosen)
	}
	return len(ex.Chosen) + len(ex.Rejected)
}

// Pack groups examples in order into micro-batches whose padded size
// (sequences × longest sequence) stays within tokenBudget and whose scored
// tokens stay within MaxScored; each holds at least one example.
func Pack(exs []Example, order []int, tokenBudget int, sft bool) []MicroBatch {
	perEx := 2
	if sft {
		perEx = 1
	}
	var out []MicroBatch
	var cur MicroBatch
	longest, scored := 0, 0
	for _, i := range order {
		l := seqLen(&exs[i], sft)
		sc := scoredOf(&exs[i], sft)
		nl := max(longest, l)
		if len(cur.Examples) > 0 && ((len(cur.Examples)+1)*perEx*nl > tokenBudget || scored+sc > MaxScored) {
			out = append(out, cur)
			cur = MicroBatch{}
			nl, scored = l, 0
		}
		cur.Examples = append(cur.Examples, i)
		longest = nl
		scored += sc
	}
	if len(cur.Examples) > 0 {
		out = append(out, cur)
	}
	return out
}

// EpochOrder is the shuffled example order of an epoch: a pure function of
// (seed, epoch), so a resumed run sees the same order.
func EpochOrder(n int, seed uint64, epoch int) []int {
	r := rand.New(rand.NewPCG(seed, uint64(epoch)+0x9E3779B97F4A7C15))
	return r.Perm(n)
}

// BuildBatch lays out a micro-batch for the native trainer: for the DPO
// family sequences 2k (prompt + chosen) and 2k+1 (prompt + rejected); for
// SFT one sequence per example. Response tokens are scored.
func BuildBatch(exs []Example, mb MicroBatch, sft bool) *bindings.Batch {
	type seq struct{ p, r []int32 }
	var seqs []seq
	for _, i := range mb.Examples {
		ex := &exs[i]
		seqs = append(seqs, seq{ex.Prompt, ex.Chosen})
		if !sft {
			seqs = append(seqs, seq{ex.Prompt, ex.Rejected})
		}
	}
	T := 0
	for _, s := range seqs {
		T = max(T, len(s.p)+len(s.r))
	}
	b := &bindings.Batch{NSeq: len(seqs), NTok: T, Tokens: make([]int32, len(seqs)*T),
		Lengths: make([]int32, len(seqs)), Scored: make([]uint8, len(seqs)*T)}
	for k, s := range seqs {
		row := b.Tokens[k*T : (k+1)*T]
		copy(row, s.p)
		copy(row[len(s.p):], s.r)
		n := len(s.p) + len(s.r)
		b.Lengths[k] = int32(n)
		for t := len(s.p); t < n; t++ {
			b.Scored[k*T+t] = 1
		}
	}
	return b
}
