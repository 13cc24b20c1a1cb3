package rl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/align/testgate"
)

// lengthJudge is an OpenAI-compatible judge server for the online DPO
// tests: it prefers the longer response (a tie when both are as long) in
// either order, so its verdicts are consistent, and counts its calls by
// the pair of responses it was shown.
type lengthJudge struct {
	url   string
	mu    sync.Mutex
	calls int
	seen  map[string]int // "A\x00B" → calls answered
	// down: calls are refused (HTTP 400, not retried) and not counted
	down bool
}

func newLengthJudge(t *testing.T) *lengthJudge {
	j := &lengthJudge{seen: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Messages []struct{ Content string } `json:"messages"`
		}
		json.Unmarshal(body, &req)
		text := ""
		for _, m := range req.Messages {
			text += m.Content
		}
		cut := func(tag string) string {
			_, rest, _ := strings.Cut(text, "<"+tag+">\n")
			v, _, _ := strings.Cut(rest, "\n</"+tag+">")
			return v
		}
		a, b := cut("response_A"), cut("response_B")
		j.mu.Lock()
		if j.down {
			j.mu.Unlock()
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":{"message":"judge is down"}}`))
			return
		}
		j.calls++
		j.seen[a+"\x00"+b]++
		j.mu.Unlock()
		winner, sa, sb := "tie", 3, 3
		switch {
		case a == b: // a response scored alone (a scalar reward): by its length
			sa = 1 + len(a)%5
			sb = sa
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

func (j *lengthJudge) count() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.calls
}

// twice lists the comparisons (pair of responses in one order) the judge
// was asked more than once.
func (j *lengthJudge) twice() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []string
	for k, n := range j.seen {
		if n > 1 {
			out = append(out, fmt.Sprintf("%q ×%d", k, n))
		}
	}
	return out
}

// onlineConfig is a small online DPO run on the tiny fixture judged by j.
func onlineConfig(t testing.TB, j *lengthJudge) Config {
	return onlineOn(t, j, fixture(t, "q8_0"))
}

// onlineFake is onlineConfig for the fake (runFake).
func onlineFake(t testing.TB, j *lengthJudge) Config { return onlineOn(t, j, fakeModel(t)) }

func onlineOn(t testing.TB, j *lengthJudge, model string) Config {
	cfg := Defaults(OnlineDPO)
	cfg.Model = model
	cfg.Prompts = toyPrompts
	cfg.EvalSplit = 0 // no held-out evaluation: every judge call is a comparison
	cfg.Out = filepath.Join(t.TempDir(), "run")
	cfg.Judge = "openai:" + j.url + "/v1#fake"
	cfg.MaxNewTokens, cfg.Threads = 8, 2
	cfg.BatchPrompts, cfg.Samples = 4, 2
	cfg.Rank, cfg.Alpha = 4, 8
	cfg.LR = 5e-3
	cfg.Epochs, cfg.MaxSteps, cfg.SaveEvery = 1, 4, 1
	cfg.Rounds = 2
	return cfg
}

// judgedComparisons reads judged.jsonl: each comparison key with its count.
func judgedComparisons(t *testing.T, dir string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, JudgedFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r judgedRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Kind == "verdict" {
			out[fmt.Sprintf("%d:%d-%d:%s", r.Step, r.A, r.B, r.Order)]++
		}
	}
	return out
}

// pairLines is pairs.jsonl's lines, sorted.
func pairLines(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, PairsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	sort.Strings(lines)
	return lines
}

