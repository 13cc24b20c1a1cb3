package train

// The reward model (--method rm): LoRA adapters plus one scalar head,
// r = heads.weight · h + heads.bias, read at the final hidden state h (after
// the output norm) of each sequence's last token (the response's
// end-of-turn marker), trained with the Bradley–Terry loss on preference
// pairs, as TRL's RewardTrainer and InstructGPT's reward model:
//
//	loss = −log σ(r_w − r_l − m) + c·(r_w + r_l)²
//
// m is an optional per-pair margin (--margin-from; Llama 2's margin
// component) and c is --center-coef (TRL's center_rewards_coefficient,
// after Eisenstein et al. 2023), which keeps rewards near zero. Held-out
// rows log rewards/accuracies (share of pairs with r_w > r_l) and
// rewards/margins (mean r_w − r_l) under TRL's names.
//
// A finished run holds adapter.gguf (llama.cpp's LoRA GGUF of the reward
// set's adapters) and head.gguf (align's heads GGUF: general.type
// "align.heads", align.heads.names ["reward"], align.heads.dims [1],
// align.heads.n_embd; F32 tensors heads.weight, ne [n_embd, 1], and
// heads.bias, ne [1]). OpenRewardModel loads both into an adapter set.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// Files of a reward-model run besides adapter.gguf, and the head's name.
const (
	HeadFile   = "head.gguf"
	RewardHead = "reward"
)

// Margin sources of --margin-from.
const (
	// MarginScores: the judge's per-criterion scores that align rank
	// records in a pair ("scores": {"chosen": {...}, "rejected": {...}},
	// each criterion 1-5): m = mean criterion score of the chosen response
	// − that of the rejected one (a one-point gap on every criterion is
	// m = 1).
	MarginScores = "scores"
	// MarginField: a number in the pair's "margin" field (TRL's column).
	MarginField = "margin"
)

// MarginSources lists the values --margin-from accepts.
var MarginSources = []string{MarginScores, MarginField}

// RewardLoss is objective.RewardLoss.
func RewardLoss(rw, rl, m, c float64) (loss, drw, drl float64) {
	return objective.RewardLoss(rw, rl, m, c)
}

// rmObjective is the Bradley–Terry loss of the reward head.
type rmObjective struct {
	center float64 // --center-coef
}

var _ headObjective = rmObjective{}

func (rmObjective) layout() Layout                      { return LayoutPair }
func (rmObjective) needsReference() bool                { return false }
func (rmObjective) score(em map[string]float64) float64 { return em["rewards/margins"] }
func (rmObjective) line(m map[string]float64) string    { return prefLine(m) }

func (rmObjective) norm(_ []Example, group []MicroBatch) float64 {
	n := 0
	for _, mb := range group {
		n += len(mb.Examples)
	}
	return float64(n)
}

// batch is the preference layout with no scored tokens and the head read at
// each sequence's last token.
func (rmObjective) batch(exs []Example, mb MicroBatch) *bindings.Batch {
	return headBatch(BuildBatch(exs, mb, LayoutPair))
}

// headBatch clears b's scored tokens and marks each sequence's last token
// for the heads.
func headBatch(b *bindings.Batch) *bindings.Batch {
	clear(b.Scored)
	b.HeadAt = make([]uint8, len(b.Scored))
	for k, n := range b.Lengths {
		b.HeadAt[k*b.NTok+int(n)-1] = 1
	}
	return b
}

func (rmObjective) loss([]Example, MicroBatch, Outputs, float64, *Metrics) ([]float32, error) {
	return nil, errors.New("train: the reward model's loss is over head values (headLoss)")
}

func (o rmObjective) headLoss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error) {
	if len(out.Heads) != 2*len(mb.Examples) {
		return nil, fmt.Errorf("train: trainer returned %d head values for %d sequences (want one reward each)", len(out.Heads), 2*len(mb.Examples))
	}
	cot := make([]float32, len(out.Heads))
	for k, i := range mb.Examples {
		ex := &exs[i]
		rw, rl := float64(out.Heads[2*k]), float64(out.Heads[2*k+1])
		loss, drw, drl := RewardLoss(rw, rl, ex.Margin, o.center)
		if !finite(loss) {
			return nil, fmt.Errorf("pair %q: the reward-model loss is not finite (rewards %g, %g)", ex.ID, rw, rl)
		}
		l := PairLoss{Loss: loss, RewardW: rw, RewardL: rl, Margin: rw - rl, Correct: rw > rl}
		m.Add(l, PairLogps{})
		m.AddObjective(ex.Objective, l, PairLogps{}, 0)
		cot[2*k], cot[2*k+1] = float32(drw/norm), float32(drl/norm)
	}
	return cot, nil
}

