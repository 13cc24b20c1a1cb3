package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
