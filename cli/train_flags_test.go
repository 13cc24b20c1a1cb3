package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every method refuses a flag it does not use, with exit 2 and one line
// naming the flag and the method, before anything is read or written.
func TestTrainInapplicableFlags(t *testing.T) {
	data := quickData(t, 8)
	pairRun := func(method string) []string {
		return []string{"train", "--method", method, "--model", tinyModel, "--data", data}
	}
	rlRun := func(method string) []string {
		return []string{"train", "--method", method, "--model", tinyModel, "--prompts", rlPrompts, "--reward", "contains:z"}
	}
	cases := []struct {
		args []string
		flag []string
	}{
		{pairRun("sft"), []string{"--beta", "0.2"}},
		{pairRun("sft"), []string{"--ref-adapter", "x.gguf"}},
		{pairRun("dpo"), []string{"--margin-from", "scores"}},
		{pairRun("dpo"), []string{"--group", "4"}},
		{pairRun("ipo"), []string{"--label-smoothing", "0.1"}},
		{pairRun("cdpo"), []string{"--center-coef", "0.1"}},
		{pairRun("hinge"), []string{"--prompts", rlPrompts}},
		{pairRun("rm"), []string{"--rpo-alpha", "1"}},
		{pairRun("rm"), []string{"--beta", "0.1"}},
		{pairRun("rm"), []string{"--label-smoothing", "0.1"}},
		{pairRun("rm"), []string{"--init-adapter", "x.gguf"}},
		{pairRun("kto"), []string{"--label-smoothing", "0.1"}},
		{pairRun("kto"), []string{"--rpo-alpha", "1"}},
		{pairRun("kto"), []string{"--margin-from", "scores"}},
		{pairRun("kto"), []string{"--group", "4"}},
		{pairRun("dpo"), []string{"--desirable-weight", "1.2"}},
		{pairRun("sft"), []string{"--undesirable-weight", "1.2"}},
		{rlRun("grpo"), []string{"--desirable-weight", "1.2"}},
		{rlRun("ppo"), []string{"--grad-accum", "2"}},
		{rlRun("ppo"), []string{"--batch-tokens", "512"}},
		{rlRun("ppo"), []string{"--label-smoothing", "0.1"}},
		{rlRun("ppo"), []string{"--rpo-alpha", "1"}},
		{rlRun("ppo"), []string{"--margin-from", "scores"}},
		{rlRun("ppo"), []string{"--center-coef", "1"}},
		{rlRun("ppo"), []string{"--skip-invalid"}},
		{rlRun("ppo"), []string{"--beta-table", "betas.json"}},
		{rlRun("grpo"), []string{"--kl-coef", "0.1"}},
		{rlRun("grpo"), []string{"--kl-target", "1"}},
		{rlRun("grpo"), []string{"--value-lr", "1e-3"}},
		{rlRun("grpo"), []string{"--eval-data", data}},
		{pairRun("orpo"), []string{"--beta", "0.2"}},
		{pairRun("orpo"), []string{"--beta-table", "betas.json"}},
		{pairRun("orpo"), []string{"--label-smoothing", "0.1"}},
		{pairRun("orpo"), []string{"--rpo-alpha", "1"}},
		{pairRun("orpo"), []string{"--ref-adapter", "x.gguf"}},
		{pairRun("orpo"), []string{"--simpo-gamma", "0.5"}},
		{pairRun("simpo"), []string{"--orpo-lambda", "0.1"}},
		{pairRun("simpo"), []string{"--beta-table", "betas.json"}},
		{pairRun("simpo"), []string{"--ref-adapter", "x.gguf"}},
		{pairRun("simpo"), []string{"--margin-from", "scores"}},
		{pairRun("dpo"), []string{"--orpo-lambda", "0.1"}},
		{pairRun("dpo"), []string{"--simpo-gamma", "0.5"}},
		{pairRun("sft"), []string{"--orpo-lambda", "0.1"}},
		{pairRun("rm"), []string{"--simpo-gamma", "0.5"}},
		{rlRun("grpo"), []string{"--orpo-lambda", "0.1"}},
		{rlRun("ppo"), []string{"--simpo-gamma", "0.5"}},
	}
	for _, c := range cases {
		out := filepath.Join(t.TempDir(), "run")
		args := append(append(c.args, "--out", out), c.flag...)
		method := c.args[2]
		code, stdout, errs := run(t, "", args...)
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if code != ExitUsage || len(lines) != 1 || !strings.Contains(lines[0], c.flag[0]) || !strings.Contains(lines[0], "--method "+method) || stdout != "" {
			t.Errorf("%s %v: exit %d, stderr %q; want exit 2 and one line naming %s and --method %s", method, c.flag, code, errs, c.flag[0], method)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s %v: created %s", method, c.flag, out)
		}
	}
	// bad values of the new methods' own settings are usage errors too
	for _, c := range []struct {
		method string
		flag   []string
	}{
		{"orpo", []string{"--orpo-lambda", "0"}},
		{"orpo", []string{"--orpo-lambda", "-1"}},
		{"simpo", []string{"--beta", "0"}},
		{"simpo", []string{"--simpo-gamma", "-0.5"}},
		{"simpo", []string{"--label-smoothing", "0.5"}},
	} {
		out := filepath.Join(t.TempDir(), "run")
		code, stdout, errs := run(t, "", append(append(pairRun(c.method), "--out", out), c.flag...)...)
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if code != ExitUsage || len(lines) != 1 || !strings.Contains(lines[0], c.flag[0]) || stdout != "" {
			t.Errorf("%s %v: exit %d, stderr %q; want exit 2 and one line naming %s", c.method, c.flag, code, errs, c.flag[0])
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s %v: created %s", c.method, c.flag, out)
		}
	}
	// an exported ALIGN_* variable for a flag the method does not use is
	// refused too, and the message says where the value came from
	t.Setenv("ALIGN_GROUP", "4")
	code, _, errs := run(t, "", append(pairRun("dpo"), "--out", filepath.Join(t.TempDir(), "run"))...)
	if code != ExitUsage || !strings.Contains(errs, "--group") || !strings.Contains(errs, "ALIGN_GROUP") {
		t.Errorf("ALIGN_GROUP with dpo: exit %d, %q", code, errs)
	}
	os.Unsetenv("ALIGN_GROUP")
	t.Setenv("ALIGN_SIMPO_GAMMA", "1")
	code, _, errs = run(t, "", append(pairRun("orpo"), "--out", filepath.Join(t.TempDir(), "run"))...)
	if code != ExitUsage || !strings.Contains(errs, "--simpo-gamma") || !strings.Contains(errs, "ALIGN_SIMPO_GAMMA") {
		t.Errorf("ALIGN_SIMPO_GAMMA with orpo: exit %d, %q", code, errs)
	}
}

