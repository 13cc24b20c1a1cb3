package pairs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TRL's unpaired format, plain and conversational ("prompt" or
// "messages"), loads beside pairs; bad records name file and line.
func TestLoadAllUnpaired(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kto.jsonl")
	os.WriteFile(path, []byte(`{"id":"u1","prompt":"Tom had a dog.","completion":"They played all day.","label":true,"objective":"tone","note":1}
{"id":"u2","messages":[{"role":"user","content":"hi"}],"completion":[{"role":"assistant","content":"go away"}],"label":false}
{"id":"p1","prompt":"p","chosen":"c","rejected":"r"}
`), 0o644)
	d, st, err := LoadAll(path, LoadOptions{Unpaired: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Pairs) != 1 || len(d.Unpaired) != 2 || st.Desirable != 1 || st.Undesirable != 1 {
		t.Fatalf("got %d pairs, %d unpaired, stats %+v", len(d.Pairs), len(d.Unpaired), st)
	}
	u := d.Unpaired[0]
	if u.ID != "u1" || u.Prompt != "Tom had a dog." || u.Completion != "They played all day." || !u.Label || u.Objective != "tone" || string(u.Extra["note"]) != "1" {
		t.Errorf("plain example: %+v", u)
	}
	c := d.Unpaired[1]
	pm, cm := c.Messages()
	if c.Label || !c.Conversational() || !reflect.DeepEqual(pm, []Message{{Role: "user", Content: "hi"}}) || !reflect.DeepEqual(cm, []Message{{Role: "assistant", Content: "go away"}}) {
		t.Errorf("conversational example: %+v", c)
	}
	// a round trip keeps every field
	out := filepath.Join(dir, "out.jsonl")
	if err := SaveUnpaired(out, d.Unpaired); err != nil {
		t.Fatal(err)
	}
	d2, _, err := LoadAll(out, LoadOptions{Unpaired: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range d2.Unpaired {
		d2.Unpaired[i].hasID, d.Unpaired[i].hasID = false, false
	}
	if !reflect.DeepEqual(d2.Unpaired, d.Unpaired) {
		t.Errorf("round trip:\n got %+v\nwant %+v", d2.Unpaired, d.Unpaired)
	}
	// Load (pairs only) refuses an unpaired record, naming the line
	if _, _, err := Load(path, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "kto.jsonl:1: an unpaired example") {
		t.Errorf("Load of unpaired data: %v", err)
	}

	for _, tt := range []struct{ line, want string }{
		{`{"prompt":"p","completion":"c","label":"yes"}`, `bad.jsonl:2: field "label": want true or false (got "yes")`},
		{`{"prompt":"p","completion":"c"}`, `bad.jsonl:2: missing field "label"`},
		{`{"prompt":"p","label":true}`, `bad.jsonl:2: missing field "completion"`},
		{`{"prompt":"p","completion":" ","label":true}`, `bad.jsonl:2: empty "completion"`},
		{`{"prompt":"p","completion":[{"role":"assistant","content":"x"}],"label":true}`, `bad.jsonl:2: field "completion": mixes plain text and message lists`},
		{`{"messages":[{"role":"user","content":"p"}],"completion":[{"role":"user","content":"x"}],"label":true}`, `bad.jsonl:2: field "completion": message 0: role "user" in a response`},
		{`{"id":"a","prompt":"q","completion":"c","label":true}`, `bad.jsonl:2: duplicate id "a" (first on line 1)`},
	} {
		bad := filepath.Join(dir, "bad.jsonl")
		os.WriteFile(bad, []byte(`{"id":"a","prompt":"p","completion":"c","label":true}`+"\n"+tt.line+"\n"), 0o644)
		_, _, err := LoadAll(bad, LoadOptions{Unpaired: true})
		if err == nil || !strings.HasPrefix(err.Error(), bad[:len(bad)-len("bad.jsonl")]+tt.want) {
			t.Errorf("%s: got %v, want %q", tt.line, err, tt.want)
		}
		d, st, err := LoadAll(bad, LoadOptions{Unpaired: true, SkipInvalid: true})
		if err != nil || len(d.Unpaired) != 1 || st.Skipped != 1 {
			t.Errorf("%s with SkipInvalid: %v, %d kept, %d skipped", tt.line, err, len(d.Unpaired), st.Skipped)
		}
	}
}

func TestPairAsUnpaired(t *testing.T) {
	p := Pair{ID: "x", Prompt: "p", Chosen: "c", Rejected: "r", Objective: "tone"}
	d, u := p.Unpaired()
	if d.ID != "x#desirable" || !d.Label || d.Completion != "c" || u.ID != "x#undesirable" || u.Label || u.Completion != "r" || u.Objective != "tone" {
		t.Errorf("got %+v and %+v", d, u)
	}
}
