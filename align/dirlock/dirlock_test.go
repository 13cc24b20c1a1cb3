package dirlock

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAcquire(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "align eval")
	if err != nil {
		t.Fatal(err)
	}
	// a second holder (another open file: flock locks belong to it) is refused,
	// with the first one's pid and command
	_, err = Acquire(dir, "align eval")
	if !IsHeld(err) || !strings.Contains(err.Error(), "in use by another align eval (pid ") {
		t.Fatalf("second Acquire: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	l2, err := Acquire(dir, "align eval")
	if err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
	l2.Unlock()
	if _, err := Acquire(filepath.Join(dir, "missing"), "x"); err == nil {
		t.Error("a missing directory was locked")
	}
}

// A process that dies holding the lock (kill -9) does not block the next.
func TestLockDiesWithProcess(t *testing.T) {
	if os.Getenv("DIRLOCK_HELPER") != "" {
		if _, err := Acquire(os.Getenv("DIRLOCK_HELPER"), "helper"); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Hour) // until killed
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockDiesWithProcess$")
	cmd.Env = append(os.Environ(), "DIRLOCK_HELPER="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		cmd.Process.Kill()
		t.Fatalf("helper: %q, %v", buf, err)
	}
	if _, err := Acquire(dir, "test"); !IsHeld(err) || !strings.Contains(err.Error(), "another helper (pid") {
		t.Errorf("while the helper holds it: %v", err)
	}
	cmd.Process.Kill() // SIGKILL: no cleanup runs
	cmd.Wait()
	l, err := Acquire(dir, "test")
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	l.Unlock()
}

// Check reports a held lock without taking it or writing a file.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	if err := Check(dir); err != nil {
		t.Fatalf("no lock file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, Name)); !os.IsNotExist(err) {
		t.Fatalf("Check wrote a lock file: %v", err)
	}
	l, err := Acquire(dir, "align train")
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); !IsHeld(err) || !strings.Contains(err.Error(), "another align train (pid ") {
		t.Fatalf("while held: %v", err)
	}
	// Check left it held
	if _, err := Acquire(dir, "x"); !IsHeld(err) {
		t.Fatalf("after Check: %v", err)
	}
	l.Unlock()
	if err := Check(dir); err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
}

// Remove takes the file away; a file opened before it went does not lock
// anything (the next Acquire opens a new one).
func TestRemove(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	stale, err := os.OpenFile(filepath.Join(dir, Name), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, Name)); !os.IsNotExist(err) {
		t.Fatalf("lock file after Remove: %v", err)
	}
	if sameFile(stale, filepath.Join(dir, Name)) {
		t.Fatal("a removed lock file still counts as the lock")
	}
	l2, err := Acquire(dir, "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(dir, "c"); !IsHeld(err) {
		t.Fatalf("second holder after Remove: %v", err)
	}
	l2.Remove()
	if err := l2.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatalf("the directory is not empty after Remove: %v", err)
	}
}

// Another process's Check holds the lock for a moment: an Acquire at that
// moment waits for it instead of calling the directory in use.
func TestAcquireDuringCheck(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	probe, err := os.OpenFile(filepath.Join(dir, Name), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if held, err := tryLock(probe); held || err != nil {
		t.Fatalf("probe lock: held %v, %v", held, err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(30 * time.Millisecond)
		unlock(probe)
		close(released)
	}()
	l, err = Acquire(dir, "b")
	<-released
	if err != nil {
		t.Fatalf("Acquire while a Check held the lock for 30 ms: %v", err)
	}
	l.Unlock()
}
