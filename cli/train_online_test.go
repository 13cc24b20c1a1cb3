package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

// onlineJudge is an OpenAI-compatible judge for the kill test: it prefers
// the longer response (consistent in both orders), takes a few
// milliseconds per call so a kill lands between calls, and counts the
// calls per pair of responses shown.
type onlineJudge struct {
	url  string
	mu   sync.Mutex
	seen map[string]int
}

func newOnlineJudge(t *testing.T, delay time.Duration) *onlineJudge {
	j := &onlineJudge{seen: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(delay)
		var req struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		json.Unmarshal(body, &req)
		text := ""
		for _, m := range req.Messages {
			text += m.Content
		}
		a, b := "", ""
		if m := reA.FindStringSubmatch(text); m != nil {
			a = m[1]
		}
		if m := reB.FindStringSubmatch(text); m != nil {
			b = m[1]
		}
		j.mu.Lock()
		j.seen[a+"\x00"+b]++
		j.mu.Unlock()
		winner, sa, sb := "tie", 3, 3
		switch {
		case len(a) > len(b):
			winner, sa, sb = "A", 5, 1
		case len(b) > len(a):
			winner, sa, sb = "B", 1, 5
		}
		content := fmt.Sprintf(`{"winner":%q,"scores":{"A":{"tone":%d,"accuracy":%d,"helpfulness":%d,"safety":%d},"B":{"tone":%d,"accuracy":%d,"helpfulness":%d,"safety":%d}},"reasoning":"length","objective":"tone"}`,
			winner, sa, sa, sa, sa, sb, sb, sb, sb)
		out, _ := json.Marshal(map[string]any{"model": "fake", "choices": []any{map[string]any{
			"message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 5}})
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	j.url = srv.URL
	return j
}

// calls is the number of calls, and the pairs of responses asked more
// than once.
func (j *onlineJudge) calls() (n int, twice []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for k, c := range j.seen {
		n += c
		if c > 1 {
			twice = append(twice, k)
		}
	}
	return n, twice
}

// verdictsIn is the recorded verdicts of judged.jsonl, as "A\x00B" keys of
// the responses shown (what the judge counts).
func verdictsIn(t *testing.T, dir string) map[string]bool {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "judged.jsonl"))
	texts := map[int][]string{}
	out := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct {
			Kind, Order string
			Step, A, B  int
			Texts       []string
		}
		if json.Unmarshal([]byte(line), &r) != nil {
			continue // a torn last line
		}
		switch r.Kind {
		case "samples":
			texts[r.Step] = r.Texts
		case "verdict":
			x, y := texts[r.Step][r.A], texts[r.Step][r.B]
			if r.Order == "ba" {
				x, y = y, x
			}
			out[x+"\x00"+y] = true
		}
	}
	return out
}

// kill -9 in the middle of an online DPO step's judging, then --resume:
// no verdict the run recorded is asked for again (only the calls in flight
// at the kill are), every comparison is recorded once, and the run ends
// with an uninterrupted run's pairs and adapter.
func TestTrainOnlineDPOKill9(t *testing.T) {
	args := func(out, url string) []string {
		return []string{"train", "--method", "online-dpo", "--model", tinyModel, "--prompts", rlPrompts, "--eval-split", "0",
			"--judge", "openai:" + url + "/v1#fake", "--out", out, "--max-steps", "4", "--save-every", "1", "--rounds", "2",
			"--rollout-batch", "4", "--samples", "2", "--max-new-tokens", "8", "--lora-rank", "4", "--lora-alpha", "8", "--lr", "5e-3", "--threads", "2"}
	}
	ja := newOnlineJudge(t, 0)
	ref := filepath.Join(t.TempDir(), "ref")
	if code, _, errs := run(t, "", args(ref, ja.url)...); code != 0 {
		t.Fatalf("uninterrupted: exit %d: %s", code, errs)
	}
	total, _ := ja.calls()

	jb := newOnlineJudge(t, 15*time.Millisecond)
	out := filepath.Join(t.TempDir(), "killed")
	cmd, stderr, exited := startHelper(t, args(out, jb.url))
	var atKill map[string]bool
	for atKill == nil {
		select {
		case err := <-exited:
			t.Fatalf("the run ended before the kill: %v\n%s", err, stderr.String())
		case <-time.After(2 * time.Millisecond):
		}
		// step 2's third verdict (8 a step): in the middle of a step
		b, _ := os.ReadFile(filepath.Join(out, "judged.jsonl"))
		if bytes.Count(b, []byte(`"kind":"verdict"`)) >= 11 {
			cmd.Process.Kill()
			<-exited
			atKill = verdictsIn(t, out)
		}
	}
	before, _ := jb.calls()
	code, _, errs := run(t, "", "train", "--resume", out, "--threads", "2")
	if code != 0 {
		t.Fatalf("resume after kill -9: exit %d: %s", code, errs)
	}
	after, twice := jb.calls()
	t.Logf("uninterrupted %d judge calls; killed with %d recorded of %d made; %d in all after the resume, %d asked again (in flight at the kill)",
		total, len(atKill), before, after, len(twice))
	for _, k := range twice {
		if atKill[k] {
			t.Errorf("a verdict recorded before the kill was asked again: %q", k)
		}
	}
	if len(twice) > 4 || after-len(twice) != total {
		t.Errorf("judge calls: %d in all, %d asked twice; the run needs %d", after, len(twice), total)
	}
	if got := verdictsIn(t, out); len(got) != total {
		t.Errorf("judged.jsonl records %d distinct verdicts, want %d", len(got), total)
	}
	pa := strings.ReplaceAll(slurp(t, filepath.Join(ref, "pairs.jsonl")), ja.url, "URL")
	pb := strings.ReplaceAll(slurp(t, filepath.Join(out, "pairs.jsonl")), jb.url, "URL")
	if pa != pb {
		t.Errorf("pairs.jsonl differs after kill -9 and resume")
	}
	x, _ := os.ReadFile(filepath.Join(ref, "adapter.gguf"))
	y, _ := os.ReadFile(filepath.Join(out, "adapter.gguf"))
	if len(x) == 0 || !bytes.Equal(x, y) {
		t.Errorf("adapters differ after kill -9 and resume")
	}
}
