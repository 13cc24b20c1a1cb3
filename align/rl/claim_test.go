package rl

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/align-dev/align/align/reward"
)

// failing is a reward that fails: the run fails at its first step.
type failing struct{}

func (failing) Score(context.Context, []reward.Sample) ([]float64, error) {
	return nil, errors.New("judge down")
}
func (failing) Terms() []string { return []string{"contains:z=1"} }
func (failing) Close() error    { return nil }

// A run that fails before its first checkpoint leaves nothing behind: the
// deferred cleanup saw a shadowed nil error and kept config.json and
// metrics.jsonl in a folder no new run could use without --force.
func TestFailedRunLeavesNoDir(t *testing.T) {
	cfg := fakeConfig(t, GRPO)
	cfg.EvalPrompts, cfg.EvalSplit = "", 0
	cfg.Scorer = failing{}
	if _, err := runFake(context.Background(), cfg); err == nil {
		t.Fatal("a failing reward did not fail the run")
	}
	if _, err := os.Stat(cfg.Out); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(cfg.Out)
		t.Errorf("the failed run left its folder: %v", ents)
	}
}
