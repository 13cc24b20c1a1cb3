package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// align train formats pairs with --chat-template FILE and
// --chat-template-kwargs: a template whose kwarg pads every turn makes the
// prompts too long for --max-length, which the summary counts; both are
// stored in the run's config, and a resume refuses a changed template file.
func TestTrainChatTemplateFile(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := range 8 {
		lines = append(lines, fmt.Sprintf(`{"id": "p%d", "prompt": "Is Berserk finished?", "chosen": "Not yet.", "rejected": "Yes."}`, i))
	}
	data := filepath.Join(dir, "pairs.jsonl")
	os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	tmpl := filepath.Join(dir, "chat.jinja")
	os.WriteFile(tmpl, []byte("{% for m in messages %}{{ m.role }}: {{ m.content }}{{ pad | default('') }}\n{% endfor %}"+
		"{% if add_generation_prompt %}assistant: {% endif %}"), 0o644)
	pad := strings.Repeat(" manga", 80)
	train := func(out string, extra ...string) (int, string, string) {
		args := append([]string{"train", "--method", "sft", "--model", tinyModel, "--data", data, "--eval-split", "0", "--out", out,
			"--max-length", "64", "--max-steps", "1", "--warmup-steps", "0", "--threads", "2", "--json"}, extra...)
		return run(t, "", args...)
	}
	cut := func(stdout string) int {
		var res struct {
			Truncation struct {
				PromptsCut int `json:"prompts_cut"`
			} `json:"truncation"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("summary %q: %v", stdout, err)
		}
		return res.Truncation.PromptsCut
	}
	code, stdout, errs := train(filepath.Join(dir, "plain"), "--chat-template", tmpl)
	if code != 0 {
		t.Fatalf("train --chat-template: exit %d: %s", code, errs)
	}
	if n := cut(stdout); n != 0 {
		t.Fatalf("the template without pad cut %d prompts", n)
	}
	out := filepath.Join(dir, "padded")
	code, stdout, errs = train(out, "--chat-template", tmpl, "--chat-template-kwargs", `pad="`+pad+`"`)
	if code != 0 {
		t.Fatalf("train --chat-template-kwargs: exit %d: %s", code, errs)
	}
	if n := cut(stdout); n != len(lines) {
		t.Errorf("the padded template cut %d of %d prompts", n, len(lines))
	}
	var cfg struct{ ChatTemplate, ChatTemplateKwargs string }
	if err := json.Unmarshal([]byte(slurp(t, filepath.Join(out, "config.json"))), &cfg); err != nil {
		t.Fatal(err)
	}
	if abs, _ := filepath.Abs(tmpl); cfg.ChatTemplate != abs || !strings.Contains(cfg.ChatTemplateKwargs, "manga") {
		t.Errorf("config.json stores chat template %q and kwargs %q", cfg.ChatTemplate, cfg.ChatTemplateKwargs)
	}
	os.WriteFile(tmpl, []byte("{% for m in messages %}{{ m.content }}\n{% endfor %}"), 0o644)
	code, _, errs = run(t, "", "train", "--resume", out, "--max-steps", "2", "--threads", "2")
	if code == 0 || !strings.Contains(errs, "--chat-template") || !strings.Contains(errs, "changed") {
		t.Errorf("resume after the template changed: exit %d: %s", code, errs)
	}
	code, _, errs = train(filepath.Join(dir, "bad"), "--chat-template-kwargs", "=x")
	if code != 2 || !strings.Contains(errs, "--chat-template-kwargs") {
		t.Errorf("bad kwargs: exit %d: %s", code, errs)
	}
	code, _, errs = train(filepath.Join(dir, "missing"), "--chat-template", filepath.Join(dir, "none.jinja"))
	if code == 0 || !strings.Contains(errs, "none.jinja") {
		t.Errorf("missing template: exit %d: %s", code, errs)
	}
}

// eval's generations and collect's local: models render with
// --chat-template: a template that refuses every conversation stops them
// with its message.
func TestEvalAndCollectUseChatTemplate(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "refuse.jinja")
	os.WriteFile(tmpl, []byte("{{ raise_exception('this template refuses everything') }}"), 0o644)
	code, _, errs := run(t, "", "eval", "--model", tinyModel, "--prompts", "../testdata/prompts/sample.jsonl",
		"--judge", "rules:../testdata/catalog.json", "--out", filepath.Join(dir, "eval"), "--samples", "1", "-n", "4",
		"--threads", "2", "--chat-template", tmpl)
	t.Logf("eval: exit %d: %s", code, strings.TrimSpace(errs))
	if code == 0 || !strings.Contains(errs, "this template refuses everything") {
		t.Errorf("eval --chat-template: exit %d: %s", code, errs)
	}
	code, _, errs = run(t, "", "collect", "--prompts", "../testdata/prompts/sample.jsonl", "--generator", "local:"+tinyModel,
		"--out", filepath.Join(dir, "pairs.jsonl"), "--n", "2", "--threads", "2", "--chat-template", tmpl)
	t.Logf("collect: exit %d: %s", code, strings.TrimSpace(errs))
	if code == 0 || !strings.Contains(errs, "this template refuses everything") {
		t.Errorf("collect --chat-template: exit %d: %s", code, errs)
	}
}

// PPO/GRPO rollouts format their prompts with --chat-template too.
func TestRLUsesChatTemplate(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "refuse.jinja")
	os.WriteFile(tmpl, []byte("{{ raise_exception('this template refuses everything') }}"), 0o644)
	code, _, errs := run(t, "", "train", "--method", "grpo", "--model", tinyModel, "--prompts", rlPrompts, "--reward", "contains:z",
		"--out", filepath.Join(dir, "run"), "--max-steps", "1", "--threads", "2", "--chat-template", tmpl)
	t.Logf("grpo: exit %d: %s", code, strings.TrimSpace(errs))
	if code == 0 || !strings.Contains(errs, "this template refuses everything") {
		t.Errorf("train --method grpo --chat-template: exit %d: %s", code, errs)
	}
}
