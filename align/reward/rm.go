package reward

// A reward-model run (align train --method rm) as a reward: its adapter.gguf
// and head.gguf loaded into one adapter set, the head's scalar read at the
// final hidden state of each response's last token (run.HeadsAtLast), the
// conversation formatted and fitted as the run trained (align/encode).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/align-dev/align/align/encode"
	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// RewardModelOptions open a reward-model run for scoring.
type RewardModelOptions struct {
	// Trainer, when set, gets the reward model as one more adapter set (its
	// base is shared: one resident copy); otherwise a trainer is opened
	// over Model, or over the run's own model when Model is nil too.
	Trainer *bindings.Trainer
	// Set, with Trainer, is a set of Trainer that already holds the run's
	// reward model (the set a reward-model run trained): it scores as it
	// is and no file is loaded.
	Set     *bindings.Set
	Model   *bindings.Model
	Threads int
	// MaxLength caps prompt + response tokens (0: the run's --max-length).
	MaxLength int
}

// RewardModel scores responses with a trained reward model. Not safe for
// concurrent use.
type RewardModel struct {
	dir string
	cfg run.Common
	tr  *bindings.Trainer
	own *bindings.Trainer // opened here: closed by Close
	set bindings.Set
	enc *encode.Encoder
	// tokens counts the samples scored on the tokens they came with
	// (Sample.Tokens), text those re-encoded from their text.
	tokens, text int
}

// OpenRewardModel loads the reward-model run in dir (adapter.gguf and
// head.gguf) into an adapter set. It refuses a base model whose SHA-256
// differs from the one the run was trained on.
func OpenRewardModel(dir string, o RewardModelOptions) (_ *RewardModel, err error) {
	var cfg run.Common // what scoring reads of the run's config.json
	if err := run.ReadJSON(filepath.Join(dir, "config.json"), &cfg); err != nil {
		return nil, fmt.Errorf("%s: not a training run (no readable config.json): %w", dir, err)
	}
	if cfg.Method != objective.RM {
		return nil, fmt.Errorf("%s: a --method %s run, not a reward model (--method rm)", dir, cfg.Method)
	}
	adapter, head := filepath.Join(dir, "adapter.gguf"), filepath.Join(dir, run.HeadFile)
	if o.Set == nil {
		for _, p := range []string{adapter, head} {
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("%s: the run has no %s (has it finished?)", dir, filepath.Base(p))
			}
		}
	}
	m := &RewardModel{dir: dir, cfg: cfg, tr: o.Trainer}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	model := o.Model
	if o.Trainer != nil {
		model = o.Trainer.Model()
	}
	if model != nil {
		if err := checkBase(dir, &cfg, model.Path()); err != nil {
			return nil, err
		}
	}
	if m.tr == nil {
		if o.Set != nil {
			return nil, errors.New("reward: RewardModelOptions.Set without its Trainer")
		}
		// the reward set below is the trainer's only set
		opt := bindings.TrainerOptions{Threads: o.Threads, NoPolicySet: true}
		if model != nil {
			m.own, err = bindings.NewTrainer(model, opt)
		} else {
			if err := checkBase(dir, &cfg, cfg.Model); err != nil {
				return nil, err
			}
			m.own, err = bindings.NewTrainerFromFile(cfg.Model, opt)
		}
		if err != nil {
			return nil, err
		}
		m.tr = m.own
	}
	if o.Set != nil {
		m.set = *o.Set
	} else {
		so := run.RewardSet(&cfg)
		if so.Name, err = freeSetName(m.tr, so.Name); err != nil {
			return nil, err
		}
		if m.set, err = m.tr.AddSet(so); err != nil {
			return nil, err
		}
		for _, p := range []string{adapter, head} {
			if err := m.set.Load(p); err != nil {
				return nil, run.FileErr(p, err)
			}
		}
	}
	maxLen := cfg.MaxLength
	if o.MaxLength > 0 {
		maxLen = o.MaxLength
	}
	po, err := cfg.PromptOptions() // the reward model's run formats as it trained
	if err != nil {
		return nil, err
	}
	f, err := engine.NewFormatter(m.tr.Model(), po)
	if err != nil {
		return nil, fmt.Errorf("%s: chat template: %w", dir, err)
	}
	if m.enc, err = encode.New(f, maxLen); err != nil {
		return nil, err
	}
	return m, nil
}

// freeSetName is name, or name-2, name-3, ... when t already has a set of
// that name (a shared trainer may hold several reward models).
func freeSetName(t *bindings.Trainer, name string) (string, error) {
	taken := map[string]bool{}
	for i := 0; i < t.Info().NSets; i++ {
		si, err := t.Set(i).Info()
		if err != nil {
			return "", err
		}
		taken[si.Name] = true
	}
	for k, n := 2, name; ; k++ {
		if !taken[n] {
			return n, nil
		}
		n = fmt.Sprintf("%s-%d", name, k)
	}
}

