package train

import (
	"fmt"
	"slices"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/run"
)

// KTO trains on unpaired examples: each completion labelled desirable or
// undesirable (TRL's prompt/completion/label format), or each pair of a
// pair file as one of each.
const KTO = objective.KTO

// ktoObjective is KTO (Ethayarajh et al. 2024; TRL's loss_type "kto"):
// each example's loss against the reference point z0, the policy's KL
// from the reference estimated on mismatched prompt/completion sequences
// (each example's prompt with another example's completion, Example.KL),
// detached and clamped at 0, over one optimiser step's examples.
//
// Training examples are unpaired (LayoutUnpaired). Held-out pairs keep
// the pair layout (ktoObjective{lay: LayoutPair}): each pair's two
// completions are scored as a desirable and an undesirable example, and
// the row keeps rewards/accuracies and rewards/margins per pair.
type ktoObjective struct {
	lay    Layout
	wD, wU float64
	z0     float64 // the reference point of the step being taken (prepare)
}

func newKTO(cfg Config) method {
	return &ktoObjective{lay: LayoutUnpaired, wD: cfg.DesirableWeight, wU: cfg.UndesirableWeight}
}

// preparer is an objective that reads the policy before a step's gradient
// passes: KTO's z0 (a forward without gradient over the mismatched
// sequences of the step's examples).
type preparer interface {
	prepare(tr Trainer, exs []Example, group []MicroBatch) error
}

// evalObjective is the objective of held-out examples: KTO scores
// held-out pairs as pairs.
func evalObjective(obj method, eval []Example) method {
	if k, ok := obj.(*ktoObjective); ok && len(eval) > 0 && len(eval[0].Rejected) > 0 {
		return &ktoObjective{lay: LayoutPair, wD: k.wD, wU: k.wU}
	}
	return obj
}

func (o *ktoObjective) layout() Layout       { return o.lay }
func (o *ktoObjective) needsReference() bool { return true }

// score is the held-out margin (mean desirable reward − mean undesirable
// reward), or −loss when the held-out examples are of one kind.
func (o *ktoObjective) score(em map[string]float64) float64 {
	if m, ok := em["rewards/margins"]; ok {
		return m
	}
	return -em["loss"]
}

// evalLine: held-out pairs give the pairwise line; unpaired held-out
// examples give the loss, KL estimate and mean rewards of each kind.
func (o *ktoObjective) evalLine(m map[string]float64) string {
	if _, ok := m["rewards/accuracies"]; ok {
		return pairEvalLine(m)
	}
	return fmt.Sprintf("loss %.4f  kl %.4f  rewards desirable %+.4f undesirable %+.4f", m["loss"], m["kl"], m["rewards/chosen"], m["rewards/rejected"])
}

func (o *ktoObjective) line(m map[string]float64) string {
	return fmt.Sprintf("loss %.4f kl %.3f chosen %+.3f rejected %+.3f", m["loss"], m["kl"], m["rewards/chosen"], m["rewards/rejected"])
}

// norm is the number of scored completions: TRL's loss is their mean.
func (o *ktoObjective) norm(_ []Example, group []MicroBatch) float64 {
	n := 0
	for _, mb := range group {
		n += len(mb.Examples) * o.lay.perExample()
	}
	return float64(n)
}

// prepare sets z0 from the policy's log-probs of the mismatched sequences
// of group's examples, a forward without gradient per micro-batch (the
// mismatched sequences are as long as the matched ones give or take the
// length of another completion).
func (o *ktoObjective) prepare(tr Trainer, exs []Example, group []MicroBatch) error {
	var pi, ref []float64
	for _, mb := range group {
		var seqs []run.Seq
		var idx []int
		for _, i := range mb.Examples {
			if len(exs[i].KL) > 0 {
				seqs = append(seqs, run.Seq{Prompt: exs[i].Prompt, Response: exs[i].KL})
				idx = append(idx, i)
			}
		}
		if len(seqs) == 0 {
			continue
		}
		out, err := tr.Forward(run.Layout(seqs, false), 1)
		if err != nil {
			return fmt.Errorf("kto reference point: %w", err)
		}
		if len(out.Sums) != len(seqs) {
			return fmt.Errorf("train: trainer returned %d sequence sums for %d sequences", len(out.Sums), len(seqs))
		}
		for k, i := range idx {
			pi, ref = append(pi, out.Sums[k]), append(ref, exs[i].RefKL)
		}
	}
	o.z0 = objective.KTOReference(pi, ref)
	return nil
}

