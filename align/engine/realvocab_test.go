package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/align/prompt/hftest"
	"github.com/align-dev/align/bindings"
)

// realArch is the architecture each real tokenizer's fixture gets.
var realArch = map[string]string{"llama3_1": "llama", "qwen3": "qwen3", "gemma3": "gemma3"}

var (
	realOnce sync.Mutex
	realDir  string
	realMade = map[string]string{}
)

// realFixture writes (once per test binary) a tiny random-weight model
// with tokenizer name's real vocabulary, special tokens and template.
func realFixture(t *testing.T, name string) string {
	t.Helper()
	dir := hftest.Dir(t, name)
	realOnce.Lock()
	defer realOnce.Unlock()
	if p, ok := realMade[name]; ok {
		return p
	}
	if realDir == "" {
		d, err := os.MkdirTemp("", "align-realvocab-")
		if err != nil {
			t.Fatal(err)
		}
		realDir = d
	}
	v, err := engine.ReadHFTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(realDir, name+".gguf")
	if err := engine.InitModel(path, engine.FixtureParams{Arch: realArch[name], Type: "q8_0", Size: "tiny", Seed: 1, Layers: 2, Vocab: v}); err != nil {
		t.Fatal(err)
	}
	realMade[name] = path
	return path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if realDir != "" {
		os.RemoveAll(realDir)
	}
	os.Exit(code)
}

// What ReadHFTokenizer makes of the three tokenizers: their GGUF model and
// pre-tokenizer, sizes and special tokens, as the converters write them.
func TestReadHFTokenizer(t *testing.T) {
	want := map[string]struct {
		model, pre          string
		n, merges           int
		bos, eos, eot       string
		addBOS, hasTemplate bool
	}{
		"llama3_1": {"gpt2", "llama-bpe", 128256, 280147, "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", true, true},
		"qwen3":    {"gpt2", "qwen2", 151669, 151387, "<|endoftext|>", "<|im_end|>", "<|im_end|>", false, true},
		"gemma3":   {"llama", "", 262145, 0, "<bos>", "<end_of_turn>", "<end_of_turn>", true, true},
	}
	for _, name := range hftest.Names {
		t.Run(name, func(t *testing.T) {
			v, err := engine.ReadHFTokenizer(hftest.Dir(t, name))
			if err != nil {
				t.Fatal(err)
			}
			w := want[name]
			if v.Model != w.model || v.Pre != w.pre || len(v.Tokens) != w.n || len(v.Merges) != w.merges {
				t.Errorf("model %s pre %q, %d tokens, %d merges; want %s %q, %d, %d", v.Model, v.Pre, len(v.Tokens), len(v.Merges), w.model, w.pre, w.n, w.merges)
			}
			if v.Tokens[v.BOS] != w.bos || v.Tokens[v.EOS] != w.eos || v.Tokens[v.EOT] != w.eot || v.AddBOS != w.addBOS {
				t.Errorf("BOS %q EOS %q EOT %q add BOS %v", v.Tokens[v.BOS], v.Tokens[v.EOS], v.Tokens[v.EOT], v.AddBOS)
			}
			if (v.ChatTemplate != "") != w.hasTemplate {
				t.Errorf("template %d bytes", len(v.ChatTemplate))
			}
		})
	}
	if _, err := engine.ReadHFTokenizer(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no tokenizer.json") {
		t.Errorf("empty folder: %v", err)
	}
}

