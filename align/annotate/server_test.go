package annotate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeCandidates writes n candidate records c0..c(n-1) with two responses.
func writeCandidates(t *testing.T, dir string, n int) string {
	t.Helper()
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"id":"c%d","prompt_id":"p%d","prompt":"question %d","generator":"g","responses":[{"text":"first answer %d"},{"text":"second answer %d"}]}`+"\n", i, i, i, i, i)
	}
	p := filepath.Join(dir, "cand.jsonl")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type testServer struct {
	t      *testing.T
	s      *Server
	ts     *httptest.Server
	tokens map[string]string
	labels string
}

func newTestServer(t *testing.T, in, labels string, names []string, k int, rubric bool) *testServer {
	t.Helper()
	items, err := LoadItems(in)
	if err != nil {
		t.Fatal(err)
	}
	all := names
	if all == nil {
		all = []string{DefaultName}
	}
	toks, err := LoadTokens(TokensPath(labels), all)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(ServeConfig{Items: items, Labels: labels, Addr: "127.0.0.1:0", Annotators: names, Tokens: toks, PerItem: k, Rubric: rubric})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return &testServer{t: t, s: s, ts: ts, tokens: toks, labels: labels}
}

func (ts *testServer) close() {
	ts.ts.Close()
	if err := ts.s.Close(); err != nil {
		ts.t.Fatal(err)
	}
}

// do sends a request as annotator who ("" sends no token) and returns the
// status and body.
func (ts *testServer) do(who, method, path string, body any) (int, []byte) {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, ts.ts.URL+path, rd)
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+ts.tokens[who])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (ts *testServer) next(who string) (ItemView, int) {
	ts.t.Helper()
	code, b := ts.do(who, "GET", "/api/next", nil)
	var v ItemView
	if code == 200 {
		if err := json.Unmarshal(b, &v); err != nil {
			ts.t.Fatal(err)
		}
	}
	return v, code
}

func (ts *testServer) label(who, item, choice string) int {
	ts.t.Helper()
	code, b := ts.do(who, "POST", "/api/label", LabelRequest{ItemID: item, Choice: choice})
	if code != 200 {
		ts.t.Logf("label %s %s %s: %d %s", who, item, choice, code, b)
	}
	return code
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// The JSON API as the issue states it, and the labels file's fields.
func TestAPIContract(t *testing.T) {
	dir := t.TempDir()
	in := writeCandidates(t, dir, 3)
	labels := filepath.Join(dir, "labels.jsonl")
	ts := newTestServer(t, in, labels, nil, 1, false)

	v, code := ts.next("you")
	if code != 200 || v.ItemID != "c0" || v.Prompt != "question 0" || len(v.Responses) != 2 {
		t.Fatalf("GET /api/next: %d %+v", code, v)
	}
	if again, _ := ts.next("you"); again.ItemID != v.ItemID || again.Responses != v.Responses {
		t.Errorf("a second GET /api/next gave %q %v, want the held item %q %v", again.ItemID, again.Responses, v.ItemID, v.Responses)
	}
	if c := ts.label("you", v.ItemID, "a"); c != 200 {
		t.Fatalf("label: %d", c)
	}
	// The label's chosen_index is the input index of the response shown as A.
	lines := readLines(t, labels)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	l := lines[0]
	for _, f := range []string{"item_id", "annotator", "choice", "shown_order", "chosen_index"} {
		if _, ok := l[f]; !ok {
			t.Errorf("labels line lacks %q: %v", f, l)
		}
	}
	order := l["shown_order"].([]any)
	shownA := int(order[0].(float64))
	if l["chosen_index"].(float64) != float64(shownA) || l["annotator"] != "you" || l["choice"] != "a" || l["item_id"] != "c0" {
		t.Errorf("label %v: want chosen_index = shown_order[0]", l)
	}
	if want := fmt.Sprintf("%s answer 0", map[int]string{0: "first", 1: "second"}[shownA]); v.Responses[0] != want {
		t.Errorf("shown A %q, but shown_order says input index %d (%q)", v.Responses[0], shownA, want)
	}

	for _, tc := range []struct {
		name, who, method, path string
		body                    any
		want                    int
	}{
		{"no token", "", "GET", "/api/next", nil, 401},
		{"label without token", "", "POST", "/api/label", LabelRequest{ItemID: "c1", Choice: "a"}, 401},
		{"unknown item", "you", "POST", "/api/label", LabelRequest{ItemID: "nope", Choice: "a"}, 404},
		{"bad choice", "you", "POST", "/api/label", LabelRequest{ItemID: "c1", Choice: "left"}, 400},
		{"not JSON", "you", "POST", "/api/label", "choice=a", 400},
		{"unknown field", "you", "POST", "/api/label", `{"item_id":"c1","choice":"a","extra":1}`, 400},
		{"empty body", "you", "POST", "/api/label", "", 400},
		{"huge body", "you", "POST", "/api/label", `{"item_id":"c1","choice":"a","reason":"` + strings.Repeat("x", 100<<10) + `"}`, 413},
		{"long reason", "you", "POST", "/api/label", LabelRequest{ItemID: "c1", Choice: "a", Reason: strings.Repeat("x", MaxReason+1)}, 400},
		{"scores without --rubric", "you", "POST", "/api/label", `{"item_id":"c1","choice":"a","scores":{"a":{"tone":3}}}`, 400},
		{"relabel differently", "you", "POST", "/api/label", LabelRequest{ItemID: "c0", Choice: "b"}, 409},
		{"GET label", "you", "GET", "/api/label", nil, 405},
		{"POST next", "you", "POST", "/api/next", nil, 405},
		{"unknown path", "you", "GET", "/api/items", nil, 404},
		{"file outside the assets", "", "GET", "/../go.mod", nil, 404},
		{"asset folder", "", "GET", "/assets/app.js", nil, 404},
		{"source", "", "GET", "/server.go", nil, 404},
	} {
		if code, b := ts.do(tc.who, tc.method, tc.path, tc.body); code != tc.want {
			t.Errorf("%s: %s %s: %d %s, want %d", tc.name, tc.method, tc.path, code, b, tc.want)
		}
	}
	// Nothing above wrote a line.
	if n := len(readLines(t, labels)); n != 1 {
		t.Errorf("%d lines after refused requests, want 1", n)
	}
	// A retry of the same label is answered 200 and not written again.
	if c := ts.label("you", "c0", "a"); c != 200 {
		t.Errorf("repeated label: %d, want 200", c)
	}
	if n := len(readLines(t, labels)); n != 1 {
		t.Errorf("%d lines after a repeated label, want 1", n)
	}
	// Label the rest (tie, skip); then 204.
	for _, ch := range []string{"tie", "skip"} {
		v, code := ts.next("you")
		if code != 200 {
			t.Fatalf("next: %d", code)
		}
		if c := ts.label("you", v.ItemID, ch); c != 200 {
			t.Fatalf("label %s: %d", ch, c)
		}
	}
	if _, code := ts.next("you"); code != 204 {
		t.Errorf("next with nothing left: %d, want 204", code)
	}
	for _, l := range readLines(t, labels)[1:] {
		if l["chosen_index"] != nil {
			t.Errorf("%s label has chosen_index %v, want null", l["choice"], l["chosen_index"])
		}
	}
	// Static assets and security headers.
	for _, p := range []string{"/", "/app.js", "/app.css"} {
		resp, err := http.Get(ts.ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d, headers %v", p, resp.StatusCode, resp.Header)
		}
	}
	// A foreign Host header (DNS rebinding) is refused.
	req, _ := http.NewRequest("GET", ts.ts.URL+"/", nil)
	req.Host = "attacker.example:80"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %d, want 421", resp.StatusCode)
	}
}

// A non-loopback address needs named annotators (personal tokens).
func TestNonLoopbackNeedsTokens(t *testing.T) {
	dir := t.TempDir()
	items, err := LoadItems(writeCandidates(t, dir, 2))
	if err != nil {
		t.Fatal(err)
	}
	toks := map[string]string{"you": strings.Repeat("a", 32), "ana": strings.Repeat("b", 32)}
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "[::]:0"} {
		_, err := NewServer(ServeConfig{Items: items, Labels: filepath.Join(dir, "l.jsonl"), Addr: addr, Tokens: toks})
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%s without --annotators: %v, want a refusal", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		s, err := NewServer(ServeConfig{Items: items, Labels: filepath.Join(dir, "l.jsonl"), Addr: addr, Tokens: toks})
		if err != nil {
			t.Errorf("%s: %v", addr, err)
			continue
		}
		s.Close()
	}
	s, err := NewServer(ServeConfig{Items: items, Labels: filepath.Join(dir, "l.jsonl"), Addr: "0.0.0.0:0", Annotators: []string{"ana"}, Tokens: toks})
	if err != nil {
		t.Fatalf("0.0.0.0 with --annotators: %v", err)
	}
	s.Close()
}

// Tokens persist (mode 0600) and new names get new ones.
func TestTokensFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l.jsonl.tokens.json")
	a, err := LoadTokens(p, []string{"ana", "ben"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("tokens file: %v %v, want mode 0600", st.Mode(), err)
	}
	b, err := LoadTokens(p, []string{"ana", "ben", "chi"})
	if err != nil {
		t.Fatal(err)
	}
	if a["ana"] != b["ana"] || a["ben"] != b["ben"] || len(b["chi"]) != 32 || a["ana"] == a["ben"] {
		t.Errorf("tokens %v then %v", a, b)
	}
}

// Undo withdraws the latest label (an appended record), hands the item
// back, and walks back further when repeated; a retried undo changes
// nothing.
func TestUndo(t *testing.T) {
	dir := t.TempDir()
	labels := filepath.Join(dir, "labels.jsonl")
	ts := newTestServer(t, writeCandidates(t, dir, 4), labels, nil, 1, false)
	var ids []string
	for _, ch := range []string{"a", "b"} {
		v, _ := ts.next("you")
		ids = append(ids, v.ItemID)
		ts.label("you", v.ItemID, ch)
	}
	code, b := ts.do("you", "POST", "/api/undo", UndoRequest{ItemID: ids[1]})
	if code != 200 {
		t.Fatalf("undo: %d %s", code, b)
	}
	if code, b := ts.do("you", "POST", "/api/undo", UndoRequest{ItemID: ids[1]}); code != 200 || !strings.Contains(string(b), `"undone":null`) {
		t.Errorf("retried undo: %d %s, want 200 and nothing undone", code, b)
	}
	if v, _ := ts.next("you"); v.ItemID != ids[1] {
		t.Errorf("after undo next is %q, want the undone %q", v.ItemID, ids[1])
	}
	// undo without an item: the latest standing label (ids[0]).
	if code, b := ts.do("you", "POST", "/api/undo", nil); code != 200 || !strings.Contains(string(b), ids[0]) {
		t.Errorf("second undo: %d %s, want %s undone", code, b, ids[0])
	}
	if code, _ := ts.do("you", "POST", "/api/undo", nil); code != 409 {
		t.Errorf("undo with nothing left: %d, want 409", code)
	}
	v, _ := ts.next("you")
	ts.label("you", v.ItemID, "tie")
	ts.close()
	g, err := ReadLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	st := g.standing()
	if len(st) != 1 || st[0].ItemID != ids[0] || st[0].Choice != "tie" || g.Undone != 2 || g.Lines != 5 {
		t.Errorf("standing %+v, undone %d, lines %d; want only %s=tie, 2 undone, 5 lines", st, g.Undone, g.Lines, ids[0])
	}
}

// A restarted server continues: each annotator gets what it has not done,
// a torn last line is dropped, nothing is repeated.
func TestRestartContinues(t *testing.T) {
	dir := t.TempDir()
	in := writeCandidates(t, dir, 6)
	labels := filepath.Join(dir, "labels.jsonl")
	names := []string{"ana", "ben"}
	ts := newTestServer(t, in, labels, names, 2, false)
	done := map[string][]string{}
	for i := 0; i < 2; i++ {
		for _, n := range names {
			v, _ := ts.next(n)
			ts.label(n, v.ItemID, "a")
			done[n] = append(done[n], v.ItemID)
		}
	}
	ts.close()
	// a torn write: half a record, no newline
	f, _ := os.OpenFile(labels, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"item_id":"c5","annotator":"ana","cho`)
	f.Close()

	ts = newTestServer(t, in, labels, names, 2, false)
	if sn := ts.s.Snapshot(); sn.Total != 4 || sn.Complete != 2 {
		t.Errorf("after restart: %+v, want 4 labels, 2 complete items", sn)
	}
	for _, n := range names {
		for {
			v, code := ts.next(n)
			if code == 204 {
				break
			}
			for _, d := range done[n] {
				if d == v.ItemID {
					t.Fatalf("%s got %s again after the restart", n, d)
				}
			}
			ts.label(n, v.ItemID, "b")
			done[n] = append(done[n], v.ItemID)
		}
	}
	ts.close()
	g, err := ReadLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, l := range g.standing() {
		per[l.ItemID]++
	}
	for i := 0; i < 6; i++ {
		if per[fmt.Sprintf("c%d", i)] != 2 {
			t.Errorf("item c%d: %d labels, want 2", i, per[fmt.Sprintf("c%d", i)])
		}
	}
	if strings.Contains(string(must(os.ReadFile(labels))), `"cho`+"\n") {
		t.Error("the torn line is still in the file")
	}

	// Labels made from another input are refused with the file and line.
	other := filepath.Join(dir, "other.jsonl")
	os.WriteFile(other, []byte(`{"id":"c0","prompt":"question 0","generator":"g","responses":[{"text":"changed"},{"text":"second answer 0"}]}`+"\n"), 0o644)
	items, _ := LoadItems(other)
	_, err = NewServer(ServeConfig{Items: items, Labels: labels, Annotators: names, Tokens: ts.tokens, PerItem: 1})
	if err == nil || !strings.Contains(err.Error(), "labels.jsonl:1:") {
		t.Errorf("changed input: %v, want an error naming labels.jsonl:1", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// With --per-item K, concurrent annotators never label an item twice, no
// item gets more than K labels, and every item gets exactly K.
func TestPerItemConcurrent(t *testing.T) {
	dir := t.TempDir()
	in := writeCandidates(t, dir, 60)
	labels := filepath.Join(dir, "labels.jsonl")
	names := []string{"a1", "a2", "a3", "a4", "a5"}
	ts := newTestServer(t, in, labels, names, 3, false)
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				v, code := ts.next(n)
				if code == 204 {
					return
				}
				if c := ts.label(n, v.ItemID, "b"); c != 200 {
					t.Errorf("%s %s: %d", n, v.ItemID, c)
					return
				}
			}
		}()
	}
	wg.Wait()
	ts.close()
	g, err := ReadLabels(labels)
	if err != nil {
		t.Fatal(err) // a second label of an item by one annotator fails here
	}
	per := map[string]map[string]bool{}
	for _, l := range g.standing() {
		if per[l.ItemID] == nil {
			per[l.ItemID] = map[string]bool{}
		}
		per[l.ItemID][l.Annotator] = true
	}
	for i := 0; i < 60; i++ {
		if n := len(per[fmt.Sprintf("c%d", i)]); n != 3 {
			t.Errorf("c%d: %d annotators, want 3", i, n)
		}
	}
	if g.Lines != 180 {
		t.Errorf("%d lines, want 180", g.Lines)
	}
}

