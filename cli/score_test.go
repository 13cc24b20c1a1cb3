package cli

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
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
	if code != 0 || strings.TrimSpace(stdout) != fmt.Sprint(`{"id":"a","reward_chosen":1,"reward_rejected":0}`) {
		t.Errorf("stdin: exit %d, %q, %s", code, stdout, errs)
	}
}

// closeReward reports whether two rewards of the same tokens agree up to
// float rounding (batches of other shapes take other kernels).
func closeReward(a, b float64) bool {
	return math.Abs(a-b) <= 1e-5*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
