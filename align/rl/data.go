package rl

import (
	"fmt"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/pipeline"
	"github.com/align-dev/align/align/prompt"
)

// evalSplitSalt decorrelates --eval-split of prompts from other splits.
const evalSplitSalt = 0x726c_5f65_7661_6c73

// promptRecord is one line of a prompts file.
type promptRecord = pipeline.Prompt

// Prompt is one prompt of a run: its conversation and its tokens as the
// policy decodes them before sampling (align/prompt's formatting, the one
// `align sample` uses).
type Prompt struct {
	ID       string
	Messages []prompt.Message
	Tokens   []int32
	Format   string // the Key of the formatter that made Tokens
}

// ReadPrompts reads a prompts file: JSON Lines of {"id"?, "prompt" |
// "messages", "system"?} (align/pipeline's prompt record). A bad line is an
// error naming the file and line.
func ReadPrompts(path string) ([]pipeline.Prompt, error) { return pipeline.LoadPrompts(path) }

// splitPrompts holds out a fraction of ps by a hash of their ids.
func splitPrompts(ps []pipeline.Prompt, frac float64, seed uint64) (tr, ev []pipeline.Prompt) {
	for _, p := range ps {
		if frac > 0 && pairs.InEval(p.ID, frac, seed^evalSplitSalt) {
			ev = append(ev, p)
		} else {
			tr = append(tr, p)
		}
	}
	return tr, ev
}

// messages is a prompt record as a conversation (system first).
func messages(p pipeline.Prompt) []prompt.Message {
	var ms []prompt.Message
	if p.System != "" {
		ms = append(ms, prompt.Message{Role: "system", Content: p.System})
	}
	return append(ms, p.Conversation()...)
}

// unspelled counts what the vocabulary could not spell in a prompts file.
type unspelled struct {
	prompts, chars int
	first, id      string
}

// note is the one warning of a prompts file with unspellable characters:
// like `align sample`, the policy reads them as the unknown token (a prompt
// is only conditioned on, never a target: training data with such
// characters is refused instead).
func (u unspelled) note(name string) string {
	return fmt.Sprintf("%s: the model's vocabulary cannot spell %d character(s) in %d prompt(s) (the first, %q, in prompt %q): the policy reads them as <unk>",
		name, u.chars, u.prompts, u.first, u.id)
}

// encodePrompts formats and tokenizes prompts; a prompt longer than
// maxPrompt tokens keeps its last maxPrompt (BOS kept first).
func encodePrompts(f *prompt.Formatter, ps []pipeline.Prompt, maxPrompt int, name string) ([]Prompt, int, unspelled, error) {
	out := make([]Prompt, 0, len(ps))
	cut := 0
	var un unspelled
	for _, p := range ps {
		ms := messages(p)
		toks, u, err := f.EncodePrompt(ms)
		if err != nil {
			return nil, 0, un, fmt.Errorf("%s: prompt %q: %w", name, p.ID, err)
		}
		if u.Count > 0 {
			if un.prompts == 0 {
				un.first, un.id = u.First, p.ID
			}
			un.prompts++
			un.chars += u.Count
		}
		if len(toks) == 0 {
			return nil, 0, un, fmt.Errorf("%s: prompt %q is empty after tokenization", name, p.ID)
		}
		if len(toks) > maxPrompt {
			toks = append([]int32{toks[0]}, toks[len(toks)-maxPrompt+1:]...)
			cut++
		}
		out = append(out, Prompt{ID: p.ID, Messages: ms, Tokens: toks, Format: f.Key()})
	}
	return out, cut, un, nil
}
