package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// bench train takes train's values and defaults (--recompute auto|on|off,
// --device auto, rank 16, alpha 32, all seven targets), and values the
// model cannot take are usage errors found before any weight is loaded.
func TestBenchLikeTrain(t *testing.T) {
	t.Setenv("ALIGN_RECOMPUTE", "on") // an exported train setting must not break bench
	args := []string{"bench", "train", "--model", tinyModel, "--method", "sft", "--seq", "16", "--steps", "1", "--threads", "2", "--no-baseline", "--json"}
	code, stdout, errs := run(t, "", append(args, "--device", "auto")...)
	if code != 0 {
		t.Fatalf("bench with ALIGN_RECOMPUTE=on --device auto: exit %d: %s", code, errs)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res["lora_rank"] != 16.0 || res["lora_alpha"] != 32.0 || res["lora_targets"] != "q,k,v,o,gate,up,down" || res["recompute"] != true {
		t.Errorf("bench defaults: rank %v, alpha %v, targets %v, recompute %v; want train's 16, 32, all seven, and on from ALIGN_RECOMPUTE",
			res["lora_rank"], res["lora_alpha"], res["lora_targets"], res["recompute"])
	}
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--recompute", "yes"}, "--recompute must be auto, on or off"},
		{[]string{"--pairs", "0"}, "--pairs must be in [1, 256]"},
		{[]string{"--seq", "3000"}, "--seq must be at most the model's training context, 2048"},
		{[]string{"--sample", "2040"}, "--sample plus the"},
		{[]string{"--lora-rank", "100000"}, "--lora-rank must be in [1, 4096]"},
		{[]string{"--lora-alpha", "-1"}, "--lora-alpha"},
		{[]string{"--save-adapter", "x.gguf"}, "--save-adapter needs --sample"},
	} {
		code, _, errs := run(t, "", append(args, c.flags...)...)
		if code != ExitUsage || !strings.Contains(errs, c.want) || strings.Contains(errs, "(align_") {
			t.Errorf("bench %v: exit %d, %q; want %d with %q", c.flags, code, errs, ExitUsage, c.want)
		}
	}
	// the help shows what --device takes, not a placeholder taken from it
	_, help, _ := run(t, "", "bench", "train", "--help")
	if strings.Contains(help, "--device make") || !strings.Contains(help, "--recompute value") {
		t.Errorf("bench train --help:\n%s", help)
	}
}

// --sample times the tokens it asked for: the counts are reported, and a
// rate is never over a generation that stopped at its first token.
func TestBenchSampleCounts(t *testing.T) {
	code, stdout, errs := run(t, "", "bench", "train", "--model", tinyModel, "--method", "sft", "--seq", "16", "--steps", "1", "--threads", "2",
		"--no-baseline", "--json", "--sample", "24")
	if code != 0 {
		t.Fatalf("bench --sample: exit %d: %s", code, errs)
	}
	var res struct {
		Requested   int     `json:"live_sample_requested"`
		Tokens      int     `json:"live_sample_tokens"`
		MS          float64 `json:"live_sample_ms"`
		Rate        float64 `json:"live_sample_tokens_per_s"`
		Seqs        int     `json:"live_batch_seqs"`
		BatchTokens int     `json:"live_batch_tokens"`
		BatchMS     float64 `json:"live_batch_ms"`
		BatchRate   float64 `json:"live_batch_tokens_per_s"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Requested != 24 || res.Tokens < 2 || res.Tokens > 24 || res.Seqs != 8 || res.BatchTokens < 16 || res.BatchTokens > 8*24 {
		t.Fatalf("counts: %+v", res)
	}
	if res.Tokens < 24 || res.BatchTokens < 8*24 {
		if !strings.Contains(errs, "ended a sequence at end-of-sequence") {
			t.Errorf("short generation without a note: %+v, %s", res, errs)
		}
	}
	// the rates are the counts over the times reported with them
	if d := res.Rate - float64(res.Tokens)/(res.MS/1000); d*d > 1e-6 || res.MS <= 0 {
		t.Errorf("one sequence: %.1f tok/s for %d tokens in %.3f ms", res.Rate, res.Tokens, res.MS)
	}
	if d := res.BatchRate - float64(res.BatchTokens)/(res.BatchMS/1000); d*d > 1e-6 || res.BatchMS <= 0 {
		t.Errorf("batch: %.1f tok/s for %d tokens in %.3f ms", res.BatchRate, res.BatchTokens, res.BatchMS)
	}
}
