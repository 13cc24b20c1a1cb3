package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/align-dev/align/align/pairs"
)

// align train --method rm, then align score on pairs and on candidates made
// of the same prompts and responses: the same rewards either way, from a
// reward-model run and from any other reward spec.
func TestScorePairsAndCandidates(t *testing.T) {
	data := quickData(t, 16)
	run1 := filepath.Join(t.TempDir(), "rm")
	code, stdout, errs := run(t, "", "train", "--method", "rm", "--model", tinyModel, "--data", data, "--eval-split", "0.25", "--out", run1,
		"--epochs", "1", "--max-steps", "2", "--batch-tokens", "1024", "--lr", "1e-2", "--threads", "2")
	if code != 0 {
		t.Fatalf("train --method rm: exit %d: %s", code, errs)
	}
	if !strings.Contains(stdout, "head: "+filepath.Join(run1, "head.gguf")) || !strings.Contains(stdout, "accuracy") || strings.Contains(stdout, "logps") {
		t.Errorf("train --method rm output:\n%s", stdout)
	}
	ps, _, err := pairs.Load(data, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ps = ps[:5]
	var cand strings.Builder
	for _, p := range ps {
		b, _ := json.Marshal(map[string]any{"id": "c-" + p.ID, "prompt_id": p.ID, "prompt": p.Prompt, "generator": "test",
			"responses": []map[string]any{{"text": p.Chosen}, {"text": p.Rejected}, {"text": "Sorry."}}})
		cand.Write(append(b, '\n'))
	}
	candPath := filepath.Join(t.TempDir(), "cand.jsonl")
	os.WriteFile(candPath, []byte(cand.String()), 0o644)
	pairsPath := filepath.Join(t.TempDir(), "pairs.jsonl")
	if err := pairs.Save(pairsPath, ps); err != nil {
		t.Fatal(err)
	}

	for _, spec := range []string{run1, "rm:" + run1 + ",contains:sorry=0.5", "rules:../testdata/catalog.json"} {
		code, out, errs := run(t, "", "score", "--model", tinyModel, "--reward", spec, "--in", pairsPath, "--out", "-", "--threads", "2")
		if code != 0 {
			t.Fatalf("%s: score pairs: exit %d: %s", spec, code, errs)
		}
		type pairRow struct {
			ID       string   `json:"id"`
			Chosen   *float64 `json:"reward_chosen"`
			Rejected *float64 `json:"reward_rejected"`
		}
		var prs []pairRow
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r pairRow
			if err := json.Unmarshal([]byte(line), &r); err != nil || r.Chosen == nil || r.Rejected == nil {
				t.Fatalf("%s: bad pair row %q", spec, line)
			}
			prs = append(prs, r)
		}
		// candidates, written to a file
		outPath := filepath.Join(t.TempDir(), "scores.jsonl")
		code, _, errs = run(t, "", "score", "--model", tinyModel, "--reward", spec, "--in", candPath, "--out", outPath, "--threads", "2")
		if code != 0 {
			t.Fatalf("%s: score candidates: exit %d: %s", spec, code, errs)
		}
		b, _ := os.ReadFile(outPath)
		type candRow struct {
			ID     string   `json:"id"`
			Index  int      `json:"index"`
			Reward *float64 `json:"reward"`
		}
		var crs []candRow
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r candRow
			if err := json.Unmarshal([]byte(line), &r); err != nil || r.Reward == nil {
				t.Fatalf("%s: bad candidate row %q", spec, line)
			}
			crs = append(crs, r)
		}
		if len(prs) != len(ps) || len(crs) != 3*len(ps) {
			t.Fatalf("%s: %d pair rows and %d candidate rows for %d records", spec, len(prs), len(crs), len(ps))
		}
		for i, p := range ps {
			c0, c1 := crs[3*i], crs[3*i+1]
			if prs[i].ID != p.ID || c0.ID != "c-"+p.ID || c0.Index != 0 || c1.Index != 1 {
				t.Errorf("%s: record %d: ids %q %q, indexes %d %d", spec, i, prs[i].ID, c0.ID, c0.Index, c1.Index)
			}
			// the same tokens packed into other batches: equal up to the
			// kernels' rounding, not bit for bit
			if !closeReward(*prs[i].Chosen, *c0.Reward) || !closeReward(*prs[i].Rejected, *c1.Reward) {
				t.Errorf("%s: pair %s: %g/%g as a pair, %g/%g as candidates", spec, p.ID, *prs[i].Chosen, *prs[i].Rejected, *c0.Reward, *c1.Reward)
			}
		}
		if strings.HasPrefix(spec, "rm:") {
			// "Sorry." gets the reward model's value plus 0.5
			_, one, _ := run(t, "", "score", "--model", tinyModel, "--reward", run1, "--in", candPath, "--out", "-", "--threads", "2")
			var r candRow
			json.Unmarshal([]byte(strings.Split(one, "\n")[2]), &r)
			if got := *crs[2].Reward - *r.Reward; got != 0.5 {
				t.Errorf("contains:sorry=0.5 added %g, want 0.5", got)
			}
		}
	}
}

func TestScoreErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte(`{"id":"a","prompt":"p","chosen":"x","rejected":"y"}`+"\n"+`{"id":"b","prompt":"p"}`+"\n"), 0o644)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--in", bad}, ExitUsage, "--reward is required"},
		{[]string{"--reward", "contains:x"}, ExitUsage, "--in is required"},
		{[]string{"--reward", "judge:x", "--in", bad}, ExitUsage, `term 1 "judge:x"`},
		{[]string{"--reward", "contains:x", "--in", bad, "--out", out}, 1, "bad.jsonl:2: pair"},
		{[]string{"--reward", "contains:x", "--in", "no/such.jsonl"}, 1, "no/such.jsonl"},
	} {
		code, _, errs := run(t, "", append([]string{"score"}, c.args...)...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, %q; want %d with %q", c.args, code, errs, c.code, c.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed score left a partial output file")
	}
	// standard input, one pair
	code, stdout, errs := run(t, `{"id":"a","prompt":"p","chosen":"Yes, sorry","rejected":"no"}`, "score", "--reward", "contains:SORRY", "--in", "-")
	if code != 0 || strings.TrimSpace(stdout) != `{"id":"a","reward_chosen":1,"reward_rejected":0,"spec":"contains:SORRY=1"}` {
		t.Errorf("stdin: exit %d, %q, %s", code, stdout, errs)
	}
}

