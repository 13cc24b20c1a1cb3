package reward

import (
	"context"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/train"
)

// rm is a reward-model run's head (train.RewardModel): an adapter set on
// Options.Trainer when given (one resident base), else on its own trainer
// over Options.Model or the run's model.
type rm struct{ m *train.RewardModel }

func openRM(dir string, o Options) (scorer, error) {
	m, err := train.OpenRewardModel(dir, train.RewardModelOptions{Trainer: o.Trainer, Model: o.Model, Threads: o.Threads, MaxLength: o.MaxLength})
	if err != nil {
		return nil, err
	}
	return rm{m}, nil
}

func (r rm) score(ctx context.Context, samples []Sample) ([]float64, error) {
	prompts := make([][]pairs.Message, len(samples))
	responses := make([]string, len(samples))
	for i, s := range samples {
		prompts[i], responses[i] = s.Prompt, s.Response
	}
	out, err := r.m.Score(ctx, prompts, responses)
	if err != nil {
		return nil, withID(err, samples)
	}
	return out, nil
}

func (r rm) close() error { return r.m.Close() }
