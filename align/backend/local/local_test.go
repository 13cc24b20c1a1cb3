//go:build cgo

package local

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/testgate"
	"github.com/align-dev/align/bindings"
)

var tiny string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "align-local-test-")
	if err != nil {
		panic(err)
	}
	tiny = filepath.Join(dir, "tiny.gguf")
	if err := bindings.WriteFixture(tiny, bindings.FixtureParams{Arch: "llama", Type: "q8_0", Size: "tiny", Seed: 1}); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func open(t *testing.T) *Backend {
	t.Helper()
	b, err := Open(tiny, Options{Threads: 2, MaxTokens: 24})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestGenerateDeterministic(t *testing.T) {
	b := open(t)
	temp := 1.0
	req := backend.GenerateRequest{Messages: []backend.Message{{Role: backend.RoleUser, Content: "Do you have Naruto?"}}, Temperature: &temp}
	r1, err := b.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Text != r2.Text || r1.Usage.OutputTokens == 0 || r1.Usage.InputTokens == 0 {
		t.Errorf("r1 %+v r2 %+v", r1, r2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Generate(ctx, req); err == nil || backend.IsCallFailed(err) {
		t.Errorf("cancelled call: %v", err)
	}
}

func TestGrammarFromSchema(t *testing.T) {
	for _, s := range []backend.Schema{backend.VerdictSchema, backend.ScreenSchema} {
		g, err := GrammarFromSchema(s.JSON, 40)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		t.Logf("%s:\n%s", s.Name, g)
	}
	if _, err := GrammarFromSchema(json.RawMessage(`{"type":"null"}`), 10); err == nil {
		t.Error("null type accepted")
	}
}

// TestJudgeWithGrammar: the fixture's weights are random, so its text is
// gibberish, but grammar-constrained output must still be a valid verdict.
func TestJudgeWithGrammar(t *testing.T) {
	b, err := Open(tiny, Options{Threads: 2, StringLimit: 24})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := b.Judge(context.Background(), backend.JudgeRequest{
		Prompt: []backend.Message{{Role: backend.RoleUser, Content: "Is Naruto finished?"}},
		A:      "Yes, 72 volumes.", B: "No.", Rubric: "tone, accuracy", System: "Judge.",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := backend.ValidateVerdict(got.Verdict); err != nil {
		t.Error(err)
	}
	t.Logf("verdict %+v raw %s", got.Verdict, got.Raw)
}

// A real model whose vocabulary has no byte fallback gets text it cannot
// spell ("{", "é", emoji): generation maps the characters to <unk> and the
// backend warns once; a judge call, whose JSON needs "{", fails with one
// clear line. llama.cpp's C++ exception texts never come back.
func TestUnspellablePrompts(t *testing.T) {
	model := testgate.SharedModel(t, "TinyStories-656K-Q8_0.gguf")
	var warnings []string
	b, err := Open(model, Options{Threads: 2, StringLimit: 16, MaxTokens: 32, Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	msgs := []backend.Message{{Role: backend.RoleUser, Content: "Once upon a time {a cat} had a café 😀"}}
	for i := 0; i < 2; i++ {
		got, err := b.Generate(context.Background(), backend.GenerateRequest{Messages: msgs})
		if err != nil {
			t.Fatalf("generate %d: %v", i, err)
		}
		if got.Usage.OutputTokens == 0 {
			t.Errorf("generate %d: no output", i)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "<unk>") || !strings.Contains(warnings[0], "local:") {
		t.Errorf("warnings = %q, want one naming the backend and <unk>", warnings)
	}
	_, err = b.Judge(context.Background(), backend.JudgeRequest{
		Prompt: msgs, A: "Yes (72 volumes).", B: "No.", Rubric: "tone", System: "Judge.",
	})
	if err == nil || !strings.Contains(err.Error(), `cannot spell "{"`) {
		t.Errorf("judge: err = %v, want the character JSON needs named", err)
	}
	for _, bad := range []string{"unordered_map", "grammar stack"} {
		if err != nil && strings.Contains(err.Error(), bad) {
			t.Errorf("C++ exception text: %v", err)
		}
	}
}