// --out may not name anything score reads: the pairs, the base model, a
// reward model run's files or the model that run names. Each is refused
// with exit 2 and left as it was.
func TestScoreOutIsAnInput(t *testing.T) {
	dir := t.TempDir()
	pairsPath := filepath.Join(dir, "pairs.jsonl")
	pairsText := `{"id":"a","prompt":"p","chosen":"x","rejected":"y"}` + "\n"
	os.WriteFile(pairsPath, []byte(pairsText), 0o644)
	model := filepath.Join(dir, "model.gguf")
	os.WriteFile(model, []byte("GGUF model bytes"), 0o644)
	// a reward-model run as align train --method rm leaves it
	rm := filepath.Join(dir, "rm")
	os.Mkdir(rm, 0o755)
	cfg, _ := json.Marshal(map[string]any{"Method": "rm", "Model": model})
	os.WriteFile(filepath.Join(rm, "config.json"), cfg, 0o644)
	for _, f := range []string{"adapter.gguf", "head.gguf"} {
		os.WriteFile(filepath.Join(rm, f), []byte("GGUF "+f), 0o644)
	}
	catalog := filepath.Join(dir, "catalog.json")
	os.WriteFile(catalog, []byte(`{}`), 0o644)
	for _, c := range []struct {
		name string
		args []string
		out  string
	}{
		{"the pairs", []string{"--reward", "contains:x"}, pairsPath},
		{"--model", []string{"--reward", "contains:x", "--model", model}, model},
		{"the run's head", []string{"--reward", rm}, filepath.Join(rm, "head.gguf")},
		{"the run's adapter", []string{"--reward", "rm:" + rm + "=2"}, filepath.Join(rm, "adapter.gguf")},
		{"the run's config", []string{"--reward", rm}, filepath.Join(rm, "config.json")},
		{"the run's base model", []string{"--reward", rm}, model},
		{"the rules catalog", []string{"--reward", "rules:" + catalog}, catalog},
		{"the ledger", []string{"--reward", "contains:x", "--ledger", filepath.Join(dir, "l.jsonl")}, filepath.Join(dir, "l.jsonl")},
	} {
		before, _ := os.ReadFile(c.out)
		code, _, errs := run(t, "", append([]string{"score", "--in", pairsPath, "--out", c.out}, c.args...)...)
		if code != ExitUsage || !strings.Contains(errs, "refusing to write over what is read") && !strings.Contains(errs, "are the same file") {
			t.Errorf("%s: exit %d, %q; want %d, refusing", c.name, code, errs, ExitUsage)
		}
		if after, _ := os.ReadFile(c.out); string(after) != string(before) {
			t.Errorf("%s: %s changed", c.name, c.out)
		}
	}
	// an existing file that score did not write is not added to either
	other := filepath.Join(dir, "notes.jsonl")
	os.WriteFile(other, []byte(`{"note":"mine"}`+"\n"), 0o644)
	if code, _, errs := run(t, "", "score", "--in", pairsPath, "--reward", "contains:x", "--out", other); code == 0 || !strings.Contains(errs, "notes.jsonl:1: not a line of align score") {
		t.Errorf("score into a file it did not write: exit %d, %s", code, errs)
	}
}

// scoreJudge is an OpenAI-compatible judge for score's tests: every verdict
// is the same; each call reports 5 output tokens. Calls after failAfter
// (0: never) get an answer without JSON, so they fail.
type scoreJudge struct {
	url       string
	mu        sync.Mutex
	calls     int
	failAfter int
}

