package run

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/align-dev/align/align/dirlock"
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
	if err := dirlock.Check(out); err != nil { // a run (or eval) is writing there now
		return err
	}
	return checkOut(out, force, isMethod)
}

// checkOut is CheckOut without the lock: ClaimDir holds it.
func checkOut(out string, force bool, isMethod func(string) bool) error {
	ents, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// the lock file of a run that stopped before writing anything is align's
	ents = slices.DeleteFunc(ents, func(e os.DirEntry) bool { return e.Name() == dirlock.Name })
	if len(ents) == 0 {
		return nil
	}
	if m := Method(out); m == "" || !isMethod(m) {
		return Bad("out", "%s is not empty and holds no align run: choose a new or empty folder", out)
	}
	if !force {
		return Bad("out", "%s holds a run: continue it with --resume %s, or replace it with --force", out, out)
	}
	return nil
}

// Claim is a run directory held by this process (a dirlock on
// OUT/.align.lock), so that a second align train into the same --out or
// run dir, new or resumed, refuses with one line instead of writing over
// this one's files. The kernel releases the lock however the process
// ends, kill -9 included.
type Claim struct {
	out             string
	resume, created bool
	keep            []string
	lock            *dirlock.Lock
}

// ClaimDir locks out for a run; what names the command in another
// process's refusal ("align train"). For a new run (resume false) it
// creates out when missing, checks it again under the lock (CheckOut:
// another run may have started there since Begin) and removes the files
// of a run replaced with force, never one of keep (the new run's inputs).
// A resumed run's directory is only locked. Release undoes it.
func ClaimDir(out string, resume, force bool, isMethod func(string) bool, what string, keep ...string) (*Claim, error) {
	c := &Claim{out: out, resume: resume, keep: keep}
	if !resume {
		if _, err := os.Stat(out); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(out, 0o755); err != nil {
				return nil, err
			}
			c.created = true
		}
	}
	var err error
	if c.lock, err = dirlock.Acquire(out, what); err != nil {
		if c.created {
			os.Remove(out)
		}
		return nil, err
	}
	if !resume {
		if err = checkOut(out, force, isMethod); err == nil {
			err = Remove(out, keep...)
		}
		if err != nil {
			c.undo()
			return nil, err
		}
	}
	return c, nil
}

// Release is deferred by a run with its final error: a new run that failed
// before its first checkpoint leaves nothing behind, its lock file and a
// directory it created included (an interrupted one keeps what it did, for
// --resume, and a resumed one everything); then the lock is released.
func (c *Claim) Release(err error) {
	if c == nil {
		return
	}
	if c.resume || err == nil || errors.Is(err, ErrInterrupted) || len(ListCheckpoints(filepath.Join(c.out, "checkpoints"))) > 0 {
		c.lock.Unlock()
		return
	}
	Remove(c.out, c.keep...)
	c.undo()
}

// undo removes the lock file and a directory ClaimDir created (only if
// empty: align never deletes what it did not write).
func (c *Claim) undo() {
	c.lock.Remove()
	if c.created {
		os.Remove(c.out)
	}
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
		return dirlock.Check(c.Out) // refused before the slow start-up; ClaimDir holds it
	}
	if err := AbsPaths(append(paths, &c.Model, &c.InitAdapter, &c.RefAdapter, &c.ChatTemplate)...); err != nil {
		return err
	}
	return CheckOut(c.Out, c.Force, isMethod)
}