// metrics are TRL's reward-trainer names: loss, rewards/chosen,
// rewards/rejected, rewards/margins and rewards/accuracies (no log-probs).
func (rmObjective) metrics(m Metrics) map[string]float64 {
	out := m.Map()
	delete(out, "logps/chosen")
	delete(out, "logps/rejected")
	return out
}

// pairMargin reads pair p's margin from source (MarginSources).
func pairMargin(p *pairs.Pair, source string) (float64, error) {
	switch source {
	case MarginField:
		raw, ok := p.Extra["margin"]
		if !ok {
			return 0, errors.New(`--margin-from margin: the pair has no "margin" field`)
		}
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil || !finite(v) {
			return 0, fmt.Errorf(`--margin-from margin: "margin" is not a number (%s)`, raw)
		}
		return v, nil
	case MarginScores:
		raw, ok := p.Extra["scores"]
		if !ok {
			return 0, errors.New(`--margin-from scores: the pair has no "scores" field (align rank writes one)`)
		}
		var s map[string]map[string]float64
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fmt.Errorf(`--margin-from scores: "scores" is not {"chosen": {criterion: score}, "rejected": {...}}: %v`, err)
		}
		mean := func(side string) (float64, error) {
			c := s[side]
			if len(c) == 0 {
				return 0, fmt.Errorf(`--margin-from scores: "scores" has no %q criteria`, side)
			}
			var sum float64
			for _, v := range c {
				sum += v
			}
			return sum / float64(len(c)), nil
		}
		w, err := mean("chosen")
		if err != nil {
			return 0, err
		}
		l, err := mean("rejected")
		if err != nil {
			return 0, err
		}
		return w - l, nil
	}
	return 0, fmt.Errorf("--margin-from %q: unknown source", source)
}

// applyMargins fills the margins of a run's training and held-out examples
// (--margin-from); dataName names --data in errors.
func applyMargins(cfg Config, dataName string, train []Example, trainPairs []pairs.Pair, eval []Example, evalPairs []pairs.Pair) error {
	if err := setMargins(train, trainPairs, cfg.MarginFrom, dataName, cfg.Data); err != nil {
		return err
	}
	name, path := cfg.EvalData, cfg.EvalData
	if name == "" { // --eval-split: the held-out pairs are lines of --data
		name, path = dataName, cfg.Data
	}
	return setMargins(eval, evalPairs, cfg.MarginFrom, name, path)
}

// setMargins fills exs' margins from the pairs they were encoded from
// (matched by id); path names the file in errors.
func setMargins(exs []Example, ps []pairs.Pair, source, name, path string) error {
	if source == "" || len(exs) == 0 {
		return nil
	}
	byID := make(map[string]*pairs.Pair, len(ps))
	for i := range ps {
		byID[ps[i].ID] = &ps[i]
	}
	for i := range exs {
		p := byID[exs[i].ID]
		if p == nil {
			continue
		}
		m, err := pairMargin(p, source)
		if err != nil {
			if line := lineOf(path, p.ID); line > 0 {
				return fmt.Errorf("%s:%d: pair %q: %w", name, line, p.ID, err)
			}
			return fmt.Errorf("%s: pair %q: %w", name, p.ID, err)
		}
		exs[i].Margin = m
	}
	return nil
}

// rewardSetOptions are the adapter set of a reward-model run's config.
func rewardSetOptions(cfg Config) bindings.SetOptions {
	targets, _ := targetBits(cfg.Targets)
	return bindings.SetOptions{Name: "reward", Rank: cfg.Rank, Alpha: float32(cfg.Alpha), Targets: targets, Seed: cfg.Seed,
		Heads: []bindings.HeadSpec{{Name: RewardHead, Dim: 1}}}
}

// rewardTrainer is the set a reward-model run trains: a set of its own on
// the native trainer (LoRA plus the reward head), or a test's fake, whose
// one set has a head.
func rewardTrainer(eng host, cfg Config) (Trainer, error) {
	if nt, ok := eng.(native); ok {
		return nt.AddSet(rewardSetOptions(cfg))
	}
	return eng.Policy(), nil
}

// exportHeads writes the heads of a trainer that has them to out/head.gguf
// ("" when it has none).
func exportHeads(tr Trainer, out string) (string, error) {
	h, ok := tr.(interface{ ExportHeads(path string) error })
	if !ok {
		return "", nil
	}
	p := filepath.Join(out, HeadFile)
	return p, h.ExportHeads(p)
}

