package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 7 item 18: data synth works outside the repository: its default
// catalog is built in.
func TestSynthOutsideRepository(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	code, _, errs := run(t, "", "data", "synth", "--n", "20", "--out-train", "t.jsonl", "--out-eval", "e.jsonl")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if n := len(lines(t, "t.jsonl")) + len(lines(t, "e.jsonl")); n != 20 {
		t.Errorf("%d pairs, want 20", n)
	}
}

// Issue 7 items 21 and 25 (import): a quoted glob matching two files
// works (the help's example), an unquoted one says how to fix it, and the
// summary is words, not Go map syntax, with singular counts.
func TestImportGlobAndSummary(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	writeText(t, filepath.Join(logs, "2024-01.jsonl"), `{"prompt":"q1","response":"good","rating":"up"}`+"\n"+`{"prompt":"q1","response":"bad","rating":"down"}`+"\n")
	writeText(t, filepath.Join(logs, "2024-02.jsonl"), `{"prompt":"q2","response":"only liked","rating":"up"}`+"\n")
	code, _, errs := run(t, "", "import", "--feedback", filepath.Join(logs, "2024-*.jsonl"),
		"--out-train", filepath.Join(dir, "t.jsonl"), "--out-eval", filepath.Join(dir, "e.jsonl"), "--eval-fraction", "0")
	if code != 0 {
		t.Fatalf("quoted glob: exit %d: %s", code, errs)
	}
	want := "import: 3 feedback events → 1 pair (1 prompt unpaired), 0 pairs labelled, 0 duplicates dropped; 1 train, 0 eval; by source: feedback 1"
	if strings.TrimSpace(errs) != want {
		t.Errorf("summary\n got %q\nwant %q", strings.TrimSpace(errs), want)
	}
	code, _, errs = run(t, "", "import", "--feedback", filepath.Join(logs, "2099-*.jsonl"),
		"--out-train", filepath.Join(dir, "t.jsonl"), "--out-eval", filepath.Join(dir, "e.jsonl"))
	if code != ExitUsage || !strings.Contains(errs, "no file matches") {
		t.Errorf("glob matching nothing: exit %d: %s", code, errs)
	}
}