func (o *ktoObjective) loss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error) {
	n, err := checkOutputs(exs, mb, out, o.lay)
	if err != nil {
		return nil, err
	}
	cot := make([]float32, n)
	off, j := 0, 0
	m.KTO.KL = o.z0
	for _, i := range mb.Examples {
		ex := &exs[i]
		if o.lay != LayoutPair {
			l, err := objective.KTOExample(ex.Beta, o.z0, out.Sums[j], ex.RefW, !ex.Undesirable, o.wD, o.wU)
			if err != nil {
				return nil, fmt.Errorf("example %q: %w", ex.ID, err)
			}
			m.KTO.Add(l, out.Sums[j], !ex.Undesirable)
			off = broadcast(cot, off, len(ex.Chosen), l.DPi/norm)
			j++
			continue
		}
		d, err := objective.KTOExample(ex.Beta, o.z0, out.Sums[j], ex.RefW, true, o.wD, o.wU)
		if err != nil {
			return nil, fmt.Errorf("pair %q: %w", ex.ID, err)
		}
		u, _ := objective.KTOExample(ex.Beta, o.z0, out.Sums[j+1], ex.RefL, false, o.wD, o.wU)
		m.KTO.Add(d, out.Sums[j], true)
		m.KTO.Add(u, out.Sums[j+1], false)
		p := PairLogps{PiW: out.Sums[j], PiL: out.Sums[j+1], RefW: ex.RefW, RefL: ex.RefL, NW: len(ex.Chosen), NL: len(ex.Rejected)}
		pl := PairLoss{Loss: (d.Loss + u.Loss) / 2, RewardW: d.Reward, RewardL: u.Reward, Margin: d.Reward - u.Reward, Correct: d.Reward > u.Reward}
		m.Add(pl, p)
		m.AddObjective(ex.Objective, pl, p, 0)
		off = broadcast(cot, off, len(ex.Chosen), d.DPi/norm)
		off = broadcast(cot, off, len(ex.Rejected), u.DPi/norm)
		j += 2
	}
	return cot, nil
}

// metrics are TRL's KTO names; on held-out pairs also rewards/accuracies
// and the per-pair rewards/margins.
func (o *ktoObjective) metrics(m Metrics) map[string]float64 {
	out := m.KTO.Map()
	if o.lay == LayoutPair && m.N > 0 {
		pm := m.Map()
		out["rewards/accuracies"], out["rewards/margins"] = pm["rewards/accuracies"], pm["rewards/margins"]
	}
	return out
}

// unpairedExamples turns encoded pairs into KTO's examples: the chosen
// response desirable (id "ID#desirable"), the rejected one undesirable.
func unpairedExamples(exs []Example) []Example {
	out := make([]Example, 0, 2*len(exs))
	for _, ex := range exs {
		d := Example{ID: ex.ID + "#desirable", Objective: ex.Objective, Beta: ex.Beta, Prompt: ex.Prompt, Chosen: ex.Chosen}
		u := d
		u.ID, u.Chosen, u.Undesirable = ex.ID+"#undesirable", ex.Rejected, true
		out = append(out, d, u)
	}
	return out
}

// assignKL gives each example its mismatched completion for z0: as TRL
// shifts completions by one within a batch, example k takes the
// completion of the nearest example before it (cyclically, in data
// order) whose prompt differs, cut to fit maxLength. A fixed assignment
// lets the reference log-probs of the mismatched sequences be computed
// once and cached like the others. With a single prompt in the data the
// mismatch is the previous example's completion.
func assignKL(exs []Example, maxLength int) {
	n := len(exs)
	for k := range exs {
		if n < 2 {
			break
		}
		src := (k - 1 + n) % n
		for s := 1; s < n; s++ {
			j := (k - s + n) % n
			if !slices.Equal(exs[j].Prompt, exs[k].Prompt) {
				src = j
				break
			}
		}
		c := exs[src].Chosen
		if room := maxLength - len(exs[k].Prompt); len(c) > room {
			c = c[:max(room, 1)]
		}
		exs[k].KL = c
	}
}

