package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/bindings"
)

// --device names where the step runs. In a CPU-only build (what make test
// builds) auto is the CPU, and a GPU that is not there is one clear line
// naming the device, a usage error (exit 2) found before anything is
// read, with no engine text; nothing is left in --out.
func TestTrainDevice(t *testing.T) {
	if g := bindings.GPUDevice(); g != "" {
		t.Skipf("this build has GPU device %s; the CPU-only cases do not apply", g)
	}
	data := quickData(t, 8)
	for _, dev := range []string{"auto", "cpu", "CPU"} {
		out := filepath.Join(t.TempDir(), "run")
		args := append(quickArgs(out, data, 1), "--device", dev)
		if code, _, errs := run(t, "", args...); code != 0 {
			t.Errorf("--device %s: exit %d: %s", dev, code, errs)
		}
	}
	rlOut := filepath.Join(t.TempDir(), "rl")
	for _, args := range [][]string{
		quickArgs(filepath.Join(t.TempDir(), "run"), data, 1),
		{"train", "--method", "grpo", "--model", tinyModel, "--prompts", rlPrompts, "--reward", "contains:z", "--out", rlOut},
	} {
		for _, dev := range []string{"cuda", "CUDA0"} {
			code, stdout, errs := run(t, "", append(args, "--device", dev)...)
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			if code != ExitUsage || len(lines) != 1 || !strings.Contains(lines[0], `"`+dev+`"`) || strings.Contains(lines[0], "(align_") || stdout != "" {
				t.Errorf("%s --device %s: exit %d, stderr %q", args[2], dev, code, errs)
			}
			if _, err := os.Stat(rlOut); err == nil {
				t.Errorf("--device %s: created %s", dev, rlOut)
			}
		}
	}
}
