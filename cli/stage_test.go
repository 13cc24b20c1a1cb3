package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/align-dev/align/align/backend/bedrock/standin"
)

// files lists the names in dir, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func writeText(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readBody(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Issue 7 item 4: --max-usd 0 spends nothing (it meant "no limit"), the
// flag left out means no limit, and NaN, Inf or negative ceilings are
// usage errors.
func TestMaxUSDZeroSpendsNothing(t *testing.T) {
	s := standin.Start(standin.Config{}, shop)
	defer s.Close()
	awsEnv(t, s)
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	writeCLIPrompts(t, prompts, 12, 0)
	args := func(out string, extra ...string) []string {
		return append(append([]string{"collect", "--prompts", prompts, "--generator", "bedrock:" + llamaID, "--out", filepath.Join(dir, out)}, fast(s)...), extra...)
	}
	code, _, errs := run(t, "", args("zero.jsonl", "--max-usd", "0")...)
	if code != ExitBudget || !strings.Contains(errs, "budget reached") {
		t.Errorf("--max-usd 0: exit %d, want %d (budget reached): %s", code, ExitBudget, errs)
	}
	if n := s.Counts().Requests["converse"]; n != 0 {
		t.Errorf("--max-usd 0 made %d paid calls", n)
	}
	for _, v := range []string{"NaN", "Inf", "-1", "+Inf"} {
		code, _, errs := run(t, "", args("bad.jsonl", "--max-usd", v)...)
		if first := strings.SplitN(errs, "\n", 2)[0]; code != ExitUsage || !strings.Contains(first, "--max-usd") {
			t.Errorf("--max-usd %s: exit %d, want %d naming --max-usd: %s", v, code, ExitUsage, errs)
		}
	}
	if n := s.Counts().Requests["converse"]; n != 0 {
		t.Errorf("rejected ceilings made %d calls", n)
	}
	if code, _, errs := run(t, "", args("free.jsonl")...); code != 0 {
		t.Errorf("no --max-usd: exit %d: %s", code, errs)
	}
	if n := len(lines(t, filepath.Join(dir, "free.jsonl"))); n != 12 {
		t.Errorf("no --max-usd: %d candidates, want 12", n)
	}
}

// Issue 7 item 5: no command writes over one of its inputs (data split
// --out-eval X --in X replaced X), nor puts two outputs in one file.
func TestNoOutputIsAnInput(t *testing.T) {
	dir := t.TempDir()
	pairsFile := filepath.Join(dir, "pairs.jsonl")
	pairsBody := `{"id":"a","prompt":"p","chosen":"c","rejected":"r"}` + "\n" + `{"id":"b","prompt":"q","chosen":"c","rejected":"r"}` + "\n"
	cand := filepath.Join(dir, "cand.jsonl")
	candBody := `{"id":"c1","prompt_id":"q1","prompt":"hi","generator":"g","responses":[{"text":"a"},{"text":"b"}]}` + "\n"
	catalog := filepath.Join(dir, "catalog.json")
	catBody := readBody(t, "../testdata/catalog.json")
	link := filepath.Join(dir, "link.jsonl")
	other := filepath.Join(dir, "other.jsonl")
	rules := "rules:../testdata/catalog.json"
	cases := []struct {
		name string
		args []string
	}{
		{"split eval", []string{"data", "split", "--in", pairsFile, "--out-train", other, "--out-eval", pairsFile}},
		{"split train", []string{"data", "split", "--in", pairsFile, "--out-train", pairsFile, "--out-eval", other}},
		{"split via ./", []string{"data", "split", "--in", pairsFile, "--out-train", other, "--out-eval", filepath.Join(dir, ".", "x", "..", "pairs.jsonl")}},
		{"split via link", []string{"data", "split", "--in", pairsFile, "--out-train", other, "--out-eval", link}},
		{"import", []string{"import", "--labeled", pairsFile, "--out-train", other, "--out-eval", pairsFile}},
		{"synth", []string{"data", "synth", "--catalog", catalog, "--out-train", other, "--out-eval", catalog, "--n", "4"}},
		{"rank out", []string{"rank", "--in", cand, "--judge", rules, "--out", cand}},
		{"rank ties", []string{"rank", "--in", cand, "--judge", rules, "--out", other, "--ties", cand}},
		{"rank dead", []string{"rank", "--in", cand, "--judge", rules, "--out", other, "--dead-letter", cand}},
		{"rank ledger", []string{"rank", "--in", cand, "--judge", rules, "--out", other, "--ledger", cand}},
		{"rank ties is out", []string{"rank", "--in", cand, "--judge", rules, "--out", other, "--ties", other}},
		{"screen removed", []string{"screen", "--in", pairsFile, "--judge", rules, "--out", other, "--removed", pairsFile}},
		{"screen out", []string{"screen", "--in", pairsFile, "--judge", rules, "--out", link}},
		{"collect dead", []string{"collect", "--prompts", pairsFile, "--generator", "openai:http://127.0.0.1:1", "--out", other, "--dead-letter", pairsFile}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			writeText(t, pairsFile, pairsBody)
			writeText(t, cand, candBody)
			writeText(t, catalog, catBody)
			os.Remove(link)
			if err := os.Symlink(pairsFile, link); err != nil {
				t.Fatal(err)
			}
			os.Remove(other)
			code, _, errs := run(t, "", c.args...)
			if code != ExitUsage || !strings.HasPrefix(errs, "align: error: --") {
				t.Errorf("exit %d, want %d with the flags named: %s", code, ExitUsage, errs)
			}
			if readBody(t, pairsFile) != pairsBody || readBody(t, cand) != candBody || readBody(t, catalog) != catBody {
				t.Error("an input changed")
			}
			if _, err := os.Stat(other); err == nil {
				t.Error("the other output was written")
			}
		})
	}
}

