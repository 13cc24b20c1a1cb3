package pipeline

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/align-dev/align/align/backend/bedrock/standin"
)

// BenchmarkPipelineStandin measures orchestration overhead: collect, rank
// (both orders) and screen over 500 prompts with the bedrock backends
// against a stand-in whose model answers instantly. It reports pairs/s end
// to end (five calls per pair; SigV4 signing and checking and loopback
// HTTP included).
func BenchmarkPipelineStandin(b *testing.B) {
	isolate(b)
	s := standin.Start(standin.Config{}, shopModel)
	defer s.Close()
	const n = 500
	var pairs int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		prompts := filepath.Join(dir, "p.jsonl")
		writePrompts(b, prompts, n)
		o := fastOpen(s)
		gen, err := Open(context.Background(), "bedrock:"+llama, o)
		if err != nil {
			b.Fatal(err)
		}
		judge, err := Open(context.Background(), "bedrock:"+claude, o)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cand, out, clean := filepath.Join(dir, "c.jsonl"), filepath.Join(dir, "pairs.jsonl"), filepath.Join(dir, "clean.jsonl")
		if _, err := Collect(context.Background(), CollectConfig{Common: Common{In: prompts, Out: cand, Workers: 16}, Generator: gen}); err != nil {
			b.Fatal(err)
		}
		rep, err := Rank(context.Background(), RankConfig{Common: Common{In: cand, Out: out, Workers: 16}, Judge: judge})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Screen(context.Background(), ScreenConfig{Common: Common{In: out, Out: clean, Workers: 16}, Screener: judge}); err != nil {
			b.Fatal(err)
		}
		pairs += rep.Pairs
	}
	b.ReportMetric(float64(pairs)/b.Elapsed().Seconds(), "pairs/s")
}