// Late failures the help promises as usage errors are found before
// anything is read: --group beyond one batched generation, a LoRA rank no
// model has (issue 21 item 8).
func TestTrainRefusesImpossibleSizes(t *testing.T) {
	data := quickData(t, 8)
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--method", "grpo", "--prompts", rlPrompts, "--reward", "contains:z", "--group", "257"}, "--group"},
		{[]string{"--method", "grpo", "--prompts", rlPrompts, "--reward", "contains:z", "--group", "64", "--rollout-batch", "8"}, "--rollout-batch"},
		{[]string{"--method", "dpo", "--data", data, "--lora-rank", "100000"}, "--lora-rank"},
		{[]string{"--method", "ppo", "--prompts", rlPrompts, "--reward", "contains:z", "--lora-rank", "100000"}, "--lora-rank"},
	} {
		out := filepath.Join(t.TempDir(), "run")
		args := append([]string{"train", "--model", tinyModel, "--out", out}, c.args...)
		code, _, errs := run(t, "", args...)
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if code != ExitUsage || len(lines) != 1 || !strings.HasPrefix(lines[0], "align: error: "+c.flag) || strings.Contains(errs, "(align_") {
			t.Errorf("%v: exit %d, stderr %q", c.args, code, errs)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: created %s", c.args, out)
		}
	}
}