// Issue 7 item 6: data split --dedupe drops exact repeats (with or without
// ids) and says how many; without --dedupe a repeated line without an id
// names the line it repeats.
func TestSplitDedupe(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "pairs.jsonl")
	a := `{"id":"a","prompt":"p1","chosen":"c","rejected":"r"}`
	noID := `{"prompt":"p2","chosen":"c","rejected":"r"}`
	b := `{"id":"b","prompt":"p3","chosen":"c","rejected":"r"}`
	writeText(t, in, a+"\n"+a+"\n"+noID+"\n"+b+"\n"+noID+"\n")
	train, eval := filepath.Join(dir, "t.jsonl"), filepath.Join(dir, "e.jsonl")
	code, _, errs := run(t, "", "data", "split", "--in", in, "--out-train", train, "--out-eval", eval, "--dedupe", "--eval-fraction", "0.5")
	if code != 0 {
		t.Fatalf("--dedupe: exit %d: %s", code, errs)
	}
	if n := len(lines(t, train)) + len(lines(t, eval)); n != 3 {
		t.Errorf("%d pairs written, want 3", n)
	}
	if !strings.Contains(errs, "2 duplicates dropped") {
		t.Errorf("stderr does not say how many were dropped: %s", errs)
	}
	os.Remove(train)
	os.Remove(eval)
	code, _, errs = run(t, "", "data", "split", "--in", in, "--out-train", train, "--out-eval", eval)
	if want := in + ":2: duplicate id \"a\" (first on line 1)"; code != ExitError || !strings.Contains(errs, want) {
		t.Errorf("without --dedupe: exit %d, want %q: %s", code, want, errs)
	}
	writeText(t, in, noID+"\n"+b+"\n"+noID+"\n")
	code, _, errs = run(t, "", "data", "split", "--in", in, "--out-train", train, "--out-eval", eval)
	if want := in + ":3: repeats line 1"; code != ExitError || !strings.Contains(errs, want) {
		t.Errorf("repeat without id: exit %d, want %q: %s", code, want, errs)
	}
}

