package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/align-dev/align/align/backend/bedrock/standin"
	"github.com/align-dev/align/align/backend/pace"
	"github.com/align-dev/align/align/cost"
)

// faultyModel wraps shopModel with bad judge outputs on a schedule.
type faultyModel struct {
	judgeCalls                        atomic.Int64
	missingTool, truncated, badWinner atomic.Int64
}

func (f *faultyModel) model(req standin.Request) standin.Response {
	if req.ToolName != "record_verdict" {
		return shopModel(req)
	}
	n := f.judgeCalls.Add(1)
	switch {
	case n%37 == 0:
		f.missingTool.Add(1)
		return standin.Response{Text: "A is better, clearly."}
	case n%41 == 0:
		f.truncated.Add(1)
		return standin.Response{ToolInput: json.RawMessage(`{"winner":"A","scores":{"A":{"tone":4}}}`)}
	case n%43 == 0:
		f.badWinner.Add(1)
		return standin.Response{ToolInput: verdictJSON("C")}
	}
	return shopModel(req)
}

func injectTransportFaults(s *standin.Server) {
	s.Inject(standin.Fault{Kind: standin.FaultThrottle}, 40)
	s.Inject(standin.Fault{Kind: standin.FaultInternal}, 15)
	s.Inject(standin.Fault{Kind: standin.FaultModelNotReady}, 15)
	s.Inject(standin.Fault{Kind: standin.FaultUnavailable}, 15)
	s.Inject(standin.Fault{Kind: standin.FaultReset}, 10)
	s.Inject(standin.Fault{Kind: standin.FaultTruncate}, 10)
	s.Inject(standin.Fault{Kind: standin.FaultHang}, 3)
}

// TestFaultyRun1000 runs collect → rank → screen over 1,000 prompts with
// the bedrock backends against the stand-in under injected faults, and
// checks that every prompt is accounted for exactly once at every stage.
func TestFaultyRun1000(t *testing.T) {
	fm := &faultyModel{}
	s := startStandin(t, fm.model)
	dir := t.TempDir()
	prompts := filepath.Join(dir, "prompts.jsonl")
	const n = 1000
	writePrompts(t, prompts, n)
	o := fastOpen(s)
	gen := mustOpen(t, "bedrock:"+llama, o)
	judge := mustOpen(t, "bedrock:"+claude, o)
	var stderr bytes.Buffer
	common := func(in, out string) Common {
		return Common{In: in, Out: out, Workers: 16, ItemTimeout: 30 * time.Second, Stderr: &stderr}
	}

	injectTransportFaults(s)
	cand := filepath.Join(dir, "cand.jsonl")
	crep, err := Collect(context.Background(), CollectConfig{Common: common(prompts, cand), Generator: gen})
	if err != nil {
		t.Fatal(err)
	}
	cc := s.Counts()
	t.Logf("collect: %+v; faults served %v; client stats %+v", crep, cc.Faults, gen.Bedrock.Stats())
	candIDs, collectDead := field(t, cand, "prompt_id"), ids(t, SidePath(cand, "dead"))
	noDups(t, "collect", candIDs)
	if len(candIDs)+len(collectDead) != n {
		t.Errorf("collect: %d candidates + %d dead != %d prompts", len(candIDs), len(collectDead), n)
	}

	s.ResetCounts()
	injectTransportFaults(s)
	pairsOut := filepath.Join(dir, "pairs.jsonl")
	rrep, err := Rank(context.Background(), RankConfig{Common: common(cand, pairsOut), Judge: judge})
	if err != nil {
		t.Fatal(err)
	}
	rc := s.Counts()
	t.Logf("rank: %+v; faults served %v; model faults: missing tool %d, truncated %d, bad winner %d; client stats %+v",
		rrep, rc.Faults, fm.missingTool.Load(), fm.truncated.Load(), fm.badWinner.Load(), judge.Bedrock.Stats())
	pairIDs, ties, rankDead := field(t, pairsOut, "candidates_id"), field(t, SidePath(pairsOut, "ties"), "candidates_id"), field(t, SidePath(pairsOut, "dead"), "id")
	noDups(t, "rank", ids(t, pairsOut), ids(t, SidePath(pairsOut, "ties")), rankDead)
	noDups(t, "rank candidates", pairIDs, ties)
	if got := len(pairIDs) + len(ties) + len(rankDead); got != len(candIDs) {
		t.Errorf("rank: %d pairs + %d ties + %d dead != %d candidates", len(pairIDs), len(ties), len(rankDead), len(candIDs))
	}
	if len(rankDead) < n/50-5 || rrep.Repairs == 0 || rrep.Ties == 0 {
		t.Errorf("rank: %d dead (want about %d poisoned), %d repairs, %d ties", len(rankDead), n/50, rrep.Repairs, rrep.Ties)
	}

	s.ResetCounts()
	clean := filepath.Join(dir, "clean.jsonl")
	srep, err := Screen(context.Background(), ScreenConfig{Common: common(pairsOut, clean), Screener: judge})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screen: %+v", srep)
	kept, removed, sdead := ids(t, clean), ids(t, SidePath(clean, "removed")), ids(t, SidePath(clean, "dead"))
	noDups(t, "screen", kept, removed, sdead)
	if len(kept)+len(removed)+len(sdead) != len(pairIDs) || len(removed) == 0 {
		t.Errorf("screen: %d kept + %d removed + %d dead != %d pairs", len(kept), len(removed), len(sdead), len(pairIDs))
	}
	t.Logf("accounted: %d prompts → %d candidates + %d collect dead → %d pairs + %d ties/inconsistent + %d rank dead → %d kept + %d removed + %d screen dead",
		n, len(candIDs), len(collectDead), len(pairIDs), len(ties), len(rankDead), len(kept), len(removed), len(sdead))
	t.Logf("stderr:\n%s", stderr.String())

	// A rerun finds everything done and calls nothing.
	s.ResetCounts()
	crep2, err := Collect(context.Background(), CollectConfig{Common: common(prompts, cand), Generator: gen})
	if err != nil {
		t.Fatal(err)
	}
	if crep2.Written != 0 || crep2.Skipped != int64(len(candIDs)+len(collectDead)) || s.Counts().Requests["converse"] != 0 {
		t.Errorf("rerun: %+v, %d requests", crep2, s.Counts().Requests["converse"])
	}
}

