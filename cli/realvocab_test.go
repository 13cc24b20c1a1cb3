package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/prompt/hftest"
)

// After a short SFT on a fixture with a real vocabulary and template,
// greedy generation (align sample, and align eval's) says the trained
// answer and stops on the template's end-of-turn token (stop: eog), which
// training put at the end of every response; the adapter loads in
// llama.cpp (sample applies it).
func TestRealVocabSFTStopsAtEndOfTurn(t *testing.T) {
	if testing.Short() {
		t.Skip("trains three real-vocabulary fixtures (about a minute each)")
	}
	arch := map[string]string{"llama3_1": "llama", "qwen3": "qwen3", "gemma3": "gemma3"}
	for _, name := range hftest.Names {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			model := filepath.Join(dir, name+".gguf")
			layers := "2"
			if name == "gemma3" {
				layers = "6" // one global layer
			}
			if code, _, errs := run(t, "", "model", "init", "--out", model, "--tokenizer", hftest.Dir(t, name), "--arch", arch[name], "--layers", layers, "--seed", "1"); code != 0 {
				t.Fatalf("init: exit %d: %s", code, errs)
			}
			var lines []string
			for i := range 8 {
				lines = append(lines, fmt.Sprintf(`{"id": "p%d", "prompt": "Is Berserk finished?", "chosen": "Not yet.", "rejected": "Yes."}`, i))
			}
			data := filepath.Join(dir, "pairs.jsonl")
			os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
			out := filepath.Join(dir, "run")
			if code, _, errs := run(t, "", "train", "--method", "sft", "--model", model, "--data", data, "--eval-split", "0",
				"--out", out, "--epochs", "12", "--lr", "3e-3", "--schedule", "constant", "--warmup-steps", "0", "--threads", "2"); code != 0 {
				t.Fatalf("train: exit %d: %s", code, errs)
			}
			code, stdout, errs := run(t, "", "sample", "--model", model, "--lora", filepath.Join(out, "adapter.gguf"), "--prompt", "Is Berserk finished?",
				"--temperature", "0", "-n", "24", "--json", "--threads", "2")
			if code != 0 {
				t.Fatalf("sample: exit %d: %s", code, errs)
			}
			var res struct {
				Text       string `json:"text"`
				StopReason string `json:"stop_reason"`
				Generated  int    `json:"generated_tokens"`
			}
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %q, %d tokens, stop: %s", name, res.Text, res.Generated, res.StopReason)
			// Qwen3's template trains the last turn after an empty think
			// block (thinking on), so the model learns to write it
			text := strings.TrimPrefix(res.Text, "<think>\n\n</think>\n\n")
			if res.StopReason != "eog" || strings.TrimSpace(text) != "Not yet." {
				t.Errorf("generated %q (stop: %s), want \"Not yet.\" then the end of turn", res.Text, res.StopReason)
			}
			// align eval generates as sample does: the adapter's greedy
			// response stops on the end of turn too
			prompts := filepath.Join(dir, "prompts.jsonl")
			os.WriteFile(prompts, []byte(`{"id": "q1", "prompt": "Is Berserk finished?"}`+"\n"), 0o644)
			evalOut := filepath.Join(dir, "eval")
			if code, _, errs := run(t, "", "eval", "--model", model, "--lora", filepath.Join(out, "adapter.gguf"), "--prompts", prompts,
				"--judge", "rules:../testdata/catalog.json", "--out", evalOut, "--samples", "1", "--temperature", "0", "-n", "24",
				"--bootstrap", "10", "--threads", "2"); code != 0 {
				t.Fatalf("eval: exit %d: %s", code, errs)
			}
			found := false
			for _, line := range strings.Split(strings.TrimSpace(slurp(t, filepath.Join(evalOut, "responses.jsonl"))), "\n") {
				var r struct {
					Adapter    string `json:"adapter"`
					Text       string `json:"text"`
					StopReason string `json:"stop_reason"`
				}
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatal(err)
				}
				if r.Adapter == "" {
					continue // the base
				}
				found = true
				t.Logf("%s: eval: %q, stop: %s", name, r.Text, r.StopReason)
				if text := strings.TrimPrefix(r.Text, "<think>\n\n</think>\n\n"); r.StopReason != "eog" || strings.TrimSpace(text) != "Not yet." {
					t.Errorf("eval generated %q (stop: %s), want \"Not yet.\" then the end of turn", r.Text, r.StopReason)
				}
			}
			if !found {
				t.Errorf("eval wrote no response of the adapter")
			}
		})
	}
}
