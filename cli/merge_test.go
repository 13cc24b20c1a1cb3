package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sftAdapter trains two SFT steps (rank 8, q, k, v, o) on the tiny fixture
// and returns the run's adapter.
func sftAdapter(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sft")
	code, _, stderr := run(t, "", "train", "--method", "sft", "--model", tinyModel, "--data", "../testdata/pairs/eval.jsonl",
		"--eval-split", "0", "--out", out, "--max-steps", "2", "--batch-tokens", "384", "--threads", "2",
		"--lora-rank", "8", "--lora-alpha", "16", "--lora-targets", "q,k,v,o")
	if code != 0 {
		t.Fatalf("sft: exit %d: %s", code, stderr)
	}
	return filepath.Join(out, "adapter.gguf")
}

func TestMergeCommand(t *testing.T) {
	adapter := sftAdapter(t)
	dir := t.TempDir()
	merged := filepath.Join(dir, "merged.gguf")
	code, stdout, stderr := run(t, "", "merge", "--model", tinyModel, "--lora", adapter+":0.5", "--out", merged, "--json")
	if code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res["merged"].(float64) != 8 {
		t.Errorf("merge --json printed %q (%v); want 8 merged tensors (q, k, v, o of 2 layers)", stdout, err)
	}
	if code, _, stderr := run(t, "", "model", "info", "--model", merged); code != 0 {
		t.Errorf("the merged model does not load: %s", stderr)
	}
	// an existing file needs --force: a usage error, before anything is read
	code, _, stderr = run(t, "", "merge", "--model", tinyModel, "--lora", adapter, "--out", merged)
	if code != 2 || !strings.Contains(stderr, "--force") || strings.Contains(stderr, "(align_") {
		t.Errorf("merge over an existing file: exit %d, %q", code, stderr)
	}
	// what a merge killed with kill -9 left (OUT.tmp.PID of a dead process)
	// goes; a file of a live process, or one that is not a GGUF, stays
	dead := exec.Command("true")
	dead.Run()
	stale := merged + ".tmp." + strconv.Itoa(dead.Process.Pid)
	os.WriteFile(stale, []byte("GGUF\x03\x00 half a model"), 0o644)
	live := merged + ".tmp." + strconv.Itoa(os.Getppid())
	os.WriteFile(live, []byte("GGUF"), 0o644)
	if code, _, stderr := run(t, "", "merge", "--model", tinyModel, "--lora", adapter, "--out", merged, "--force", "--type", "q4_k"); code != 0 ||
		!strings.Contains(stderr, "converted") || !strings.Contains(stderr, "removed "+stale) {
		t.Errorf("merge --force --type q4_k: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("%s is still there", stale)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the temporary file of a live process was removed: %v", err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--lora", adapter, "--out", tinyModel}, 2, "also the input"},
		{[]string{"--lora", adapter, "--out", adapter}, 2, "also the input"},
		{[]string{"--lora", adapter + ":x", "--out", filepath.Join(dir, "x.gguf")}, 2, "not a number"},
		{[]string{"--lora", adapter, "--out", filepath.Join(dir, "x.gguf"), "--type", "q9"}, 2, "--type q9: want one of"},
		{[]string{"--lora", adapter, "--out", filepath.Join(dir, "x.gguf"), "--type", "iq2_xxs"}, 2, "--type iq2_xxs: want one of"},
		{[]string{"--lora", adapter, "--out", filepath.Join(dir, "nodir", "x.gguf")}, 2, "folder " + filepath.Join(dir, "nodir") + " does not exist"},
		{[]string{"--lora", adapter, "--out", dir}, 2, "is a folder"},
		{[]string{"--lora", tinyModel, "--out", filepath.Join(dir, "x.gguf")}, 1, "not a LoRA adapter"},
	} {
		code, _, stderr := run(t, "", append([]string{"merge", "--model", tinyModel}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("merge %v: exit %d, %q; want exit %d and one line with %q", c.args, code, stderr, c.code, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.gguf")); err == nil {
		t.Error("a failed merge wrote its output")
	}
}

// --ref-adapter takes the adapter's rank; a different --lora-rank is a usage
// error naming both.
func TestTrainStageFlags(t *testing.T) {
	adapter := sftAdapter(t)
	out := filepath.Join(t.TempDir(), "dpo")
	base := []string{"train", "--method", "dpo", "--model", tinyModel, "--data", "../testdata/pairs/eval.jsonl", "--eval-split", "0",
		"--out", out, "--max-steps", "1", "--batch-tokens", "384", "--threads", "2", "--ref-adapter", adapter}
	code, _, stderr := run(t, "", append(base, "--lora-rank", "16")...)
	if code != 2 || !strings.Contains(stderr, "--lora-rank") || !strings.Contains(stderr, "rank 8") {
		t.Errorf("conflicting --lora-rank: exit %d, %q", code, stderr)
	}
	code, _, stderr = run(t, "", append(base, "--lora-rank", "8")...)
	if code != 0 {
		t.Fatalf("dpo --ref-adapter: exit %d, %s", code, stderr)
	}
	b, _ := os.ReadFile(filepath.Join(out, "config.json"))
	if !strings.Contains(string(b), `"RefAdapter"`) || !strings.Contains(string(b), `"ref_adapter"`) {
		t.Errorf("config.json lacks the reference adapter or its hash:\n%s", b)
	}
	// resuming with the same --ref-adapter is no change
	if code, _, stderr := run(t, "", "train", "--resume", out, "--ref-adapter", adapter); code != 0 {
		t.Errorf("resume repeating --ref-adapter: exit %d, %s", code, stderr)
	}
}
