package train

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// Trainer is one adapter set as the driver uses it (run.Trainer):
// bindings.Set, or align/run/fake's closed-form set in the loop tests.
type Trainer = run.Trainer

// objective is a training method: the layout of a micro-batch and the loss
// of its policy outputs, as per-token cotangents and metrics, whether it
// needs the reference's log-probs, its early-stopping score and its
// progress line. registry maps each method to its objective: a new method
// is one file with its objective, one entry there and one row of
// align/objective's registry.
type method interface {
	// needsReference: the loss reads RefW/RefL (a reference pass first).
	needsReference() bool
	// score is the early-stopping score of held-out metrics (higher better).
	score(eval map[string]float64) float64
	// line is the progress line of a train row's metrics.
	line(m map[string]float64) string
	// evalLine is the line of held-out metrics align train prints before
	// and after training (EvalLine).
	evalLine(m map[string]float64) string
	// layout is how a micro-batch's examples become sequences.
	layout() Layout
	// norm is the divisor that makes one optimiser step's loss over these
	// micro-batches a mean (SFT: scored tokens; preferences: pairs).
	norm(exs []Example, group []MicroBatch) float64
	// loss adds micro-batch mb's loss to m and returns dLoss/dLogps, one
	// per scored token of out in batch order, for the step's loss divided
	// by norm. out.Logps may be empty: SFT and the preference family need
	// only out.Sums.
	loss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error)
	// metrics are the means of m, keyed as TRL logs them.
	metrics(m Metrics) map[string]float64
}

// headObjective is an objective of the adapter set's head values (the
// reward model, rm.go): it lays out its own batches (head positions marked)
// and its loss seeds the head values instead of the token log-probs. Its
// trainer must be a headTrainer.
type headObjective interface {
	method
	batch(exs []Example, mb MicroBatch) *bindings.Batch
	// headLoss is loss for the head values: dLoss/dHeads in out.Heads'
	// layout.
	headLoss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error)
}

// batchOf lays out micro-batch mb for obj.
func batchOf(obj method, exs []Example, mb MicroBatch) *bindings.Batch {
	if ho, ok := obj.(headObjective); ok {
		return ho.batch(exs, mb)
	}
	return BuildBatch(exs, mb, obj.layout())
}

// lossOf is obj's loss of one micro-batch: token cotangents, or for a head
// objective head cotangents.
func lossOf(obj method, exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) (cot, headCot []float32, err error) {
	if ho, ok := obj.(headObjective); ok {
		headCot, err = ho.headLoss(exs, mb, out, norm, m)
		return nil, headCot, err
	}
	cot, err = obj.loss(exs, mb, out, norm, m)
	return cot, nil, err
}

// Methods (align/objective's registry describes them).
const (
	SFT   = objective.SFT
	DPO   = objective.DPO
	IPO   = objective.IPO
	CDPO  = objective.CDPO
	Hinge = objective.Hinge
	RM    = objective.RM
	ORPO  = objective.ORPO
	SimPO = objective.SimPO
)

// registry is the implementation of each method of kind objective.Dataset,
// by name: align/objective's registry holds the rest of what is
// method-specific (layout, reference pass, help), and registry_test.go
// checks that every dataset method has its objective here, that none of
// another kind has, and that each objective's layout() and
// needsReference() are its row's.
var registry = map[string]func(Config) method{
	SFT:   func(Config) method { return sftObjective{} },
	DPO:   newPref,
	IPO:   newPref,
	CDPO:  newPref,
	Hinge: newPref,
	RM:    func(c Config) method { return rmObjective{center: c.CenterCoef} },
	ORPO:  newORPO,
	SimPO: newSimPO,
	KTO:   newKTO,
}

// Methods lists the methods of this package: the registry's dataset
// methods, in its order.
var Methods = objective.Names(objective.Dataset)

// newObjective returns the objective of a validated configuration.
func newObjective(cfg Config) method { return registry[cfg.Method](cfg) }

func newPref(cfg Config) method {
	eps := cfg.LabelSmoothing
	if cfg.Method == CDPO && eps == 0 {
		eps = 0.1
	}
	return prefObjective{method: cfg.Method, eps: eps, rpoAlpha: cfg.RPOAlpha}
}

// EvalLine is method's line for held-out metrics m, as align train prints
// them before and after training ("" for a method of another package).
func EvalLine(method string, m map[string]float64) string {
	mk, ok := registry[method]
	if !ok {
		return ""
	}
	return mk(Defaults(method)).evalLine(m)
}

// pairEvalLine is the held-out line of a pairwise objective over log-probs:
// accuracy, margin, implicit rewards and the responses' log-probs.
func pairEvalLine(m map[string]float64) string {
	return fmt.Sprintf("loss %.4f  accuracy %.3f  margin %+.4f  rewards chosen %+.4f rejected %+.4f  logps chosen %.2f rejected %.2f",
		m["loss"], m["rewards/accuracies"], m["rewards/margins"], m["rewards/chosen"], m["rewards/rejected"], m["logps/chosen"], m["logps/rejected"])
}

