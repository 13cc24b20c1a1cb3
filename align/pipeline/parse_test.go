package pipeline

import (
	"encoding/json"
	"strings"
	"testing"
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