// Two annotators asking at once for K=1 items get different items; an idle
// hold expires and the item goes to someone else.
func TestLeases(t *testing.T) {
	dir := t.TempDir()
	in := writeCandidates(t, dir, 3)
	items, _ := LoadItems(in)
	toks, _ := LoadTokens(filepath.Join(dir, "t.json"), []string{"ana", "ben"})
	now := time.Unix(1000, 0)
	s, err := NewServer(ServeConfig{Items: items, Labels: filepath.Join(dir, "l.jsonl"), Annotators: []string{"ana", "ben"}, Tokens: toks,
		PerItem: 1, Lease: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ana, ben := s.ann["ana"], s.ann["ben"]
	s.mu.Lock()
	a1, _ := s.next(ana, now)
	b1, _ := s.next(ben, now)
	s.mu.Unlock()
	if a1 == b1 {
		t.Fatalf("ana and ben both hold item %d", a1)
	}
	now = now.Add(50 * time.Second)
	s.mu.Lock()
	s.next(ben, now) // ben is active, ana is not
	s.mu.Unlock()
	now = now.Add(50 * time.Second) // ana idle 100s, over the lease
	s.mu.Lock()
	b2, _ := s.next(ben, now) // ben still holds b1
	s.dropLease(ben)          // ben labels elsewhere...
	b3, _ := s.next(ben, now) // ...and now gets ana's expired item
	s.mu.Unlock()
	if b2 != b1 || b3 != a1 {
		t.Errorf("ben: %d then %d, want %d then ana's expired %d", b2, b3, b1, a1)
	}
}

// An annotator with nothing to take while others hold items it may still
// get is told to come back (204 with Retry-After), and gets the item when
// a holder skips it; with nothing left at all the 204 has no Retry-After.
func TestNextWhileHeld(t *testing.T) {
	dir := t.TempDir()
	in := writeCandidates(t, dir, 1)
	labels := filepath.Join(dir, "labels.jsonl")
	ts := newTestServer(t, in, labels, []string{"ana", "ben", "cat"}, 2, false)
	next := func(who string) (int, string, string) {
		req, _ := http.NewRequest("GET", ts.ts.URL+"/api/next", nil)
		req.Header.Set("Authorization", "Bearer "+ts.tokens[who])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v ItemView
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		return resp.StatusCode, v.ItemID, resp.Header.Get("Retry-After")
	}
	_, id, _ := next("ana")
	next("ben")
	if code, _, ra := next("cat"); code != 204 || ra == "" {
		t.Fatalf("cat while ana and ben hold the only item: %d, Retry-After %q; want 204 with Retry-After", code, ra)
	}
	if c := ts.label("ben", id, "skip"); c != 200 {
		t.Fatalf("ben's skip: %d", c)
	}
	if code, got, _ := next("cat"); code != 200 || got != id {
		t.Fatalf("cat after ben's skip: %d %q, want 200 %q", code, got, id)
	}
	ts.label("ana", id, "a")
	ts.label("cat", id, "b")
	if code, _, ra := next("ben"); code != 204 || ra != "" {
		t.Errorf("ben with the item complete: %d, Retry-After %q; want 204 without", code, ra)
	}
}

// With --rubric, scores given by shown position are stored by input index.
func TestRubricScores(t *testing.T) {
	dir := t.TempDir()
	labels := filepath.Join(dir, "labels.jsonl")
	ts := newTestServer(t, writeCandidates(t, dir, 8), labels, nil, 1, true)
	for i := 0; i < 8; i++ {
		v, _ := ts.next("you")
		if !v.Rubric || len(v.Criteria) != 4 {
			t.Fatalf("view %+v: want rubric with 4 criteria", v)
		}
		// score the response shown as A 5 on tone, B 1
		code, b := ts.do("you", "POST", "/api/label", fmt.Sprintf(`{"item_id":%q,"choice":"a","scores":{"a":{"tone":5,"accuracy":4},"b":{"tone":1}},"reason":"A is kinder"}`, v.ItemID))
		if code != 200 {
			t.Fatalf("%d %s", code, b)
		}
	}
	if code, _ := ts.do("you", "POST", "/api/label", `{"item_id":"c0","choice":"a","scores":{"a":{"tone":6}}}`); code != 400 {
		t.Errorf("score 6: %d, want 400", code)
	}
	ts.close()
	g, _ := ReadLabels(labels)
	swapped := 0
	for _, l := range g.standing() {
		k := 0
		if l.ShownOrder[0] != l.Indexes[0] {
			k = 1
			swapped++
		}
		if l.Scores[k].Tone != 5 || l.Scores[k].Accuracy != 4 || l.Scores[1-k].Tone != 1 || l.Reason != "A is kinder" {
			t.Errorf("label %s shown %v: scores %+v", l.ItemID, l.ShownOrder, l.Scores)
		}
	}
	if swapped == 0 || swapped == 8 {
		t.Errorf("%d of 8 items shown swapped: the shown order is not randomised", swapped)
	}
}
