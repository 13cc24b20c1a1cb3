// Package prompt turns a conversation into the text and tokens a model
// sees, in one place for every caller: training (prompt and response of a
// pair), `align sample`, `align model tokenize`, the local backend and
// rollouts. A model trained with --raw is then sampled and judged on exactly
// the text it learned from.
//
// With a chat template (and not raw) the model's own template — the Jinja
// text in its GGUF (tokenizer.chat_template), or Options.Template — is
// rendered by a Jinja engine made for chat templates with Hugging Face's
// variables (messages, add_generation_prompt, bos_token, eos_token, and
// Options.Kwargs such as enable_thinking), and control-token text is parsed
// as control tokens. Where the engine cannot render the model's template,
// llama.cpp's built-in template heuristics render it, with one warning. A
// rendered BOS is not doubled by the BOS the tokenizer adds. Under a
// template a training response ends with the template's end-of-turn token
// (<|eot_id|>, <|im_end|>, <end_of_turn>): text the template writes after
// it (a newline, the next turn's header) is not trained, and a template that
// writes none gets one.
//
// Without a template, or raw, the text is the plain format:
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
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/ardanlabs/jinja"
)

// Message is one turn of a conversation; Role is "system", "user" or
// "assistant". It is align's one conversation type: pairs, rewards,
// annotation items, the backends and the bindings use it under their own
// names (aliases), so a conversation crosses them without conversion.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
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

// Vocab is what rendering a model's own chat template takes beyond Model.
// A Model that implements it has its template rendered by the Jinja engine
// and its training responses ended by its end-of-turn token; one that does
// not is rendered by ChatApply only.
type Vocab interface {
	// ChatTemplate is the model's Jinja chat template ("" for none).
	ChatTemplate() string
	// BOS and EOT are the begin-of-sequence and end-of-turn tokens (-1:
	// none); AddBOS reports whether Tokenize's addSpecial adds BOS.
	BOS() int32
	EOT() int32
	AddBOS() bool
	// TokenText is a token's text as a template writes it (e.g. "<bos>").
	TokenText(id int32) string
}

// Options configure a Formatter.
type Options struct {
	Raw bool // the plain format, never the template
	// Template replaces the model's chat template (--chat-template FILE's
	// text); "" keeps the model's.
	Template string
	// Kwargs are extra template variables (--chat-template-kwargs), such as
	// enable_thinking=false; they override the standard ones.
	Kwargs map[string]any
	// OnWarning receives the one warning a formatter gives when the engine
	// cannot render the model's template (nil: standard error).
	OnWarning func(string)
}

// Formatter formats conversations for one model. Safe for concurrent use
// when its Model is.
type Formatter struct {
	m         Model
	templated bool

	tmpl     *jinja.Template // nil: ChatApply renders
	own      bool            // tmpl is the model's own template (ChatApply may stand in)
	vars     map[string]any  // bos_token, eos_token and the kwargs
	bosText  string          // stripped from a rendering the tokenizer adds BOS to
	eot      int32           // -1: responses are not cut at an end of turn
	warnOnce sync.Once
	warn     func(string)
	key      string // Key
}

// New returns the formatter for m: the chat template unless raw is set or
// m has none.
func New(m Model, raw bool) *Formatter {
	f, err := NewWith(m, Options{Raw: raw})
	if err != nil { // only a bad Options.Template fails, and there is none
		panic(err)
	}
	return f
}

// NewWith returns the formatter for m under o. It fails only when
// o.Template does not compile.
func NewWith(m Model, o Options) (*Formatter, error) {
	f := &Formatter{m: m, eot: -1, warn: o.OnWarning}
	if f.warn == nil {
		f.warn = func(s string) { fmt.Fprintln(os.Stderr, "align: warning: "+s) }
	}
	if o.Raw {
		f.key = f.makeKey("")
		return f, nil
	}
	v, hasVocab := m.(Vocab)
	src := o.Template
	if src != "" {
		t, err := jinja.Compile(src)
		if err != nil {
			return nil, fmt.Errorf("chat template: %w", err)
		}
		f.tmpl, f.templated = t, true
	} else if m.HasChatTemplate() {
		f.templated = true
		if hasVocab {
			if src = v.ChatTemplate(); src != "" {
				t, err := jinja.Compile(src)
				if err != nil {
					f.fallback(err)
				} else {
					f.tmpl, f.own = t, true
				}
			}
		}
	}
	if !f.templated {
		f.key = f.makeKey("")
		return f, nil
	}
	f.vars = map[string]any{"bos_token": "", "eos_token": ""}
	if hasVocab {
		if b := v.BOS(); b >= 0 {
			f.vars["bos_token"] = v.TokenText(b)
			if v.AddBOS() {
				f.bosText, _ = f.vars["bos_token"].(string)
			}
		}
		if e := m.EOS(); e >= 0 {
			f.vars["eos_token"] = v.TokenText(e)
		}
		f.eot = v.EOT()
		if f.eot < 0 {
			f.eot = m.EOS()
		}
	}
	for k, val := range o.Kwargs {
		f.vars[k] = val
	}
	f.key = f.makeKey(src)
	return f, nil
}

