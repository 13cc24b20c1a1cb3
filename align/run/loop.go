package run

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/objective"
)

// Stepper is a method as the loop runs it: the steps of each epoch, one
// step, a held-out evaluation, and the adapter sets a checkpoint holds.
type Stepper interface {
	// EpochSteps is the number of steps epoch e takes (packing may depend
	// on the epoch's order).
	EpochSteps(e int) int
	// Step takes the step at cur with learning rate lr. A step that fails
	// because ctx ended must leave the sets as they were before it, unless
	// Options.Snapshot is set.
	Step(ctx context.Context, cur Cursor, lr float64) (Row, error)
	// Evaluate is the held-out metrics at the current adapters (done, if
	// set, is called with micro-batches done and their total).
	Evaluate(ctx context.Context, done func(n, total int)) (map[string]float64, error)
	// Score is the early-stopping score of held-out metrics: higher is better.
	Score(eval map[string]float64) float64
	// Line is the progress line of a train row (the method's metrics with
	// learning_rate and tokens_per_s).
	Line(row map[string]float64) string
	// Sets are the trainable adapter sets, in checkpoint order.
	Sets() []Set
}

// Extras is a Stepper with state of its own in checkpoints (PPO's KL
// coefficient).
type Extras interface {
	MarshalExtra() []byte
	UnmarshalExtra([]byte) error
}

// Row is what a step measured.
type Row struct {
	Metrics map[string]float64 // logged in the train row
	Tokens  int64              // padded tokens processed (0: no tokens_per_s)
	Stop    string             // not "": the method stops the run after this step, saying this
}

// Options are the loop's settings.
type Options struct {
	Out                  string
	Resume               bool
	Epochs, MaxSteps     int
	EvalEvery, SaveEvery int // 0: each epoch
	Patience             int // evaluations without a better Score before stopping (0: off)
	LR                   float64
	Schedule             string
	WarmupSteps          int
	HasEval              bool // the method has held-out data
	// Snapshot copies the sets after every step, and an interruption saves
	// that copy: for steps that take several optimiser steps (PPO's
	// epochs and mini-batches) and so are not atomic under a cancel.
	Snapshot bool
	Progress Progress
	OnStep   func(step int)
}

// Result is what the loop did.
type Result struct {
	Steps, Epochs int
	StoppedEarly  bool
	Before, After map[string]float64
	TokensPerS    float64
}

type loop struct {
	ctx                  context.Context
	s                    Stepper
	o                    Options
	st                   State
	log                  *Metrics
	snap                 *Snapshot
	total, perEpoch      int
	evalEvery, saveEvery int
	sched                objective.Schedule
	tokens               int64
	stepTime             time.Duration // in Stepper.Step, for rate
	start                time.Time
	startStep            int
}

// Loop runs s in o.Out: it restores the newest checkpoint of a resumed
// run, evaluates before the first step, steps through the epochs with the
// eval and save cadence and early stopping, evaluates after the last step
// (restoring the best adapters when early stopping ended the run) and
// saves the final checkpoint. When ctx ends it saves a checkpoint and
// returns an error wrapping ErrInterrupted.
func Loop(ctx context.Context, s Stepper, o Options) (res Result, err error) {
	l := &loop{ctx: ctx, s: s, o: o, st: State{BestScore: math.Inf(-1)}}
	if err := l.restore(); err != nil {
		return res, err
	}
	defer l.log.Close()
	l.plan()
	if o.Snapshot {
		if err := l.takeSnapshot(); err != nil {
			return res, err
		}
	}
	if res.Before, err = l.evaluateAt(0); err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("before the first step: %w", ErrInterrupted)
		}
		return res, err
	}
	if err := l.run(); err != nil {
		return res, err
	}
	if res.After, err = l.evaluateAt(l.st.Step); err != nil {
		if ctx.Err() != nil {
			return res, l.interrupted()
		}
		return res, err
	}
	if l.st.Stopped && l.st.Best != nil {
		// the adapters of the best held-out evaluation
		for i, set := range s.Sets() {
			cur, err := set.GetState()
			if err == nil {
				err = set.SetState(l.st.Best[i], nil, nil, cur.Step)
			}
			if err != nil {
				return res, err
			}
		}
		if res.After, err = s.Evaluate(ctx, nil); err != nil {
			return res, err
		}
	}
	snap, err := Take(s.Sets(), l.state())
	if err == nil {
		err = snap.Save(o.Out)
	}
	if err != nil {
		return res, err
	}
	res.Steps, res.Epochs, res.StoppedEarly, res.TokensPerS = l.st.Step, l.st.Epoch, l.st.Stopped, l.rate()
	return res, nil
}

// restore loads the newest readable checkpoint of a resumed run and opens
// the metrics log at its step.
func (l *loop) restore() error {
	keep := -1
	if l.o.Resume && HasCheckpoint(l.o.Out) {
		snap, note, err := LoadNewest(l.o.Out, l.s.Sets())
		if err != nil {
			return err
		}
		l.o.Progress.Note("%s", note)
		if x, ok := l.s.(Extras); ok {
			if err := x.UnmarshalExtra(snap.Extra); err != nil {
				return err
			}
		}
		l.st, keep = snap.State, snap.Step
	}
	// keep < 0: a new run, or one interrupted before its first checkpoint
	var err error
	l.log, err = OpenMetrics(filepath.Join(l.o.Out, "metrics.jsonl"), keep)
	return err
}

