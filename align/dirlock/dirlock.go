// Package dirlock keeps two align processes from writing one directory at
// once: an eval's --out, a training run. The lock is an flock(2) on
// DIR/.align.lock, so the kernel releases it when the process ends, however
// it ends (kill -9 included): a stale lock cannot block the next run. The
// file stays (Lock.Remove takes it away where a command leaves its
// directory as it found it) and holds the holder's pid, command and start
// time for the message the next process prints.
package dirlock

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Name is the lock file's name inside the directory.
const Name = ".align.lock"

// Lock is a held directory lock. Unlock releases it; so does the end of
// the process. Not safe for concurrent use.
type Lock struct {
	f   *os.File
	dir string
}

// Holder is what the lock file says about the process holding it.
type Holder struct {
	PID     int       `json:"pid"`
	What    string    `json:"what"` // e.g. "align eval"
	Started time.Time `json:"started"`
}

// HeldError says another process holds the lock of Dir.
type HeldError struct {
	Dir    string
	Holder Holder // zero when the file could not be read
}

func (e *HeldError) Error() string {
	who := "another align process"
	if e.Holder.What != "" {
		who = "another " + e.Holder.What
	}
	if e.Holder.PID > 0 {
		who += fmt.Sprintf(" (pid %d, since %s)", e.Holder.PID, e.Holder.Started.Local().Format("2006-01-02 15:04:05"))
	}
	return fmt.Sprintf("%s is in use by %s: wait for it to finish, or name another directory", e.Dir, who)
}

// IsHeld reports whether err is (or wraps) a *HeldError.
func IsHeld(err error) bool {
	var e *HeldError
	return errors.As(err, &e)
}

// Acquire takes the lock of dir, which must exist, for this process; what
// names the command for another process's message ("align eval"). It
// waits at most 0.1 s (for another process's Check to let go): a lock
// another process holds is a *HeldError.
func Acquire(dir, what string) (*Lock, error) {
	path := filepath.Join(dir, Name)
	var f *os.File
	probes := 0
	for try := 0; ; try++ {
		var err error
		if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
			return nil, err
		}
		held, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if held {
			f.Close()
			// another process's Check holds it for a moment: ask again
			// briefly before calling the directory in use
			if probes < 5 {
				probes++
				time.Sleep(20 * time.Millisecond)
				continue
			}
			return nil, heldError(dir)
		}
		// the holder this file was locked from may have removed it
		// (Lock.Remove) between our open and our lock: then a lock on it
		// locks nothing, and the name may already be another's lock
		if sameFile(f, path) {
			break
		}
		unlock(f)
		f.Close()
		if try == 10 {
			return nil, fmt.Errorf("%s: keeps being removed while locked", path)
		}
	}
	b, _ := json.Marshal(Holder{PID: os.Getpid(), What: what, Started: time.Now().UTC()})
	if err := f.Truncate(0); err == nil {
		f.WriteAt(append(b, '\n'), 0) // informational: a failed write leaves the lock held
	}
	return &Lock{f: f, dir: dir}, nil
}

// sameFile reports whether path still names the open file f.
func sameFile(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Stat(path)
	return err == nil && os.SameFile(fi, pi)
}

// heldError is the *HeldError for dir, with what its lock file says.
func heldError(dir string) error {
	var h Holder
	if b, err := os.ReadFile(filepath.Join(dir, Name)); err == nil {
		json.Unmarshal(b, &h)
	}
	return &HeldError{Dir: dir, Holder: h}
}

// Check reports (as a *HeldError) whether another process holds the lock
// of dir, without taking it and without writing anything: a directory
// with no lock file is free. A command calls it before its slow start-up
// (loading a model) to refuse early; Acquire is what holds the directory.
func Check(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, Name), os.O_RDWR, 0)
	if err != nil {
		return nil // no lock file (or none this process may lock): Acquire decides
	}
	defer f.Close()
	held, err := tryLock(f)
	if err != nil || !held {
		if err == nil {
			unlock(f)
		}
		return nil
	}
	return heldError(dir)
}

// Remove deletes the lock file and releases the lock: for a directory
// the command leaves as it found it (a run that failed before writing
// anything). The file goes while still locked, so a process that opened
// it meanwhile finds it gone once it gets the lock, and opens a new one.
// Nil-safe.
func (l *Lock) Remove() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := os.Remove(filepath.Join(l.dir, Name))
	if uerr := l.Unlock(); err == nil {
		err = uerr
	}
	return err
}

// Unlock releases the lock. It is idempotent and nil-safe.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	f.Truncate(0)
	err := unlock(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