// prefLine is the progress line of a pairwise objective.
func prefLine(m map[string]float64) string {
	return fmt.Sprintf("loss %.4f margin %.3f acc %.2f", m["loss"], m["rewards/margins"], m["rewards/accuracies"])
}

// seqScored is the number of scored tokens in each sequence of micro-batch mb.
func seqScored(exs []Example, mb MicroBatch, l Layout) []int {
	var out []int
	for _, i := range mb.Examples {
		for _, r := range l.responses(&exs[i]) {
			out = append(out, len(r))
		}
	}
	return out
}

// broadcast writes v into the n cotangents from off and returns off + n.
func broadcast(cot []float32, off, n int, v float64) int {
	for t := off; t < off+n; t++ {
		cot[t] = float32(v)
	}
	return off + n
}

func checkOutputs(exs []Example, mb MicroBatch, out Outputs, l Layout) (int, error) {
	per := l.perExample()
	if len(out.Sums) != per*len(mb.Examples) {
		return 0, fmt.Errorf("train: trainer returned %d sequence sums for %d sequences", len(out.Sums), per*len(mb.Examples))
	}
	n := 0
	for _, s := range seqScored(exs, mb, l) {
		n += s
	}
	if out.Logps != nil && len(out.Logps) != n {
		return 0, fmt.Errorf("train: trainer returned %d token log-probs for %d scored tokens", len(out.Logps), n)
	}
	return n, nil
}

// sftObjective is the mean token NLL of the chosen responses.
type sftObjective struct{}

func (sftObjective) layout() Layout                      { return LayoutSingle }
func (sftObjective) needsReference() bool                { return false }
func (sftObjective) score(em map[string]float64) float64 { return -em["loss"] }
func (sftObjective) line(m map[string]float64) string    { return fmt.Sprintf("loss %.4f", m["loss"]) }
func (sftObjective) evalLine(m map[string]float64) string {
	return fmt.Sprintf("loss %.4f  logps chosen %.2f", m["loss"], m["logps/chosen"])
}

func (sftObjective) norm(exs []Example, group []MicroBatch) float64 {
	n := 0
	for _, mb := range group {
		for _, i := range mb.Examples {
			n += len(exs[i].Chosen)
		}
	}
	return float64(n)
}

func (o sftObjective) loss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error) {
	n, err := checkOutputs(exs, mb, out, LayoutSingle)
	if err != nil {
		return nil, err
	}
	cot := make([]float32, n)
	off := 0
	for k, i := range mb.Examples {
		nt := len(exs[i].Chosen)
		m.N++
		m.Tokens += nt
		m.NLL -= out.Sums[k]
		m.LogpsChosen += out.Sums[k]
		off = broadcast(cot, off, nt, -1/norm)
	}
	return cot, nil
}

func (sftObjective) metrics(m Metrics) map[string]float64 {
	return map[string]float64{"loss": m.NLL / math.Max(float64(m.Tokens), 1), "logps/chosen": m.LogpsChosen / math.Max(float64(m.N), 1)}
}

// prefObjective is the DPO family (dpo, cdpo, ipo, hinge) with each pair's
// β and, with rpoAlpha > 0, RPO's α × the chosen response's mean token NLL.
type prefObjective struct {
	method   string
	eps      float64 // label smoothing (dpo, cdpo)
	rpoAlpha float64
}

func (prefObjective) layout() Layout                       { return LayoutPair }
func (prefObjective) needsReference() bool                 { return true }
func (prefObjective) score(em map[string]float64) float64  { return em["rewards/margins"] }
func (prefObjective) line(m map[string]float64) string     { return prefLine(m) }
func (prefObjective) evalLine(m map[string]float64) string { return pairEvalLine(m) }

func (prefObjective) norm(_ []Example, group []MicroBatch) float64 {
	n := 0
	for _, mb := range group {
		n += len(mb.Examples)
	}
	return float64(n)
}

func (o prefObjective) loss(exs []Example, mb MicroBatch, out Outputs, norm float64, m *Metrics) ([]float32, error) {
	return pairCots(exs, mb, out, norm, func(ex *Example, p PairLogps) (PairLoss, error) {
		l, err := PreferenceLoss(o.method, ex.Beta, o.eps, p)
		if err != nil {
			return l, err
		}
		nll := rpoTerm(o.rpoAlpha, p, &l, m)
		m.Add(l, p)
		m.AddObjective(ex.Objective, l, p, nll)
		return l, nil
	})
}

// noRefPairs is the part of a pairwise objective without a reference
// (ORPO, SimPO): the pair layout, no reference pass, the mean over pairs
// and TRL's metrics.
type noRefPairs struct{}

