package annotate

import (
	"context"
	"testing"
)

// Simulated annotators label everything through the HTTP API of a server
// process that is killed with SIGKILL at a random moment and restarted;
// Load checks that every item ends with exactly K labels from K
// annotators and that the standing labels are exactly those acknowledged.
// Small here; BenchmarkLoad and `align annotate bench` run the full size.
func TestLoadKillRestart(t *testing.T) {
	items, annotators := 300, 6
	if testing.Short() {
		items, annotators = 120, 4
	}
	for _, seed := range []uint64{1, 2} {
		rep, err := Load(context.Background(), LoadConfig{Items: items, Annotators: annotators, PerItem: 2, Kill: true, Seed: seed,
			Dir: t.TempDir(), Command: helperCommand})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if rep.KilledAt == 0 || rep.Labels < int64(items*2) {
			t.Errorf("seed %d: %+v: want a kill and at least %d labels", seed, rep, items*2)
		}
		t.Logf("seed %d: %d labels, killed after %d, restart %.0f ms, %d retries, %d conflicts, %d undos, %d waits", seed, rep.Labels, rep.KilledAt,
			rep.RestartMS, rep.Retries, rep.Conflicts, rep.Undos, rep.Waits)
	}
}

// BenchmarkLoad: 20 annotators, 2,000 items, --per-item 2, one kill -9 and
// restart. Reports labels/s and the p99 latency of POST /api/label.
//
//	go test -run '^$' -bench Load -benchtime 1x ./align/annotate/
func BenchmarkLoad(b *testing.B) {
	for i := 0; i < b.N; i++ {
		rep, err := Load(context.Background(), LoadConfig{Items: 2000, Annotators: 20, PerItem: 2, Kill: true, Seed: uint64(i + 1),
			Dir: b.TempDir(), Command: helperCommand})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(rep.LabelsPerS, "labels/s")
		b.ReportMetric(rep.LabelP99MS, "label-p99-ms")
		b.ReportMetric(rep.NextP99MS, "next-p99-ms")
		b.Logf("%+v", rep)
	}
}