// plan sets the schedule. Epochs may differ by a step.
func (l *loop) plan() {
	o := l.o
	for e := 0; e < o.Epochs; e++ {
		l.total += l.s.EpochSteps(e)
	}
	l.perEpoch = max(1, l.total/o.Epochs) // for the defaults of --eval-every and --save-every
	if o.MaxSteps > 0 && o.MaxSteps < l.total {
		l.total = o.MaxSteps
	}
	if o.MaxSteps > 0 && l.st.Step > o.MaxSteps { // a run does not go back: nothing to train
		l.o.Progress.Note("the run is at step %d, past --max-steps %d: nothing to train", l.st.Step, o.MaxSteps)
	}
	warmup := o.WarmupSteps
	if warmup > l.total/2 {
		warmup = l.total / 2
		if l.st.Step == 0 {
			l.o.Progress.Note("--warmup-steps %d is more than half of the run's %s: warming up over %s",
				o.WarmupSteps, Plural(l.total, "step"), Plural(warmup, "step"))
		}
	}
	l.sched = objective.Schedule{LR: o.LR, Warmup: warmup, Total: l.total, Kind: o.Schedule}
	l.evalEvery, l.saveEvery = o.EvalEvery, o.SaveEvery
	if l.evalEvery <= 0 {
		l.evalEvery = l.perEpoch
	}
	if l.saveEvery <= 0 {
		l.saveEvery = l.perEpoch
	}
}

func (l *loop) epochOf(step int) float64 { return float64(step) / float64(max(l.perEpoch, 1)) }

// rate is the tokens per second of this process's steps: not of the
// held-out evaluations and checkpoints between them (a run with small
// steps and a large held-out set read a fraction of its speed), and 0
// when it trained no step (a resume of a finished run).
func (l *loop) rate() float64 {
	if l.tokens == 0 {
		return 0
	}
	return float64(l.tokens) / math.Max(l.stepTime.Seconds(), 1e-9)
}

// state is the loop state with the method's own.
func (l *loop) state() State {
	st := l.st
	if x, ok := l.s.(Extras); ok {
		st.Extra = x.MarshalExtra()
	}
	return st
}

func (l *loop) takeSnapshot() (err error) {
	l.snap, err = Take(l.s.Sets(), l.state())
	return err
}

// save writes a checkpoint of the current step.
func (l *loop) save() error {
	if l.o.Snapshot {
		snap := *l.snap
		snap.State = l.state()
		snap.Extra = l.snap.Extra // the method's state when the sets were copied
		return snap.Save(l.o.Out)
	}
	snap, err := Take(l.s.Sets(), l.state())
	if err != nil {
		return err
	}
	return snap.Save(l.o.Out)
}

// interrupted saves a checkpoint at the current step.
func (l *loop) interrupted() error {
	if err := l.save(); err != nil {
		return fmt.Errorf("interrupted, and saving the checkpoint failed: %w", err)
	}
	return fmt.Errorf("step %d, checkpoint saved: %w", l.st.Step, ErrInterrupted)
}

// budget saves a checkpoint at the current step when a spending cap
// (--max-usd, cost.IsBudget) stopped a step or an evaluation, and returns
// err: a resume with a higher cap continues from there.
func (l *loop) budget(err error) error {
	if serr := l.save(); serr != nil {
		return fmt.Errorf("%w; saving the checkpoint failed: %v", err, serr)
	}
	return fmt.Errorf("step %d, checkpoint saved (raise --max-usd and --resume to continue): %w", l.st.Step, err)
}

// evaluateAt logs the held-out metrics of step once: a step already
// evaluated (in the metrics log) is not evaluated again.
func (l *loop) evaluateAt(step int) (map[string]float64, error) {
	if !l.o.HasEval {
		return nil, nil
	}
	if row, ok := l.log.Has("eval", step); ok {
		return Values(row), nil
	}
	t0 := time.Now()
	m, err := l.s.Evaluate(l.ctx, func(n, total int) {
		l.o.Progress.Send(Event{Phase: "eval", Done: n, Total: total, ETA: ETA(time.Since(t0), n, total)})
	})
	if err != nil {
		return nil, err
	}
	row := map[string]any{"split": "eval", "step": step, "epoch": l.epochOf(step)}
	for k, v := range m {
		row[k] = v
	}
	return m, l.log.Write(row)
}

