package prompt

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// fake is a model whose tokens are bytes (+1000 for parsed control text),
// with BOS 1 and EOS 2; "<|im_end|>" is its only control text.
type fake struct {
	template bool
	failChat bool
}

func (f fake) HasChatTemplate() bool { return f.template }
func (f fake) EOS() int32            { return 2 }

func (f fake) ChatApply(msgs []Message, addAssistant bool) (string, error) {
	if f.failChat {
		return "", errors.New("template not supported")
	}
	var sb strings.Builder
	for _, m := range msgs {
		sb.WriteString("<" + m.Role + ">" + m.Content + "<|im_end|>")
	}
	if addAssistant {
		sb.WriteString("<assistant>")
	}
	return sb.String(), nil
}

func (f fake) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, Unspelled, error) {
	var out []int32
	if addSpecial {
		out = append(out, 1)
	}
	u := Unspelled{Offset: -1}
	for i := 0; i < len(text); i++ {
		if parseSpecial && strings.HasPrefix(text[i:], "<|im_end|>") {
			out = append(out, 1000)
			i += len("<|im_end|>") - 1
			continue
		}
		if text[i] == '~' {
			if u.Count == 0 {
				u.First, u.Offset = "~", i
			}
			u.Count++
			out = append(out, 0)
			continue
		}
		out = append(out, int32(text[i]))
	}
	return out, u, nil
}

func bytesOf(s string) []int32 {
	out := make([]int32, len(s))
	for i := range s {
		out[i] = int32(s[i])
	}
	return out
}

func TestPlainFormat(t *testing.T) {
	for _, c := range []struct {
		name string
		m    fake
		raw  bool
	}{
		{"no template", fake{}, false},
		{"raw", fake{template: true}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := New(c.m, c.raw)
			if f.Templated() {
				t.Fatal("templated")
			}
			msgs := Conversation("Be brief.", "Is Berserk finished?")
			got, err := f.Prompt(msgs)
			if want := "Be brief.\nIs Berserk finished?\n"; err != nil || got != want {
				t.Errorf("Prompt = %q, %v; want %q", got, err, want)
			}
			p, _, err := f.EncodePrompt(msgs)
			if want := append([]int32{1}, bytesOf("Be brief.\nIs Berserk finished?\n")...); err != nil || !reflect.DeepEqual(p, want) {
				t.Errorf("EncodePrompt = %v, %v; want %v", p, err, want)
			}
			pp, r, _, err := f.EncodePair(msgs, []Message{{Role: "assistant", Content: "No."}})
			if err != nil {
				t.Fatal(err)
			}
			// training sees exactly the generation prompt, then the response and EOS
			if !reflect.DeepEqual(pp, p) {
				t.Errorf("pair prompt %v, generation prompt %v", pp, p)
			}
			if want := append(bytesOf("No."), 2); !reflect.DeepEqual(r, want) {
				t.Errorf("response = %v, want %v", r, want)
			}
		})
	}
}