// Tokenization parity with @huggingface/tokenizers on the testdata texts
// and on each rendered golden conversation, and the round trip: tokens back
// to text gives the input whole (Japanese and emoji included).
func TestRealTokenizerParity(t *testing.T) {
	convs := hftest.Conversations(t)
	for _, name := range hftest.Names {
		t.Run(name, func(t *testing.T) {
			m, err := bindings.LoadModel(realFixture(t, name), bindings.ModelOptions{VocabOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			g := hftest.ReadGolden(t, name)
			same := 0
			for _, c := range g.Tokens {
				// as transformers encodes with add_special_tokens=False:
				// no BOS, control-token text matched
				got, err := m.Tokenize(c.Text, false, true)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, c.IDs) {
					t.Errorf("%q:\nalign %v\n%s %v", c.Text, got, g.Tokenizers, c.IDs)
				} else {
					same++
				}
				back, err := m.Detokenize(got, false)
				if err != nil {
					t.Fatal(err)
				}
				if back != c.Text && !strings.Contains(c.Text, "<") { // control text renders empty
					t.Errorf("round trip %q -> %q", c.Text, back)
				}
			}
			t.Logf("%s: %d of %d texts tokenize as %s tokenizes them", name, same, len(g.Tokens), g.Tokenizers)

			f, err := engine.NewFormatter(m, prompt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if f.Template() != "jinja" {
				t.Fatalf("renderer %q, want jinja", f.Template())
			}
			rsame, n := 0, 0
			for i, c := range convs {
				r := g.Renders[i]
				if r.Error != "" {
					continue
				}
				n++
				got, _, err := f.Tokenize(r.Text)
				if err != nil {
					t.Fatal(err)
				}
				// the golden tokens are the rendered text's, BOS text
				// included; the formatter adds BOS as the model does
				if !reflect.DeepEqual(got, r.IDs) {
					t.Errorf("%s: rendered conversation:\nalign %v\n%s %v", c.Name, got, g.Tokenizers, r.IDs)
				} else {
					rsame++
				}
			}
			t.Logf("%s: %d of %d rendered conversations tokenize as %s does", name, rsame, n, g.Tokenizers)
		})
	}
}

// Streaming holds a character split across byte-level tokens until it is
// complete: generation constrained to Japanese and emoji text streams it
// in valid UTF-8 pieces that join to the text, never U+FFFD.
func TestRealVocabStreamsWholeCharacters(t *testing.T) {
	const want = "『鬼滅の刃』🙂👨‍👩‍👧"
	for _, name := range []string{"llama3_1", "qwen3"} {
		t.Run(name, func(t *testing.T) {
			m, err := bindings.LoadModel(realFixture(t, name), bindings.ModelOptions{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: 256, Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p, err := m.Tokenize("Title:", true, false)
			if err != nil {
				t.Fatal(err)
			}
			var chunks []string
			res, err := s.Generate(context.Background(), p, bindings.SamplerParams{
				Temperature: 0, MaxTokens: 64, Grammar: `root ::= "` + want + `"`, Seed: 1,
			}, func(c string) bool { chunks = append(chunks, c); return true })
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(chunks, "")
			if joined != want {
				t.Fatalf("streamed %q, want %q", joined, want)
			}
			for _, c := range chunks {
				if !utf8.ValidString(c) || strings.ContainsRune(c, utf8.RuneError) {
					t.Errorf("chunk %q splits a character", c)
				}
			}
			t.Logf("%s: %d tokens streamed in %d chunks for %d characters", name, res.GeneratedTokens, len(chunks), utf8.RuneCountInString(want))
		})
	}
}

// Generation cut at max_tokens in the middle of a character (byte-level
// tokens spell one character in several) passes on the text up to the last
// whole character, never the partial one (it would be written as U+FFFD).
func TestRealVocabCutMidCharacter(t *testing.T) {
	const want = "『鬼滅の刃』🙂👨‍👩‍👧"
	for _, name := range []string{"llama3_1", "qwen3"} {
		t.Run(name, func(t *testing.T) {
			m, err := bindings.LoadModel(realFixture(t, name), bindings.ModelOptions{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: 256, Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p, err := m.Tokenize("Title:", true, false)
			if err != nil {
				t.Fatal(err)
			}
			gen := func(n int) (string, int) {
				var sb strings.Builder
				res, err := s.Generate(context.Background(), p, bindings.SamplerParams{
					Temperature: 0, MaxTokens: n, Grammar: `root ::= "` + want + `"`, Seed: 1,
				}, func(c string) bool { sb.WriteString(c); return true })
				if err != nil {
					t.Fatal(err)
				}
				return sb.String(), res.GeneratedTokens
			}
			full, n := gen(64)
			if full != want {
				t.Fatalf("generated %q, want %q", full, want)
			}
			cuts := 0 // cuts inside a character: a token was generated, no text came
			prev := ""
			for k := 1; k < n; k++ {
				text, _ := gen(k)
				if !utf8.ValidString(text) || strings.ContainsRune(text, utf8.RuneError) || !strings.HasPrefix(want, text) {
					t.Errorf("cut after %d tokens: %q, want a prefix of %q in whole characters", k, text, want)
				}
				if text == prev {
					cuts++
				}
				prev = text
			}
			t.Logf("%s: %d tokens, %d of the cuts fall inside a character", name, n, cuts)
			if cuts == 0 {
				t.Fatalf("no cut of the %d tokens falls inside a character: the test checks nothing", n)
			}
		})
	}
}
