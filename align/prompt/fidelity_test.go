package prompt_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/align/prompt/hftest"
)

// vocabModel renders a real tokenizer's template: no tokens, only the
// template and the special-token text.
type vocabModel struct {
	tmpl, bos, eos string
}

func (v vocabModel) HasChatTemplate() bool { return true }
func (v vocabModel) EOS() int32            { return 2 }
func (v vocabModel) ChatApply([]prompt.Message, bool) (string, error) {
	return "", fmt.Errorf("built-in templates are not expected here")
}
func (v vocabModel) Tokenize(string, bool, bool) ([]int32, prompt.Unspelled, error) {
	return nil, prompt.Unspelled{}, fmt.Errorf("no tokenizer")
}
func (v vocabModel) ChatTemplate() string { return v.tmpl }
func (v vocabModel) BOS() int32           { return 1 }
func (v vocabModel) EOT() int32           { return 2 }
func (v vocabModel) AddBOS() bool         { return true }
func (v vocabModel) TokenText(id int32) string {
	if id == 1 {
		return v.bos
	}
	return v.eos
}

// Template fidelity: for the real Llama 3.1, Qwen3 and Gemma 3 templates
// and the golden conversations, align's rendering equals
// @huggingface/jinja's byte for byte, refusals included.
func TestTemplateFidelity(t *testing.T) {
	convs := hftest.Conversations(t)
	for _, name := range hftest.Names {
		t.Run(name, func(t *testing.T) {
			cfg := hftest.ReadConfig(t, name)
			g := hftest.ReadGolden(t, name)
			if len(g.Renders) != len(convs) {
				t.Fatalf("golden has %d renderings for %d conversations: rerun scripts/fetch-tokenizers.sh --goldens", len(g.Renders), len(convs))
			}
			m := vocabModel{tmpl: cfg.ChatTemplate, bos: cfg.BOS, eos: cfg.EOS}
			same := 0
			for i, c := range convs {
				want := g.Renders[i]
				f, err := prompt.NewWith(m, prompt.Options{Kwargs: c.Kwargs, OnWarning: func(s string) { t.Errorf("%s: warning %s", c.Name, s) }})
				if err != nil {
					t.Fatal(err)
				}
				if f.Template() != "jinja" {
					t.Fatalf("renderer %q, want jinja", f.Template())
				}
				msgs := make([]prompt.Message, len(c.Messages))
				for j, msg := range c.Messages {
					msgs[j] = prompt.Message{Role: msg.Role, Content: msg.Content}
				}
				got, err := f.Render(msgs, c.AddGenerationPrompt)
				switch {
				case want.Error != "":
					if err == nil || !strings.Contains(err.Error(), want.Error) {
						t.Errorf("%s: err %v, want the template's refusal %q", c.Name, err, want.Error)
					} else {
						same++
					}
				case err != nil:
					t.Errorf("%s: %v", c.Name, err)
				case got != want.Text:
					t.Errorf("%s: rendering differs from %s:\ngot  %q\nwant %q", c.Name, g.Jinja, got, want.Text)
				default:
					same++
				}
			}
			t.Logf("%s: %d of %d conversations rendered as %s renders them", name, same, len(convs), g.Jinja)
		})
	}
}

func TestParseKwargs(t *testing.T) {
	kw, err := prompt.ParseKwargs("enable_thinking=false, n=3,name=Yotsuba,list=[1,2]")
	if err != nil {
		t.Fatal(err)
	}
	if got := prompt.KwargsString(kw); got != `enable_thinking=false,list=[1,2],n=3,name="Yotsuba"` {
		t.Errorf("kwargs = %s", got)
	}
	kw, err = prompt.ParseKwargs(`{"enable_thinking": false}`)
	if err != nil || kw["enable_thinking"] != false {
		t.Errorf("JSON kwargs = %v, %v", kw, err)
	}
	for _, bad := range []string{"novalue", "=x", `{"a":`} {
		if _, err := prompt.ParseKwargs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
