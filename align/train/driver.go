package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/bindings"
)

// evalSplitSalt decorrelates --eval-split from the data tools' splits.
const evalSplitSalt = 0x7472_6169_6e65_7661

// ErrInterrupted is returned (wrapped) when the context ended and a
// checkpoint was saved: rerun with Resume to continue.
var ErrInterrupted = errors.New("interrupted; rerun with --resume to continue")

// Result summarises a finished run.
type Result struct {
	Steps        int                `json:"steps"`
	Epochs       int                `json:"epochs"`
	StoppedEarly bool               `json:"stopped_early"`
	Before       map[string]float64 `json:"eval_before"`
	After        map[string]float64 `json:"eval_after"`
	Adapter      string             `json:"adapter"`
	Head         string             `json:"head,omitempty"` // rm: the reward head (head.gguf)
	TrainPairs   int                `json:"train_pairs"`
	EvalPairs    int                `json:"eval_pairs"`
	Truncation   Truncation         `json:"truncation"`
	Skipped      int                `json:"skipped"`
	TokensPerS   float64            `json:"tokens_per_s"`
	ElapsedS     float64            `json:"elapsed_s"`
	Device       string             `json:"device,omitempty"` // where the steps ran: CPU, CUDA0, ...
}

// Event is one progress update.
type Event struct {
	// Phase is "reference" (reference log-probs), "train" or "eval"
	// (held-out evaluation); "" for a note.
	Phase string
	Done  int // micro-batches (reference, eval) or optimiser steps (train) done
	Total int
	ETA   time.Duration // 0: unknown, or nothing left
	Stats string        // train: loss, margin, learning rate, rate
	Note  string        // a message for a line of its own (Phase "")
}

// Progress receives updates for a human on stderr; nil: silent.
type Progress func(Event)

// runState is what the loop carries between steps.
type runState struct {
	step, epoch, epochStep int // optimiser steps done; cursor
	bestMargin             float64
	badEvals               int
	best                   []float32 // adapter params at the best held-out margin
	bestStep               int
}

// opener makes the trainer of a run: the native one, or a test's fake.
type opener func(model string, opt bindings.TrainerOptions) (Trainer, func() error, error)

// Run trains. It writes Out/metrics.jsonl, Out/adapter.gguf, checkpoints
// under Out/checkpoints and Out/summary.json. When ctx ends it saves a
// checkpoint and returns an error wrapping ErrInterrupted. Bad settings
// are returned as *ConfigError before anything is read or written.
func Run(ctx context.Context, cfg Config, progress Progress) (Result, error) {
	return run(ctx, cfg, progress, openNative)
}

