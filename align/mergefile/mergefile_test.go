package mergefile

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// deadPID is the id of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	pid := cmd.Process.Pid
	if pidAlive(pid) {
		t.Skip("the pid of an exited process was reused at once")
	}
	return pid
}

// Only our own temporary files of dead merges go; everything else stays.
func TestRemoveStaleTemps(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.gguf")
	dead := deadPID(t)
	files := map[string]string{
		TempName(out, dead):                          "GGUF\x03\x00partial model", // a killed merge: removed
		TempName(filepath.Join(dir, "x.gguf"), dead): "GGUF other output",         // another --out: kept
		TempName(out, os.Getpid()):                   "GGUF a merge running now",  // alive: kept
		out + ".tmp.notes":                           "GGUF",                      // not a pid: kept
		out + ".tmp.0" + "123":                       "GGUF",                      // not how a pid is written: kept
		out:                                          "GGUF the old output",       // kept
	}
	notOurs := filepath.Join(dir, "m.gguf.tmp.999999999")
	files[notOurs] = "my own notes" // a dead pid, but not a GGUF: kept
	for p, body := range files {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	empty := TempName(out, dead+1)
	if !pidAlive(dead + 1) {
		os.WriteFile(empty, nil, 0o644) // killed before it wrote a byte: removed
	} else {
		empty = ""
	}
	removed, err := RemoveStaleTemps(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{TempName(out, dead)}
	if empty != "" {
		want = append(want, empty)
	}
	if len(want) == 2 && want[0] > want[1] {
		want[0], want[1] = want[1], want[0]
	}
	if !reflect.DeepEqual(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for p, body := range files {
		if p == TempName(out, dead) {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s is still there", p)
			}
			continue
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != body {
			t.Errorf("%s changed: %q, %v", p, b, err)
		}
	}
	// a missing folder is nothing to clean
	if r, err := RemoveStaleTemps(filepath.Join(dir, "no", "m.gguf")); err != nil || r != nil {
		t.Errorf("missing folder: %v, %v", r, err)
	}
}

func TestValidType(t *testing.T) {
	for _, c := range []struct {
		t    string
		want bool
	}{{"q4_k", true}, {"Q4_K", true}, {"iq4_xs", true}, {"f32", true}, {"iq2_xxs", false}, {"q9", false}, {"", false}} {
		if got := ValidType(c.t); got != c.want {
			t.Errorf("ValidType(%q) = %v", c.t, got)
		}
	}
}
