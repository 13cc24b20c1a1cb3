// Package testgate holds the two switches that decide whether a test runs,
// so that CI runs everything and a developer's quick run skips what is
// slow or absent, with one rule each instead of hand-kept lists:
//
//	ALIGN_SLOW=1            tests gated by Slow run even under -short
//	                        (make test: go test -short ./... with it set runs
//	                        every slow test once)
//	ALIGN_REQUIRE_MODELS=1  a missing shared model or tool (Chromium) fails
//	                        the test instead of skipping it (CI sets it, so
//	                        a check that silently stopped running is seen)
//
// Shared models are found through ALIGN_SHARED_MODELS, or the first
// shared/models folder walking up from the test's directory.
package testgate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The environment variables testgate reads.
const (
	SlowEnv    = "ALIGN_SLOW"
	RequireEnv = "ALIGN_REQUIRE_MODELS"
	SharedEnv  = "ALIGN_SHARED_MODELS"
)

// Slow skips t under -short unless ALIGN_SLOW=1; why says what the test
// costs ("trains two adapters, about a minute").
func Slow(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(SlowEnv) == "1" || !testing.Short() {
		return
	}
	t.Skipf("%s: skipped with -short (set %s=1 to run)", why, SlowEnv)
}

// Required reports whether a missing model or tool fails tests
// (ALIGN_REQUIRE_MODELS=1).
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Missing ends t for an absent model or tool the message names: a skip, or
// with ALIGN_REQUIRE_MODELS=1 a failure.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s (%s=1: required)", msg, RequireEnv)
	}
	t.Skip(msg)
}

// SharedDir is the shared models folder: ALIGN_SHARED_MODELS, or the first
// shared/models folder from the working directory up; "" when none.
func SharedDir() string {
	if dir := os.Getenv(SharedEnv); dir != "" {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "shared", "models")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// SharedModel is the path of the shared model name (e.g.
// "stories260K.gguf"); when it is absent t ends through Missing.
func SharedModel(t testing.TB, name string) string {
	t.Helper()
	dir := SharedDir()
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); dir == "" || err != nil {
		Missing(t, "shared model %s not found (set %s or put it in a shared/models folder above the repository)", name, SharedEnv)
	}
	return p
}

// Chromium is the path of a headless-capable Chromium (scripts/deps.sh
// --test installs Debian's package); when there is none t ends through
// Missing.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	Missing(t, "no chromium on PATH (apt-get install chromium, or scripts/deps.sh --test): browser tests skipped")
	return ""
}
