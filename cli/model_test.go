package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/prompt/hftest"
)

// model init --tokenizer writes the real Llama 3.1 vocabulary, special
// tokens and template; model tokenize shows the rendered conversation and
// its tokens, a conversation that ends with the assistant split as training
// splits it, its response ended by <|eot_id|>.
func TestModelInitTokenizerAndTokenize(t *testing.T) {
	dir := hftest.Dir(t, "llama3_1")
	out := filepath.Join(t.TempDir(), "l3.gguf")
	if code, _, errs := run(t, "", "model", "init", "--out", out, "--tokenizer", dir, "--layers", "1", "--seed", "1"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	code, info, errs := run(t, "", "model", "info", "--model", out, "--json")
	if code != 0 {
		t.Fatalf("info: exit %d: %s", code, errs)
	}
	var mi struct {
		NVocab int   `json:"n_vocab"`
		NLayer int   `json:"n_layer"`
		BOS    int32 `json:"bos"`
		EOS    int32 `json:"eos"`
	}
	if err := json.Unmarshal([]byte(info), &mi); err != nil || mi.NVocab != 128256 || mi.NLayer != 1 || mi.BOS != 128000 || mi.EOS != 128009 {
		t.Fatalf("info %s (%v)", info, err)
	}
	g := hftest.ReadGolden(t, "llama3_1")
	in := strings.Join([]string{
		`{"text": "Who wrote One Piece?"}`,
		`{"messages": [{"role": "user", "content": "Who wrote Naruto?"}]}`,
		`{"messages": [{"role": "user", "content": "Who wrote Naruto?"}, {"role": "assistant", "content": "Not yet."}]}`,
	}, "\n")
	code, stdout, errs := run(t, in, "model", "tokenize", "--model", out, "--json")
	if code != 0 {
		t.Fatalf("tokenize: exit %d: %s", code, errs)
	}
	var rs []tokenizeResult
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var r tokenizeResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		rs = append(rs, r)
	}
	if len(rs) != 3 {
		t.Fatalf("%d results", len(rs))
	}
	// the golden texts and conversations, as @huggingface/tokenizers and
	// @huggingface/jinja give them (BOS added to the text line)
	if g.Tokens[1].Text != "Who wrote One Piece?" || g.Renders[1].Text == "" {
		t.Fatal("golden file changed: update this test")
	}
	if want := append([]int32{128000}, g.Tokens[1].IDs...); !equal32(rs[0].Tokens, want) {
		t.Errorf("text tokens %v, want %v", rs[0].Tokens, want)
	}
	if rs[1].Text != g.Renders[1].Text || !equal32(rs[1].Tokens, g.Renders[1].IDs) {
		t.Errorf("rendered %q %v\nwant     %q %v", rs[1].Text, rs[1].Tokens, g.Renders[1].Text, g.Renders[1].IDs)
	}
	if n := len(rs[1].Tokens); n == 0 || rs[1].Tokens[0] != 128000 || rs[1].Tokens[1] == 128000 {
		t.Errorf("conversation tokens start %v: want one BOS", rs[1].Tokens[:2])
	}
	r := rs[2]
	if r.ResponseStart == nil || !equal32(r.Tokens[:*r.ResponseStart], rs[1].Tokens) {
		t.Fatalf("the trained conversation's prompt differs from the generation prompt")
	}
	resp := r.Tokens[*r.ResponseStart:]
	if resp[len(resp)-1] != 128009 || strings.Join(r.Pieces[*r.ResponseStart:], "") != "Not yet.<|eot_id|>" {
		t.Errorf("response %v %q: want it to end with <|eot_id|>", resp, r.Pieces[*r.ResponseStart:])
	}

	// a bad line names its line; bad kwargs are a usage error
	if code, _, errs := run(t, "{\"text\": \"a\"}\n{\"messages\": []}\n", "model", "tokenize", "--model", out); code != 1 || !strings.Contains(errs, "standard input:2") {
		t.Errorf("bad line: exit %d: %s", code, errs)
	}
	if code, _, _ := run(t, in, "model", "tokenize", "--model", out, "--chat-template-kwargs", "novalue"); code != 2 {
		t.Errorf("bad kwargs: exit %d, want 2", code)
	}
	// --chat-template replaces the model's
	tmpl := filepath.Join(t.TempDir(), "t.jinja")
	os.WriteFile(tmpl, []byte("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"), 0o644)
	code, stdout, errs = run(t, `{"messages": [{"role": "user", "content": "hi"}]}`, "model", "tokenize", "--model", out, "--chat-template", tmpl, "--json")
	if code != 0 || !strings.Contains(stdout, `"text":"[user] hi\n[assistant] "`) {
		t.Errorf("--chat-template: exit %d: %s %s", code, stdout, errs)
	}
}

func TestModelInitShapes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q.gguf")
	if code, _, errs := run(t, "", "model", "init", "--out", out, "--shape", "qwen3-0.6b", "--layers", "1", "--type", "q8_0"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	_, info, _ := run(t, "", "model", "info", "--model", out, "--json")
	if !strings.Contains(info, `"arch":"qwen3"`) || !strings.Contains(info, `"n_embd":1024`) || !strings.Contains(info, `"n_layer":1`) {
		t.Errorf("info %s", info)
	}
	for _, args := range [][]string{
		{"--shape", "nope"},
		{"--shape", "gemma3-1b", "--arch", "llama"},
		{"--shape", "llama3-1b", "--size", "small"},
	} {
		if code, _, _ := run(t, "", append([]string{"model", "init", "--out", filepath.Join(t.TempDir(), "x.gguf")}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func equal32(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