func TestTemplateFormat(t *testing.T) {
	f := New(fake{template: true}, false)
	if !f.Templated() {
		t.Fatal("not templated")
	}
	msgs := Conversation("", "hi")
	p, _, err := f.EncodePrompt(msgs)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]int32{1}, bytesOf("<user>hi")...), 1000)
	want = append(want, bytesOf("<assistant>")...)
	if !reflect.DeepEqual(p, want) {
		t.Errorf("EncodePrompt = %v, want %v", p, want)
	}
	pp, r, _, err := f.EncodePair(msgs, []Message{{Role: "assistant", Content: "yo"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pp, p) {
		t.Errorf("pair prompt %v, generation prompt %v", pp, p)
	}
	// the template renders "<assistant>yo<|im_end|>": the response adds
	// "yo" and the end-of-turn control token, after the assistant header
	// (which the prompt already holds)
	got := append(append([]int32(nil), pp...), r...)
	full := append(append([]int32{1}, bytesOf("<user>hi")...), 1000)
	full = append(append(full, bytesOf("<assistant>yo")...), 1000)
	if !reflect.DeepEqual(got, full) {
		t.Errorf("prompt+response = %v, want %v", got, full)
	}

	if _, err := New(fake{template: true, failChat: true}, false).Prompt(msgs); err == nil || !strings.Contains(err.Error(), "raw") {
		t.Errorf("failed template: err = %v, want a hint at raw prompts", err)
	}
}

func TestUnspelledWarning(t *testing.T) {
	f := New(fake{}, false)
	_, u, err := f.EncodePrompt(Conversation("", "a~b~"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Count != 2 || u.First != "~" || u.Offset != 1 {
		t.Errorf("unspelled = %+v", u)
	}
	if w := u.Warning("prompt"); w != `prompt: 2 characters the model's vocabulary cannot spell became <unk> (first "~" at byte 1)` {
		t.Errorf("warning = %q", w)
	}
	if w := (Unspelled{}).Warning("prompt"); w != "" {
		t.Errorf("empty warning = %q", w)
	}
	_, _, u, _ = f.EncodePair(Conversation("", "x"), []Message{{Role: "assistant", Content: "~~~"}})
	if u.Count != 3 {
		t.Errorf("pair: unspelled = %+v, want the response's 3", u)
	}
}

// vocabFake is fake with a Jinja template of its own (ChatML after a BOS
// text), BOS 1 ("<s>", added by the tokenizer) and the end-of-turn token
// 1000 ("<|im_end|>").
type vocabFake struct {
	fake
	tmpl string
}

func (v vocabFake) ChatTemplate() string { return v.tmpl }
func (v vocabFake) BOS() int32           { return 1 }
func (v vocabFake) EOT() int32           { return 1000 }
func (v vocabFake) AddBOS() bool         { return true }
func (v vocabFake) TokenText(id int32) string {
	if id == 1 {
		return "<s>"
	}
	return "</s>"
}

func (v vocabFake) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, Unspelled, error) {
	var pre []int32
	if parseSpecial && strings.HasPrefix(text, "<s>") { // the rendered BOS text
		pre, text = []int32{1}, text[3:]
	}
	toks, u, err := v.fake.Tokenize(text, addSpecial, parseSpecial)
	return append(pre, toks...), u, err
}

const chatml = "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
	"{% if add_generation_prompt %}<|im_start|>assistant\n{% if think is defined and not think %}<think></think>{% endif %}{% endif %}"

// The model's own template renders through the Jinja engine (not
// ChatApply); its BOS text is not doubled by the tokenizer's BOS; a
// response ends at the end-of-turn token (the template's trailing newline
// is not trained); kwargs reach the template.
func TestJinjaTemplate(t *testing.T) {
	m := vocabFake{fake: fake{template: true, failChat: true}, tmpl: chatml}
	f := New(m, false)
	if f.Template() != "jinja" {
		t.Fatalf("renderer %q", f.Template())
	}
	msgs := Conversation("", "hi")
	text, err := f.Prompt(msgs)
	if want := "<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"; err != nil || text != want {
		t.Fatalf("Prompt = %q, %v; want %q", text, err, want)
	}
	p, _, err := f.EncodePrompt(msgs)
	if err != nil {
		t.Fatal(err)
	}
	if p[0] != 1 || p[1] == 1 {
		t.Errorf("prompt starts %v: want one BOS", p[:2])
	}
	pp, r, _, err := f.EncodePair(msgs, []Message{{Role: "assistant", Content: "yo"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pp, p) {
		t.Errorf("pair prompt %v, generation prompt %v", pp, p)
	}
	if want := append(bytesOf("yo"), 1000); !reflect.DeepEqual(r, want) {
		t.Errorf("response %v, want %v (ended by the end of turn, no newline)", r, want)
	}

	g, err := NewWith(m, Options{Kwargs: map[string]any{"think": false}})
	if err != nil {
		t.Fatal(err)
	}
	if text, _ := g.Prompt(msgs); !strings.HasSuffix(text, "assistant\n<think></think>") {
		t.Errorf("kwargs: prompt %q", text)
	}
	if _, err := NewWith(m, Options{Template: "{% if %}"}); err == nil {
		t.Error("a broken --chat-template compiled")
	}
}

// A template that writes no end of turn gets one; one that writes a next
// turn's header after it (the original Llama 3 template) has it dropped.
func TestEndOfTurn(t *testing.T) {
	for _, c := range []struct{ name, tmpl string }{
		{"none written", "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"},
		{"header after", "{% for m in messages %}[{{ m.role }}]{{ m.content }}<|im_end|>{% endfor %}[assistant]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := New(vocabFake{fake: fake{template: true}, tmpl: c.tmpl}, false)
			_, r, _, err := f.EncodePair(Conversation("", "hi"), []Message{{Role: "assistant", Content: "yo"}})
			if err != nil {
				t.Fatal(err)
			}
			if want := append(bytesOf("yo"), 1000); !reflect.DeepEqual(r, want) {
				t.Errorf("response %v, want %v", r, want)
			}
		})
	}
}

// The model's template that the engine cannot render falls back to
// llama.cpp's built-in (ChatApply) with one warning; a template that
// refuses a conversation (raise_exception) is an error, not a fallback.
func TestTemplateFallback(t *testing.T) {
	var warnings []string
	m := vocabFake{fake: fake{template: true}, tmpl: "{{ messages | no_such_filter }}"}
	f, err := NewWith(m, Options{OnWarning: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		text, err := f.Prompt(Conversation("", "hi"))
		if err != nil || text != "<user>hi<|im_end|><assistant>" {
			t.Fatalf("fallback: %q, %v", text, err)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "built-in") {
		t.Errorf("warnings %q, want one", warnings)
	}
	m.tmpl = "{{ raise_exception('roles must alternate') }}"
	f = New(m, false)
	if _, err := f.Prompt(Conversation("", "hi")); err == nil || !strings.Contains(err.Error(), "roles must alternate") {
		t.Errorf("refusal: %v", err)
	}
}

// Key tells formats apart (plain or templated, template text, variables)
// and is the same for two formatters of one model and options;
// EndResponse ends sampled tokens as EncodePair ends a response's text.
func TestKeyAndEndResponse(t *testing.T) {
	m := vocabFake{fake: fake{template: true, failChat: true}, tmpl: chatml}
	tmpl, raw := New(m, false), New(m, true)
	if tmpl.Key() != New(m, false).Key() || raw.Key() != New(m, true).Key() {
		t.Error("two formatters of one model and options have different keys")
	}
	think, err := NewWith(m, Options{Kwargs: map[string]any{"think": false}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewWith(m, Options{Template: chatml + " "})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{"template": tmpl.Key(), "raw": raw.Key(), "kwargs": think.Key(), "other template": other.Key()}
	seen := map[string]string{}
	for name, k := range keys {
		if prev, ok := seen[k]; ok {
			t.Errorf("%s and %s formats share the key %q", name, prev, k)
		}
		seen[k] = name
	}
	for _, f := range []*Formatter{tmpl, raw} {
		_, r, _, err := f.EncodePair(Conversation("", "hi"), []Message{{Role: "assistant", Content: "ok then"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.EndResponse(r[:len(r)-1]); !reflect.DeepEqual(got, r) {
			t.Errorf("templated %v: EndResponse %v, EncodePair's response %v", f.Templated(), got, r)
		}
	}
}
