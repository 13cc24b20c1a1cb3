package run

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// A run directory holds only what align writes (Files and
// checkpoints/step-*): align refuses to start a run in a folder holding
// anything else, and replacing a run (--force) removes only these names.
// Methods add their own outputs (head.gguf, value.gguf) to Files.

// Files are the names a run writes in its directory besides checkpoints.
var Files = []string{"config.json", "metrics.jsonl", "adapter.gguf", "summary.json", "reference.json",
	"eval_before.json", "data.jsonl", "head.gguf", "value.gguf", "config.json.tmp", "summary.json.tmp", "reference.json.tmp"}

// StoredData is where a run keeps data it read from standard input, so it
// can be resumed.
const StoredData = "data.jsonl"

// header is what CheckOut reads of a config.json to tell an align run.
type header struct {
	Method string
	Model  string
}

// Method is the method of the run in dir ("" when dir holds no readable
// align run).
func Method(dir string) string {
	var h header
	if dir == "" || ReadJSON(filepath.Join(dir, "config.json"), &h) != nil || h.Model == "" {
		return ""
	}
	return h.Method
}

// CheckOut refuses an out that a new run may not use: a folder holding
// anything but an align run of one of methods, or a run without force. It
// changes nothing.
func CheckOut(out string, force bool, isMethod func(string) bool) error {
	ents, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	if m := Method(out); m == "" || !isMethod(m) {
		return Bad("out", "%s is not empty and holds no align run: choose a new or empty folder", out)
	}
	if !force {
		return Bad("out", "%s holds a run: continue it with --resume %s, or replace it with --force", out, out)
	}
	return nil
}

// Prepare makes out ready for a new run (after CheckOut) and reports
// whether it created the directory; a run replaced with force loses only
// the files align wrote, and never one of keep (the new run's inputs).
func Prepare(out string, keep ...string) (created bool, err error) {
	if _, err := os.Stat(out); errors.Is(err, os.ErrNotExist) {
		return true, os.MkdirAll(out, 0o755)
	}
	return false, Remove(out, keep...)
}

// Remove deletes the files align writes in out and nothing else: not one
// of keep, and not a data.jsonl the run did not store itself.
func Remove(out string, keep ...string) error {
	kept := map[string]bool{}
	for _, k := range keep {
		if k != "" {
			kept[MustAbs(k)] = true
		}
	}
	var saved struct{ Data string }
	if err := ReadJSON(filepath.Join(out, "config.json"), &saved); err != nil || saved.Data != MustAbs(filepath.Join(out, StoredData)) {
		kept[MustAbs(filepath.Join(out, StoredData))] = true
	}
	for _, name := range Files {
		p := filepath.Join(out, name)
		if kept[MustAbs(p)] {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	dir := filepath.Join(out, "checkpoints")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() && (strings.HasPrefix(e.Name(), "step-") || strings.HasPrefix(e.Name(), ".tmp-step-")) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	os.Remove(dir) // only if empty: a user's files under it stay
	return nil
}

// Cleanup is deferred by a new run: one that failed before its first
// checkpoint leaves nothing behind (an interrupted one keeps what it did,
// for --resume).
func Cleanup(out string, created bool, err error, keep ...string) {
	if err == nil || errors.Is(err, ErrInterrupted) || len(ListCheckpoints(filepath.Join(out, "checkpoints"))) > 0 {
		return
	}
	Remove(out, keep...)
	if created {
		os.Remove(out)
	}
}

// MustAbs is p made absolute (p itself when that fails).
func MustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// AbsPaths makes stored paths resolve from any working directory ("" and
// "-" stay).
func AbsPaths(ps ...*string) error {
	for _, p := range ps {
		if *p == "" || *p == "-" {
			continue
		}
		a, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = a
	}
	return nil
}

// WriteJSON writes v as indented JSON through a temporary file and a rename.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// ReadJSON reads a JSON file into v.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// WriteSynced writes b to path and fsyncs it.
func WriteSynced(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Begin checks a run's configuration before anything is read: validate (the
// method's Validate, which checks c too), then for a new run the inputs'
// paths made absolute (c's model and adapters, and paths) so a resume works
// from any directory, and the output folder (CheckOut).
func Begin(c *Common, validate func() error, isMethod func(string) bool, paths ...*string) error {
	if err := validate(); err != nil {
		return err
	}
	if c.Resume {
		return nil
	}
	if err := AbsPaths(append(paths, &c.Model, &c.InitAdapter, &c.RefAdapter, &c.ChatTemplate)...); err != nil {
		return err
	}
	return CheckOut(c.Out, c.Force, isMethod)
}