// RewardModelOptions open a reward-model run for scoring.
type RewardModelOptions struct {
	// Trainer, when set, gets the reward model as one more adapter set (its
	// base is shared: one resident copy); otherwise a trainer is opened
	// over Model, or over the run's own model when Model is nil too.
	Trainer *bindings.Trainer
	Model   *bindings.Model
	Threads int
	// MaxLength caps prompt + response tokens (0: the run's --max-length);
	// BatchTokens is the padded tokens per forward (0: the run's).
	MaxLength, BatchTokens int
}

// RewardModel scores responses with a trained reward model. Not safe for
// concurrent use.
type RewardModel struct {
	dir    string
	cfg    Config
	tr     *bindings.Trainer
	own    *bindings.Trainer // opened here: closed by Close
	set    bindings.Set
	enc    *Encoder
	budget int
}

// OpenRewardModel loads the reward-model run in dir (adapter.gguf and
// head.gguf) into an adapter set. It refuses a base model whose SHA-256
// differs from the one the run was trained on.
func OpenRewardModel(dir string, o RewardModelOptions) (_ *RewardModel, err error) {
	cfg, err := loadConfig(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: not a training run (no readable config.json): %w", dir, err)
	}
	if cfg.Method != RM {
		return nil, fmt.Errorf("%s: a --method %s run, not a reward model (--method rm)", dir, cfg.Method)
	}
	adapter, head := filepath.Join(dir, "adapter.gguf"), filepath.Join(dir, HeadFile)
	for _, p := range []string{adapter, head} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s: the run has no %s (has it finished?)", dir, filepath.Base(p))
		}
	}
	m := &RewardModel{dir: dir, cfg: cfg, tr: o.Trainer, budget: cfg.BatchTokens}
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
		if err := checkBase(dir, cfg, model.Path()); err != nil {
			return nil, err
		}
	}
	if m.tr == nil {
		// the reward set below is the trainer's only set
		opt := bindings.TrainerOptions{Threads: o.Threads, NoPolicySet: true}
		if model != nil {
			m.own, err = bindings.NewTrainer(model, opt)
		} else {
			if err := checkBase(dir, cfg, cfg.Model); err != nil {
				return nil, err
			}
			m.own, err = bindings.NewTrainerFromFile(cfg.Model, opt)
		}
		if err != nil {
			return nil, err
		}
		m.tr = m.own
	}
	so := rewardSetOptions(cfg)
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
	maxLen := cfg.MaxLength
	if o.MaxLength > 0 {
		maxLen = o.MaxLength
	}
	if o.BatchTokens > 0 {
		m.budget = o.BatchTokens
	}
	po, err := cfg.PromptOptions() // the reward model's run formats as it trained
	if err != nil {
		return nil, err
	}
	if m.enc, err = NewEncoderWith(m.tr.Model(), maxLen, po); err != nil {
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
func checkBase(dir string, cfg Config, path string) error {
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

// Config is the run's configuration.
func (m *RewardModel) Config() Config { return m.cfg }

// Set is the reward model's adapter set on its trainer.
func (m *RewardModel) Set() int { return m.set.ID() }

// Score returns the reward of each response to its prompt (same lengths),
// formatted as in training (the run's chat template or --raw format and
// --max-length). Each response is scored alone, so its reward does not
// depend on the other responses given.
func (m *RewardModel) Score(ctx context.Context, prompts [][]pairs.Message, responses []string) ([]float64, error) {
	if len(prompts) != len(responses) {
		return nil, fmt.Errorf("train: %d prompts for %d responses", len(prompts), len(responses))
	}
	exs := make([]Example, len(responses))
	var tr Truncation
	for i := range responses {
		p, r, err := m.enc.encode(prompts[i], []pairs.Message{{Role: "assistant", Content: responses[i]}})
		if err == nil {
			p, r, _, err = m.enc.fit(p, r, r, &tr)
		}
		if err == nil && len(p)+len(r) == 0 {
			err = errors.New("nothing to score after tokenization")
		}
		if err != nil {
			return nil, &ResponseError{Index: i, Err: err}
		}
		exs[i] = Example{Prompt: p, Chosen: r}
	}
	// each response is scored in a forward of its own (one sequence, no
	// padding): its reward is the same whatever else is scored with it. A
	// packed batch pads a sequence to its neighbours' length and changes
	// the kernels' shapes: on the ~100M Q8_0 fixture a reward moved by
	// 2.6e-3 when scored beside a longer response (issue 21 item 7).
	out := make([]float64, len(exs))
	for i := range exs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mb := MicroBatch{Examples: []int{i}}
		o, err := m.set.Forward(headBatch(BuildBatch(exs, mb, LayoutSingle)), 1)
		if err != nil {
			return nil, err
		}
		if len(o.Heads) != 1 {
			return nil, fmt.Errorf("train: %d head values for one response", len(o.Heads))
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