// EncodeUnpaired tokenizes unpaired examples as Encode does pairs (the
// completion in Chosen, its label in Undesirable).
func (e *Encoder) EncodeUnpaired(us []pairs.Unpaired, betas BetaTable, skipInvalid bool) ([]Example, Truncation, int, error) {
	ss, tr, skipped, err := e.Unpaired(us, skipInvalid)
	if err != nil {
		return nil, tr, skipped, err
	}
	out := make([]Example, len(ss))
	for i, s := range ss {
		out[i] = Example{ID: s.ID, Objective: s.Objective, Beta: betas.Beta(s.Objective), Prompt: s.Prompt, Chosen: s.Completion, Undesirable: s.Undesirable}
	}
	return out, tr, skipped, nil
}

// ktoBalance is the note on λ_D and λ_U when the training examples are
// imbalanced for them (objective.KTOWeightAdvice), or "".
func ktoBalance(cfg Config, exs []Example) string {
	nD, nU := 0, 0
	for i := range exs {
		if exs[i].Undesirable {
			nU++
		} else {
			nD++
		}
	}
	if nD == 0 || nU == 0 {
		kind := "desirable"
		if nD == 0 {
			kind = "undesirable"
		}
		return fmt.Sprintf("kto: all %d training examples are %s: KTO then only moves their rewards against the reference point", len(exs), kind)
	}
	ratio, ok, dLo, dHi, uLo, uHi := objective.KTOWeightAdvice(nD, nU, cfg.DesirableWeight, cfg.UndesirableWeight)
	if ok {
		return ""
	}
	suggest := fmt.Sprintf("--undesirable-weight %.3g", uLo) // weigh up the rarer undesirable examples
	if ratio < 1 {
		suggest = fmt.Sprintf("--desirable-weight %.3g", dLo) // weigh up the rarer desirable examples
	}
	return fmt.Sprintf("kto: %d desirable and %d undesirable examples: λ_D·n_D / (λ_U·n_U) = %.3g, outside the paper's [1, 4/3]; "+
		"use --desirable-weight in [%.3g, %.3g] or --undesirable-weight in [%.3g, %.3g], not both (suggested: %s)",
		nD, nU, ratio, dLo, dHi, uLo, uHi, suggest)
}

// ktoInputs makes KTO's examples of in: the training pairs as a desirable
// and an undesirable example each, then the unpaired examples; held-out
// pairs stay pairs (accuracy and margin per pair) unless the held-out data
// holds unpaired examples too. Each example gets its mismatched completion
// (assignKL).
func ktoInputs(cfg Config, enc *Encoder, betas BetaTable, in *inputs) error {
	u, tr, sk, err := enc.EncodeUnpaired(in.trainUnpaired, betas, cfg.SkipInvalid)
	if err != nil {
		return positioned(in.dataName, cfg.Data, err)
	}
	in.train = append(unpairedExamples(in.train), u...)
	ue, tr2, sk2, err := enc.EncodeUnpaired(in.evalUnpaired, betas, cfg.SkipInvalid)
	if err != nil {
		if cfg.EvalData == "" {
			return positioned(in.dataName, cfg.Data, err)
		}
		return positioned(cfg.EvalData, cfg.EvalData, err)
	}
	if len(ue) > 0 {
		in.eval = append(unpairedExamples(in.eval), ue...)
	}
	in.skipped += sk + sk2
	in.trunc.PromptsCut += tr.PromptsCut + tr2.PromptsCut
	in.trunc.ResponsesCut += tr.ResponsesCut + tr2.ResponsesCut
	assignKL(in.train, cfg.MaxLength)
	assignKL(in.eval, cfg.MaxLength)
	return nil
}
