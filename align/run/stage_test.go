package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/bindings"
)

// Issue 21: an unreadable --init-adapter/--ref-adapter is named once
// (the native message starts with the path; it read "X: X: not a GGUF file").
func TestReadLoRAFileNamesPathOnce(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "adapter.gguf")
	os.WriteFile(junk, []byte("hello\n"), 0o644)
	for _, flag := range []string{"init-adapter", "ref-adapter"} {
		_, err := ReadLoRAFile(flag, junk)
		if err == nil {
			t.Fatalf("--%s junk: no error", flag)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "--"+flag+" "+junk+": ") || strings.Count(msg, junk) != 1 {
			t.Errorf("--%s: %q names the flag and path not once", flag, msg)
		}
	}
}

// The Go table of LoRA targets is the C enum's (ALIGN_LORA_*).
func TestTargetsMatchNative(t *testing.T) {
	want := map[string]uint32{"q": bindings.TargetQ, "k": bindings.TargetK, "v": bindings.TargetV, "o": bindings.TargetO,
		"gate": bindings.TargetGate, "up": bindings.TargetUp, "down": bindings.TargetDown}
	if len(Targets) != len(want) {
		t.Fatalf("%d targets, the C API has %d", len(Targets), len(want))
	}
	for _, e := range Targets {
		if w, ok := want[e.Name]; !ok || w != e.Bit {
			t.Errorf("target %q has bit %d, ALIGN_LORA_* says %d", e.Name, e.Bit, w)
		}
	}
}
