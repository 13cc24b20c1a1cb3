package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// online-dpo's flags: inapplicable ones are refused with exit 2 naming
// flag and method, before anything is written; it needs one ranker.
func TestTrainOnlineDPOUsage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	base := []string{"--method", "online-dpo", "--model", tinyModel, "--prompts", rlPrompts, "--out", out}
	cases := []struct {
		args []string
		want string
	}{
		{base, "needs --judge SPEC"},
		{append(base, "--judge", "rules:../testdata/catalog.json", "--reward", "contains:z"), "give one"},
		{append(base, "--reward", "contains:z", "--group", "4"), "--group does not apply to --method online-dpo"},
		{append(base, "--reward", "contains:z", "--kl-coef", "0.1"), "--kl-coef does not apply to --method online-dpo"},
		{append(base, "--reward", "contains:z", "--data", "x.jsonl"), "--data does not apply to --method online-dpo"},
		{append(base, "--reward", "contains:z", "--samples", "1"), "--samples must be in [2, 256]"},
		{append(base, "--reward", "contains:z", "--rounds", "0"), "--rounds must be at least 1"},
		{append(base, "--reward", "contains:z", "--max-usd", "-1"), "--max-usd must be a finite amount"},
		{append(base, "--judge", "contains:z"), "not a pairwise judge"},
		{[]string{"--method", "grpo", "--model", tinyModel, "--prompts", rlPrompts, "--reward", "contains:z", "--out", out, "--judge", "rules:x.json"}, "--judge does not apply to --method grpo"},
		{[]string{"--method", "grpo", "--model", tinyModel, "--prompts", rlPrompts, "--reward", "contains:z", "--out", out, "--samples", "4"}, "PPO and GRPO take --group"},
		{[]string{"--method", "dpo", "--model", tinyModel, "--data", "x.jsonl", "--out", out, "--max-usd", "1"}, "--max-usd does not apply to --method dpo"},
		{[]string{"--method", "dpo", "--model", tinyModel, "--data", "x.jsonl", "--out", out, "--rounds", "2"}, "--rounds does not apply to --method dpo"},
	}
	for _, c := range cases {
		code, _, errs := run(t, "", append([]string{"train"}, c.args...)...)
		if code != ExitUsage || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line naming %s", c.args, code, errs, ExitUsage, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: a usage error created %s", c.args, out)
		}
	}
	// a flag a resume may change, given to a run whose method it does not fit
	dpoRun := filepath.Join(t.TempDir(), "dpo")
	os.MkdirAll(dpoRun, 0o755)
	os.WriteFile(filepath.Join(dpoRun, "config.json"), []byte(`{"Method":"dpo","Model":"m.gguf"}`), 0o644)
	if code, _, errs := run(t, "", "train", "--resume", dpoRun, "--max-usd", "1"); code != ExitUsage || !strings.Contains(errs, "--max-usd does not apply to --method dpo") {
		t.Errorf("--resume of a DPO run with --max-usd: exit %d, %q", code, errs)
	}
	code, stdout, _ := run(t, "", "train", "--help")
	for _, want := range []string{"online-dpo", "--judge", "--samples", "--rounds", "--max-usd", "pairs.jsonl"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("train --help does not document %s (exit %d)", want, code)
		}
	}
}