func newScoreJudge(t *testing.T) *scoreJudge {
	j := &scoreJudge{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		j.mu.Lock()
		j.calls++
		fail := j.failAfter > 0 && j.calls > j.failAfter
		j.mu.Unlock()
		content := `{"winner":"tie","scores":{"A":{"tone":4,"accuracy":4,"helpfulness":4,"safety":4},"B":{"tone":4,"accuracy":4,"helpfulness":4,"safety":4}},"reasoning":"same","objective":"tone"}`
		if fail {
			content = "no verdict"
		}
		b, _ := json.Marshal(map[string]any{"model": "fake", "choices": []any{map[string]any{
			"message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 5}})
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	j.url = srv.URL
	return j
}

// reset zeroes the call count and sets failAfter.
func (j *scoreJudge) reset(failAfter int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls, j.failAfter = 0, failAfter
}

func (j *scoreJudge) count() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.calls
}

// scoreIDs reads a score output file: each pair id with its line count.
func scoreIDs(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct {
			ID     string   `json:"id"`
			Chosen *float64 `json:"reward_chosen"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Chosen == nil {
			t.Fatalf("%s: bad line %q", path, line)
		}
		ids[r.ID]++
	}
	return ids
}

// A paid judge: score appends as it goes, a rerun skips what was written
// (dropping a torn last line) and pays only for the rest; --max-usd stops
// with exit 3 before the ledger's total could cross it.
func TestScoreResumesAndCaps(t *testing.T) {
	dir := t.TempDir()
	var in strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&in, `{"id":"p%d","prompt":"q%d","chosen":"yes %d","rejected":"no %d"}`+"\n", i, i, i, i)
	}
	pairsPath := filepath.Join(dir, "pairs.jsonl")
	os.WriteFile(pairsPath, []byte(in.String()), 0o644)
	j := newScoreJudge(t)
	spec := "openai:" + j.url + "/v1#fake"
	out := filepath.Join(dir, "scores.jsonl")
	args := []string{"score", "--reward", spec, "--in", pairsPath, "--out", out}

	// the judge fails from its 17th call on: the first two chunks of four
	// pairs (16 calls) are kept
	j.reset(16)
	code, _, errs := run(t, "", args...)
	if code != 1 {
		t.Fatalf("failing judge: exit %d: %s", code, errs)
	}
	if ids := scoreIDs(t, out); len(ids) != 8 {
		t.Fatalf("after the failure: %d pairs written, want 8 (%v)", len(ids), ids)
	}
	// a crash tore the last line
	f, _ := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"p8","reward_ch`)
	f.Close()
	j.reset(0)
	code, _, errs = run(t, "", args...)
	if code != 0 {
		t.Fatalf("rerun: exit %d: %s", code, errs)
	}
	if j.count() != 4 {
		t.Errorf("the rerun made %d judge calls, want 4 (2 pairs left)", j.count())
	}
	ids := scoreIDs(t, out)
	for i := 0; i < 10; i++ {
		if ids[fmt.Sprint("p", i)] != 1 {
			t.Errorf("pair p%d written %d times", i, ids[fmt.Sprint("p", i)])
		}
	}
	if !strings.Contains(errs, "8 records already there") {
		t.Errorf("rerun summary: %s", errs)
	}
	// another spec into the same file is refused
	if code, _, errs := run(t, "", "score", "--reward", "contains:yes", "--in", pairsPath, "--out", out); code != 1 || !strings.Contains(errs, "refusing to mix them") {
		t.Errorf("another --reward into the file: exit %d, %s", code, errs)
	}

	// --max-usd: $1 per 1,000 output tokens, so a call's worst case is
	// $1.024 (1,024 tokens) and each spends $0.005. With $1.10, 16 calls fit.
	prices := filepath.Join(dir, "prices.json")
	os.WriteFile(prices, []byte(`{"models":{"fake":{"input_per_1k":0,"output_per_1k":1}}}`), 0o644)
	out2 := filepath.Join(dir, "capped.jsonl")
	j.reset(0)
	capped := []string{"score", "--reward", spec, "--in", pairsPath, "--out", out2, "--prices", prices}
	code, _, errs = run(t, "", append(capped, "--max-usd", "1.10")...)
	if code != ExitBudget || !strings.Contains(errs, "budget reached") {
		t.Fatalf("--max-usd 1.10: exit %d: %s", code, errs)
	}
	if j.count() != 16 || len(scoreIDs(t, out2)) != 8 {
		t.Errorf("--max-usd 1.10: %d calls, %d pairs written; want 16 and 8", j.count(), len(scoreIDs(t, out2)))
	}
	ledger := strings.TrimSuffix(out2, ".jsonl") + ".ledger.jsonl"
	if b, err := os.ReadFile(ledger); err != nil || strings.Count(string(b), "\n") != 16 {
		t.Errorf("ledger %s: %v\n%s", ledger, err, b)
	}
	// the same cap again: $0.08 spent before counts, so nothing is sent
	j.reset(0)
	if code, _, _ = run(t, "", append(capped, "--max-usd", "1.10")...); code != ExitBudget || j.count() != 0 {
		t.Errorf("rerun at the same cap: exit %d, %d calls", code, j.count())
	}
	code, _, errs = run(t, "", append(capped, "--max-usd", "2")...)
	if code != 0 || j.count() != 4 || len(scoreIDs(t, out2)) != 10 {
		t.Errorf("rerun with --max-usd 2: exit %d, %d calls, %d pairs: %s", code, j.count(), len(scoreIDs(t, out2)), errs)
	}
}

// closeReward reports whether two rewards of the same tokens agree up to
// float rounding (batches of other shapes take other kernels).
func closeReward(a, b float64) bool {
	return math.Abs(a-b) <= 1e-5*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