// checkBase refuses a model file other than the one run dir was trained on.
func checkBase(dir string, cfg *run.Common, path string) error {
	want := cfg.Hashes["model"]
	if want == "" {
		return nil // a run without recorded hashes: nothing to check against
	}
	got, _, err := run.HashKnown(path, want, cfg.Stats["model"])
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s: the reward model was trained on %s (sha256 %.12s), not on %s (sha256 %.12s)", dir, cfg.Model, want, path, got)
	}
	return nil
}

// Config is the run's shared settings (model, LoRA, formatting).
func (m *RewardModel) Config() run.Common { return m.cfg }

// Set is the reward model's adapter set on its trainer.
func (m *RewardModel) Set() int { return m.set.ID() }

// Format is the formatter the reward model's conversations go through: a
// sample whose Tokens were made under the same Key is scored on them.
func (m *RewardModel) Format() string { return m.enc.Format.Key() }

// Counts reports how many samples were scored on the tokens they came with
// and how many were re-encoded from their text.
func (m *RewardModel) Counts() (tokens, text int) { return m.tokens, m.text }

// Score returns the reward of each response to its prompt (same lengths),
// formatted as in training (the run's chat template or --raw format and
// --max-length). Each response is scored alone, so its reward does not
// depend on the other responses given.
func (m *RewardModel) Score(ctx context.Context, prompts [][]Message, responses []string) ([]float64, error) {
	if len(prompts) != len(responses) {
		return nil, fmt.Errorf("reward: %d prompts for %d responses", len(prompts), len(responses))
	}
	samples := make([]Sample, len(responses))
	for i := range responses {
		samples[i] = Sample{Prompt: prompts[i], Response: responses[i]}
	}
	return m.ScoreSamples(ctx, samples)
}

// ScoreSamples is Score over samples. A sample with Tokens made under the
// reward model's own formatting (Tokens.Format == Format()) is scored on
// them: its prompt tokens and its sampled response ended as the run's
// training ended responses (prompt.Formatter.EndResponse), fitted to
// --max-length, with no detokenize and re-tokenize round trip. Others are
// encoded from their text.
func (m *RewardModel) ScoreSamples(ctx context.Context, samples []Sample) ([]float64, error) {
	seqs := make([]run.Seq, len(samples))
	var tr encode.Truncation
	key := m.enc.Format.Key()
	for i, s := range samples {
		var p, r []int32
		var err error
		if t := s.Tokens; t != nil && t.Format == key {
			p, r = t.Prompt, m.enc.Sampled(t.Response)
			m.tokens++
		} else {
			p, r, err = m.enc.Response(s.Prompt, []Message{{Role: "assistant", Content: s.Response}})
			m.text++
		}
		if err == nil {
			p, r, _ = m.enc.Fit(p, r, nil, &tr)
			if len(p)+len(r) == 0 {
				err = errors.New("nothing to score after tokenization")
			}
		}
		if err != nil {
			return nil, &ResponseError{Index: i, Err: err}
		}
		seqs[i] = run.Seq{Prompt: p, Response: r}
	}
	// each response is scored in a forward of its own (one sequence, no
	// padding): its reward is the same whatever else is scored with it. A
	// packed batch pads a sequence to its neighbours' length and changes
	// the kernels' shapes: on the ~100M Q8_0 fixture a reward moved by
	// 2.6e-3 when scored beside a longer response (issue 21 item 7).
	out := make([]float64, len(seqs))
	for i := range seqs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		o, err := m.set.Forward(run.HeadsAtLast(run.Layout(seqs[i:i+1], false)), 1)
		if err != nil {
			return nil, err
		}
		if len(o.Heads) != 1 {
			return nil, fmt.Errorf("reward: %d head values for one response", len(o.Heads))
		}
		out[i] = float64(o.Heads[0])
		if math.IsNaN(out[i]) {
			return nil, &ResponseError{Index: i, Err: errors.New("the reward is NaN")}
		}
	}
	return out, nil
}

// ResponseError is a RewardModel.Score error about one response.
type ResponseError struct {
	Index int // in the responses given
	Err   error
}

func (e *ResponseError) Error() string { return fmt.Sprintf("response %d: %v", e.Index, e.Err) }
func (e *ResponseError) Unwrap() error { return e.Err }

// Close frees what OpenRewardModel opened (a shared trainer keeps the
// reward set). Idempotent.
func (m *RewardModel) Close() error {
	if m == nil || m.own == nil {
		return nil
	}
	err := m.own.Close()
	m.own = nil
	return err
}

// String names the run.
func (m *RewardModel) String() string { return "rm:" + strings.TrimSuffix(m.dir, "/") }

// rm is an rm: term.
type rm struct{ m *RewardModel }

func openRM(dir string, o Options) (scorer, error) {
	m, err := OpenRewardModel(dir, RewardModelOptions{Trainer: o.Trainer, Model: o.Model, Threads: o.Threads, MaxLength: o.MaxLength})
	if err != nil {
		return nil, err
	}
	return rm{m}, nil
}

func (r rm) score(ctx context.Context, samples []Sample) ([]float64, error) {
	out, err := r.m.ScoreSamples(ctx, samples)
	if err != nil {
		return nil, withID(err, samples)
	}
	return out, nil
}

func (r rm) close() error { return r.m.Close() }