// Identity is implemented by a Model that can say which loaded model it is
// (engine.PromptModel: the *bindings.Model), so two formatters can tell
// whether they format for the same model.
type Identity interface {
	Identity() string
}

// makeKey is Key: the model's identity (Identity, else its dynamic type
// and EOS) and everything that decides the tokens (plain or templated, the
// template's text, its variables, the BOS text stripped, the end-of-turn
// token).
func (f *Formatter) makeKey(src string) string {
	id := fmt.Sprintf("%T/%d", f.m, f.m.EOS())
	if i, ok := f.m.(Identity); ok {
		id = i.Identity()
	}
	if !f.templated {
		return id + "|plain"
	}
	vars, _ := json.Marshal(f.vars) // map keys are written sorted
	h := sha256.Sum256([]byte(src))
	return fmt.Sprintf("%s|template|%x|%d|%s|%q|%d", id, h[:8], len(src), vars, f.bosText, f.eot)
}

// Key names the format: two formatters with the same Key give the same
// tokens for the same conversation (same model, same template, variables
// and end of turn). It is only comparable within one process. An rm:
// reward scores a rollout's own tokens when the policy's formatter has its
// formatter's Key (align/reward).
func (f *Formatter) Key() string { return f.key }

// EndResponse ends a sampled response as EncodePair ends the text's tokens:
// body (without the end-of-generation token sampling stopped at) followed
// by the end-of-turn token under a template, by EOS in the plain format.
func (f *Formatter) EndResponse(body []int32) []int32 {
	out := append([]int32(nil), body...)
	if !f.templated {
		if eos := f.m.EOS(); eos >= 0 {
			out = append(out, eos)
		}
		return out
	}
	if f.eot >= 0 {
		out = append(out, f.eot)
	}
	return out
}

// fallback warns, once, that llama.cpp's built-in templates render instead
// of the engine.
func (f *Formatter) fallback(err error) {
	f.warnOnce.Do(func() {
		f.warn(fmt.Sprintf("chat template: the Jinja engine cannot render the model's template (%v); "+
			"using llama.cpp's built-in template for it, which may differ from what the model was trained on", err))
	})
}

// render renders msgs with the chat template.
func (f *Formatter) render(msgs []Message, addAssistant bool) (string, error) {
	if f.tmpl != nil {
		ms := make([]any, len(msgs))
		for i, m := range msgs {
			ms[i] = map[string]any{"role": m.Role, "content": m.Content}
		}
		vars := make(map[string]jinja.Value, len(f.vars)+3)
		for k, v := range f.vars {
			vars[k] = jinja.FromGoValue(v)
		}
		vars["messages"], vars["add_generation_prompt"] = jinja.FromGoValue(ms), jinja.NewBool(addAssistant)
		vars["raise_exception"] = raiseException
		text, err := f.tmpl.RenderValues(vars)
		if err == nil {
			return text, nil
		}
		if !f.own || strings.Contains(err.Error(), refusal) {
			return "", err // a template the user gave, or one that refuses the conversation
		}
		f.fallback(err)
	}
	return f.m.ChatApply(msgs, addAssistant)
}

// refusal marks the error of a template's raise_exception: the template
// refuses the conversation (e.g. roles that do not alternate), which no
// other renderer should paper over.
const refusal = "the template refuses the conversation: "

var raiseException = jinja.NewCallable("raise_exception", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	msg := "raise_exception"
	if len(args) > 0 {
		msg = args[0].String()
	}
	return jinja.Undefined(), errors.New(refusal + msg)
})

// Template reports which renderer formats: "jinja" (the engine), "builtin"
// (llama.cpp's heuristics) or "" (the plain format).
func (f *Formatter) Template() string {
	switch {
	case !f.templated:
		return ""
	case f.tmpl != nil:
		return "jinja"
	}
	return "builtin"
}