// Issue 21 item 5: an RL run stores its reward spec with absolute paths and
// hashes the files its terms read, so a resume from another directory reads
// the same catalog and one edited while the run was paused is refused; a
// resume that names another method is refused; repeating the run's --model
// or exporting its ALIGN_METHOD does not block a resume.
func TestTrainRLResumeRules(t *testing.T) {
	catalog := filepath.Join(t.TempDir(), "catalog.json")
	b, err := os.ReadFile("../testdata/catalog.json")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(catalog, b, 0o644)
	wd, _ := os.Getwd()
	t.Chdir(filepath.Dir(catalog))
	model, prompts := filepath.Join(wd, tinyModel), filepath.Join(wd, rlPrompts)
	if filepath.IsAbs(tinyModel) {
		model = tinyModel
	}
	out := filepath.Join(t.TempDir(), "grpo")
	mustTrain(t, "", "train", "--method", "grpo", "--model", model, "--prompts", prompts, "--reward", "rules:catalog.json",
		"--out", out, "--max-steps", "1", "--rollout-batch", "2", "--group", "2", "--max-new-tokens", "4", "--eval-split", "0", "--threads", "2")
	t.Chdir(t.TempDir()) // elsewhere: catalog.json does not resolve here
	code, _, errs := run(t, "", "train", "--resume", out, "--method", "ppo")
	if code != ExitUsage || !strings.Contains(errs, "--method") {
		t.Errorf("--resume of a GRPO run with --method ppo: exit %d, %q", code, errs)
	}
	t.Setenv("ALIGN_METHOD", "grpo")
	if code, _, errs := run(t, "", "train", "--resume", out, "--model", model, "--max-steps", "2", "--threads", "2"); code != 0 {
		t.Errorf("resume from another directory with the run's --model and ALIGN_METHOD: exit %d, %q", code, errs)
	}
	os.WriteFile(catalog, append(b, ' '), 0o644)
	code, _, errs = run(t, "", "train", "--resume", out, "--max-steps", "3", "--threads", "2")
	if code == 0 || !strings.Contains(errs, "catalog.json") || !strings.Contains(errs, "changed") {
		t.Errorf("resume after the rules catalog changed: exit %d, %q", code, errs)
	}
}

// --method orpo and simpo train through the command: their own settings
// are stored and a resume may repeat them but not change them, and
// neither run computes or keeps reference log-probs.
func TestTrainORPOSimPO(t *testing.T) {
	data := quickData(t, 16)
	for _, c := range []struct{ method, flag, value, other string }{
		{"orpo", "--orpo-lambda", "0.2", "0.3"},
		{"simpo", "--simpo-gamma", "0.7", "0.8"},
	} {
		out := filepath.Join(t.TempDir(), "run")
		code, _, errs := run(t, "", "train", "--method", c.method, "--model", tinyModel, "--data", data, "--eval-split", "0.25", "--out", out,
			"--max-steps", "1", "--batch-tokens", "384", "--threads", "2", c.flag, c.value)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.method, code, errs)
		}
		if _, err := os.Stat(filepath.Join(out, "reference.json")); err == nil {
			t.Errorf("%s: the run kept reference log-probs", c.method)
		}
		b, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
		if c.method == "orpo" && !strings.Contains(string(b), `"log_odds_ratio"`) {
			t.Errorf("orpo: metrics without log_odds_ratio: %s", b)
		}
		if code, _, errs := run(t, "", "train", "--resume", out, "--max-steps", "2", "--threads", "2", c.flag, c.other); code != ExitUsage || !strings.Contains(errs, c.flag) {
			t.Errorf("%s: resume changing %s: exit %d: %s", c.method, c.flag, code, errs)
		}
		if code, _, errs := run(t, "", "train", "--resume", out, "--max-steps", "2", "--threads", "2", "--method", c.method, c.flag, c.value); code != 0 {
			t.Errorf("%s: resume repeating %s %s: exit %d: %s", c.method, c.flag, c.value, code, errs)
		}
		// align bench train times the method's step, with no reference forward
		code, stdout, errs := run(t, "", "bench", "train", "--model", tinyModel, "--method", c.method, "--seq", "16", "--steps", "1", "--threads", "2", "--no-baseline", "--json")
		var res map[string]any
		if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil {
			t.Fatalf("bench %s: exit %d: %s", c.method, code, errs)
		}
		if _, ok := res["reference_ms"]; ok || res["method"] != c.method || !(res["step_ms"].(float64) > 0) {
			t.Errorf("bench %s: %v", c.method, res)
		}
	}
}