func run(ctx context.Context, cfg Config, progress Progress, open opener) (res Result, err error) {
	start := time.Now()
	if progress == nil {
		progress = func(Event) {}
	}
	if cfg.Resume {
		if cfg, err = resumeConfig(cfg); err != nil {
			return res, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	if !cfg.Resume {
		for _, p := range []*string{&cfg.Model, &cfg.Data, &cfg.EvalData, &cfg.InitAdapter, &cfg.RefAdapter} {
			if *p, err = absPath(*p); err != nil {
				return res, err
			}
		}
	}

	// everything is read and checked before the run directory is touched
	if !cfg.Resume {
		if err := checkOut(cfg.Out, cfg.Force); err != nil {
			return res, err
		}
	}
	in, err := readInputs(cfg)
	if err != nil {
		return res, err
	}
	train, eval := in.train, in.eval
	res.Skipped, res.Truncation = in.skipped, in.trunc
	res.TrainPairs, res.EvalPairs = len(train), len(eval)

	if err := resolveStages(&cfg); err != nil { // --init-adapter, --ref-adapter (stage.go)
		return res, err
	}
	targets, _ := targetBits(cfg.Targets)
	device := ResolveDevice(cfg.Device)
	tr, closeTr, err := open(cfg.Model, bindings.TrainerOptions{Threads: cfg.Threads, Rank: cfg.Rank,
		Alpha: float32(cfg.Alpha), Targets: targets, Seed: cfg.Seed, Device: device,
		BackwardWeights: cfg.BackwardWeights, Recompute: ResolveRecompute(cfg.Recompute, device)})
	if err != nil {
		return res, err
	}
	defer closeTr()
	res.Device = tr.Info().Device
	refForward, err := setupStages(tr, cfg)
	if err != nil {
		return res, err
	}
	if cfg.Method == RM { // the reward set: LoRA + the reward head
		if tr, err = rewardTrainer(tr, cfg); err != nil {
			return res, err
		}
	}
	if n := tr.Info().NCtx; n > 0 && cfg.MaxLength > n {
		return res, bad("max-length", "is at most the model's context, %d (got %d)", n, cfg.MaxLength)
	}
	// the native trainer stops a running forward/backward when ctx ends
	// (within a graph node), not only between steps
	if w, ok := tr.(interface{ Watch(context.Context) func() }); ok {
		defer w.Watch(ctx)()
	}

	if !cfg.Resume {
		keep := []string{cfg.Model, cfg.Data, cfg.EvalData} // before --data - becomes the stored copy
		created, perr := prepareOut(cfg.Out, cfg.Force, keep...)
		if perr != nil {
			return res, perr
		}
		defer func() {
			// a run that failed before its first checkpoint leaves nothing
			// behind; an interrupted one keeps what it did, for --resume
			if err != nil && !errors.Is(err, ErrInterrupted) && len(listCheckpoints(filepath.Join(cfg.Out, "checkpoints"))) == 0 {
				removeRun(cfg.Out, keep...)
				if created {
					os.Remove(cfg.Out)
				}
			}
		}()
		if in.stdin != nil {
			p := filepath.Join(cfg.Out, storedData)
			if err := writeSynced(p, in.stdin); err != nil {
				return res, err
			}
			if cfg.Data, err = filepath.Abs(p); err != nil {
				return res, err
			}
			if in.hashes["data"], err = hashFile(p); err != nil {
				return res, err
			}
		}
		cfg.Hashes = in.hashes
	}
	// written first, so an interruption at any later point can resume; on
	// resume it records what --epochs and --max-steps changed
	if err := saveConfig(cfg); err != nil {
		return res, err
	}

	r := &runner{ctx: ctx, cfg: cfg, progress: progress, tr: tr, ref: refForward, obj: newObjective(cfg), train: train, eval: eval,
		opt: optimiser{weightDecay: cfg.WeightDecay, maxGradNorm: cfg.MaxGradNorm}}
	if err := r.reference(); err != nil {
		return res, err
	}
	if err := r.restore(); err != nil {
		return res, err
	}
	defer r.log.Close()
	r.plan()

	if res.Before, err = r.evaluateAt(0); err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("before the first step: %w", ErrInterrupted)
		}
		return res, err
	}
	if err := r.loop(); err != nil {
		return res, err
	}
	if res.After, err = r.evaluateAt(r.st.step); err != nil {
		return res, err
	}
	if r.stopped && r.st.best != nil {
		// export the adapter of the best held-out evaluation
		if err := tr.SetState(r.st.best, nil, nil, int64(r.st.step)); err != nil {
			return res, err
		}
		if res.After, err = r.evaluate(); err != nil {
			return res, err
		}
	}
	res.StoppedEarly = r.stopped
	res.Adapter = filepath.Join(cfg.Out, "adapter.gguf")
	if err := tr.Export(res.Adapter); err != nil {
		return res, err
	}
	if res.Head, err = exportHeads(tr, cfg.Out); err != nil {
		return res, err
	}
	res.Steps, res.Epochs = r.st.step, r.st.epoch
	res.ElapsedS = time.Since(start).Seconds()
	res.TokensPerS = r.rate()
	if err := saveCheckpoint(cfg.Out, tr, r.st); err != nil {
		return res, err
	}
	return res, writeJSON(filepath.Join(cfg.Out, "summary.json"), res)
}

// inputs are a run's pairs, read, checked and tokenized.
type inputs struct {
	stdin       []byte // the pairs of --data -, kept in the run
	train, eval []Example
	hashes      map[string]string // see Config.Hashes; no "data" for stdin yet
	trunc       Truncation
	skipped     int
}

