package jsonl

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func idOf(raw json.RawMessage) (string, error) {
	var r rec
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", err
	}
	if r.ID == "" {
		return "", errors.New("record without id")
	}
	return r.ID, nil
}

func keys(m map[string]bool) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

func readIDs(t *testing.T, path string) []string {
	t.Helper()
	rc, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	recs, _, errs := readAll(t, rc, path)
	if len(errs) > 0 {
		t.Fatalf("reading %s: %v", path, errs)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestOpenAppendPlain(t *testing.T) {
	tests := []struct {
		name     string
		existing string // "" with missing=true: no file
		missing  bool
		wantDone []string
		wantKeep string // file content after OpenAppend
		wantErr  string
	}{
		{name: "new file", missing: true, wantDone: nil, wantKeep: ""},
		{name: "empty file", existing: "", wantDone: nil, wantKeep: ""},
		{name: "clean", existing: "{\"id\":\"a\"}\n{\"id\":\"b\"}\n", wantDone: []string{"a", "b"}, wantKeep: "{\"id\":\"a\"}\n{\"id\":\"b\"}\n"},
		{name: "torn no newline", existing: "{\"id\":\"a\"}\n{\"id\":\"b\"", wantDone: []string{"a"}, wantKeep: "{\"id\":\"a\"}\n"},
		{name: "torn valid json without newline", existing: "{\"id\":\"a\"}\n{\"id\":\"b\"}", wantDone: []string{"a"}, wantKeep: "{\"id\":\"a\"}\n"},
		{name: "invalid last line", existing: "{\"id\":\"a\"}\n{\"id\":\n", wantDone: []string{"a"}, wantKeep: "{\"id\":\"a\"}\n"},
		{name: "blank lines kept", existing: "\n{\"id\":\"a\"}\n\n", wantDone: []string{"a"}, wantKeep: "\n{\"id\":\"a\"}\n\n"},
		{name: "damage before the last", existing: "{\"id\":\n{\"id\":\"b\"}\n", wantErr: "out.jsonl:1: invalid JSON in a record before the last"},
		{name: "a file that is not ours, one line", existing: "GGUF\x03\x00binary", wantErr: "out.jsonl:1: " + errNotOurs.Error()},
		{name: "not ours after records", existing: "{\"id\":\"a\"}\nplain text\n", wantErr: "out.jsonl:2: " + errNotOurs.Error()},
		{name: "id error names line", existing: "{\"id\":\"a\"}\n{\"n\":1}\n", wantErr: "out.jsonl:2: record without id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.jsonl")
			if !tt.missing {
				if err := os.WriteFile(path, []byte(tt.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a, done, err := OpenAppend(path, idOf)
			if tt.wantErr != "" {
				if err == nil || !strings.HasSuffix(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want suffix %q", err, tt.wantErr)
				}
				b, _ := os.ReadFile(path)
				if string(b) != tt.existing {
					t.Fatalf("file changed on error: %q", b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(done); !reflect.DeepEqual(got, tt.wantDone) {
				t.Errorf("done: got %v, want %v", got, tt.wantDone)
			}
			b, _ := os.ReadFile(path)
			if string(b) != tt.wantKeep {
				t.Errorf("after open: got %q, want %q", b, tt.wantKeep)
			}
			if err := a.Write(rec{ID: "z", N: 1}); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatalf("second close: %v", err)
			}
			if err := a.Write(rec{ID: "late"}); err == nil {
				t.Fatal("write after close succeeded")
			}
			b, _ = os.ReadFile(path)
			if want := tt.wantKeep + "{\"id\":\"z\",\"n\":1}\n"; string(b) != want {
				t.Errorf("after write: got %q, want %q", b, want)
			}
		})
	}
}

// A crash can cut a file at any byte. Whatever the cut, OpenAppend must
// keep exactly the records that are whole and let the run finish the rest.
func TestOpenAppendEveryCut(t *testing.T) {
	for _, ext := range []string{".jsonl", ".jsonl.zst"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			full := filepath.Join(dir, "full"+ext)
			a, _, err := OpenAppend(full, idOf)
			if err != nil {
				t.Fatal(err)
			}
			all := []string{"a", "b", "c"}
			var ends []int // file size after each record
			for _, id := range all {
				if err := a.Write(rec{ID: id, N: len(id)}); err != nil {
					t.Fatal(err)
				}
				st, _ := os.Stat(full)
				ends = append(ends, int(st.Size()))
			}
			a.Close()
			data, _ := os.ReadFile(full)
			if got := readIDs(t, full); !reflect.DeepEqual(got, all) {
				t.Fatalf("full file reads %v", got)
			}
			for cut := 0; cut <= len(data); cut++ {
				path := filepath.Join(dir, "cut"+ext)
				if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
					t.Fatal(err)
				}
				whole := 0
				for whole < len(ends) && ends[whole] <= cut {
					whole++
				}
				a, done, err := OpenAppend(path, idOf)
				if err != nil {
					t.Fatalf("cut %d: %v", cut, err)
				}
				if got := keys(done); !reflect.DeepEqual(got, all[:whole]) && !(whole == 0 && got == nil) {
					t.Fatalf("cut %d: done %v, want %v", cut, got, all[:whole])
				}
				for _, id := range all {
					if !done[id] {
						if err := a.Write(rec{ID: id, N: len(id)}); err != nil {
							t.Fatal(err)
						}
					}
				}
				a.Close()
				if got := readIDs(t, path); !reflect.DeepEqual(got, all) {
					t.Fatalf("cut %d: after resume reads %v, want %v", cut, got, all)
				}
			}
		})
	}
}

func TestOpenAppendZstdCorruptMiddle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.jsonl.zst")
	a, _, err := OpenAppend(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Write(rec{ID: "a"})
	a.Write(rec{ID: "b"})
	a.Close()
	data, _ := os.ReadFile(path)
	data[len(data)/2-4] ^= 0xff // inside the first frame's payload
	os.WriteFile(path, data, 0o644)
	if _, _, err := OpenAppend(path, nil); err == nil || !strings.Contains(err.Error(), "frame 1") {
		t.Fatalf("got %v, want an error naming frame 1", err)
	}
	if _, _, err := OpenAppend("-", nil); err == nil {
		t.Fatal("appending to - succeeded")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	for _, name := range []string{"out.jsonl", "out.jsonl.zst"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			write := func(ids ...string) func(io.Writer) error {
				return func(w io.Writer) error {
					for _, id := range ids {
						if err := Encode(w, rec{ID: id}); err != nil {
							return err
						}
					}
					return nil
				}
			}
			if err := WriteFileAtomic(path, write("a", "b")); err != nil {
				t.Fatal(err)
			}
			if got := readIDs(t, path); !reflect.DeepEqual(got, []string{"a", "b"}) {
				t.Fatalf("got %v", got)
			}
			st, _ := os.Stat(path)
			if st.Mode().Perm() != 0o644 {
				t.Errorf("mode %v, want 0644", st.Mode().Perm())
			}
			// A failing writer leaves the old file and no temporary behind.
			boom := errors.New("boom")
			err := WriteFileAtomic(path, func(w io.Writer) error {
				write("c")(w)
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("got %v, want boom", err)
			}
			if got := readIDs(t, path); !reflect.DeepEqual(got, []string{"a", "b"}) {
				t.Fatalf("after failed write: %v", got)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Fatalf("directory holds %d entries, want 1", len(ents))
			}
			b, _ := os.ReadFile(path)
			if isZ := strings.HasPrefix(string(b), "\x28\xb5\x2f\xfd"); isZ != IsZstd(path) {
				t.Fatalf("zstd magic present=%v for %s", isZ, path)
			}
		})
	}
}
