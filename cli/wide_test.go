package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// align train on a llama3-1b-shaped Q4_K model (one layer, the built-in
// vocabulary): every matrix is 2048 wide, which on AMX CPUs llama.cpp keeps
// in its AMX buffer unless the model is loaded for training. Trained
// without ALIGN_NO_EXTRA_BUFTS, the run ends with an adapter.
func TestTrainWideQ4KModel(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and trains a 2048-wide model (about a minute)")
	}
	t.Setenv("ALIGN_NO_EXTRA_BUFTS", "")
	dir := t.TempDir()
	model := filepath.Join(dir, "llama3-1b-1l.gguf")
	if code, _, errs := run(t, "", "model", "init", "--out", model, "--shape", "llama3-1b", "--layers", "1", "--type", "q4_k", "--seed", "1"); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	var lines []string
	for i := range 4 {
		lines = append(lines, fmt.Sprintf(`{"id": "p%d", "prompt": "Is Berserk finished?", "chosen": "Not yet.", "rejected": "Yes."}`, i))
	}
	data := filepath.Join(dir, "pairs.jsonl")
	if err := os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"sft", "dpo"} {
		out := filepath.Join(dir, method)
		if code, _, errs := run(t, "", "train", "--method", method, "--model", model, "--data", data, "--eval-split", "0",
			"--out", out, "--max-steps", "1", "--threads", "2"); code != 0 {
			t.Fatalf("train --method %s: exit %d: %s", method, code, errs)
		}
		if _, err := os.Stat(filepath.Join(out, "adapter.gguf")); err != nil {
			t.Errorf("train --method %s: %v", method, err)
		}
	}
}