// Issue 7 item 7: a stage appends only to a file of its own records; an
// existing pairs file given as collect's --out (or candidates as rank's)
// is refused with file:line and left as it was, and nothing else is made.
func TestStageRefusesForeignOutput(t *testing.T) {
	s := standin.Start(standin.Config{}, shop)
	defer s.Close()
	awsEnv(t, s)
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	writeCLIPrompts(t, prompts, 3, 0)
	pairsFile := filepath.Join(dir, "pairs.jsonl")
	pairsBody := `{"id":"a","prompt":"p","chosen":"c","rejected":"r","source":"human"}` + "\n"
	writeText(t, pairsFile, pairsBody)
	before := files(t, dir)
	code, _, errs := run(t, "", append([]string{"collect", "--prompts", prompts, "--generator", "bedrock:" + llamaID, "--out", pairsFile}, fast(s)...)...)
	if code != ExitError || !strings.Contains(errs, pairsFile+":1: holds preference pairs, not collect candidates") {
		t.Errorf("collect into pairs: exit %d: %s", code, errs)
	}
	if readBody(t, pairsFile) != pairsBody {
		t.Error("pairs file changed")
	}
	if got := files(t, dir); strings.Join(got, " ") != strings.Join(before, " ") {
		t.Errorf("files %v, want %v", got, before)
	}
	if n := s.Counts().Requests["converse"]; n != 0 {
		t.Errorf("%d calls made before the refusal", n)
	}
	// collect's candidates as rank's --out; prompts as the dead-letter file
	cand := filepath.Join(dir, "cand.jsonl")
	if code, _, errs := run(t, "", append([]string{"collect", "--prompts", prompts, "--generator", "bedrock:" + llamaID, "--out", cand}, fast(s)...)...); code != 0 {
		t.Fatalf("collect: exit %d: %s", code, errs)
	}
	candBody := readBody(t, cand)
	code, _, errs = run(t, "", "rank", "--in", prompts, "--judge", "rules:../testdata/catalog.json", "--out", cand)
	if code != ExitError || !strings.Contains(errs, cand+":1: holds collect candidates, not ranked pairs") || readBody(t, cand) != candBody {
		t.Errorf("rank into candidates: exit %d: %s", code, errs)
	}
	out := filepath.Join(dir, "ranked.jsonl")
	code, _, errs = run(t, "", "rank", "--in", cand, "--judge", "rules:../testdata/catalog.json", "--out", out, "--dead-letter", pairsFile)
	if code != ExitError || !strings.Contains(errs, pairsFile+":1: holds preference pairs, not rank dead letters") || readBody(t, pairsFile) != pairsBody {
		t.Errorf("rank dead letters into pairs: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("rank created its output before refusing")
	}
	// a rerun into the stage's own files continues
	if code, _, errs := run(t, "", "rank", "--in", cand, "--judge", "rules:../testdata/catalog.json", "--out", out); code != 0 {
		t.Fatalf("rank: exit %d: %s", code, errs)
	}
	if code, _, errs := run(t, "", "rank", "--in", cand, "--judge", "rules:../testdata/catalog.json", "--out", out); code != 0 {
		t.Errorf("rank rerun: exit %d: %s", code, errs)
	}
}

// Issue 7 item 8: with --out - each stage of a pipe keeps its own side
// files (collect.dead.jsonl, rank.ties.jsonl, ...) instead of all sharing
// ./dead.jsonl.
func TestPipeSideFilesPerStage(t *testing.T) {
	s := standin.Start(standin.Config{}, func(req standin.Request) standin.Response {
		if req.ToolName == "" && strings.Contains(req.Messages[0].Text, "question 3 ") {
			return standin.Response{Err: &standin.APIError{Status: 400, Type: "ValidationException", Message: "bad prompt"}}
		}
		if req.ToolName == "record_verdict" && strings.Contains(req.Messages[0].Text, "question 5 ") {
			return standin.Response{Err: &standin.APIError{Status: 400, Type: "ValidationException", Message: "bad judge input"}}
		}
		return shop(req)
	})
	defer s.Close()
	awsEnv(t, s)
	src := t.TempDir()
	prompts := filepath.Join(src, "p.jsonl")
	writeCLIPrompts(t, prompts, 8, 0)
	dir := t.TempDir()
	t.Chdir(dir)
	code, cand, errs := run(t, "", append([]string{"collect", "--prompts", prompts, "--generator", "bedrock:" + llamaID, "--out", "-"}, fast(s)...)...)
	if code != 0 {
		t.Fatalf("collect: exit %d: %s", code, errs)
	}
	code, _, errs = run(t, cand, append([]string{"rank", "--in", "-", "--judge", "bedrock:" + claudeID, "--out", "-"}, fast(s)...)...)
	if code != 0 {
		t.Fatalf("rank: exit %d: %s", code, errs)
	}
	got := files(t, dir)
	if want := "collect.dead.jsonl rank.dead.jsonl rank.ties.jsonl"; strings.Join(got, " ") != want {
		t.Errorf("files in the current directory: %v, want %s", got, want)
	}
	if n := len(lines(t, "collect.dead.jsonl")); n != 1 {
		t.Errorf("collect.dead.jsonl: %d lines, want 1", n)
	}
	if n := len(lines(t, "rank.dead.jsonl")); n != 1 {
		t.Errorf("rank.dead.jsonl: %d lines, want 1", n)
	}
}

// closedPort returns a local address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Issue 7 item 9: a backend that cannot be reached, or that refuses the
// credentials, ends the stage with exit 1 after a few calls instead of
// dead-lettering every record with exit 0; dead letters count the
// retries; no AWS SDK log line reaches stderr.
func TestUnreachableBackendFailsFast(t *testing.T) {
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	writeCLIPrompts(t, prompts, 40, 0)
	out := filepath.Join(dir, "c.jsonl")
	code, _, errs := run(t, "", "collect", "--prompts", prompts, "--generator", "openai:http://"+closedPort(t)+"#m", "--out", out,
		"--workers", "2", "--max-attempts", "3", "--max-backoff", "1ms")
	if code != ExitError || !strings.Contains(errs, "could not reach") {
		t.Errorf("unreachable: exit %d, want %d saying so: %s", code, ExitError, errs)
	}
	dead := lines(t, filepath.Join(dir, "c.dead.jsonl"))
	if len(dead) == 0 || len(dead) >= 10 {
		t.Errorf("%d dead letters, want a few (fewer than 10 of 40)", len(dead))
	}
	for _, l := range dead {
		var d struct {
			Attempts int    `json:"attempts"`
			Kind     string `json:"kind"`
		}
		json.Unmarshal([]byte(l), &d)
		if d.Attempts != 3 || d.Kind != "unreachable" {
			t.Errorf("dead letter says attempts %d, kind %q; want 3, unreachable: %s", d.Attempts, d.Kind, l)
		}
	}

	// Bedrock without credentials
	s := standin.Start(standin.Config{}, shop)
	defer s.Close()
	awsEnv(t, s)
	os.Unsetenv("AWS_ACCESS_KEY_ID")
	os.Unsetenv("AWS_SECRET_ACCESS_KEY")
	out2 := filepath.Join(dir, "b.jsonl")
	code, _, errs = run(t, "", append([]string{"collect", "--prompts", prompts, "--generator", "bedrock:" + llamaID, "--out", out2}, fast(s)...)...)
	if code != ExitError || !strings.Contains(errs, "could not reach") {
		t.Errorf("no credentials: exit %d, want %d saying so: %s", code, ExitError, errs)
	}
	if strings.Contains(errs, "WARN") || strings.Contains(errs, "SDK ") {
		t.Errorf("AWS SDK log on stderr: %s", errs)
	}
	if n := len(lines(t, filepath.Join(dir, "b.dead.jsonl"))); n >= 10 {
		t.Errorf("no credentials: %d dead letters, want a few", n)
	}
}

// Issue 7 item 13: roles are checked when pairs are read: data stats and
// import refuse a "wizard" turn or a user turn inside chosen with
// file:line, instead of train failing later without a position.
func TestChatRolesCheckedAtRead(t *testing.T) {
	dir := t.TempDir()
	good := `{"id":"g","prompt":[{"role":"user","content":"q"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`
	wizard := filepath.Join(dir, "wizard.jsonl")
	writeText(t, wizard, `{"id":"w","prompt":[{"role":"wizard","content":"q"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`+"\n")
	userChosen := filepath.Join(dir, "user.jsonl")
	writeText(t, userChosen, good+"\n"+`{"id":"u","prompt":[{"role":"user","content":"q"}],"chosen":[{"role":"user","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`+"\n")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"data", "stats", "--in", wizard}, wizard + `:1: field "prompt": message 0: role "wizard"`},
		{[]string{"data", "stats", "--in", userChosen}, userChosen + `:2: field "chosen": message 0: role "user" in a response`},
		{[]string{"import", "--labeled", userChosen, "--out-train", filepath.Join(dir, "t.jsonl"), "--out-eval", filepath.Join(dir, "e.jsonl")}, userChosen + `:2: field "chosen"`},
	}
	for _, c := range cases {
		code, _, errs := run(t, "", c.args...)
		if code != ExitError || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want %d with %q: %s", c.args, code, ExitError, c.want, errs)
		}
	}
}

