package dirlock

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
		select {} // until killed
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
