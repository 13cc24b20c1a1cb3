package annotate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/pipeline"
)

// The rules: judge against scripted annotators with known noise: the
// repository's held-out pairs (testdata/pairs/eval.jsonl, whose "chosen" is
// right by construction) become candidates with the responses in a hashed
// order, rank judges them with rules:testdata/catalog.json, and three
// scripted annotators label every item through the HTTP API, each picking
// the right response with probability 0.85, the wrong one 0.10, tie 0.05.
// The confusion table stats reports must equal the one computed here
// directly from the scripted choices and rank's files (which also checks
// the shown-order mapping and the join), and annotator agreement must be
// near its known value.
func TestRulesJudgeAgainstScriptedAnnotators(t *testing.T) {
	ps, _, err := pairs.Load("../../testdata/pairs/eval.jsonl", pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cand := filepath.Join(dir, "cand.jsonl")
	right := map[string]int{} // candidate id -> index of the right response
	text := map[string][2]string{}
	var b bytes.Buffer
	for _, p := range ps {
		r := 0
		if h := sha256.Sum256([]byte(p.ID)); h[0]&1 == 1 {
			r = 1
		}
		resp := [2]string{}
		resp[r], resp[1-r] = p.Chosen, p.Rejected
		right[p.ID], text[p.ID] = r, resp
		jsonl.Encode(&b, map[string]any{"id": p.ID, "prompt_id": p.ID, "prompt": p.Prompt, "objective": p.Objective, "generator": "synthetic",
			"responses": []map[string]any{{"text": resp[0]}, {"text": resp[1]}}})
	}
	os.WriteFile(cand, b.Bytes(), 0o644)

	judge, err := pipeline.Open(context.Background(), "rules:../../testdata/catalog.json", pipeline.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer judge.Close()
	ranked := filepath.Join(dir, "pairs.jsonl")
	zero := 0.0
	quiet := false
	rr, err := pipeline.Rank(context.Background(), pipeline.RankConfig{Common: pipeline.Common{In: cand, Out: ranked, Stderr: io.Discard,
		MaxUSD: &zero, Interactive: &quiet, Workers: 2}, Judge: judge})
	if err != nil {
		t.Fatal(err)
	}

	// Scripted annotators through the API.
	labels := filepath.Join(dir, "labels.jsonl")
	names := []string{"ana", "ben", "chi"}
	ts := newTestServer(t, cand, labels, names, 3, false)
	scripted := map[string]map[string]category{} // item -> annotator -> category
	for k, n := range names {
		rng := rand.New(rand.NewPCG(7, uint64(k)))
		for {
			v, code := ts.next(n)
			if code == 204 {
				break
			}
			r := right[v.ItemID]
			var c category
			switch x := rng.Float64(); {
			case x < 0.85:
				c = category(r)
			case x < 0.95:
				c = category(1 - r)
			default:
				c = catTie
			}
			choice := ChoiceTie
			if c != catTie {
				choice = ChoiceA
				if v.Responses[1] == text[v.ItemID][c] {
					choice = ChoiceB
				}
			}
			if code := ts.label(n, v.ItemID, choice); code != 200 {
				t.Fatalf("label: %d", code)
			}
			if scripted[v.ItemID] == nil {
				scripted[v.ItemID] = map[string]category{}
			}
			scripted[v.ItemID][n] = c
		}
	}
	ts.close()

	g, err := ReadLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	jd, err := LoadJudged(ranked, rr.TiesPath)
	if err != nil {
		t.Fatal(err)
	}
	rep := Stats(g, StatsConfig{Bootstrap: 1000, Seed: 1, Judged: jd})
	var out bytes.Buffer
	rep.WriteText(&out)
	t.Logf("rank: %d pairs, %d ties, %d inconsistent\n%s", rr.Pairs, rr.Ties, rr.Inconsistent, out.String())

	// The same table computed directly.
	judgeCat := map[string]category{}
	rps, _, err := pairs.Load(ranked, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rps {
		var cid string
		var idx [2]int
		jsonUnmarshal(t, p.Extra["candidates_id"], &cid)
		jsonUnmarshal(t, p.Extra["indexes"], &idx)
		judgeCat[cid] = category(idx[0])
	}
	tf, err := os.ReadFile(rr.TiesPath)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	jr := jsonl.NewReader(bytes.NewReader(tf), "ties")
	for {
		var tr pipeline.TieRecord
		if _, err := jr.Next(&tr); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		judgeCat[tr.CandidatesID] = catTie
	}
	var want [4][3]int
	judgeRight, judgeDecisive := 0, 0
	for id, votes := range scripted {
		var cnt [nCat]int
		for _, c := range votes {
			cnt[c]++
		}
		row := 3
		for c := 0; c < nCat; c++ {
			if 2*cnt[c] > len(votes) {
				row = c
			}
		}
		jc, ok := judgeCat[id]
		if !ok {
			t.Fatalf("item %s: no verdict from rank", id)
		}
		want[row][jc]++
		if jc != catTie {
			judgeDecisive++
			if int(jc) == right[id] {
				judgeRight++
			}
		}
	}
	if rep.Judge.Table != want {
		t.Errorf("stats table %v, computed directly %v", rep.Judge.Table, want)
	}
	t.Logf("the rules judge picks the right response in %d of its %d decisive verdicts (%d items)", judgeRight, judgeDecisive, len(scripted))
	// Two annotators right with p = 0.85, wrong 0.10, tie 0.05, about half
	// the right answers first: p_o = 0.735, p_e ≈ 2·0.475² + 0.05² = 0.454,
	// κ ≈ 0.515. With 221 items the standard error is about 0.05.
	for _, p := range rep.Pairs {
		if k := float64(p.Kappa.Value); k < 0.515-0.15 || k > 0.515+0.15 {
			t.Errorf("κ(%s, %s) = %.3f, want about 0.515", p.A, p.B, k)
		}
	}
	if a := float64(rep.Alpha.Alpha.Value); a < 0.515-0.15 || a > 0.515+0.15 {
		t.Errorf("α = %.3f, want about 0.515", a)
	}
}

func jsonUnmarshal(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := jsonUnmarshalErr(raw, v); err != nil {
		t.Fatal(fmt.Errorf("%s: %w", raw, err))
	}
}

func jsonUnmarshalErr(raw []byte, v any) error { return json.Unmarshal(raw, v) }
