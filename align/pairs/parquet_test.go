package pairs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Parquet files written by another implementation (hyparquet-writer,
// scripts/parquet-fixtures.mjs) read as their JSON Lines equivalents: TRL's
// standard and conversational columns, Anthropic's HH text (as the
// conversation it holds), extra columns kept.
func TestParquetMatchesJSONL(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "pairs", "hub")
	for _, c := range []struct{ parquet, jsonl string }{
		{"trl-standard.parquet", "trl-standard.jsonl"},
		{"trl-conversational.parquet", "trl-conversational.jsonl"},
		{"hh.parquet", "hh.jsonl"},
		{"hh.parquet", "hh-messages.jsonl"},
	} {
		t.Run(c.parquet+"="+c.jsonl, func(t *testing.T) {
			got, st, err := Load(filepath.Join(dir, c.parquet), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := Load(filepath.Join(dir, c.jsonl), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(c.jsonl, "-messages.jsonl") {
				for i := range want { // HH names no prompt; the JSON Lines form does
					want[i].has &^= hasPrompt
				}
			}
			if len(got) == 0 || !reflect.DeepEqual(got, want) {
				t.Errorf("parquet %+v\njsonl   %+v", got, want)
			}
			if strings.HasPrefix(c.parquet, "trl-conv") || strings.HasPrefix(c.parquet, "hh") {
				if st.Conversational != len(got) {
					t.Errorf("%d of %d conversational", st.Conversational, len(got))
				}
			}
		})
	}
}

func TestParquetErrorsNameRow(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "pairs", "hub")
	_, _, err := Load(filepath.Join(dir, "bad-row.parquet"), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "bad-row.parquet: row 3: ") || !strings.Contains(err.Error(), "rejected") {
		t.Errorf("err = %v, want row 3 and the field named", err)
	}
	ps, st, err := Load(filepath.Join(dir, "bad-row.parquet"), LoadOptions{SkipInvalid: true})
	if err != nil || len(ps) != 2 || st.Skipped != 1 {
		t.Errorf("skip invalid: %d pairs, %+v, %v", len(ps), st, err)
	}
	junk := filepath.Join(t.TempDir(), "junk.parquet")
	os.WriteFile(junk, []byte("{\"prompt\": \"not parquet\"}\n"), 0o644)
	if _, _, err := Load(junk, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "junk.parquet: not a readable Parquet file") {
		t.Errorf("junk: %v", err)
	}
}

func TestHHText(t *testing.T) {
	ms, ok := hhTurns("Human: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:")
	want := []Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "hello"}, {Role: "user", Content: "bye"}, {Role: "assistant", Content: ""}}
	if !ok || !reflect.DeepEqual(ms, want) {
		t.Errorf("turns %v %v", ms, ok)
	}
	if _, ok := hhTurns("plain text"); ok {
		t.Error("plain text read as HH")
	}
	// HH prompt with plain responses (as some processed sets ship it)
	var p Pair
	if err := p.UnmarshalJSON([]byte(`{"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " hello", "rejected": " go away"}`)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.PromptMessages, []Message{{Role: "user", Content: "hi"}}) || p.ChosenMessages[0].Content != "hello" {
		t.Errorf("pair %+v", p)
	}
}
