package rl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestBenchStep is scripts/bench-rl.sh's measurement (skipped unless
// RL_BENCH_MODEL names a model): RL_BENCH_METHOD steps of a run on that
// model with the toy phrase reward, then one JSON line on stdout with each
// step's time breakdown and the process's peak RSS. It asserts nothing
// about speed.
func TestBenchStep(t *testing.T) {
	model := os.Getenv("RL_BENCH_MODEL")
	if model == "" {
		t.Skip("set RL_BENCH_MODEL (scripts/bench-rl.sh)")
	}
	method := os.Getenv("RL_BENCH_METHOD")
	cfg := Defaults(method)
	cfg.Model = model
	cfg.Prompts, cfg.EvalPrompts = toyPrompts, ""
	cfg.EvalSplit = 0
	cfg.Out = filepath.Join(t.TempDir(), "run")
	cfg.Scorer = &phrase{p: "z"}
	cfg.Reward = "contains:z"
	cfg.Epochs = 1
	atoi := func(k string, d int) int {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
			return v
		}
		return d
	}
	cfg.MaxSteps = atoi("RL_BENCH_STEPS", 2)
	cfg.Threads = atoi("RL_BENCH_THREADS", 0)
	cfg.MaxNewTokens = atoi("RL_BENCH_NEW_TOKENS", 32)
	cfg.BatchPrompts = atoi("RL_BENCH_PROMPTS", cfg.BatchPrompts)
	cfg.Group = atoi("RL_BENCH_GROUP", cfg.Group)
	if method == GRPO {
		cfg.Beta = 0.04 // a reference pass, as DeepSeekMath
	}
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	var steps []map[string]any
	for _, row := range readMetrics(t, cfg.Out) {
		if row["split"] == "train" {
			steps = append(steps, row)
		}
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b, _ := json.Marshal(map[string]any{"method": method, "seqs_per_step": cfg.BatchPrompts * cfg.Group,
		"max_new_tokens": cfg.MaxNewTokens, "ppo_epochs": cfg.PPOEpochs, "steps": steps, "peak_rss_mb": float64(ru.Maxrss) / 1024})
	fmt.Printf("BENCH %s\n", b)
}