// readInputs loads and tokenizes the pairs, checks --beta-table against
// their objectives and, on resume, the input hashes against the run's.
func readInputs(cfg Config) (*inputs, error) {
	in := &inputs{}
	opt := pairs.LoadOptions{SkipInvalid: cfg.SkipInvalid}
	var trainPairs, evalPairs []pairs.Pair
	var stats pairs.Stats
	var err error
	dataName := cfg.Data
	if cfg.Data == "-" {
		r := cfg.Stdin
		if r == nil {
			r = os.Stdin
		}
		if in.stdin, err = io.ReadAll(r); err != nil {
			return nil, fmt.Errorf("stdin: %w", err)
		}
		dataName = "stdin"
		trainPairs, stats, err = pairs.Read(bytes.NewReader(in.stdin), dataName, opt)
	} else {
		trainPairs, stats, err = pairs.Load(cfg.Data, opt)
	}
	if err != nil {
		return nil, err
	}
	in.skipped = stats.Skipped
	if cfg.EvalData != "" {
		if evalPairs, _, err = pairs.Load(cfg.EvalData, opt); err != nil {
			return nil, err
		}
	}
	objectives := map[string]bool{}
	for _, set := range [][]pairs.Pair{trainPairs, evalPairs} {
		for i := range set {
			objectives[strings.ToLower(set[i].Objective)] = true
		}
	}
	if err := checkBetaTable(cfg.BetaTable, objectives); err != nil {
		return nil, err
	}
	if cfg.EvalData == "" && cfg.EvalSplit > 0 {
		// salted: files written by `align data synth/split` were split by the
		// same id hash, and an unsalted split of their train half with the
		// same seed would hold out nothing
		if trainPairs, evalPairs, err = pairs.Split(trainPairs, cfg.EvalSplit, cfg.Seed^evalSplitSalt); err != nil {
			return nil, err
		}
	}
	if len(trainPairs) == 0 {
		return nil, fmt.Errorf("%s: no training pairs", dataName)
	}
	hc := cfg
	if in.stdin != nil {
		hc.Data = "" // hashed once kept in the run
	}
	if in.hashes, err = inputHashes(hc); err != nil {
		return nil, err
	}
	if cfg.Resume {
		if err := checkHashes(cfg.Out, cfg.Hashes, in.hashes, cfg); err != nil {
			return nil, err
		}
	}

	vocab, err := bindings.LoadModel(cfg.Model, bindings.ModelOptions{VocabOnly: true})
	if err != nil {
		return nil, err
	}
	defer vocab.Close()
	enc, err := NewEncoder(vocab, cfg.MaxLength, cfg.Raw)
	if err != nil {
		return nil, err
	}
	betas := BetaTable{Table: MergeBetas(cfg.BetaTable), Override: cfg.Beta}
	train, trunc, skipped, err := enc.Encode(trainPairs, betas, cfg.SkipInvalid)
	if err != nil {
		return nil, positioned(dataName, cfg.Data, err)
	}
	eval, trunc2, skipped2, err := enc.Encode(evalPairs, betas, cfg.SkipInvalid)
	if err != nil {
		if cfg.EvalData == "" { // --eval-split: the held-out pairs are lines of --data
			return nil, positioned(dataName, cfg.Data, err)
		}
		return nil, positioned(cfg.EvalData, cfg.EvalData, err)
	}
	if err := applyMargins(cfg, dataName, train, trainPairs, eval, evalPairs); err != nil {
		return nil, err
	}
	in.train, in.eval = train, eval
	in.skipped += skipped + skipped2
	in.trunc = Truncation{trunc.PromptsCut + trunc2.PromptsCut, trunc.ResponsesCut + trunc2.ResponsesCut}
	return in, nil
}

// resumeConfig reads the run in cfg.Out and applies what a resume may
// change. The run is read and written in cfg.Out, wherever it started.
func resumeConfig(cfg Config) (Config, error) {
	saved, err := loadConfig(cfg.Out)
	if err != nil {
		return cfg, err
	}
	saved.Out, saved.Resume = cfg.Out, true
	saved.Threads, saved.Device, saved.Recompute, saved.OnStep = cfg.Threads, cfg.Device, cfg.Recompute, cfg.OnStep
	if v := cfg.Continue.Epochs; v != nil {
		saved.Epochs = *v
	}
	if v := cfg.Continue.MaxSteps; v != nil {
		saved.MaxSteps = *v
	}
	// a path stored relative (by an older align) resolves against the run
	for _, p := range []*string{&saved.Model, &saved.Data, &saved.EvalData} {
		if *p != "" && !filepath.IsAbs(*p) {
			if _, err := os.Stat(*p); err != nil {
				*p = filepath.Join(cfg.Out, *p)
			}
		}
	}
	if saved.Data == "-" {
		return cfg, fmt.Errorf("%s: cannot resume: the run read its pairs from standard input and did not keep them", cfg.Out)
	}
	return saved, nil
}

