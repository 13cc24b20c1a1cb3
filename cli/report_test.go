package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportWritesOfflinePage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report")
	code, stdout, stderr := runWith(t, context.Background(), "report", "../align/report/testdata", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{`id="chart-loss"`, `id="chart-lr"`, `id="chart-grad-norm"`, `id="chart-objective-accuracies"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(page, "http") || strings.Contains(page, "<script") {
		t.Error("page references the network or scripts")
	}
	if !strings.Contains(stdout, "4 training steps logged") {
		t.Errorf("summary: %q", stdout)
	}
}

func TestReportUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"report", dir, "--out", filepath.Join(dir, "o")}, "no metrics.jsonl"},
		{[]string{"report", "--out", filepath.Join(dir, "o")}, "one RUN_DIR"},
		{[]string{"report", "../align/report/testdata", "--eval", filepath.Join(dir, "none.json"), "--out", filepath.Join(dir, "o")}, "--eval"},
		{[]string{"report", "../align/report/testdata", "--eval", dir, "--out", filepath.Join(dir, "o")}, "is a folder; want the eval.json align eval wrote there (" + filepath.Join(dir, "eval.json") + ")"},
	}
	for _, tt := range tests {
		code, _, stderr := runWith(t, context.Background(), tt.args...)
		if code != ExitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, %q; want usage error mentioning %q", tt.args, code, stderr, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "o")); err == nil {
		t.Error("a refused report created its output directory")
	}
}