// Online DPO end to end with the rules judge on the tiny fixture: the
// run writes its pairs and judgments, and a resume with more steps
// continues it.
func TestTrainOnlineDPOEndToEnd(t *testing.T) {
	out := filepath.Join(t.TempDir(), "online")
	args := []string{"train", "--method", "online-dpo", "--model", tinyModel, "--prompts", rlPrompts, "--eval-split", "0.25",
		"--judge", "rules:../testdata/catalog.json", "--out", out, "--max-steps", "2", "--rollout-batch", "4", "--samples", "2",
		"--max-new-tokens", "8", "--threads", "2", "--rounds", "2"}
	code, stdout, errs := run(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(stdout, "held-out after") || !strings.Contains(stdout, "pairs: ") || !strings.Contains(errs, "judge call") {
		t.Errorf("stdout %q stderr %q", stdout, errs)
	}
	m := slurp(t, filepath.Join(out, "metrics.jsonl"))
	for _, k := range []string{`"split":"eval"`, `"kl"`, `"pairs"`, `"skipped"`, `"round"`} {
		if !strings.Contains(m, k) {
			t.Errorf("metrics lack %s:\n%s", k, m)
		}
	}
	for _, f := range []string{"judged.jsonl", "pairs.jsonl", "adapter.gguf"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	code, _, errs = run(t, "", "train", "--resume", out, "--samples", "4")
	if code != ExitUsage || !strings.Contains(errs, "--samples cannot change") {
		t.Errorf("resume with --samples: exit %d %q", code, errs)
	}
	code, _, errs = run(t, "", "train", "--resume", out, "--max-steps", "3", "--threads", "2")
	if code != 0 {
		t.Errorf("resume: exit %d %q", code, errs)
	}
}

// PPO and GRPO charge a paid reward judge to OUT/ledger.jsonl: --max-usd
// stops the run with exit 3 and a checkpoint; a resume with a higher cap
// continues, and --force keeps the ledger.
func TestTrainRLMaxUSD(t *testing.T) {
	j := newScoreJudge(t)
	dir := t.TempDir()
	prices := filepath.Join(dir, "prices.json")
	// $1 per 1,000 output tokens: a call's worst case is $1.024 (1,024
	// tokens), each spends $0.005
	os.WriteFile(prices, []byte(`{"models":{"fake":{"input_per_1k":0,"output_per_1k":1}}}`), 0o644)
	out := filepath.Join(dir, "grpo")
	args := []string{"train", "--method", "grpo", "--model", tinyModel, "--prompts", rlPrompts, "--eval-split", "0",
		"--reward", "openai:" + j.url + "/v1#fake", "--prices", prices, "--out", out, "--max-steps", "3", "--save-every", "1",
		"--rollout-batch", "2", "--group", "2", "--max-new-tokens", "4", "--threads", "2"}
	// 4 completions a step; with $1.055 a call is refused once 7 × $0.005
	// plus a worst case would cross it: in step 2
	code, _, errs := run(t, "", append(args, "--max-usd", "1.055")...)
	if code != ExitBudget || !strings.Contains(errs, "budget reached") {
		t.Fatalf("--max-usd 1.055: exit %d, want %d: %s", code, ExitBudget, errs)
	}
	first := j.count()
	ledger := filepath.Join(out, "ledger.jsonl")
	if b, err := os.ReadFile(ledger); err != nil || strings.Count(string(b), "\n") != first || first == 0 {
		t.Fatalf("ledger: %v, %d calls\n%s", err, first, b)
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoints")); err != nil {
		t.Errorf("no checkpoint at the cap: %v", err)
	}
	code, _, errs = run(t, "", "train", "--resume", out, "--max-usd", "5", "--threads", "2")
	if code != 0 {
		t.Fatalf("resume with --max-usd 5: exit %d: %s", code, errs)
	}
	t.Logf("capped after %d calls; %d in all", first, j.count())
	// the resume redoes steps 2 and 3 from step 1's checkpoint (PPO and
	// GRPO do not keep the rewards of a step the cap cut short)
	if first != 7 || j.count()-first != 8 {
		t.Errorf("%d judge calls, then %d on resume; want 7 and 8", first, j.count()-first)
	}
	// a replaced run keeps the ledger: its spending counts against the cap
	code, _, errs = run(t, "", append(args, "--force", "--max-usd", "0.01")...)
	if code != ExitBudget {
		t.Errorf("--force --max-usd 0.01 after $0.07 spent: exit %d: %s", code, errs)
	}
	if b, err := os.ReadFile(ledger); err != nil || strings.Count(string(b), "\n") != j.count() {
		t.Errorf("--force: ledger %v, %d lines", err, strings.Count(string(b), "\n"))
	}
}
