// Package prompt turns a conversation into the text and tokens a model
// sees, in one place for every caller: training (prompt and response of a
// pair), `align sample`, the local backend and, later, rollouts. A model
// trained with --raw is then sampled and judged on exactly the text it
// learned from.
//
// With a chat template (and not raw) the model's template renders the
// conversation and control-token text is parsed as control tokens. Without
// one, or raw, the text is the plain format:
//
//	<content of message 1>\n<content of message 2>\n...<response>EOS
//
// every prompt message (system first, then the turns in order) followed by
// a newline, no role labels, the response directly after, ended by the
// model's EOS token; control-token text is not parsed. The prompt tokens
// get BOS as the model wants it.
//
// The package needs no cgo: it reaches the model through Model, which
// align/engine implements for a loaded GGUF model (engine.PromptModel).
package prompt

import (
	"errors"
	"fmt"
	"strings"
)

// Message is one turn of a conversation; Role is "system", "user" or
// "assistant".
type Message struct {
	Role    string
	Content string
}

// Unspelled reports characters the vocabulary could not spell (no token and
// no byte fallback): each became the unknown token.
type Unspelled struct {
	Count  int    // characters mapped to the unknown token (0: none)
	First  string // the first such character
	Offset int    // its byte offset in the text that was tokenized
}

// Model is what formatting needs from a loaded model. Implementations must
// be safe for the concurrent use their own callers make of them.
type Model interface {
	// HasChatTemplate reports whether the model carries a chat template.
	HasChatTemplate() bool
	// ChatApply renders msgs with the model's chat template; addAssistant
	// appends the header of the assistant's turn.
	ChatApply(msgs []Message, addAssistant bool) (string, error)
	// Tokenize converts text to tokens: addSpecial adds BOS where the model
	// wants it, parseSpecial turns control-token text into control tokens.
	Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, Unspelled, error)
	// EOS is the end-of-sequence token, or -1 when the model has none.
	EOS() int32
}

// Formatter formats conversations for one model. Safe for concurrent use
// when its Model is.
type Formatter struct {
	m         Model
	templated bool
}

// New returns the formatter for m: the chat template unless raw is set or
// m has none.
func New(m Model, raw bool) *Formatter {
	return &Formatter{m: m, templated: !raw && m.HasChatTemplate()}
}

// Templated reports whether the chat template is applied.
func (f *Formatter) Templated() bool { return f.templated }

// Conversation builds the message list of a single-turn request: the
// system message (when not empty), then the user's prompt.
func Conversation(system, user string) []Message {
	var msgs []Message
	if system != "" {
		msgs = append(msgs, Message{Role: "system", Content: system})
	}
	return append(msgs, Message{Role: "user", Content: user})
}

// Prompt renders msgs up to where the assistant's reply begins.
func (f *Formatter) Prompt(msgs []Message) (string, error) {
	if !f.templated {
		return plain(msgs), nil
	}
	text, err := f.m.ChatApply(msgs, true)
	if err != nil {
		return "", fmt.Errorf("chat template: %w (use raw prompts)", err)
	}
	return text, nil
}

func plain(msgs []Message) string {
	var sb strings.Builder
	for _, m := range msgs {
		sb.WriteString(m.Content)
		sb.WriteString("\n")
	}
	return sb.String()
}

// EncodePrompt renders and tokenizes msgs as a generation prompt: the
// tokens to decode before sampling the reply, and what the vocabulary could
// not spell.
func (f *Formatter) EncodePrompt(msgs []Message) ([]int32, Unspelled, error) {
	text, err := f.Prompt(msgs)
	if err != nil {
		return nil, Unspelled{}, err
	}
	return f.m.Tokenize(text, true, f.templated)
}

// EncodePair tokenizes a training example: the prompt tokens, exactly as
// EncodePrompt gives them for generation, and the tokens the response adds
// after them (under a template its end-of-turn marker; in the plain format
// the response text and EOS). u sums what could not be spelled in both
// (Offset then refers to the prompt text, or to the response text when the
// prompt had none).
//
// This is the body align/train's Encoder.encode should call (build the
// formatter once, in NewEncoder):
//
//	pm, err := engine.PromptModel(m)
//	f := prompt.New(pm, raw)
//	p, r, u, err := f.EncodePair(promptMsgs, responseMsgs)
func (f *Formatter) EncodePair(prompt, response []Message) (p, r []int32, u Unspelled, err error) {
	if !f.templated {
		p, up, err := f.m.Tokenize(plain(prompt), true, false)
		if err != nil {
			return nil, nil, up, err
		}
		var rb strings.Builder
		for _, m := range response {
			rb.WriteString(m.Content)
		}
		r, ur, err := f.m.Tokenize(rb.String(), false, false)
		if err != nil {
			return nil, nil, merge(up, ur), err
		}
		if eos := f.m.EOS(); eos >= 0 {
			r = append(r, eos)
		}
		return p, r, merge(up, ur), nil
	}
	ptext, err := f.Prompt(prompt)
	if err != nil {
		return nil, nil, Unspelled{}, err
	}
	all := append(append([]Message(nil), prompt...), response...)
	full, err := f.m.ChatApply(all, false)
	if err != nil {
		return nil, nil, Unspelled{}, fmt.Errorf("chat template: %w (use raw prompts)", err)
	}
	if !strings.HasPrefix(full, ptext) {
		return nil, nil, Unspelled{}, errors.New("chat template does not extend the prompt with the response")
	}
	p, up, err := f.m.Tokenize(ptext, true, true)
	if err != nil {
		return nil, nil, up, err
	}
	whole, uw, err := f.m.Tokenize(full, true, true)
	if err != nil {
		return nil, nil, uw, err
	}
	if len(whole) > len(p) && equalPrefix(whole, p) {
		return p, whole[len(p):], uw, nil
	}
	// the boundary merged differently: tokenize the response text alone
	r, ur, err := f.m.Tokenize(full[len(ptext):], false, true)
	if err != nil {
		return nil, nil, merge(up, ur), err
	}
	return p, r, merge(up, ur), nil
}

func merge(a, b Unspelled) Unspelled {
	if a.Count == 0 {
		return b
	}
	a.Count += b.Count
	return a
}

func equalPrefix(a, p []int32) bool {
	for i := range p {
		if a[i] != p[i] {
			return false
		}
	}
	return true
}

// Warning is the one line to show a user when u is not empty ("" when it
// is), where says what was tokenized (e.g. "the prompt", "pairs.jsonl:3").
func (u Unspelled) Warning(where string) string {
	if u.Count == 0 {
		return ""
	}
	chars := "characters"
	if u.Count == 1 {
		chars = "character"
	}
	return fmt.Sprintf("%s: %d %s the model's vocabulary cannot spell became <unk> (first %q at byte %d)",
		where, u.Count, chars, u.First, u.Offset)
}
