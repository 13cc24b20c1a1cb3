package run

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/align-dev/align/align/dirlock"
)

func anyMethod(string) bool { return true }

// ClaimDir holds a run dir against a second run, new or resumed, and
// never leaves a folder that CheckOut refuses or a file in one it may not
// use.
func TestClaimDir(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	c, err := ClaimDir(out, false, false, anyMethod, "align train")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, "config.json"), []byte(`{"Method":"sft","Model":"m.gguf"}`), 0o644)
	for _, resume := range []bool{false, true} {
		if _, err := ClaimDir(out, resume, true, anyMethod, "align train"); !dirlock.IsHeld(err) {
			t.Errorf("second claim (resume %v): %v", resume, err)
		}
	}
	if err := CheckOut(out, true, anyMethod); !dirlock.IsHeld(err) {
		t.Errorf("CheckOut of a dir in use: %v", err)
	}
	c.Release(nil)
	if _, err := os.Stat(filepath.Join(out, "config.json")); err != nil {
		t.Fatalf("a finished run lost its files: %v", err)
	}
	// a resumed run that fails keeps every file, checkpoints or not
	if c, err = ClaimDir(out, true, false, anyMethod, "align train"); err != nil {
		t.Fatalf("resume after release: %v", err)
	}
	c.Release(errors.New("failed"))
	if _, err := os.Stat(filepath.Join(out, "config.json")); err != nil {
		t.Fatalf("a failed resume removed the run's files: %v", err)
	}

	// a run that stopped before writing anything left only its lock file
	// (kill -9): the folder is as good as empty
	only := t.TempDir()
	os.WriteFile(filepath.Join(only, dirlock.Name), nil, 0o644)
	if err := CheckOut(only, false, anyMethod); err != nil {
		t.Errorf("a folder holding only %s: %v", dirlock.Name, err)
	}
	if c, err = ClaimDir(only, false, false, anyMethod, "align train"); err != nil {
		t.Fatal(err)
	}
	c.Release(errors.New("failed"))
	if ents, _ := os.ReadDir(only); len(ents) != 0 {
		t.Errorf("a failed run left %v", ents)
	}

	// someone else's folder: refused, and no lock file left in it
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o644)
	var ce *ConfigError
	if _, err := ClaimDir(foreign, false, true, anyMethod, "align train"); !errors.As(err, &ce) || ce.Flag != "out" {
		t.Errorf("a foreign folder: %v", err)
	}
	if ents, _ := os.ReadDir(foreign); len(ents) != 1 {
		t.Errorf("a refused folder holds %v", ents)
	}
}
