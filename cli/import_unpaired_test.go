package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// import --unpaired keeps every rated response as TRL's unpaired format
// (none dropped for lack of a partner) and still makes the pairs where a
// prompt has both, on the same side of the split as its examples.
func TestImportUnpaired(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "thumbs.jsonl")
	writeText(t, log, `{"prompt":"q1","response":"good","rating":"up"}
{"prompt":"q1","response":"bad","rating":"down"}
{"prompt":"q2","response":"only liked","rating":"up"}
{"messages":[{"role":"user","content":"q3"}],"response":"only disliked","rating":"down"}
`)
	labeled := filepath.Join(dir, "labeled.jsonl")
	writeText(t, labeled, `{"id":"h1","prompt":"q4","chosen":"yes","rejected":"no"}`+"\n")
	tr, ev, pt := filepath.Join(dir, "t.jsonl"), filepath.Join(dir, "e.jsonl"), filepath.Join(dir, "pairs.jsonl")
	code, _, errs := run(t, "", "import", "--feedback", log, "--labeled", labeled, "--unpaired",
		"--out-train", tr, "--out-eval", ev, "--out-pairs-train", pt, "--eval-fraction", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := "import: 4 feedback events → 6 unpaired examples (3 desirable, 3 undesirable; 6 train, 0 eval), 1 pair labelled; 1 pair where a prompt has both (2 train, 0 eval); 0 duplicates dropped"
	if strings.TrimSpace(errs) != want {
		t.Errorf("summary\n got %q\nwant %q", strings.TrimSpace(errs), want)
	}
	got := map[string]bool{}
	for _, line := range lines(t, tr) {
		var u struct {
			Prompt     any    `json:"prompt"`
			Completion any    `json:"completion"`
			Label      *bool  `json:"label"`
			Chosen     string `json:"chosen"`
		}
		if err := json.Unmarshal([]byte(line), &u); err != nil || u.Label == nil || u.Completion == nil || u.Chosen != "" {
			t.Fatalf("not TRL's unpaired format: %s", line)
		}
		b, _ := json.Marshal(u.Completion)
		got[string(b)+map[bool]string{true: "+", false: "-"}[*u.Label]] = true
	}
	for _, k := range []string{`"good"+`, `"bad"-`, `"only liked"+`, `[{"content":"only disliked","role":"assistant"}]-`, `"yes"+`, `"no"-`} {
		if !got[k] {
			t.Errorf("missing example %s in %v", k, got)
		}
	}
	if n := len(lines(t, pt)); n != 2 {
		t.Errorf("%d pairs in --out-pairs-train, want 2 (the feedback pair and the labelled one)", n)
	}
	// the file trains: kto reads it (checked in align/train); the pair
	// outputs need --unpaired
	code, _, errs = run(t, "", "import", "--feedback", log, "--out-train", tr, "--out-eval", ev, "--out-pairs-eval", pt)
	if code != ExitUsage || !strings.Contains(errs, "--out-pairs-eval needs --unpaired") {
		t.Errorf("--out-pairs-eval without --unpaired: exit %d, %q", code, errs)
	}
}

// align train --method kto reads what import --unpaired writes; a bad
// weight is a usage error before anything is written.
func TestTrainKTOOnImported(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "thumbs.jsonl")
	var b strings.Builder
	for i, r := range []string{"up", "down", "up", "down", "up", "down"} {
		b.WriteString(`{"prompt":"Which manga is like volume ` + string(rune('1'+i)) + `?","response":"Try the next volume of the series.","rating":"` + r + `"}` + "\n")
	}
	writeText(t, log, b.String())
	tr, ev := filepath.Join(dir, "t.jsonl"), filepath.Join(dir, "e.jsonl")
	if code, _, errs := run(t, "", "import", "--feedback", log, "--unpaired", "--out-train", tr, "--out-eval", ev, "--eval-fraction", "0"); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errs)
	}
	out := filepath.Join(dir, "run")
	code, _, errs := run(t, "", "train", "--method", "kto", "--model", tinyModel, "--data", tr, "--out", out, "--undesirable-weight", "0")
	if code != ExitUsage || !strings.Contains(errs, "--undesirable-weight") {
		t.Errorf("--undesirable-weight 0: exit %d, %q", code, errs)
	}
	code, _, errs = run(t, "", "train", "--method", "kto", "--model", tinyModel, "--data", tr, "--out", out,
		"--max-steps", "1", "--eval-split", "0", "--threads", "2", "--desirable-weight", "1.1")
	if code != 0 {
		t.Fatalf("train --method kto: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "1 step, 6 train examples") {
		t.Errorf("stderr %q", errs)
	}
}

// align bench train --method kto times KTO's step (its reference and its
// no-gradient pass over the mismatched sequences included in the step).
func TestBenchTrainKTO(t *testing.T) {
	code, stdout, errs := run(t, "", "bench", "train", "--model", tinyModel, "--method", "kto", "--seq", "16", "--pairs", "2", "--steps", "1", "--threads", "2", "--no-baseline", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res["method"] != "kto" || !(res["step_ms"].(float64) > 0) || res["seqs"] != 4.0 {
		t.Errorf("bench kto: %v", res)
	}
}
