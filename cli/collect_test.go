package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A dry run estimates without any AWS configuration: it calls nothing.
func TestDryRunNeedsNoAWSSetup(t *testing.T) {
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	prompts := filepath.Join(t.TempDir(), "p.jsonl")
	os.WriteFile(prompts, []byte(`{"id":"a","prompt":"Is Berserk finished?"}`+"\n"), 0o644)
	code, _, errs := run(t, "", "collect", "--prompts", prompts, "--generator", "bedrock:meta.llama3-70b-instruct-v1:0",
		"--judge", "bedrock:anthropic.claude-3-5-sonnet-20240620-v1:0", "--out", filepath.Join(t.TempDir(), "c.jsonl"), "--dry-run")
	if code != 0 || !strings.Contains(errs, "nothing was called") {
		t.Errorf("exit %d: %s", code, errs)
	}
}
