package jsonl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

type rec struct {
	ID string `json:"id"`
	N  int    `json:"n,omitempty"`
}

func readAll(t *testing.T, r io.Reader, name string) (recs []rec, lines []int, errs []string) {
	t.Helper()
	jr := NewReader(r, name)
	for {
		var v rec
		line, err := jr.Next(&v)
		if err == io.EOF {
			return
		}
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("non-line error: %v", err)
			}
			errs = append(errs, err.Error())
			continue
		}
		recs = append(recs, v)
		lines = append(lines, line)
	}
}

func TestReader(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // beyond bufio.Scanner's 64 KiB
	tests := []struct {
		name      string
		in        string
		wantIDs   []string
		wantLines []int
		wantErrs  []string
	}{
		{"empty", "", nil, nil, nil},
		{"one no newline", `{"id":"a"}`, []string{"a"}, []int{1}, nil},
		{"blank lines and crlf", "\n{\"id\":\"a\"}\r\n  \r\n\t\n{\"id\":\"b\"}\n", []string{"a", "b"}, []int{2, 5}, nil},
		{"bom", "\xef\xbb\xbf{\"id\":\"a\"}\n", []string{"a"}, []int{1}, nil},
		{"long line", `{"id":"` + long + `"}` + "\n" + `{"id":"b"}`, []string{long, "b"}, []int{1, 2}, nil},
		{"malformed then good", "{\"id\":\"a\"}\n{\"id\":\n{\"id\":\"c\"}\n", []string{"a", "c"}, []int{1, 3},
			[]string{"f.jsonl:2: unexpected end of JSON input"}},
		{"two values on a line", "{\"id\":\"a\"} {\"id\":\"b\"}\n", nil, nil,
			[]string{"f.jsonl:1: invalid character '{' after top-level value"}},
		{"wrong type", "{\"id\":3}\n", nil, nil,
			[]string{"f.jsonl:1: json: cannot unmarshal number into Go struct field rec.id of type string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, lines, errs := readAll(t, strings.NewReader(tt.in), "f.jsonl")
			var ids []string
			for _, r := range recs {
				ids = append(ids, r.ID)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Errorf("ids: got %.40q, want %.40q", ids, tt.wantIDs)
			}
			if !reflect.DeepEqual(lines, tt.wantLines) {
				t.Errorf("lines: got %v, want %v", lines, tt.wantLines)
			}
			if !reflect.DeepEqual(errs, tt.wantErrs) {
				t.Errorf("errors: got %q, want %q", errs, tt.wantErrs)
			}
		})
	}
}

type failReader struct{ n int }

func (f *failReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		f.n++
		return copy(p, "{\"id\":\"a\"}\n{\"id"), nil
	}
	return 0, errors.New("disk on fire")
}

func TestReaderReadErrorIsFinal(t *testing.T) {
	r := NewReader(&failReader{}, "f.jsonl")
	var v rec
	if _, err := r.Next(&v); err != nil || v.ID != "a" {
		t.Fatalf("first record: %v %v", v, err)
	}
	_, err := r.Next(&v)
	if err == nil || err.Error() != "f.jsonl:2: disk on fire" {
		t.Fatalf("got %v, want f.jsonl:2: disk on fire", err)
	}
	if _, err2 := r.Next(&v); err2 != err {
		t.Fatalf("error not sticky: %v", err2)
	}
}

func TestOpenZstd(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.jsonl.zst")
	// Two independently compressed frames, as OpenAppend writes them.
	enc, _ := zstd.NewWriter(nil)
	var data []byte
	data = append(data, enc.EncodeAll([]byte("{\"id\":\"a\"}\n"), nil)...)
	data = append(data, enc.EncodeAll([]byte("{\"id\":\"b\"}\n"), nil)...)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	recs, _, errs := readAll(t, rc, path)
	if len(errs) > 0 || len(recs) != 2 || recs[0].ID != "a" || recs[1].ID != "b" {
		t.Fatalf("got %v %v", recs, errs)
	}
	if _, err := Open(filepath.Join(dir, "missing.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v", err)
	}
}

func TestRecordID(t *testing.T) {
	tests := []struct {
		a, b []string
		same bool
	}{
		{[]string{"x", "y"}, []string{"x", "y"}, true},
		{[]string{"ab", "c"}, []string{"a", "bc"}, false},
		{[]string{"a", ""}, []string{"a"}, false},
		{nil, []string{""}, false},
	}
	for _, tt := range tests {
		ia, ib := RecordID(tt.a...), RecordID(tt.b...)
		if (ia == ib) != tt.same {
			t.Errorf("RecordID(%q)=%s RecordID(%q)=%s, same=%v", tt.a, ia, tt.b, ib, tt.same)
		}
		if len(ia) != 32 {
			t.Errorf("len(%s) = %d, want 32", ia, len(ia))
		}
	}
	// Pinned (computed independently in Python: sha256 over little-endian
	// uint64 length + bytes per part): ids are stored in files and must never
	// change.
	if got, want := RecordID("pair", "hello"), "8380b6adafd12d8f306336d852d64483"; got != want {
		t.Errorf("RecordID(pair, hello) = %s, want %s", got, want)
	}
}

func TestMarshalNoHTMLEscape(t *testing.T) {
	b, err := Marshal(map[string]string{"s": "<b>&</b>"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"s":"<b>&</b>"}`+"\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"", "\n", `{"id":"a"}`, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n", "\xef\xbb\xbf{}\r\n", "{\n}", "[1,2]\n\"x\"\n3",
		"{\"id\":\"a\"} x\n", "\x00\xff\n{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), "fuzz")
		prev := 0
		for {
			raw, line, err := r.NextRaw()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("NextRaw: %v", err)
			}
			if line <= prev {
				t.Fatalf("line numbers not increasing: %d after %d", line, prev)
			}
			prev = line
			if len(bytes.TrimSpace(raw)) == 0 || bytes.IndexByte(raw, '\n') >= 0 {
				t.Fatalf("line %d: got %q", line, raw)
			}
			var v any
			if json.Unmarshal(raw, &v) == nil {
				// A valid record re-encodes to one line that reads back equal.
				b, err := Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				var w any
				if _, err := NewReader(bytes.NewReader(b), "x").Next(&w); err != nil || !reflect.DeepEqual(v, w) {
					t.Fatalf("round trip: %v %v %v", v, w, err)
				}
			}
		}
		if n := bytes.Count(data, []byte{'\n'}); prev > n+1 {
			t.Fatalf("line %d beyond %d newlines", prev, n)
		}
	})
}

func ExampleRecordID() {
	fmt.Println(len(RecordID("collect", "model", "prompt")))
	// Output: 32
}
