package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// qwen3 and gemma3 fixtures from `align model init --arch` train DPO end to
// end, and llama.cpp samples with the adapter they export.
func TestTrainQwen3AndGemma3(t *testing.T) {
	data := quickData(t, 8)
	for _, arch := range []string{"qwen3", "gemma3"} {
		t.Run(arch, func(t *testing.T) {
			model := filepath.Join(t.TempDir(), arch+".gguf")
			if code, _, errs := run(t, "", "model", "init", "--out", model, "--arch", arch, "--type", "q8_0"); code != 0 {
				t.Fatalf("model init: exit %d: %s", code, errs)
			}
			code, out, errs := run(t, "", "model", "info", "--model", model, "--json")
			var info struct {
				Arch string `json:"arch"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Arch != arch {
				t.Fatalf("model info: exit %d, %q: %s", code, out, errs)
			}
			dir := filepath.Join(t.TempDir(), "run")
			args := quickArgs(dir, data, 3)
			for i, a := range args {
				if a == tinyModel {
					args[i] = model
				}
			}
			mustTrain(t, "", args...)
			adapter := filepath.Join(dir, "adapter.gguf")
			if _, err := os.Stat(adapter); err != nil {
				t.Fatal(err)
			}
			code, out, errs = run(t, "", "sample", "--model", model, "--lora", adapter, "--prompt", "Is Naruto complete?",
				"-n", "8", "--seed", "1", "--json")
			if code != 0 || !strings.Contains(out, "text") {
				t.Errorf("sample with the %s adapter: exit %d, %q: %s", arch, code, out, errs)
			}
		})
	}
}

func TestModelInitArchUsage(t *testing.T) {
	code, _, errs := run(t, "", "model", "init", "--out", filepath.Join(t.TempDir(), "x.gguf"), "--arch", "phi3")
	if code != ExitUsage || !strings.Contains(errs, "llama, qwen2, qwen3 or gemma3") || !strings.Contains(errs, "phi3") {
		t.Errorf("--arch phi3: exit %d: %s", code, errs)
	}
	code, _, errs = run(t, "", "model", "init", "--out", filepath.Join(t.TempDir(), "x.gguf"), "--arch", "qwen3", "--llama3-rope")
	if code != ExitUsage || !strings.Contains(errs, "llama3-rope") {
		t.Errorf("--llama3-rope with qwen3: exit %d: %s", code, errs)
	}
}