func (l *loop) run() error {
	o := l.o
	l.start, l.startStep = time.Now(), l.st.Step
	if err := l.catchUp(); err != nil {
		return err
	}
	for l.st.Step < l.total && l.st.Epoch < o.Epochs && !l.st.Stopped {
		n := l.s.EpochSteps(l.st.Epoch)
		for l.st.EpochStep < n && l.st.Step < l.total && !l.st.Stopped {
			if l.ctx.Err() != nil {
				return l.interrupted()
			}
			lr := l.sched.At(l.st.Step)
			t0 := time.Now()
			row, err := l.s.Step(l.ctx, l.st.Cursor, lr)
			l.stepTime += time.Since(t0)
			if err != nil && l.ctx.Err() != nil {
				return l.interrupted() // cancelled inside the step: its update was not kept
			}
			if err != nil && cost.IsBudget(err) {
				return l.budget(err) // a step stops at the cap before its update
			}
			if err != nil {
				return fmt.Errorf("step %d: %w", l.st.Step+1, err)
			}
			l.tokens += row.Tokens
			l.st.Step++
			l.st.EpochStep++
			if row.Stop != "" {
				l.st.Stopped = true
				o.Progress.Note("step %d: %s", l.st.Step, row.Stop)
			}
			if o.Snapshot {
				if err := l.takeSnapshot(); err != nil {
					return err
				}
			}
			if err := l.logStep(row, lr); err != nil {
				return err
			}
			if l.st.Step%l.evalEvery == 0 || l.st.Step == l.total {
				em, err := l.evaluateAt(l.st.Step)
				if err != nil && l.ctx.Err() != nil {
					return l.interrupted() // during the evaluation: the step is done
				}
				if err != nil && cost.IsBudget(err) {
					return l.budget(err)
				}
				if err != nil {
					return err
				}
				if em != nil && o.Patience > 0 {
					if err := l.patience(em); err != nil {
						return err
					}
					if l.st.Stopped {
						break
					}
				}
			}
			if l.st.Step%l.saveEvery == 0 && l.st.Step < l.total {
				if err := l.save(); err != nil {
					return err
				}
			}
			if o.OnStep != nil {
				o.OnStep(l.st.Step)
			}
		}
		if !l.st.Stopped && l.st.EpochStep >= n {
			l.st.Epoch++
			l.st.EpochStep = 0
			// one summary row per finished epoch
			row := map[string]any{"split": "train_epoch", "step": l.st.Step, "epoch": l.st.Epoch}
			if l.tokens > 0 {
				row["tokens_per_s"] = l.rate()
			}
			if err := l.log.Write(row); err != nil {
				return err
			}
			if l.ctx.Err() == nil {
				if _, err := l.evaluateAt(l.st.Step); err != nil && l.ctx.Err() == nil {
					return err
				}
			}
		}
	}
	return nil
}

// logStep writes a step's train row and its progress line.
func (l *loop) logStep(r Row, lr float64) error {
	m := map[string]float64{"learning_rate": lr}
	if r.Tokens > 0 || l.tokens > 0 {
		m["tokens_per_s"] = l.rate()
	}
	for k, v := range r.Metrics {
		m[k] = v
	}
	row := map[string]any{"split": "train", "step": l.st.Step, "epoch": l.epochOf(l.st.Step)}
	for k, v := range m {
		row[k] = v
	}
	if err := l.log.Write(row); err != nil {
		return err
	}
	l.o.Progress.Send(Event{Phase: "train", Done: l.st.Step, Total: l.total, Stats: l.s.Line(m),
		ETA: ETA(time.Since(l.start), l.st.Step-l.startStep, l.total-l.startStep)})
	return nil
}

// catchUp runs the evaluation an interruption skipped at the checkpoint's
// step (the interruption landed in it, or at the end of an epoch), so a
// resumed run logs and decides what an uninterrupted one did.
func (l *loop) catchUp() error {
	step := l.st.Step
	if step == 0 || !l.o.HasEval {
		return nil
	}
	if _, ok := l.log.Has("eval", step); ok {
		return nil
	}
	due := step%l.evalEvery == 0 || step == l.total
	if !due && l.st.EpochStep != 0 {
		return nil
	}
	em, err := l.evaluateAt(step)
	if err != nil {
		if l.ctx.Err() != nil {
			return l.interrupted()
		}
		return err
	}
	if due && l.o.Patience > 0 {
		return l.patience(em)
	}
	return nil
}

// patience tracks the best held-out score and stops the run after
// o.Patience evaluations without a better one.
func (l *loop) patience(em map[string]float64) error {
	if val := l.s.Score(em); val > l.st.BestScore {
		l.st.BestScore, l.st.BadEvals, l.st.BestStep = val, 0, l.st.Step
		l.st.Best = nil
		for _, set := range l.s.Sets() {
			s, err := set.GetState()
			if err != nil {
				return err
			}
			l.st.Best = append(l.st.Best, s.Params)
		}
	} else if l.st.BadEvals++; l.st.BadEvals >= l.o.Patience {
		l.st.Stopped = true
	}
	return nil
}

// EpochOrder is the shuffled order of n items in an epoch: a pure function
// of (seed, epoch), so a resumed run sees the same order.
func EpochOrder(n int, seed uint64, epoch int) []int {
	r := rand.New(rand.NewPCG(seed, uint64(epoch)+0x9E3779B97F4A7C15))
	return r.Perm(n)
}
