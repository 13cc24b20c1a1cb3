package annotate

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
)

// lab makes a label of candidate item id (indexes 0, 1) in category c
// ("F" first, "S" second, "T" tie, "-" skip).
func lab(id, who, c string, at time.Time, secs float64) Label {
	l := Label{ItemID: id, Annotator: who, ShownOrder: []int{0, 1}, Time: at.UTC().Format(time.RFC3339Nano), Seconds: secs,
		Format: "candidates", CandidatesID: id, Indexes: []int{0, 1}, Prompt: "prompt of " + id,
		Responses: []string{"response 0 of " + id, "response 1 of " + id}}
	zero, one := 0, 1
	switch c {
	case "F":
		l.Choice, l.ChosenIndex = ChoiceA, &zero
	case "S":
		l.Choice, l.ChosenIndex = ChoiceB, &one
	case "T":
		l.Choice = ChoiceTie
	case "-":
		l.Choice = ChoiceSkip
	}
	return l
}

func writeLabels(t *testing.T, path string, ls []Label) {
	t.Helper()
	var b bytes.Buffer
	for _, l := range ls {
		jsonl.Encode(&b, l)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// statsFixture: three annotators over six items (see the comments for the
// majority of each) and a judge's rank output for them.
func statsFixture(t *testing.T) (labels, judgedPairs, judgedTies string) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	votes := []struct{ id, ana, ben, chi string }{
		{"c0", "F", "F", "F"}, // majority first
		{"c1", "S", "S", "F"}, // second
		{"c2", "T", "T", "S"}, // tie
		{"c3", "F", "S", ""},  // none (1-1)
		{"c4", "F", "-", "S"}, // none (1-1, a skip)
		{"c5", "S", "-", "S"}, // second
	}
	var ls []Label
	for i, v := range votes {
		for k, who := range []string{"ana", "ben", "chi"} {
			c := []string{v.ana, v.ben, v.chi}[k]
			if c == "" {
				continue
			}
			ls = append(ls, lab(v.id, who, c, t0.Add(time.Duration(i*60+k)*time.Second), float64(10*(k+1))))
		}
	}
	// ana labels c6 first, then withdraws it
	ls = append(ls, lab("c6", "ana", "F", t0.Add(time.Hour), 5), Label{ItemID: "c6", Annotator: "ana", Choice: ChoiceUndo, Time: t0.Add(time.Hour).Format(time.RFC3339Nano)})
	labels = filepath.Join(dir, "labels.jsonl")
	writeLabels(t, labels, ls)
	// rank output: c0 chose 0 (agrees), c1 chose 0 (disagrees), c3 chose 1,
	// c2 tie and c5 inconsistent (ties file); c4 not judged.
	pair := func(id string, ch int) string {
		b, _ := json.Marshal(map[string]any{"id": "r" + id, "prompt": "prompt of " + id, "chosen": "response " + string(rune('0'+ch)) + " of " + id,
			"rejected": "response " + string(rune('0'+1-ch)) + " of " + id, "source": "rank", "candidates_id": id, "indexes": []int{ch, 1 - ch}, "judge": "rules:catalog.json"})
		return string(b) + "\n"
	}
	judgedPairs = filepath.Join(dir, "pairs.jsonl")
	os.WriteFile(judgedPairs, []byte(pair("c0", 0)+pair("c1", 0)+pair("c3", 1)), 0o644)
	judgedTies = filepath.Join(dir, "pairs.jsonl.ties.jsonl")
	os.WriteFile(judgedTies, []byte(`{"id":"t2","kind":"tie","candidates_id":"c2","indexes":[0,1],"judge":"rules:catalog.json"}`+"\n"+
		`{"id":"t5","kind":"inconsistent","candidates_id":"c5","indexes":[0,1],"judge":"rules:catalog.json"}`+"\n"), 0o644)
	return labels, judgedPairs, judgedTies
}

func TestStatsFromLabels(t *testing.T) {
	labels, jp, jt := statsFixture(t)
	g, err := ReadLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	jd, err := LoadJudged(jp, jt)
	if err != nil {
		t.Fatal(err)
	}
	rep := Stats(g, StatsConfig{Bootstrap: 200, Seed: 1, Judged: jd})
	// 17 labels (2 of them skips), c6's label and its undo
	if rep.Lines != 19 || rep.Standing != 17 || rep.Undone != 1 || rep.Items != 6 {
		t.Errorf("lines %d standing %d undone %d items %d; want 19, 17, 1, 6", rep.Lines, rep.Standing, rep.Undone, rep.Items)
	}
	if rep.Majority != [4]int{1, 2, 1, 2} {
		t.Errorf("majorities %v, want first 1, second 2, tie 1, none 2", rep.Majority)
	}
	// ana–ben over c0..c3: F/F, S/S, T/T, F/S: p_o = 3/4, margins ana
	// (2,1,1), ben (1,2,1), p_e = 5/16, κ = (12−5)/(16−5) = 7/11.
	var ab *PairAgreement
	for i := range rep.Pairs {
		if rep.Pairs[i].A == "ana" && rep.Pairs[i].B == "ben" {
			ab = &rep.Pairs[i]
		}
	}
	if ab == nil || ab.Items != 4 || !near(float64(ab.Kappa.Value), 7.0/11.0, 1e-6) || !near(float64(ab.Agreement), 0.75, 1e-9) {
		t.Errorf("ana–ben: %+v, want 4 items, κ 7/11, agreement 0.75", ab)
	}
	wantAlpha := KrippendorffAlpha([][nCat]int{{3, 0, 0}, {1, 2, 0}, {0, 1, 2}, {1, 1, 0}, {1, 1, 0}, {0, 2, 0}})
	if rep.Alpha.Units != 6 || rep.Alpha.Values != 15 || !near(float64(rep.Alpha.Alpha.Value), wantAlpha, 1e-6) {
		t.Errorf("alpha %+v, want 6 units, 15 values, α %.4f", rep.Alpha, wantAlpha)
	}
	if lo, hi := float64(rep.Alpha.Alpha.Lo), float64(rep.Alpha.Alpha.Hi); !(lo <= float64(rep.Alpha.Alpha.Value) && float64(rep.Alpha.Alpha.Value) <= hi) {
		t.Errorf("alpha interval [%v, %v] does not hold α %v", lo, hi, rep.Alpha.Alpha.Value)
	}
	for _, a := range rep.Annotators {
		switch a.Name {
		case "ana":
			// 6 labels a minute apart; the undone c6 does not count.
			if a.Labels != 6 || a.First != 3 || a.Second != 2 || a.Ties != 1 || a.Undone != 1 || float64(a.MedianSeconds) != 10 ||
				!near(a.ActiveMinutes, 5, 1e-9) || !near(float64(a.PerHour), 60, 1e-9) {
				t.Errorf("ana: %+v", a)
			}
		case "ben":
			if a.Labels != 6 || a.Skips != 2 || float64(a.MedianSeconds) != 20 {
				t.Errorf("ben: %+v", a)
			}
		}
	}
	j := rep.Judge
	if j == nil {
		t.Fatal("no judge stats")
	}
	wantTable := [4][3]int{{1, 0, 0}, {1, 0, 1}, {0, 0, 1}, {0, 1, 0}}
	if j.Table != wantTable || j.Compared != 4 || j.Agree != 2 || j.Decisive != 2 || j.DecisiveAgree != 1 || j.NotJudged != 1 || j.Inconsistent != 1 {
		t.Errorf("judge %+v\nwant table %v, 2 of 4 agree, 1 of 2 decisive, 1 not judged, 1 inconsistent", j, wantTable)
	}
	if lo, hi := Wilson(2, 4); j.Rate.Value != 0.5 || float64(j.Rate.Lo) != lo || float64(j.Rate.Hi) != hi {
		t.Errorf("rate %+v, want 0.5 [%v, %v]", j.Rate, lo, hi)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Krippendorff's alpha", "Cohen's kappa", "judge (rules:catalog.json) vs human majority", "no majority"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	b, err := json.Marshal(rep)
	if err != nil || !json.Valid(b) {
		t.Fatalf("json: %v", err)
	}
}

// A pairs-input label meets the judge's pair by id, and the judge's chosen
// text decides which response it preferred.
func TestJudgedPairByID(t *testing.T) {
	dir := t.TempDir()
	one := 1
	l := Label{ItemID: "p1", Annotator: "ana", Choice: ChoiceB, ShownOrder: []int{0, 1}, ChosenIndex: &one, Time: time.Now().Format(time.RFC3339Nano),
		Format: "pairs", PairID: "p1", Indexes: []int{0, 1}, Prompt: "q", Responses: []string{"old chosen", "old rejected"}}
	labels := filepath.Join(dir, "l.jsonl")
	writeLabels(t, labels, []Label{l})
	judged := filepath.Join(dir, "j.jsonl")
	os.WriteFile(judged, []byte(`{"id":"p1","prompt":"q","chosen":"old rejected","rejected":"old chosen"}`+"\n"), 0o644)
	g, _ := ReadLabels(labels)
	jd, err := LoadJudged(judged)
	if err != nil {
		t.Fatal(err)
	}
	rep := Stats(g, StatsConfig{Bootstrap: -1, Judged: jd})
	if rep.Judge.Table[1][1] != 1 || rep.Judge.Agree != 1 {
		t.Errorf("table %v: want human second / judge second", rep.Judge.Table)
	}
}

func TestExportMajority(t *testing.T) {
	labels, _, _ := statsFixture(t)
	g, err := ReadLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	ps, rep := Export(g, 1)
	if rep != (ExportReport{Items: 6, Pairs: 3, Ties: 1, Disagreements: 2}) {
		t.Errorf("report %+v, want 6 items: 3 pairs, 1 tie, 2 disagreements", rep)
	}
	want := map[string]string{"c0": "response 0 of c0", "c1": "response 1 of c1", "c5": "response 1 of c5"}
	var buf bytes.Buffer
	if err := pairs.Write(&buf, ps); err != nil {
		t.Fatal(err)
	}
	back, _, err := pairs.Read(&buf, "export", pairs.LoadOptions{})
	if err != nil {
		t.Fatalf("exported pairs do not load: %v", err)
	}
	for _, p := range back {
		var item string
		json.Unmarshal(p.Extra["item_id"], &item)
		if p.Source != "human" || p.Chosen != want[item] || p.Prompt != "prompt of "+item {
			t.Errorf("pair %s: source %q chosen %q prompt %q", item, p.Source, p.Chosen, p.Prompt)
		}
		delete(want, item)
	}
	if len(want) != 0 {
		t.Errorf("missing pairs for %v", want)
	}
	if _, rep := Export(g, 3); rep.Pairs != 2 || rep.Ties != 1 || rep.TooFewVotes != 3 {
		t.Errorf("min votes 3: %+v, want 2 pairs (c0, c1), 1 tie (c2), 3 with too few labels", rep)
	}
}

// A conversation stays a message list in the exported pair, and the
// system prompt travels with it.
func TestExportConversational(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	os.WriteFile(in, []byte(`{"id":"c1","system":"be kind","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"Naruto?"}],"generator":"g","responses":[{"text":"72 volumes"},{"text":"70"}]}`+"\n"), 0o644)
	labels := filepath.Join(dir, "labels.jsonl")
	ts := newTestServer(t, in, labels, nil, 1, false)
	v, _ := ts.next("you")
	choice := "a"
	if v.Responses[1] == "72 volumes" {
		choice = "b"
	}
	ts.label("you", v.ItemID, choice)
	ts.close()
	g, _ := ReadLabels(labels)
	ps, _ := Export(g, 1)
	if len(ps) != 1 {
		t.Fatalf("%d pairs", len(ps))
	}
	p := ps[0]
	if !p.Conversational() || len(p.PromptMessages) != 3 || p.ChosenMessages[0].Content != "72 volumes" || string(p.Extra["system"]) != `"be kind"` {
		t.Errorf("pair %+v", p)
	}
	if err := p.Validate(nil); err != nil {
		t.Error(err)
	}
}

// Bad lines name the file and line; a torn last line is ignored.
func TestReadLabelsErrors(t *testing.T) {
	dir := t.TempDir()
	good, _ := jsonl.Marshal(lab("c0", "ana", "F", time.Now(), 1))
	for _, tc := range []struct{ name, content, want string }{
		{"torn last line", string(good) + `{"item_id":"c1","annot`, ""},
		{"bad JSON before the last", string(good) + "{oops\n" + string(good), "l.jsonl:2:"},
		{"bad choice", strings.Replace(string(good), `"choice":"a"`, `"choice":"left"`, 1), `l.jsonl:1: choice "left"`},
		{"label twice", string(good) + string(good), "l.jsonl:2: second label"},
		{"undo of nothing", `{"item_id":"c0","annotator":"ana","choice":"undo","chosen_index":null,"time":"x"}` + "\n", "l.jsonl:1: undo of item"},
	} {
		p := filepath.Join(dir, "l.jsonl")
		os.WriteFile(p, []byte(tc.content), 0o644)
		_, err := ReadLabels(p)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	_ = math.NaN
}