// ParseKwargs reads --chat-template-kwargs: a JSON object
// ({"enable_thinking": false}) or KEY=VALUE pairs separated by commas, each
// VALUE JSON where it parses as JSON (false, 3, "x", [1]) and text
// otherwise.
func ParseKwargs(s string) (map[string]any, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "{") {
		var m map[string]any
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			return nil, fmt.Errorf("chat template kwargs: %w", err)
		}
		return m, nil
	}
	out := map[string]any{}
	for _, part := range splitTop(s) {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("chat template kwargs: %q is not KEY=VALUE", part)
		}
		v = strings.TrimSpace(v)
		var val any
		d := json.NewDecoder(strings.NewReader(v))
		d.UseNumber()
		if err := d.Decode(&val); err != nil || d.More() {
			val = v
		}
		out[k] = val
	}
	return out, nil
}

// KwargsString writes kwargs back as KEY=VALUE pairs in key order (for
// logs and run records).
func KwargsString(kw map[string]any) string {
	keys := make([]string, 0, len(kw))
	for k := range kw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		b, _ := json.Marshal(kw[k])
		parts[i] = k + "=" + string(b)
	}
	return strings.Join(parts, ",")
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
	return f.Render(msgs, true)
}

// Render renders msgs as the template writes them; addAssistant appends the
// header of the assistant's turn (add_generation_prompt). Without a
// template it gives the plain format, where addAssistant changes nothing.
func (f *Formatter) Render(msgs []Message, addAssistant bool) (string, error) {
	if !f.templated {
		return plain(msgs), nil
	}
	text, err := f.render(msgs, addAssistant)
	if err != nil {
		return "", fmt.Errorf("chat template: %w (use raw prompts)", err)
	}
	return text, nil
}

// Tokenize tokenizes text as rendered by Render: under a template control
// text is parsed and a BOS the template wrote is not doubled by the
// tokenizer's.
func (f *Formatter) Tokenize(text string) ([]int32, Unspelled, error) {
	if !f.templated {
		return f.m.Tokenize(text, true, false)
	}
	if f.bosText != "" {
		text = strings.TrimPrefix(text, f.bosText)
	}
	return f.m.Tokenize(text, true, true)
}

func plain(msgs []Message) string {
	var sb strings.Builder
	for _, m := range msgs {
		sb.WriteString(m.Content)
		sb.WriteString("\n")
	}
	return sb.String()
}

// TokenizeText tokenizes text outside a conversation: BOS as the model
// adds it, control-token text not parsed.
func (f *Formatter) TokenizeText(text string) ([]int32, Unspelled, error) {
	return f.m.Tokenize(text, true, false)
}

// EncodePrompt renders and tokenizes msgs as a generation prompt: the
// tokens to decode before sampling the reply, and what the vocabulary could
// not spell.
func (f *Formatter) EncodePrompt(msgs []Message) ([]int32, Unspelled, error) {
	text, err := f.Prompt(msgs)
	if err != nil {
		return nil, Unspelled{}, err
	}
	return f.Tokenize(text)
}

// EncodePair tokenizes a training example: the prompt tokens, exactly as
// EncodePrompt gives them for generation, and the tokens the response adds
// after them (under a template its end-of-turn marker; in the plain format
// the response text and EOS). u sums what could not be spelled in both
// (Offset then refers to the prompt text, or to the response text when the
// prompt had none).
//
// align/encode builds training, evaluation and reward-model sequences on
// it.
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
	full, err := f.Render(all, false)
	if err != nil {
		return nil, nil, Unspelled{}, err
	}
	if !strings.HasPrefix(full, ptext) {
		return nil, nil, Unspelled{}, errors.New("chat template does not extend the prompt with the response")
	}
	p, up, err := f.Tokenize(ptext)
	if err != nil {
		return nil, nil, up, err
	}
	whole, uw, err := f.Tokenize(full)
	if err != nil {
		return nil, nil, uw, err
	}
	if len(whole) > len(p) && equalPrefix(whole, p) {
		return p, f.endTurn(whole[len(p):]), uw, nil
	}
	// the boundary merged differently: tokenize the response text alone
	r, ur, err := f.m.Tokenize(full[len(ptext):], false, true)
	if err != nil {
		return nil, nil, merge(up, ur), err
	}
	return p, f.endTurn(r), merge(up, ur), nil
}

// endTurn ends a templated response with the end-of-turn token: what the
// template writes after the last one is dropped (a newline, a next turn's
// header), and a response without one gets it.
func (f *Formatter) endTurn(r []int32) []int32 {
	if f.eot < 0 {
		return r
	}
	for i := len(r) - 1; i >= 0; i-- {
		if r[i] == f.eot {
			return r[:i+1]
		}
	}
	return append(r, f.eot)
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

// splitTop splits s at the commas outside brackets, braces and quotes.
func splitTop(s string) []string {
	var parts []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		case c == ',' && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}