func (noRefPairs) layout() Layout                       { return LayoutPair }
func (noRefPairs) needsReference() bool                 { return false }
func (noRefPairs) metrics(m Metrics) map[string]float64 { return m.Map() }
func (noRefPairs) evalLine(m map[string]float64) string { return pairEvalLine(m) }

func (noRefPairs) norm(exs []Example, group []MicroBatch) float64 {
	return prefObjective{}.norm(exs, group)
}

// pairCots is the loss of a pairwise objective over micro-batch mb: pair
// is one pair's loss and gradient with respect to its log-prob sums (and
// adds the pair's metrics); each gradient is broadcast to the pair's
// tokens, divided by norm.
func pairCots(exs []Example, mb MicroBatch, out Outputs, norm float64, pair func(ex *Example, p PairLogps) (PairLoss, error)) ([]float32, error) {
	n, err := checkOutputs(exs, mb, out, LayoutPair)
	if err != nil {
		return nil, err
	}
	cot := make([]float32, n)
	off := 0
	for k, i := range mb.Examples {
		ex := &exs[i]
		p := PairLogps{PiW: out.Sums[2*k], PiL: out.Sums[2*k+1], RefW: ex.RefW, RefL: ex.RefL, NW: len(ex.Chosen), NL: len(ex.Rejected)}
		l, err := pair(ex, p)
		if err != nil {
			return nil, fmt.Errorf("pair %q: %w", ex.ID, err)
		}
		off = broadcast(cot, off, p.NW, l.DPiW/norm)
		off = broadcast(cot, off, p.NL, l.DPiL/norm)
	}
	return cot, nil
}

// rpoTerm adds RPO's α × the chosen response's mean token NLL to l (α 0:
// none) and to m, and returns the NLL.
func rpoTerm(alpha float64, p PairLogps, l *PairLoss, m *Metrics) float64 {
	if !(alpha > 0) {
		return 0
	}
	nll := -p.PiW / float64(p.NW)
	l.Loss += alpha * nll
	l.DPiW -= alpha / float64(p.NW)
	m.NLL += nll
	return nll
}

func (prefObjective) metrics(m Metrics) map[string]float64 { return m.Map() }

// optimiser is the harness's optimiser step (run.Optimiser).
type optimiser struct {
	weightDecay float64
	maxGradNorm float64 // 0: no clipping
}

// stepStats is what one optimiser step measured.
type stepStats struct {
	metrics  Metrics
	gradNorm float64 // before clipping
	tokens   int64   // padded tokens processed
}

// step is one optimiser step over group: forward_grad → loss → backward per
// micro-batch (the gradient accumulates), clip to maxGradNorm, AdamW at lr.
func (o optimiser) step(tr Trainer, obj method, exs []Example, group []MicroBatch, lr float64) (stepStats, error) {
	var st stepStats
	norm := obj.norm(exs, group)
	if p, ok := obj.(preparer); ok {
		if err := p.prepare(tr, exs, group); err != nil {
			return st, err
		}
	}
	var err error
	st.gradNorm, err = run.Optimiser{WeightDecay: o.weightDecay, MaxGradNorm: o.maxGradNorm}.Step(tr, lr, func() error {
		for _, mb := range group {
			b := batchOf(obj, exs, mb)
			out, err := tr.ForwardGrad(b)
			if err != nil {
				return err
			}
			cot, headCot, err := lossOf(obj, exs, mb, out, norm, &st.metrics)
			if err != nil {
				return err
			}
			if err := tr.Backward(cot, headCot); err != nil {
				return err
			}
			st.tokens += int64(b.NSeq * b.NTok)
		}
		return nil
	})
	return st, err
}

// evaluate is the objective's metrics over exs at the current adapter
// (forward only). done, if set, is called after each micro-batch with the
// count done and the total.
func evaluate(ctx context.Context, tr Trainer, obj method, exs []Example, budget int, done func(n, total int)) (map[string]float64, error) {
	order := make([]int, len(exs))
	for i := range order {
		order[i] = i
	}
	m := Metrics{ByObjective: map[string]*Metrics{}}
	mbs := Pack(exs, order, budget, obj.layout())
	if p, ok := obj.(preparer); ok {
		if err := p.prepare(tr, exs, mbs); err != nil {
			return nil, err
		}
	}
	for j, mb := range mbs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out, err := tr.Forward(batchOf(obj, exs, mb), 1)
		if err != nil {
			return nil, err
		}
		if _, _, err := lossOf(obj, exs, mb, out, 1, &m); err != nil {
			return nil, err
		}
		if done != nil {
			done(j+1, len(mbs))
		}
	}
	out := obj.metrics(m)
	_, heads := obj.(headObjective)
	for k, v := range m.ObjectiveMap() {
		if heads && strings.Contains(k, "/logps/") {
			continue // the reward model's rewards are the head's: no log-probs
		}
		out[k] = v
	}
	return out, nil
}