// Online DPO interrupted in the middle of a step's judging and resumed:
// every comparison is judged once over the two processes (the judge's own
// count equals an uninterrupted run's, and no pair of responses is shown
// to it twice), pairs.jsonl holds the same pairs, and the adapter is the
// uninterrupted run's byte for byte.
func TestOnlineDPOResumeJudgesOnce(t *testing.T) {
	ja := newLengthJudge(t)
	a := onlineConfig(t, ja)
	resA, err := Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if resA.Steps != 4 || resA.JudgeCalls != ja.count() || resA.Pairs == 0 {
		t.Fatalf("uninterrupted: %+v, judge served %d calls", resA, ja.count())
	}
	if tw := ja.twice(); len(tw) > 0 {
		t.Fatalf("uninterrupted run asked twice: %v", tw)
	}

	jb := newLengthJudge(t)
	b := onlineConfig(t, jb)
	ctx, cancel := context.WithCancel(context.Background())
	// the 11th verdict is the 3rd of step 2 (8 per step: 4 comparisons in
	// two orders): an interruption in the middle of a step's judging
	b.OnJudged = func(n int) {
		if n == 11 {
			cancel()
		}
	}
	// one verdict at a time: the step is left with 3 of its 8
	defer func(n int) { onlineJudgeWorkers = n }(onlineJudgeWorkers)
	onlineJudgeWorkers = 1
	_, err = Run(ctx, b)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v, want ErrInterrupted", err)
	}
	first := jb.count()
	if first != 11 {
		t.Fatalf("the interrupted run made %d judge calls (the whole run makes %d)", first, ja.count())
	}
	r := Config{Common: run.Common{Out: b.Out, Resume: true, Threads: 2}}
	resB, err := Run(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("uninterrupted: %d judge calls, %d pairs, %d skipped; interrupted after %d calls, resumed with %d more",
		ja.count(), resA.Pairs, resA.Skipped, first, resB.JudgeCalls)
	if jb.count() != ja.count() || resB.JudgeCalls != ja.count()-first {
		t.Errorf("judge calls: %d over both processes, %d uninterrupted", jb.count(), ja.count())
	}
	if tw := jb.twice(); len(tw) > 0 {
		t.Errorf("judged twice across the resume: %v", tw)
	}
	for k, n := range judgedComparisons(t, b.Out) {
		if n != 1 {
			t.Errorf("judged.jsonl records comparison %s %d times", k, n)
		}
	}
	// the same pairs, judged by another server of the same judge
	pa := strings.ReplaceAll(strings.Join(pairLines(t, a.Out), "\n"), ja.url, "URL")
	pb := strings.ReplaceAll(strings.Join(pairLines(t, b.Out), "\n"), jb.url, "URL")
	if pa != pb {
		t.Errorf("pairs.jsonl differs after resume:\n%s\nvs\n%s", pa, pb)
	}
	x, _ := os.ReadFile(filepath.Join(a.Out, "adapter.gguf"))
	y, _ := os.ReadFile(filepath.Join(b.Out, "adapter.gguf"))
	if len(x) == 0 || !bytes.Equal(x, y) {
		t.Errorf("adapters differ after resume (%d and %d bytes)", len(x), len(y))
	}
}

