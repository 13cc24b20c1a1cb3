package pipeline

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParsePrompt(t *testing.T) {
	tests := []struct {
		line, wantErr string
		msgs          int
	}{
		{`{"prompt":"hi"}`, "", 1},
		{`{"id":"x","messages":[{"role":"system","content":"s"},{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}`, "", 3},
		{`{"prompt":"hi","messages":[]}`, "not both", 0},
		{`{"prompt":""}`, "empty", 0},
		{`{}`, "missing", 0},
		{`[1]`, "object", 0},
		{`{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}`, "end with a user", 0},
		{`{"messages":[{"role":"tool","content":"a"}]}`, "role", 0},
		{`{"messages":[{"role":"user"}]}`, "message 0", 0},
	}
	for _, tt := range tests {
		p, err := ParsePrompt([]byte(tt.line))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.line, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(p.Conversation()) != tt.msgs || p.ID == "" {
			t.Errorf("%s: %+v, %v", tt.line, p, err)
		}
	}
}

// FuzzParsePrompt: parsing never panics, and a parsed prompt written back
// as JSON parses to the same id and conversation.
func FuzzParsePrompt(f *testing.F) {
	for _, s := range []string{`{"prompt":"hi"}`, `{"id":"a","prompt":"x","objective":"tone","system":"s"}`,
		`{"messages":[{"role":"system","content":"s"},{"role":"user","content":"a"}]}`, `{"prompt":1}`, `{"messages":null}`, `nul`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		p, err := ParsePrompt(line)
		if err != nil {
			return
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := ParsePrompt(b)
		if err != nil {
			t.Fatalf("round trip of %q: %v", b, err)
		}
		if q.ID != p.ID || q.Key() != p.Key() || q.Objective != p.Objective {
			t.Fatalf("round trip changed %+v to %+v", p, q)
		}
	})
}

// The progress line shows the spending ceiling beside the spend, and a
// redraw never outgrows the terminal (issue 7 items 4 and 16).
func TestProgressLineCeilingAndWidth(t *testing.T) {
	p := &Progress{stage: "collect", spend: func() float64 { return 0.0123 }, start: time.Now()}
	p.Total.Store(3000)
	p.Done.Store(1234)
	p.Failed.Store(7)
	if l := p.line(); strings.Contains(l, " of $") {
		t.Errorf("no ceiling, line %q shows one", l)
	}
	p.setMax(5)
	l := p.line()
	if !strings.Contains(l, "$0.0123 of $5.00") {
		t.Errorf("line %q lacks the ceiling", l)
	}
	for _, width := range []int{20, 40, 60} {
		if got := clip(l, width); len([]rune(got)) >= width || !strings.HasPrefix(l, got) {
			t.Errorf("clip(%q, %d) = %q", l, width, got)
		}
	}
	if got := clip(l, 0); got != l {
		t.Errorf("unknown width cut the line to %q", got)
	}
	t.Setenv("COLUMNS", "61")
	if n := terminalWidth(io.Discard); n != 61 {
		t.Errorf("terminalWidth = %d with COLUMNS=61", n)
	}
}
