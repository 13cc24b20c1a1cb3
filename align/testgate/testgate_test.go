package testgate

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The gates are checked in a child test process, where a skip or a
// failure can be observed.
func TestGates(t *testing.T) {
	if c := os.Getenv("TESTGATE_CASE"); c != "" {
		switch c {
		case "slow":
			Slow(t, "a slow case")
		case "missing":
			SharedModel(t, "no-such-model.gguf")
		}
		t.Log("RAN")
		return
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "m.gguf"), nil, 0o644)
	for _, c := range []struct {
		name, which string
		short       bool
		env         []string
		want        string // "skip", "fail" or "ran"
	}{
		{"slow under -short", "slow", true, nil, "skip"},
		{"slow with ALIGN_SLOW=1", "slow", true, []string{SlowEnv + "=1"}, "ran"},
		{"slow without -short", "slow", false, nil, "ran"},
		{"missing model", "missing", false, []string{SharedEnv + "=" + dir}, "skip"},
		{"missing model, required", "missing", false, []string{SharedEnv + "=" + dir, RequireEnv + "=1"}, "fail"},
	} {
		args := []string{"-test.run=^TestGates$", "-test.v"}
		if c.short {
			args = append(args, "-test.short")
		}
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(append(os.Environ(), "TESTGATE_CASE="+c.which, SlowEnv+"=", RequireEnv+"="), c.env...)
		out, err := cmd.CombinedOutput()
		got := "ran"
		switch {
		case err != nil:
			got = "fail"
		case strings.Contains(string(out), "--- SKIP"):
			got = "skip"
		case !strings.Contains(string(out), "RAN"):
			got = "?"
		}
		if got != c.want {
			t.Errorf("%s: %s, want %s:\n%s", c.name, got, c.want, out)
		}
	}
	t.Setenv(SharedEnv, dir)
	if p := SharedModel(t, "m.gguf"); p != filepath.Join(dir, "m.gguf") {
		t.Errorf("SharedModel: %s", p)
	}
}
