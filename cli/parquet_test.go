package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// data stats, data split and import read the hub's Parquet preference
// sets (TRL's columns, Anthropic's HH text) as they read JSON Lines; a bad
// row is named.
func TestParquetInputs(t *testing.T) {
	hub := filepath.Join("..", "testdata", "pairs", "hub")
	code, out, errs := run(t, "", "data", "stats", "--in", filepath.Join(hub, "hh.parquet"), "--json")
	if code != 0 || !strings.Contains(out, `"read":2`) || !strings.Contains(out, `"conversational":2`) {
		t.Errorf("stats: exit %d: %s %s", code, out, errs)
	}
	dir := t.TempDir()
	tr, ev := filepath.Join(dir, "t.jsonl"), filepath.Join(dir, "e.jsonl")
	code, _, errs = run(t, "", "data", "split", "--in", filepath.Join(hub, "trl-conversational.parquet"), "--out-train", tr, "--out-eval", ev, "--eval-fraction", "0.5")
	if code != 0 {
		t.Fatalf("split: exit %d: %s", code, errs)
	}
	code, out, _ = run(t, "", "data", "stats", "--in", tr, "--json")
	code2, out2, _ := run(t, "", "data", "stats", "--in", ev, "--json")
	if code != 0 || code2 != 0 || !(strings.Contains(out, `"read":1`) && strings.Contains(out2, `"read":1`) ||
		strings.Contains(out, `"read":2`) && strings.Contains(out2, `"read":0`) || strings.Contains(out, `"read":0`) && strings.Contains(out2, `"read":2`)) {
		t.Errorf("split parts: %s / %s", out, out2)
	}
	code, _, errs = run(t, "", "import", "--labeled", filepath.Join(hub, "trl-standard.parquet"), "--out-train", filepath.Join(dir, "i-t.jsonl"), "--out-eval", filepath.Join(dir, "i-e.jsonl"))
	if code != 0 || !strings.Contains(errs, "3 pairs labelled") {
		t.Errorf("import: exit %d: %s", code, errs)
	}
	code, _, errs = run(t, "", "data", "stats", "--in", filepath.Join(hub, "bad-row.parquet"))
	if code != 1 || !strings.Contains(errs, "bad-row.parquet: row 3: ") {
		t.Errorf("bad row: exit %d: %s", code, errs)
	}
}
