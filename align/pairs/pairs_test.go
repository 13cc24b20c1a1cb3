package pairs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/align-dev/align/align/jsonl"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Pair // has bits ignored
		wantErr string
	}{
		{name: "plain", in: `{"id":"1","prompt":"p","chosen":"c","rejected":"r","objective":"tone","source":"synthetic"}`,
			want: Pair{ID: "1", Prompt: "p", Chosen: "c", Rejected: "r", Objective: "tone", Source: "synthetic"}},
		{name: "extra kept", in: `{"id":"1","prompt":"p","chosen":"c","rejected":"r","scores":{"a":[1,2]},"n":null}`,
			want: Pair{ID: "1", Prompt: "p", Chosen: "c", Rejected: "r",
				Extra: map[string]json.RawMessage{"scores": json.RawMessage(`{"a":[1,2]}`), "n": json.RawMessage(`null`)}}},
		{name: "conversational", in: `{"id":"2","prompt":[{"role":"system","content":"be nice"},{"role":"user","content":"hi"}],` +
			`"chosen":[{"role":"assistant","content":"Hello!"}],"rejected":[{"role":"assistant","content":"State your query."}]}`,
			want: Pair{ID: "2", PromptMessages: []Message{{Role: "system", Content: "be nice"}, {Role: "user", Content: "hi"}},
				ChosenMessages: []Message{{Role: "assistant", Content: "Hello!"}}, RejectedMessages: []Message{{Role: "assistant", Content: "State your query."}}}},
		{name: "implicit prompt", in: `{"id":"3","chosen":[{"role":"user","content":"hi"},{"role":"assistant","content":"Hello!"}],` +
			`"rejected":[{"role":"user","content":"hi"},{"role":"assistant","content":"What."}]}`,
			want: Pair{ID: "3", PromptMessages: []Message{{Role: "user", Content: "hi"}},
				ChosenMessages: []Message{{Role: "assistant", Content: "Hello!"}}, RejectedMessages: []Message{{Role: "assistant", Content: "What."}}}},
		{name: "missing chosen", in: `{"prompt":"p","rejected":"r"}`, wantErr: `missing field "chosen"`},
		{name: "null chosen", in: `{"prompt":"p","chosen":null,"rejected":"r"}`, wantErr: `missing field "chosen"`},
		{name: "empty rejected", in: `{"prompt":"p","chosen":"c","rejected":"  "}`, wantErr: `empty "rejected"`},
		{name: "missing prompt", in: `{"chosen":"c","rejected":"r"}`, wantErr: `missing field "prompt"`},
		{name: "identical", in: `{"prompt":"p","chosen":"same","rejected":"same"}`, wantErr: `"chosen" and "rejected" are identical`},
		{name: "identical messages", in: `{"prompt":[{"role":"user","content":"p"}],"chosen":[{"role":"assistant","content":"x"}],"rejected":[{"role":"assistant","content":"x"}]}`,
			wantErr: `"chosen" and "rejected" are identical`},
		{name: "number chosen", in: `{"prompt":"p","chosen":3,"rejected":"r"}`, wantErr: `field "chosen": want a string or a list of messages`},
		{name: "mixed forms", in: `{"prompt":"p","chosen":[{"role":"assistant","content":"x"}],"rejected":"r"}`, wantErr: `field "chosen": mixes plain text and message lists`},
		{name: "bad message", in: `{"prompt":[{"role":"user"}],"chosen":[],"rejected":[]}`, wantErr: `field "prompt": message 0: missing "content"`},
		{name: "empty message list", in: `{"prompt":[{"role":"user","content":"p"}],"chosen":[],"rejected":[{"role":"assistant","content":"x"}]}`, wantErr: `empty "chosen"`},
		{name: "id number", in: `{"id":7,"prompt":"p","chosen":"c","rejected":"r"}`, wantErr: `field "id": want a string`},
		{name: "array", in: `[1]`, wantErr: `want a JSON object`},
		{name: "null", in: `null`, wantErr: `want a JSON object`},
		{name: "syntax", in: `{"prompt":`, wantErr: `unexpected end of JSON input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLine([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.has = 0
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestMissingIDGetsContentID(t *testing.T) {
	a, err := ParseLine([]byte(`{"prompt":"p","chosen":"c","rejected":"r"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ParseLine([]byte(`{"prompt":"p","chosen":"c","rejected":"r2"}`))
	if a.ID == "" || a.ID == b.ID || a.ID != a.ContentID() {
		t.Fatalf("ids %q %q", a.ID, b.ID)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, in := range []string{
		`{"id":"1","prompt":"p","chosen":"c <b>","rejected":"r","objective":"tone","source":"synthetic","a":1,"z":{"k":[true]}}`,
		`{"id":"2","prompt":[{"role":"user","content":"hi"}],"chosen":[{"role":"assistant","content":"Hello!"}],"rejected":[{"role":"assistant","content":"No."}]}`,
	} {
		p, err := ParseLine([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		b, err := jsonl.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != in+"\n" {
			t.Errorf("marshal:\n got %s\nwant %s", b, in)
		}
	}
}

func TestMessages(t *testing.T) {
	p := Pair{Prompt: "p", Chosen: "c", Rejected: "r"}
	pr, ch, rj := p.Messages()
	want := [][]Message{{{Role: "user", Content: "p"}}, {{Role: "assistant", Content: "c"}}, {{Role: "assistant", Content: "r"}}}
	if got := [][]Message{pr, ch, rj}; !reflect.DeepEqual(got, want) || p.Conversational() {
		t.Fatalf("got %v", got)
	}
	q := Pair{PromptMessages: []Message{{Role: "system", Content: "s"}, {Role: "user", Content: "u"}}, ChosenMessages: []Message{{Role: "assistant", Content: "c"}}, RejectedMessages: []Message{{Role: "assistant", Content: "r"}}}
	if !q.Conversational() {
		t.Fatal("not conversational")
	}
	tp, tc, _ := q.Text()
	if tp != "system: s\nuser: u" || tc != "c" {
		t.Fatalf("text %q %q", tp, tc)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	data := []byte(content)
	if strings.HasSuffix(name, ".zst") {
		enc, _ := zstd.NewWriter(nil)
		data = enc.EncodeAll(data, nil)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const good = `{"id":"a","prompt":"p1","chosen":"c","rejected":"r","objective":"tone"}
{"id":"b","prompt":"p2","chosen":"c","rejected":"r","objective":"accuracy","source":"human"}
`

func TestLoad(t *testing.T) {
	tests := []struct {
		name        string
		content     string
		opt         LoadOptions
		wantIDs     []string
		wantSkipped int
		wantErr     string // suffix after the path
	}{
		{name: "good", content: good, wantIDs: []string{"a", "b"}},
		{name: "missing chosen", content: good + "\n" + `{"id":"c","prompt":"p","rejected":"r"}` + "\n",
			wantErr: `:4: missing field "chosen"`},
		{name: "malformed", content: good + "{oops\n", wantErr: `:3: invalid character 'o' looking for beginning of object key string`},
		{name: "unknown objective", content: good + `{"id":"c","prompt":"p","chosen":"c","rejected":"r","objective":"vibes"}` + "\n",
			opt: LoadOptions{Objectives: Objectives}, wantErr: `:3: unknown objective "vibes" (allowed: safety, tone, escalation, accuracy)`},
		{name: "missing objective", content: `{"id":"c","prompt":"p","chosen":"c","rejected":"r"}`,
			opt: LoadOptions{Objectives: []string{"tone"}}, wantErr: `:1: missing field "objective" (allowed: tone)`},
		{name: "duplicate id", content: good + `{"id":"a","prompt":"p9","chosen":"c","rejected":"r"}` + "\n",
			wantErr: `:3: duplicate id "a" (first on line 1)`},
		{name: "skip invalid", content: "{oops\n" + good + `{"id":"a","prompt":"p9","chosen":"c","rejected":"r"}` + "\n" +
			`{"id":"d","prompt":"p","chosen":"x","rejected":"x"}` + "\n",
			opt: LoadOptions{SkipInvalid: true}, wantIDs: []string{"a", "b"}, wantSkipped: 3},
	}
	for _, tt := range tests {
		for _, ext := range []string{".jsonl", ".jsonl.zst"} {
			t.Run(tt.name+ext, func(t *testing.T) {
				path := writeFile(t, "train"+ext, tt.content)
				ps, st, err := Load(path, tt.opt)
				if tt.wantErr != "" {
					if err == nil || err.Error() != path+tt.wantErr {
						t.Fatalf("got error %v, want %q", err, path+tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, p := range ps {
					ids = append(ids, p.ID)
				}
				if !reflect.DeepEqual(ids, tt.wantIDs) || st.Read != len(tt.wantIDs) || st.Skipped != tt.wantSkipped {
					t.Fatalf("ids %v read %d skipped %d; want %v skipped %d (errors %q)", ids, st.Read, st.Skipped, tt.wantIDs, tt.wantSkipped, st.Errors)
				}
				if st.ByObjective["tone"] != 1 || st.ByObjective["accuracy"] != 1 || st.BySource["human"] != 1 {
					t.Fatalf("stats %+v", st)
				}
				if len(st.Errors) != tt.wantSkipped {
					t.Fatalf("errors %q", st.Errors)
				}
			})
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ps, _, err := Read(strings.NewReader(good), "good", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out.jsonl.zst")
	if err := Save(path, ps); err != nil {
		t.Fatal(err)
	}
	back, _, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, ps) {
		t.Fatalf("got %+v, want %+v", back, ps)
	}
}

func makePairs(n int) []Pair {
	ps := make([]Pair, n)
	for i := range ps {
		ps[i] = Pair{ID: fmt.Sprintf("id-%d", i), Prompt: "p", Chosen: "c", Rejected: "r"}
	}
	return ps
}

func TestSplit(t *testing.T) {
	ps := makePairs(2000)
	train, eval, err := Split(ps, 0.2, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(train)+len(eval) != len(ps) {
		t.Fatalf("lost pairs: %d + %d", len(train), len(eval))
	}
	// 2000 draws at p=0.2: sd ≈ 18, so 400 ± 90 is a 5-sigma band.
	if len(eval) < 310 || len(eval) > 490 {
		t.Fatalf("eval holds %d of 2000 at fraction 0.2", len(eval))
	}
	// Stable: a pair lands on the same side in a subset or another order.
	side := map[string]bool{}
	for _, p := range eval {
		side[p.ID] = true
	}
	sub := append([]Pair(nil), ps[1000:]...)
	sub = append(sub, ps[:10]...)
	_, eval2, _ := Split(sub, 0.2, 7)
	n := 0
	for _, p := range sub {
		if side[p.ID] {
			n++
		}
	}
	if len(eval2) != n {
		t.Fatalf("subset eval %d, want %d", len(eval2), n)
	}
	for _, p := range eval2 {
		if !side[p.ID] {
			t.Fatalf("%s moved to eval", p.ID)
		}
	}
	// Another seed gives another split.
	_, eval3, _ := Split(ps, 0.2, 8)
	if reflect.DeepEqual(eval, eval3) {
		t.Fatal("seed has no effect")
	}
	for _, f := range []float64{0, 1} {
		tr, ev, _ := Split(ps, f, 7)
		if f == 0 && len(ev) != 0 || f == 1 && len(tr) != 0 {
			t.Fatalf("fraction %g: %d/%d", f, len(tr), len(ev))
		}
	}
	if _, _, err := Split(ps, 1.5, 7); err == nil {
		t.Fatal("fraction 1.5 accepted")
	}
}

func TestDedupe(t *testing.T) {
	ps := []Pair{
		{ID: "1", Prompt: "Is Naruto done?", Chosen: "Yes!", Rejected: "no"},
		{ID: "2", Prompt: "is  naruto DONE?\n", Chosen: "yes!", Rejected: " No"},
		{ID: "3", Prompt: "Is Naruto done?", Chosen: "Yes!", Rejected: "maybe"},
		{ID: "4", Prompt: "Is Naruto done?", Chosen: "no", Rejected: "Yes!"}, // swapped: not a duplicate
	}
	got, dropped := Dedupe(ps)
	var ids []string
	for _, p := range got {
		ids = append(ids, p.ID)
	}
	if want := []string{"1", "3", "4"}; !reflect.DeepEqual(ids, want) || dropped != 1 {
		t.Fatalf("got %v dropped %d, want %v dropped 1", ids, dropped, want)
	}
}

// FuzzParseLine: no panics; any accepted line is valid and survives a
// marshal/parse round trip unchanged.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","prompt":"p","chosen":"c","rejected":"r","objective":"tone","source":"synthetic"}`,
		`{"prompt":"p","chosen":"c","rejected":"r","x":{"y":[1,"2",null]}}`,
		`{"prompt":[{"role":"user","content":"hi"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`,
		`{"chosen":[{"role":"user","content":"hi"},{"role":"assistant","content":"a"}],"rejected":[{"role":"user","content":"hi"},{"role":"assistant","content":"b"}]}`,
		`{"prompt":"p","chosen":"c","rejected":"c"}`, `{"prompt":"\u00e9\ud83d\ude00","chosen":"<&>","rejected":"\n"}`,
		`{"prompt":"p","chosen":null,"rejected":"r"}`, `[]`, `null`, `{`, `{"id":"","prompt":"p","chosen":"c","rejected":"r","id":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		p, err := ParseLine(line)
		if err != nil {
			return
		}
		if p.ID == "" {
			t.Fatal("accepted pair without id")
		}
		if err := p.Validate(nil); err != nil {
			t.Fatalf("accepted invalid pair: %v", err)
		}
		b, err := jsonl.Marshal(p)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		b = b[:len(b)-1]
		if bytes.IndexByte(b, '\n') >= 0 {
			t.Fatalf("marshal produced a newline: %q", b)
		}
		q, err := ParseLine(b)
		if err != nil {
			t.Fatalf("reparse %s: %v", b, err)
		}
		np, ep := normExtra(p)
		nq, eq := normExtra(q)
		if !reflect.DeepEqual(np, nq) || !reflect.DeepEqual(ep, eq) {
			t.Fatalf("round trip:\n%+v\n%+v", p, q)
		}
	})
}

// normExtra decodes Extra values so that equal JSON written differently
// (white space, escapes) compares equal.
func normExtra(p Pair) (Pair, map[string]any) {
	p.has = 0
	m := map[string]any{}
	for k, v := range p.Extra {
		var x any
		json.Unmarshal(v, &x)
		m[k] = x
	}
	p.Extra = nil
	return p, m
}

// Conversational roles are checked where the pair is read, so a pair the
// chat template cannot render fails with file:line, not in training.
func TestConversationalRoles(t *testing.T) {
	tests := []struct {
		name, line, wantErr string // wantErr "": valid
	}{
		{"ok", `{"prompt":[{"role":"system","content":"s"},{"role":"user","content":"q"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`, ""},
		{"implicit prompt", `{"chosen":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"rejected":[{"role":"user","content":"q"},{"role":"assistant","content":"b"}]}`, ""},
		{"wizard", `{"prompt":[{"role":"wizard","content":"q"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`,
			`field "prompt": message 0: role "wizard" is not system, user or assistant`},
		{"user in chosen", `{"prompt":[{"role":"user","content":"q"}],"chosen":[{"role":"user","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`,
			`field "chosen": message 0: role "user" in a response, want assistant messages only`},
		{"user later in rejected", `{"prompt":[{"role":"user","content":"q"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}`,
			`field "rejected": message 1: role "user" in a response, want assistant messages only`},
		{"late system", `{"prompt":[{"role":"user","content":"q"},{"role":"system","content":"s"},{"role":"user","content":"q"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`,
			`field "prompt": message 1: a system message must come first`},
		{"prompt ends with assistant", `{"prompt":[{"role":"user","content":"q"},{"role":"assistant","content":"x"}],"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`,
			`field "prompt": ends with a "assistant" message, want a user message before the response`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "chat.jsonl", good+tt.line+"\n")
			_, _, err := Load(path, LoadOptions{})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("err = %v, want none", err)
			case tt.wantErr != "" && (err == nil || err.Error() != path+":3: "+tt.wantErr):
				t.Fatalf("err = %v, want %s:3: %s", err, path, tt.wantErr)
			}
		})
	}
}

// Load with Dedupe drops exact and normalised repeats (with or without
// ids) and counts them; a repeated id on other content is still an error.
// Without Dedupe a repeated line without an id names the line it repeats,
// not a hash found nowhere in the file.
func TestLoadDedupe(t *testing.T) {
	rowA := `{"id":"a","prompt":"p1","chosen":"c","rejected":"r"}`
	noID := `{"prompt":"p2","chosen":"c","rejected":"r"}`
	content := rowA + "\n" + rowA + "\n" + noID + "\n" + `{"prompt":"P2 ","chosen":"c","rejected":"r"}` + "\n" + noID + "\n"
	path := writeFile(t, "dups.jsonl", content)
	ps, st, err := Load(path, LoadOptions{Dedupe: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || st.Read != 2 || st.Duplicates != 3 {
		t.Errorf("kept %d, read %d, duplicates %d; want 2, 2, 3", len(ps), st.Read, st.Duplicates)
	}
	clash := writeFile(t, "clash.jsonl", rowA+"\n"+`{"id":"a","prompt":"other","chosen":"c","rejected":"r"}`+"\n")
	if _, _, err := Load(clash, LoadOptions{Dedupe: true}); err == nil || err.Error() != clash+`:2: id "a" also on line 1, with other content` {
		t.Errorf("clash: err = %v", err)
	}
	rep := writeFile(t, "rep.jsonl", noID+"\n"+noID+"\n")
	if _, _, err := Load(rep, LoadOptions{}); err == nil || err.Error() != rep+`:2: repeats line 1 (no "id": the same content gets the same id)` {
		t.Errorf("repeat without id: err = %v", err)
	}
}