// TestPositionBias: a judge that always prefers the first answer yields no
// pairs; every comparison is inconsistent and the consistency rate is 0.
func TestPositionBias(t *testing.T) {
	s := startStandin(t, func(req standin.Request) standin.Response {
		if req.ToolName == "record_verdict" {
			return standin.Response{ToolInput: verdictJSON("A")}
		}
		return shopModel(req)
	})
	dir := t.TempDir()
	prompts, cand, out := filepath.Join(dir, "p.jsonl"), filepath.Join(dir, "c.jsonl"), filepath.Join(dir, "pairs.jsonl")
	writePrompts(t, prompts, 60)
	o := fastOpen(s)
	if _, err := Collect(context.Background(), CollectConfig{Common: Common{In: prompts, Out: cand}, Generator: mustOpen(t, "bedrock:"+llama, o)}); err != nil {
		t.Fatal(err)
	}
	rep, err := Rank(context.Background(), RankConfig{Common: Common{In: cand, Out: out}, Judge: mustOpen(t, "bedrock:"+claude, o)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.Pairs != 0 || len(ids(t, out)) != 0 || rep.Inconsistent != 60 || rep.ConsistencyRate != 0 || rep.FirstPositionWinRate != 1 || rep.TieRate != 1 {
		t.Errorf("biased judge: %+v", rep)
	}
	for _, k := range field(t, SidePath(out, "ties"), "kind") {
		if k != "inconsistent" {
			t.Errorf("tie kind %q", k)
		}
	}
}

// TestPacingNoThrottles: the stand-in throttles above 20 requests per
// 500ms; paced at 30 per second the run sees none, unpaced it does.
func TestPacingNoThrottles(t *testing.T) {
	s := startStandin(t, shopModel)
	s.ThrottleAbove(20, 500*time.Millisecond)
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	writePrompts(t, prompts, 30)
	o := fastOpen(s)
	o.Limits = pace.Limits{RPM: 30 * 60, BurstRequests: 1, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}
	gen := mustOpen(t, "bedrock:"+llama, o)
	if _, err := Collect(context.Background(), CollectConfig{Common: Common{In: prompts, Out: filepath.Join(dir, "paced.jsonl"), Workers: 16}, Generator: gen}); err != nil {
		t.Fatal(err)
	}
	if got := s.Counts().Faults[standin.FaultRateThrottle]; got != 0 {
		t.Errorf("paced run: %d throttles", got)
	}
	if got := len(ids(t, filepath.Join(dir, "paced.jsonl"))); got != 30 {
		t.Errorf("paced run wrote %d of 30", got)
	}
	t.Logf("paced: %+v", gen.Bedrock.Stats())
	// Unpaced, the same work is throttled (and retried).
	s.ResetCounts()
	o.Limits = pace.Limits{BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}
	if _, err := Collect(context.Background(), CollectConfig{Common: Common{In: prompts, Out: filepath.Join(dir, "unpaced.jsonl"), Workers: 16}, Generator: mustOpen(t, "bedrock:"+llama, o)}); err != nil {
		t.Fatal(err)
	}
	if s.Counts().Faults[standin.FaultRateThrottle] == 0 {
		t.Error("unpaced run saw no throttles: the check cannot fail")
	}
}

// TestMaxUSD: the run stops before the ceiling, with a budget error, and a
// rerun with a higher ceiling finishes the rest.
func TestMaxUSD(t *testing.T) {
	s := startStandin(t, shopModel)
	dir := t.TempDir()
	prompts, out := filepath.Join(dir, "p.jsonl"), filepath.Join(dir, "c.jsonl")
	// all n prompts cost about 2.8 × the ceiling, so the ceiling is reached
	// however the calls interleave (100 prompts cost about 0.7 × and could
	// finish under it when few calls are in flight)
	const n = 400
	writePrompts(t, prompts, n)
	gen := mustOpen(t, "bedrock:"+llama, fastOpen(s))
	const ceiling = 0.02
	rep, err := Collect(context.Background(), CollectConfig{Common: Common{In: prompts, Out: out, MaxUSD: new(ceiling), Workers: 4}, Generator: gen})
	if !cost.IsBudget(err) {
		t.Fatalf("err = %v, want a budget error", err)
	}
	l, lerr := cost.OpenLedger(SidePath(out, "ledger"))
	if lerr != nil {
		t.Fatal(lerr)
	}
	spent := l.Total().USD
	l.Close()
	if spent > ceiling || spent == 0 || rep.Written == 0 || rep.Written >= n {
		t.Errorf("spent $%.4f of $%.2f, wrote %d", spent, ceiling, rep.Written)
	}
	t.Logf("stopped at $%.4f with %d of %d written: %v", spent, rep.Written, n, err)
	rep2, err := Collect(context.Background(), CollectConfig{Common: Common{In: prompts, Out: out, MaxUSD: new(10.0)}, Generator: gen})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Skipped != rep.Written || len(ids(t, out)) != n {
		t.Errorf("rerun: %+v, %d in file", rep2, len(ids(t, out)))
	}
}

// TestBatchRank ranks through batch inference, then reruns: the rerun
// polls the saved job, submits nothing, and --retry-failed resubmits only
// the failed records.
func TestBatchRank(t *testing.T) {
	var failOnce atomic.Bool
	failOnce.Store(true)
	s := startStandin(t, func(req standin.Request) standin.Response {
		if req.Route == "batch" && strings.HasSuffix(req.RecordID, ".ba") && strings.Contains(string(req.Body), "question 7 ") && failOnce.Load() {
			return standin.Response{Err: &standin.APIError{Status: 500, Type: "InternalServerException", Message: "record failed"}}
		}
		return shopModel(req)
	})
	dir := t.TempDir()
	prompts, cand, out := filepath.Join(dir, "p.jsonl"), filepath.Join(dir, "c.jsonl"), filepath.Join(dir, "pairs.jsonl")
	writePrompts(t, prompts, 12)
	o := fastOpen(s)
	if _, err := Collect(context.Background(), CollectConfig{Common: Common{In: prompts, Out: cand}, Generator: mustOpen(t, "bedrock:"+llama, o)}); err != nil {
		t.Fatal(err)
	}
	batch := newTestBatch(t, s)
	judge := mustOpen(t, "bedrock:"+claude, o)
	rep, err := Rank(context.Background(), RankConfig{Common: Common{In: cand, Out: out}, Judge: judge, Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("batch rank: %+v", rep)
	// q0000 is POISON (no tool call: dead), q0001 a TIE, q0007 fails once.
	if rep.Pairs != 9 || rep.Ties != 1 || rep.Dead != 2 || s.Counts().Requests["CreateModelInvocationJob"] != 1 {
		t.Errorf("first run: %+v, %d jobs", rep, s.Counts().Requests["CreateModelInvocationJob"])
	}
	// Rerun: all done (or dead); nothing submitted.
	rep, err = Rank(context.Background(), RankConfig{Common: Common{In: cand, Out: out}, Judge: judge, Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Skipped != 12 || s.Counts().Requests["CreateModelInvocationJob"] != 1 {
		t.Errorf("rerun: %+v, %d jobs", rep, s.Counts().Requests["CreateModelInvocationJob"])
	}
	failOnce.Store(false)
	rep, err = Rank(context.Background(), RankConfig{Common: Common{In: cand, Out: out, RetryFailed: true}, Judge: judge, Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pairs != 1 || rep.Dead != 1 || len(ids(t, out)) != 10 || len(ids(t, SidePath(out, "dead"))) != 1 || s.Counts().Requests["CreateModelInvocationJob"] != 2 {
		t.Errorf("retry-failed: %+v, %d jobs", rep, s.Counts().Requests["CreateModelInvocationJob"])
	}
}