// positioned names the file and line of the pair an encoding error is about.
func positioned(name, path string, err error) error {
	var pe *pairError
	if errors.As(err, &pe) {
		if line := lineOf(path, pe.id); line > 0 {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// runner is one run's loop state.
type runner struct {
	ctx         context.Context
	cfg         Config
	progress    Progress
	tr          Trainer
	ref         func(*bindings.Batch) (Outputs, error) // reference forward (setupStages)
	obj         objective
	opt         optimiser
	train, eval []Example
	log         *metricsLog

	st                   runState
	total, perEpoch      int
	sched                Schedule
	evalEvery, saveEvery int
	tokens               int64
	loopStart            time.Time
	startStep            int
	stopped              bool
}

// reference fills the reference log-probs of the preference family.
func (r *runner) reference() error {
	if _, heads := r.obj.(headObjective); heads || !r.obj.pairwise() {
		return nil
	}
	err := referenceLogps(r.ctx, r.ref, r.cfg, r.progress, r.train, r.eval)
	if err != nil && r.ctx.Err() != nil {
		return fmt.Errorf("computing reference log-probs (those done are kept): %w", ErrInterrupted)
	}
	return err
}

// restore loads the newest readable checkpoint of a resumed run and opens
// the metrics log at its step.
func (r *runner) restore() error {
	r.st = runState{bestMargin: math.Inf(-1)}
	keep := -1
	if r.cfg.Resume && len(listCheckpoints(filepath.Join(r.cfg.Out, "checkpoints"))) > 0 {
		st, note, err := loadCheckpoint(r.cfg.Out, r.tr)
		if err != nil {
			return err
		}
		if note != "" {
			r.progress(Event{Note: note})
		}
		r.st, keep = st, st.step
		// a run that early stopping ended stays ended
		r.stopped = r.cfg.Patience > 0 && r.st.badEvals >= r.cfg.Patience
	}
	// keep < 0: a new run, or one interrupted before its first checkpoint
	var err error
	r.log, err = openMetrics(filepath.Join(r.cfg.Out, "metrics.jsonl"), keep)
	return err
}

// plan sets the schedule. Packing depends on each epoch's order, so epochs
// can differ by a step.
func (r *runner) plan() {
	cfg := r.cfg
	for e := 0; e < cfg.Epochs; e++ {
		r.total += (len(Pack(r.train, EpochOrder(len(r.train), cfg.Seed, e), cfg.BatchTokens, !r.obj.pairwise())) + cfg.GradAccum - 1) / cfg.GradAccum
	}
	r.perEpoch = max(1, r.total/cfg.Epochs) // for the defaults of --eval-every and --save-every
	if cfg.MaxSteps > 0 && cfg.MaxSteps < r.total {
		r.total = cfg.MaxSteps
	}
	warmup := cfg.WarmupSteps
	if warmup > r.total/2 {
		warmup = r.total / 2
		if r.st.step == 0 {
			r.progress(Event{Note: fmt.Sprintf("--warmup-steps %d is more than half of the run's %s: warming up over %s",
				cfg.WarmupSteps, plural(r.total, "step"), plural(warmup, "step"))})
		}
	}
	r.sched = Schedule{LR: cfg.LR, Warmup: warmup, Total: r.total, Kind: cfg.Schedule}
	r.evalEvery, r.saveEvery = cfg.EvalEvery, cfg.SaveEvery
	if r.evalEvery <= 0 {
		r.evalEvery = r.perEpoch
	}
	if r.saveEvery <= 0 {
		r.saveEvery = r.perEpoch
	}
}

// plural is "1 step", "2 steps".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func (r *runner) epochOf(step int) float64 { return float64(step) / float64(max(r.perEpoch, 1)) }

func (r *runner) rate() float64 {
	return float64(r.tokens) / math.Max(time.Since(r.loopStart).Seconds(), 1e-9)
}

// evaluate is the held-out metrics at the current adapter (nil without
// held-out pairs).
func (r *runner) evaluate() (map[string]float64, error) {
	if len(r.eval) == 0 {
		return nil, nil
	}
	t0 := time.Now()
	return evaluate(r.ctx, r.tr, r.obj, r.eval, r.cfg.BatchTokens, func(n, total int) {
		r.progress(Event{Phase: "eval", Done: n, Total: total, ETA: eta(time.Since(t0), n, total)})
	})
}

// evaluateAt logs the held-out metrics of step once: a step already
// evaluated (in the metrics log) is not evaluated again.
func (r *runner) evaluateAt(step int) (map[string]float64, error) {
	if len(r.eval) == 0 {
		return nil, nil
	}
	if row, ok := r.log.has("eval", step); ok {
		return evalMetrics(row), nil
	}
	m, err := r.evaluate()
	if err != nil {
		return nil, err
	}
	row := map[string]any{"split": "eval", "step": step, "epoch": r.epochOf(step)}
	for k, v := range m {
		row[k] = v
	}
	return m, r.log.write(row)
}

// eta is the time left at done of total after elapsed (0 when unknown or
// nothing is left).
func eta(elapsed time.Duration, done, total int) time.Duration {
	if done <= 0 || done >= total {
		return 0
	}
	return time.Duration(float64(elapsed) / float64(done) * float64(total-done))
}

// interrupted saves a checkpoint at the current step.
func (r *runner) interrupted() error {
	if err := saveCheckpoint(r.cfg.Out, r.tr, r.st); err != nil {
		return fmt.Errorf("interrupted, and saving the checkpoint failed: %w", err)
	}
	return fmt.Errorf("step %d, checkpoint saved: %w", r.st.step, ErrInterrupted)
}

func (r *runner) loop() error {
	cfg := r.cfg
	sft := !r.obj.pairwise()
	r.loopStart, r.startStep = time.Now(), r.st.step
	if err := r.catchUp(); err != nil {
		return err
	}
	for r.st.step < r.total && r.st.epoch < cfg.Epochs && !r.stopped {
		mbs := Pack(r.train, EpochOrder(len(r.train), cfg.Seed, r.st.epoch), cfg.BatchTokens, sft)
		for r.st.epochStep*cfg.GradAccum < len(mbs) && r.st.step < r.total {
			if r.ctx.Err() != nil {
				return r.interrupted()
			}
			group := mbs[r.st.epochStep*cfg.GradAccum : min(len(mbs), (r.st.epochStep+1)*cfg.GradAccum)]
			lr := r.sched.At(r.st.step)
			ss, err := r.opt.step(r.tr, r.obj, r.train, group, lr)
			if err != nil && r.ctx.Err() != nil {
				return r.interrupted() // cancelled inside the step: its update was not applied
			}
			if err != nil {
				return fmt.Errorf("step %d: %w", r.st.step, err)
			}
			r.tokens += ss.tokens
			r.st.step++
			r.st.epochStep++
			tps := r.rate()
			row := map[string]any{"split": "train", "step": r.st.step, "epoch": r.epochOf(r.st.step),
				"learning_rate": lr, "grad_norm": ss.gradNorm, "tokens_per_s": tps}
			m := r.obj.metrics(ss.metrics)
			for k, v := range m {
				row[k] = v
			}
			if err := r.log.write(row); err != nil {
				return err
			}
			stats := fmt.Sprintf("loss %.4f", m["loss"])
			if v, ok := m["rewards/margins"]; ok {
				stats += fmt.Sprintf(" margin %.3f acc %.2f", v, m["rewards/accuracies"])
			}
			stats += fmt.Sprintf(" lr %.2e %.0f tok/s", lr, tps)
			r.progress(Event{Phase: "train", Done: r.st.step, Total: r.total, Stats: stats,
				ETA: eta(time.Since(r.loopStart), r.st.step-r.startStep, r.total-r.startStep)})
			if r.st.step%r.evalEvery == 0 || r.st.step == r.total {
				em, err := r.evaluateAt(r.st.step)
				if err != nil && r.ctx.Err() != nil {
					return r.interrupted() // during the evaluation: the step is done
				}
				if err != nil {
					return err
				}
				if em != nil && cfg.Patience > 0 {
					if err := r.patience(em); err != nil {
						return err
					}
					if r.stopped {
						break
					}
				}
			}
			if r.st.step%r.saveEvery == 0 && r.st.step < r.total {
				if err := saveCheckpoint(cfg.Out, r.tr, r.st); err != nil {
					return err
				}
			}
			if cfg.OnStep != nil {
				cfg.OnStep(r.st.step)
			}
		}
		if !r.stopped && r.st.epochStep*cfg.GradAccum >= len(mbs) {
			r.st.epoch++
			r.st.epochStep = 0
			// one summary row per finished epoch
			if err := r.log.write(map[string]any{"split": "train_epoch", "step": r.st.step, "epoch": r.st.epoch,
				"tokens_per_s": r.rate()}); err != nil {
				return err
			}
			if r.ctx.Err() == nil {
				if _, err := r.evaluateAt(r.st.step); err != nil && r.ctx.Err() == nil {
					return err
				}
			}
		}
	}
	return nil
}

// catchUp runs the evaluation an interruption skipped at the checkpoint's
// step (the interruption landed in it, or at the end of an epoch), so a
// resumed run logs and decides what an uninterrupted one did.
func (r *runner) catchUp() error {
	step := r.st.step
	if step == 0 || len(r.eval) == 0 {
		return nil
	}
	if _, ok := r.log.has("eval", step); ok {
		return nil
	}
	switch {
	case step%r.evalEvery == 0 || step == r.total:
		em, err := r.evaluateAt(step)
		if err != nil {
			if r.ctx.Err() != nil {
				return r.interrupted()
			}
			return err
		}
		if r.cfg.Patience > 0 {
			return r.patience(em)
		}
	case r.st.epochStep == 0:
		if _, err := r.evaluateAt(step); err != nil {
			if r.ctx.Err() != nil {
				return r.interrupted()
			}
			return err
		}
	}
	return nil
}

// patience tracks the best held-out score and stops the run after
// cfg.Patience evaluations without a better one.
func (r *runner) patience(em map[string]float64) error {
	val := em["rewards/margins"]
	if !r.obj.pairwise() {
		val = -em["loss"]
	}
	if val > r.st.bestMargin {
		r.st.bestMargin, r.st.badEvals, r.st.bestStep = val, 0, r.st.step
		s, err := r.tr.GetState()
		if err != nil {
			return err
		}
		r.st.best = s.Params
	} else if r.st.badEvals++; r.st.badEvals >= r.cfg.Patience {
		r.stopped = true
	}
	return nil
}

// referenceLogps fills RefW/RefL, reading Out/reference.json when it holds
// every id (a resumed run) and writing it otherwise.
func referenceLogps(ctx context.Context, forward func(*bindings.Batch) (Outputs, error), cfg Config, progress Progress, sets ...[]Example) error {
	type ref struct{ W, L float64 }
	path := filepath.Join(cfg.Out, "reference.json")
	cache := map[string]ref{}
	readJSON(path, &cache)
	missing := 0
	for _, set := range sets {
		for i := range set {
			if r, ok := cache[set[i].ID]; ok {
				set[i].RefW, set[i].RefL = r.W, r.L
			} else {
				missing++
			}
		}
	}
	if missing == 0 {
		return nil
	}
	var todo [][]MicroBatch
	total := 0
	for _, set := range sets {
		order := make([]int, len(set))
		for i := range order {
			order[i] = i
		}
		var mbs []MicroBatch
		for _, mb := range Pack(set, order, cfg.BatchTokens, false) {
			for _, i := range mb.Examples {
				if _, ok := cache[set[i].ID]; !ok {
					mbs = append(mbs, mb)
					break
				}
			}
		}
		todo = append(todo, mbs)
		total += len(mbs)
	}
	t0, done := time.Now(), 0
	progress(Event{Phase: "reference", Done: 0, Total: total})
	for s, set := range sets {
		for _, mb := range todo[s] {
			if err := ctx.Err(); err != nil {
				writeJSON(path, cache) // keep what is done for the resumed run
				return err
			}
			out, err := forward(BuildBatch(set, mb, false))
			if err != nil {
				return fmt.Errorf("reference log-probs: %w", err)
			}
			for k, i := range mb.Examples {
				set[i].RefW, set[i].RefL = out.Sums[2*k], out.Sums[2*k+1]
				cache[set[i].ID] = ref{out.Sums[2*k], out.Sums[2*k+1]}
			}
			done++
			progress(Event{Phase: "reference", Done: done, Total: total, ETA: eta(time.Since(t0), done, total)})
		}
	}
	return writeJSON(path, cache)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
