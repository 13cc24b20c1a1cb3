package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkOutput accepts a stage's own records (a torn last line included:
// resume drops it) and refuses another kind with file:line.
func TestCheckOutput(t *testing.T) {
	dir := t.TempDir()
	cand := `{"id":"c1","prompt_id":"q1","prompt":"hi","generator":"g","responses":[{"text":"a"},{"text":"b"}]}`
	pair := `{"id":"p1","prompt":"hi","chosen":"a","rejected":"b"}`
	ranked := `{"id":"p2","prompt":"hi","chosen":"a","rejected":"b","candidates_id":"c1","judge":"j","source":"rank"}`
	screened := `{"id":"p3","prompt":"hi","chosen":"a","rejected":"b","screen":{"decision":"approve"}}`
	dead := `{"id":"d1","stage":"rank","model":"m","error":"e","kind":"call_failed","attempts":1,"input":{}}`
	tests := []struct {
		name, body string
		want       recordKind
		wantErr    string // "" when accepted
	}{
		{"missing file", "", kindCandidate, ""},
		{"own records", cand + "\n" + cand + "\n", kindCandidate, ""},
		{"torn last line", cand + "\n" + cand[:30], kindCandidate, ""},
		{"pairs as candidates", pair + "\n", kindCandidate, ":1: holds preference pairs, not collect candidates"},
		{"candidates as ranked", cand + "\n", kindRankedPair, ":1: holds collect candidates, not ranked pairs"},
		{"plain pairs as ranked", ranked + "\n" + pair + "\n", kindRankedPair, ":2: holds preference pairs, not ranked pairs"},
		{"ranked as screened", ranked + "\n", kindScreened, ":1: holds ranked pairs, not screened pairs"},
		{"screened", screened + "\n", kindScreened, ""},
		{"other stage's dead letters", dead + "\n", deadKind("collect"), ":1: holds rank dead letters, not collect dead letters"},
		{"own dead letters", dead + "\n", deadKind("rank"), ""},
		{"batch jobs", `{"id":"j","arn":"arn:x","model":"m","items":["a"]}` + "\n", kindBatchJob, ""},
		{"pairs as batch jobs", pair + "\n", kindBatchJob, ":1: holds preference pairs, not batch job records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".jsonl")
			if tt.body != "" {
				os.WriteFile(path, []byte(tt.body), 0o644)
			}
			err := checkOutput(path, "--out", tt.want)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), path+tt.wantErr)):
				t.Errorf("err = %v, want %s%s", err, path, tt.wantErr)
			}
		})
	}
}
