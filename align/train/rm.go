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
// heads.bias, ne [1]). align/reward's OpenRewardModel loads both into an
// adapter set to score with.

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// Files of a reward-model run besides adapter.gguf, and the head's name.
const (
	HeadFile   = run.HeadFile
	RewardHead = run.RewardHead
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

// evalLine: the head's rewards (no log-probs).
func (rmObjective) evalLine(m map[string]float64) string {
	return fmt.Sprintf("loss %.4f  accuracy %.3f  margin %+.4f  rewards chosen %+.4f rejected %+.4f",
		m["loss"], m["rewards/accuracies"], m["rewards/margins"], m["rewards/chosen"], m["rewards/rejected"])
}

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
// for the heads (run.HeadsAtLast).
func headBatch(b *bindings.Batch) *bindings.Batch { return run.HeadsAtLast(b) }

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
func rewardSetOptions(cfg Config) bindings.SetOptions { return run.RewardSet(&cfg.Common) }

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