// Issue 7 item 22: rank --in missing.jsonl fails before it creates any
// file or prints a summary.
func TestMissingInputCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"rank", "--in", filepath.Join(dir, "missing.jsonl"), "--judge", "rules:../testdata/catalog.json", "--out", filepath.Join(dir, "pairs.jsonl")},
		{"screen", "--in", filepath.Join(dir, "missing.jsonl"), "--judge", "rules:../testdata/catalog.json", "--out", filepath.Join(dir, "clean.jsonl")},
	} {
		code, _, errs := run(t, "", args...)
		if code != ExitError || !strings.Contains(errs, "missing.jsonl") {
			t.Errorf("%s: exit %d: %s", args[0], code, errs)
		}
		if strings.Contains(errs, "done,") || strings.Contains(errs, "approved") {
			t.Errorf("%s printed a summary before the error: %s", args[0], errs)
		}
		if got := files(t, dir); len(got) != 0 {
			t.Errorf("%s created %v", args[0], got)
		}
	}
}

// Issue 7 item 25 (screen): a rules: screener with --constitution fails
// before any work, not after printing its summary.
func TestScreenRulesConstitutionFailsFirst(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "pairs.jsonl")
	writeText(t, in, `{"id":"a","prompt":"p","chosen":"c","rejected":"r"}`+"\n")
	rules := filepath.Join(dir, "rules.txt")
	writeText(t, rules, "1. Be brief.\n")
	code, _, errs := run(t, "", "screen", "--in", in, "--judge", "rules:../testdata/catalog.json", "--constitution", rules, "--out", filepath.Join(dir, "clean.jsonl"))
	if code != ExitUsage || !strings.Contains(errs, "--constitution") || strings.Contains(errs, "approved") {
		t.Errorf("exit %d, want %d before any summary: %s", code, ExitUsage, errs)
	}
	if got := files(t, dir); strings.Join(got, " ") != "pairs.jsonl rules.txt" {
		t.Errorf("files %v", got)
	}
}

