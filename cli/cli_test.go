package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the align app in-process and returns exit code, stdout, stderr.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"align"}, args...), Env{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
	})
	return code, out.String(), errb.String()
}

var tinyModel string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "align-cli-test-")
	if err != nil {
		panic(err)
	}
	tinyModel = filepath.Join(dir, "tiny.gguf")
	var errb bytes.Buffer
	if code := Run(context.Background(), []string{"align", "model", "init", "--out", tinyModel, "--seed", "1"},
		Env{Stdin: strings.NewReader(""), Stdout: &errb, Stderr: &errb}); code != 0 {
		panic("model init failed: " + errb.String())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestSampleSameSeedSameText(t *testing.T) {
	args := []string{"sample", "--model", tinyModel, "--prompt", "hi", "--seed", "1", "-n", "16"}
	c1, o1, e1 := run(t, "", args...)
	c2, o2, _ := run(t, "", args...)
	if c1 != 0 || c2 != 0 {
		t.Fatalf("exit %d/%d: %s", c1, c2, e1)
	}
	if o1 != o2 || strings.TrimSpace(o1) == "" {
		t.Errorf("outputs differ or are empty:\n%q\n%q", o1, o2)
	}
	if !strings.Contains(e1, "tokens/s") {
		t.Errorf("stderr lacks speed: %q", e1)
	}
	_, o3, _ := run(t, "", "sample", "--model", tinyModel, "--prompt", "hi", "--seed", "2", "-n", "16")
	if o3 == o1 {
		t.Errorf("seed 2 gave the same text as seed 1")
	}
}

func TestSampleJSONAndStdin(t *testing.T) {
	code, out, errs := run(t, "hello from stdin", "sample", "--model", tinyModel, "--seed", "3", "-n", "8", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res struct {
		Text            string  `json:"text"`
		GeneratedTokens int     `json:"generated_tokens"`
		PromptTokens    int     `json:"prompt_tokens"`
		TPS             float64 `json:"tokens_per_s"`
		Seed            uint32  `json:"seed"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("not JSON: %q: %v", out, err)
	}
	if res.GeneratedTokens == 0 || res.TPS <= 0 || res.Seed != 3 || res.PromptTokens < 5 {
		t.Errorf("result = %+v", res)
	}
}

func TestErrorsAndExitCodes(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("not a model\n"), 0o644)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"non-GGUF", []string{"sample", "--model", text, "--prompt", "hi"}, ExitError, "not a GGUF file"},
		{"missing model", []string{"sample", "--model", filepath.Join(dir, "x.gguf"), "--prompt", "hi"}, ExitError, "no such file"},
		{"no model flag", []string{"sample", "--prompt", "hi"}, ExitUsage, "model"},
		{"unknown flag", []string{"sample", "--bogus"}, ExitUsage, "bogus"},
		{"bad top-p", []string{"sample", "--model", tinyModel, "--prompt", "hi", "--top-p", "3"}, ExitUsage, "top-p"},
		{"bad type", []string{"model", "init", "--out", filepath.Join(dir, "m.gguf"), "--type", "q3_x"}, ExitUsage, "--type"},
		{"missing adapter", []string{"sample", "--model", tinyModel, "--prompt", "hi", "--lora", filepath.Join(dir, "a.gguf")}, ExitError, "a.gguf"},
		{"model as adapter", []string{"sample", "--model", tinyModel, "--prompt", "hi", "--lora", tinyModel}, ExitError, "adapter"},
		{"unknown command", []string{"fly"}, ExitUsage, "fly"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := run(t, "", c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errs)
			}
			first := strings.SplitN(errs, "\n", 2)[0]
			if !strings.HasPrefix(first, "align: error: ") || !strings.Contains(strings.ToLower(first), strings.ToLower(c.want)) {
				t.Errorf("stderr first line = %q, want align: error: …%s…", first, c.want)
			}
			if strings.Contains(errs, "GGML_ASSERT") || strings.Contains(errs, "backtrace") {
				t.Errorf("native noise on stderr: %q", errs)
			}
		})
	}
}

func TestParseAdapterSpec(t *testing.T) {
	// through the CLI: FILE:SCALE with a missing file reports the file, not "FILE:SCALE"
	_, _, errs := run(t, "", "sample", "--model", tinyModel, "--prompt", "hi", "--lora", "/nonexistent/a.gguf:0.5")
	if !strings.Contains(errs, "/nonexistent/a.gguf:") || strings.Contains(errs, "a.gguf:0.5") {
		t.Errorf("stderr = %q", errs)
	}
}