// A spending cap stops online DPO with a budget error (cost.IsBudget)
// and a checkpoint; a resume with a higher cap continues without asking
// the judge again for what it already paid.
func TestOnlineDPOBudget(t *testing.T) {
	ja := newLengthJudge(t)
	a := onlineFake(t, ja)
	if _, err := runFake(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	prices := filepath.Join(t.TempDir(), "prices.json")
	// $1 per 1,000 output tokens: a call's worst case is $1.024 (the
	// verdict's 1,024-token ceiling) and each spends $0.005
	os.WriteFile(prices, []byte(`{"models":{"fake":{"input_per_1k":0,"output_per_1k":1}}}`), 0o644)
	jb := newLengthJudge(t)
	b := onlineFake(t, jb)
	b.Prices = prices
	capUSD := 1.07 // about 10 calls
	b.MaxUSD = &capUSD
	_, err := runFake(context.Background(), b)
	if !cost.IsBudget(err) {
		t.Fatalf("capped run: %v, want a budget error", err)
	}
	first := jb.count()
	if first == 0 || first >= ja.count() {
		t.Fatalf("capped run made %d calls of %d", first, ja.count())
	}
	ledger, err := os.ReadFile(filepath.Join(b.Out, LedgerFile))
	if err != nil || strings.Count(string(ledger), "\n") != first {
		t.Fatalf("ledger: %v, %d lines for %d calls", err, strings.Count(string(ledger), "\n"), first)
	}
	more := 100.0
	r := Config{Common: run.Common{Out: b.Out, Resume: true, Threads: 2}, MaxUSD: &more}
	if _, err := runFake(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	t.Logf("capped at $%.2f after %d calls; resumed, %d in all (uninterrupted %d)", capUSD, first, jb.count(), ja.count())
	if jb.count() != ja.count() {
		t.Errorf("judge calls %d over both processes, %d uninterrupted", jb.count(), ja.count())
	}
	if tw := jb.twice(); len(tw) > 0 {
		t.Errorf("judged twice across the resume: %v", tw)
	}
	x, _ := os.ReadFile(filepath.Join(a.Out, "adapter.gguf"))
	y, _ := os.ReadFile(filepath.Join(b.Out, "adapter.gguf"))
	if len(x) == 0 || !bytes.Equal(x, y) {
		t.Errorf("adapters differ after the capped run's resume")
	}
}

// copyDir copies the files under src to dst (a kill -9 leaves what was
// written and synced, nothing more).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A kill -9 in the middle of a round's judging: the run directory as the
// kill leaves it (copied at the 19th verdict, in step 3, the first of round 2, while
// the loop waits on the judge: no checkpoint is written then) resumes
// without asking the judge again for a verdict it recorded, and ends
// with the uninterrupted run's pairs and adapter.
func TestOnlineDPOKillResume(t *testing.T) {
	defer func(n int) { onlineJudgeWorkers = n }(onlineJudgeWorkers)
	onlineJudgeWorkers = 1
	ja := newLengthJudge(t)
	a := onlineFake(t, ja)
	killed := filepath.Join(t.TempDir(), "killed")
	var atKill int
	a.OnJudged = func(n int) {
		if n == 19 {
			copyDir(t, a.Out, killed)
			atKill = ja.count()
		}
	}
	if _, err := runFake(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	jb := newLengthJudge(t)
	// the resumed run asks jb: point the saved judge spec at it
	cfgPath := filepath.Join(killed, "config.json")
	b, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, bytes.ReplaceAll(b, []byte(ja.url), []byte(jb.url)), 0o644)
	res, err := runFake(context.Background(), Config{Common: run.Common{Out: killed, Resume: true, Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after %d of %d judge calls; the resume made %d (%d pairs in all)", atKill, ja.count(), jb.count(), len(pairLines(t, killed)))
	if atKill != 19 || jb.count() != ja.count()-atKill || res.JudgeCalls != jb.count() {
		t.Errorf("judge calls: %d before the kill, %d after, %d uninterrupted", atKill, jb.count(), ja.count())
	}
	for k, n := range judgedComparisons(t, killed) {
		if n != 1 {
			t.Errorf("judged.jsonl records verdict %s %d times", k, n)
		}
	}
	pa := strings.ReplaceAll(strings.Join(pairLines(t, a.Out), "\n"), ja.url, "URL")
	pb := strings.ReplaceAll(strings.ReplaceAll(strings.Join(pairLines(t, killed), "\n"), jb.url, "URL"), ja.url, "URL")
	if pa != pb {
		t.Errorf("pairs.jsonl differs after the kill and resume")
	}
	x, _ := os.ReadFile(filepath.Join(a.Out, "adapter.gguf"))
	y, _ := os.ReadFile(filepath.Join(killed, "adapter.gguf"))
	if len(x) == 0 || !bytes.Equal(x, y) {
		t.Errorf("adapters differ after the kill and resume")
	}
}

// Iterative online DPO on stories260K with the reward contains:happy: the
// held-out reward (the share of 80 sampled continuations of 40 unseen
// openings with "happy") rises across three rounds, and the KL to the
// base that buys it is reported at each round's end.
func TestOnlineDPOStoriesRounds(t *testing.T) {
	testgate.Slow(t, "online DPO on a real model, 30 steps of 32 samples (about 3 minutes on 2 shared cores)")
	model := testgate.SharedModel(t, "stories260K.gguf")
	lines, err := os.ReadFile("../../testdata/stories/prompts.txt")
	if err != nil {
		t.Fatal(err)
	}
	var ev strings.Builder
	for i, l := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		b, _ := json.Marshal(map[string]string{"id": fmt.Sprint("held-", i), "prompt": l})
		ev.Write(append(b, '\n'))
	}
	evalPath := filepath.Join(t.TempDir(), "eval.jsonl")
	os.WriteFile(evalPath, []byte(ev.String()), 0o644)
	cfg := Defaults(OnlineDPO)
	cfg.Model, cfg.Prompts, cfg.EvalPrompts = model, "../../testdata/stories/train.jsonl", evalPath
	cfg.Out = filepath.Join(t.TempDir(), "run")
	cfg.Reward = "contains:happy"
	cfg.Samples, cfg.BatchPrompts, cfg.MaxNewTokens, cfg.EvalSamples = 4, 8, 32, 2
	cfg.LR, cfg.Rounds, cfg.MaxSteps, cfg.EvalEvery = 1e-3, 3, 30, 10
	cfg.Threads = 2
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var rewards, kls []float64
	for _, row := range readMetrics(t, cfg.Out) {
		if row["split"] == "eval" && int(row["step"].(float64))%10 == 0 {
			rewards = append(rewards, row["reward"].(float64))
			kls = append(kls, row["kl"].(float64))
		}
	}
	t.Logf("held-out reward at the end of rounds 0..3: %.3f; KL to the base %.2f nats per completion; %d pairs, %d prompts skipped",
		rewards, kls, res.Pairs, res.Skipped)
	if len(rewards) != 4 {
		t.Fatalf("%d held-out evaluations at round ends, want 4", len(rewards))
	}
	for r := 1; r < 4; r++ {
		if !(rewards[r] > rewards[r-1]-0.05) || !(kls[r] > 0) || !finite(kls[r]) {
			t.Errorf("round %d: held-out reward %.3f after %.3f, KL %.2f", r, rewards[r], rewards[r-1], kls[r])
		}
	}
	if !(rewards[1] >= rewards[0]+0.1 && rewards[3] >= rewards[0]+0.4) {
		t.Errorf("held-out reward %.3f: want +0.1 after round 1 and +0.4 after round 3", rewards)
	}
}

// Online DPO ranked by a paid scalar reward (an LLM judge scoring each
// sample alone), interrupted after a chunk of rewards: the resumed run
// scores only the samples not yet scored.
func TestOnlineDPORewardResume(t *testing.T) {
	ja := newLengthJudge(t)
	a := onlineFake(t, ja)
	a.Judge, a.Reward = "", "openai:"+ja.url+"/v1#fake"
	resA, err := runFake(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	jb := newLengthJudge(t)
	b := onlineFake(t, jb)
	b.Judge, b.Reward = "", "openai:"+jb.url+"/v1#fake"
	ctx, cancel := context.WithCancel(context.Background())
	b.OnJudged = func(n int) {
		if n == 3 { // step 2's first chunk of 4 rewards
			cancel()
		}
	}
	if _, err := runFake(ctx, b); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	first := jb.count()
	if _, err := runFake(context.Background(), Config{Common: run.Common{Out: b.Out, Resume: true, Threads: 2}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("uninterrupted: %d reward calls, %d pairs; interrupted after %d, resumed with %d", ja.count(), resA.Pairs, first, jb.count()-first)
	if first != 12 || jb.count() != ja.count() || resA.Pairs == 0 {
		t.Errorf("reward calls: %d before the interruption (want 12), %d in all, %d uninterrupted", first, jb.count(), ja.count())
	}
	if tw := jb.twice(); len(tw) > 0 {
		t.Errorf("scored twice: %v", tw)
	}
	x, _ := os.ReadFile(filepath.Join(a.Out, "adapter.gguf"))
	y, _ := os.ReadFile(filepath.Join(b.Out, "adapter.gguf"))
	if len(x) == 0 || !bytes.Equal(x, y) {
		t.Errorf("adapters differ after resume")
	}
}

// A judge that fails in the first step: the run stops with the error but
// keeps what it recorded (no checkpoint yet), and --resume continues
// without asking again for the verdicts it had.
func TestOnlineDPOJudgeFailsFirstStep(t *testing.T) {
	defer func(n int) { onlineJudgeWorkers = n }(onlineJudgeWorkers)
	onlineJudgeWorkers = 1
	j := newLengthJudge(t)
	cfg := onlineFake(t, j)
	cfg.OnJudged = func(n int) {
		if n == 5 {
			j.mu.Lock()
			j.down = true
			j.mu.Unlock()
		}
	}
	_, err := runFake(context.Background(), cfg)
	if err == nil || errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "judge") {
		t.Fatalf("run with a failing judge: %v", err)
	}
	if len(judgedComparisons(t, cfg.Out)) != 5 {
		t.Fatalf("judged.jsonl holds %d verdicts, want the 5 answered", len(judgedComparisons(t, cfg.Out)))
	}
	j.mu.Lock()
	j.down = false
	j.mu.Unlock()
	if _, err := runFake(context.Background(), Config{Common: run.Common{Out: cfg.Out, Resume: true, Threads: 2}}); err != nil {
		t.Fatal(err)
	}
	if j.count() != 32 {
		t.Errorf("%d verdicts answered over both runs, want 32 (4 steps × 8)", j.count())
	}
	if tw := j.twice(); len(tw) > 0 {
		t.Errorf("asked twice: %v", tw)
	}
}

// With --samples 4 each pair is the prompt's best sample against its
// worst: by a pairwise judge (wins minus losses over the six comparisons
// in both orders; the length judge prefers the longer) and by a scalar
// reward (the length judge scoring each sample alone: 1 + length mod 5).
func TestOnlineDPOBestVsWorst(t *testing.T) {
	for _, mode := range []string{"judge", "reward"} {
		t.Run(mode, func(t *testing.T) {
			j := newLengthJudge(t)
			cfg := onlineFake(t, j)
			cfg.Samples, cfg.MaxSteps = 4, 1
			if mode == "reward" {
				cfg.Judge, cfg.Reward = "", "openai:"+j.url+"/v1#fake"
			}
			res, err := runFake(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			calls := 4 * 6 * 2 // prompts × comparisons × orders
			if mode == "reward" {
				calls = 4 * 4
			}
			if j.count() != calls || res.Pairs+res.Skipped != 4 || res.Pairs == 0 {
				t.Fatalf("%d judge calls (want %d), %d pairs, %d skipped", j.count(), calls, res.Pairs, res.Skipped)
			}
			var texts []string
			b, _ := os.ReadFile(filepath.Join(cfg.Out, JudgedFile))
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var r judgedRecord
				json.Unmarshal([]byte(line), &r)
				if r.Kind == "samples" {
					texts = r.Texts
				}
			}
			value := func(s string) int {
				if mode == "reward" {
					return 1 + len(s)%5
				}
				return len(s)
			}
			for _, line := range pairLines(t, cfg.Out) {
				var p struct {
					Chosen, Rejected string
					Indexes          [2]int
				}
				json.Unmarshal([]byte(line), &p)
				lo := p.Indexes[0] / 4 * 4
				hi, low := 0, 1<<30
				for _, s := range texts[lo : lo+4] {
					hi, low = max(hi, value(s)), min(low, value(s))
				}
				if value(p.Chosen) != hi || value(p.Rejected) != low || p.Chosen != texts[p.Indexes[0]] || p.Rejected != texts[p.Indexes[1]] {
					t.Errorf("pair %v: chosen %d, rejected %d; the prompt's samples range %d..%d", p.Indexes, value(p.Chosen), value(p.Rejected), low, hi)
				}
			}
		})
	}
}