// Issue 7 item 17 (pipeline and data commands): every numeric flag is
// checked before any work, with one line naming the flag and the value,
// exit 2.
func TestStageFlagValidation(t *testing.T) {
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	writeText(t, prompts, `{"id":"a","prompt":"hi"}`+"\n")
	pairsFile := filepath.Join(dir, "pairs.jsonl")
	writeText(t, pairsFile, `{"id":"a","prompt":"p","chosen":"c","rejected":"r"}`+"\n")
	collect := []string{"collect", "--prompts", prompts, "--generator", "openai:http://" + closedPort(t), "--out", filepath.Join(dir, "c.jsonl")}
	rank := []string{"rank", "--in", prompts, "--judge", "rules:../testdata/catalog.json", "--out", filepath.Join(dir, "r.jsonl")}
	screen := []string{"screen", "--in", pairsFile, "--judge", "rules:../testdata/catalog.json", "--out", filepath.Join(dir, "s.jsonl")}
	outs := []string{"--out-train", filepath.Join(dir, "t.jsonl"), "--out-eval", filepath.Join(dir, "e.jsonl")}
	split := append([]string{"data", "split", "--in", pairsFile}, outs...)
	synth := append([]string{"data", "synth"}, outs...)
	imp := append([]string{"import", "--labeled", pairsFile}, outs...)
	cases := []struct {
		base        []string
		flag, value string
	}{
		{collect, "workers", "0"},
		{collect, "max-usd", "NaN"},
		{collect, "max-usd", "-0.5"},
		{collect, "item-timeout", "-1s"},
		{collect, "rpm", "-5"},
		{collect, "tpm", "NaN"},
		{collect, "concurrency", "-1"},
		{collect, "max-attempts", "0"},
		{collect, "max-backoff", "-1s"},
		{collect, "attempt-timeout", "-1s"},
		{collect, "threads", "-3"},
		{collect, "ctx-size", "-1"},
		{collect, "max-tokens", "0"},
		{collect, "n", "1"},
		{rank, "max-tokens", "-1"},
		{rank, "batch-poll", "0s"},
		{rank, "workers", "-2"},
		{screen, "max-tokens", "0"},
		{screen, "max-usd", "Inf"},
		{split, "eval-fraction", "NaN"},
		{split, "eval-fraction", "1.5"},
		{synth, "n", "0"},
		{synth, "eval-fraction", "-0.1"},
		{imp, "max-per-prompt", "0"},
		{imp, "eval-fraction", "2"},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s --%s %s", c.base[0], c.flag, c.value)
		t.Run(name, func(t *testing.T) {
			args := append(append([]string(nil), c.base...), "--"+c.flag+"="+c.value)
			code, _, errs := run(t, "", args...)
			first := strings.SplitN(errs, "\n", 2)[0]
			if code != ExitUsage || !strings.Contains(first, "--"+c.flag+" ") {
				t.Errorf("exit %d, want %d with one line naming --%s: %q", code, ExitUsage, c.flag, errs)
			}
			if vs := strings.TrimPrefix(c.value, "+"); !strings.Contains(strings.ToLower(first), strings.ToLower(strings.TrimSuffix(vs, "s"))) {
				t.Errorf("first line does not name the value %s: %q", c.value, first)
			}
		})
	}
	if got := files(t, dir); strings.Join(got, " ") != "p.jsonl pairs.jsonl" {
		t.Errorf("flag errors left files behind: %v", got)
	}
}
