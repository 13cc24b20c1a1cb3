package rl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/align/train"
	"github.com/align-dev/align/bindings"
)

// ErrInterrupted is returned (wrapped) when the context ended and a
// checkpoint was saved: resume the run to continue. It is train's, so the
// CLI maps both to the same exit code.
var ErrInterrupted = train.ErrInterrupted

// Result summarises a finished run.
type Result struct {
	Method       string             `json:"method"`
	Steps        int                `json:"steps"`
	Epochs       int                `json:"epochs"`
	StoppedEarly bool               `json:"stopped_early"` // --max-kl
	Before       map[string]float64 `json:"eval_before"`
	After        map[string]float64 `json:"eval_after"`
	Adapter      string             `json:"adapter"`
	TrainPrompts int                `json:"train_prompts"`
	EvalPrompts  int                `json:"eval_prompts"`
	PromptsCut   int                `json:"prompts_cut"`
	ElapsedS     float64            `json:"elapsed_s"`
	Device       string             `json:"device,omitempty"` // where the steps ran: CPU, CUDA0, ...
}

// runFiles are the files an RL run writes in its directory (besides
// checkpoints/step-*); --force removes only these.
var runFiles = []string{"config.json", "metrics.jsonl", "adapter.gguf", "value.gguf", "summary.json", "config.json.tmp", "summary.json.tmp"}

// checkOut refuses an out a new run may not use.
func checkOut(out string, force bool) error {
	ents, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	var saved Config
	if err := train.ReadJSON(filepath.Join(out, "config.json"), &saved); err != nil || (saved.Method != PPO && saved.Method != GRPO) || saved.Model == "" {
		return bad("out", "%s is not empty and holds no align PPO or GRPO run: choose a new or empty folder", out)
	}
	if !force {
		return bad("out", "%s holds a run: continue it with --resume %s, or replace it with --force", out, out)
	}
	return nil
}

func removeRun(out string) error {
	for _, name := range runFiles {
		if err := os.Remove(filepath.Join(out, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	dir := filepath.Join(out, "checkpoints")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() && (len(e.Name()) > 5 && (e.Name()[:5] == "step-" || e.Name()[:5] == ".tmp-")) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	os.Remove(dir)
	return nil
}

// resumeConfig reads the run in cfg.Out and applies what a resume may change.
func resumeConfig(cfg Config) (Config, error) {
	var saved Config
	if err := train.ReadJSON(filepath.Join(cfg.Out, "config.json"), &saved); err != nil {
		return cfg, fmt.Errorf("%s: cannot resume: %w", cfg.Out, err)
	}
	if saved.Method != PPO && saved.Method != GRPO {
		return cfg, fmt.Errorf("%s: cannot resume: not a PPO or GRPO run", cfg.Out)
	}
	saved.Out, saved.Resume = cfg.Out, true
	saved.Threads, saved.Device, saved.Recompute, saved.OnStep, saved.Log, saved.Progress = cfg.Threads, cfg.Device, cfg.Recompute, cfg.OnStep, cfg.Log, cfg.Progress
	saved.Scorer = cfg.Scorer
	if v := cfg.Continue.Epochs; v != nil {
		saved.Epochs = *v
	}
	if v := cfg.Continue.MaxSteps; v != nil {
		saved.MaxSteps = *v
	}
	return saved, nil
}

func hashes(cfg Config) (map[string]string, error) {
	out := map[string]string{}
	for _, in := range []struct{ key, path string }{{"model", cfg.Model}, {"prompts", cfg.Prompts}, {"eval_prompts", cfg.EvalPrompts}} {
		if in.path == "" {
			continue
		}
		h, err := train.HashFile(in.path)
		if err != nil {
			return nil, err
		}
		out[in.key] = h
	}
	return out, nil
}

// runner is one run's state.
type runner struct {
	ctx             context.Context
	cfg             Config
	e               *worker
	scorer          reward.Scorer
	train, eval     []Prompt
	log             *train.MetricsLog
	st              runState
	snap            *snapshot
	total, perEpoch int
	evalEvery       int
	saveEvery       int
	sched           train.Schedule
}

func (r *runner) note(format string, a ...any) {
	if r.cfg.Progress != nil {
		r.cfg.Progress(Event{Note: fmt.Sprintf(format, a...)})
	}
}

// Run trains with PPO or GRPO. It writes OUT/metrics.jsonl, OUT/adapter.gguf,
// checkpoints and OUT/summary.json. When ctx ends it saves a checkpoint
// and returns an error wrapping ErrInterrupted. Bad settings are returned
// as *train.ConfigError before anything is read or written.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	start := time.Now()
	if cfg.Resume {
		if cfg, err = resumeConfig(cfg); err != nil {
			return res, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	if !cfg.Resume {
		for _, p := range []*string{&cfg.Model, &cfg.Prompts, &cfg.EvalPrompts} {
			if *p != "" {
				if *p, err = filepath.Abs(*p); err != nil {
					return res, err
				}
			}
		}
		if err := checkOut(cfg.Out, cfg.Force); err != nil {
			return res, err
		}
	}
	res.Method = cfg.Method

	// inputs, read and checked before the run directory is touched
	trainP, err := ReadPrompts(cfg.Prompts)
	if err != nil {
		return res, err
	}
	evalP := trainP[:0:0]
	if cfg.EvalPrompts != "" {
		if evalP, err = ReadPrompts(cfg.EvalPrompts); err != nil {
			return res, err
		}
	} else if cfg.EvalSplit > 0 {
		trainP, evalP = splitPrompts(trainP, cfg.EvalSplit, cfg.Seed)
	}
	if len(trainP) == 0 {
		return res, fmt.Errorf("%s: no training prompts left after --eval-split", cfg.Prompts)
	}
	hs, err := hashes(cfg)
	if err != nil {
		return res, err
	}
	if cfg.Resume && cfg.Hashes != nil {
		for _, k := range []string{"model", "prompts", "eval_prompts"} {
			if cfg.Hashes[k] != hs[k] {
				return res, fmt.Errorf("%s: cannot resume: the %s file changed since the run started; start a new run with --out", cfg.Out, k)
			}
		}
	}
	cfg.Hashes = hs

	// the trainer loads (and owns) the model: offloaded whole for a device
	// trainer, so rollouts sample there too
	device := train.ResolveDevice(cfg.Device)
	targets, _ := train.TargetBits(cfg.Targets)
	tr, err := bindings.NewTrainerFromFile(cfg.Model, bindings.TrainerOptions{Threads: cfg.Threads, Rank: cfg.Rank, Alpha: float32(cfg.Alpha),
		Targets: targets, Seed: cfg.Seed, Device: device, BackwardWeights: cfg.BackwardWeights,
		Recompute: train.ResolveRecompute(cfg.Recompute, device)})
	if err != nil {
		return res, err
	}
	defer tr.Close()
	model := tr.Model()
	res.Device = tr.Info().Device
	if n := tr.Info().NCtx; n > 0 && cfg.MaxLength > n {
		return res, bad("max-length", "is at most the model's context, %d (got %d)", n, cfg.MaxLength)
	}
	info, err := model.Info()
	if err != nil {
		return res, err
	}
	pm, err := engine.PromptModel(model)
	if err != nil {
		return res, err
	}
	f := prompt.New(pm, cfg.Raw)
	maxPrompt := cfg.MaxLength - cfg.MaxNewTokens
	tp, cut1, err := encodePrompts(f, trainP, maxPrompt, cfg.Prompts)
	if err != nil {
		return res, err
	}
	evName := cfg.EvalPrompts
	if evName == "" {
		evName = cfg.Prompts
	}
	ep, cut2, err := encodePrompts(f, evalP, maxPrompt, evName)
	if err != nil {
		return res, err
	}
	res.TrainPrompts, res.EvalPrompts, res.PromptsCut = len(tp), len(ep), cut1+cut2

	e := &worker{tr: tr, model: model, valueSet: -1, threads: cfg.Threads, eos: info.EOS,
		chunk: max(1, min(cfg.BatchPrompts*cfg.Group, 16))}
	if cfg.Method == PPO {
		if e.valueSet, err = tr.AddSet(bindings.SetOptions{Name: "value", Seed: cfg.Seed + 1, Heads: []bindings.HeadSpec{{Name: "value", Dim: 1}}}); err != nil {
			return res, err
		}
		// the value head starts at 0 (a random head adds noise of its own
		// size to every advantage until it has learned)
		si, err := tr.SetInfo(e.valueSet)
		if err != nil {
			return res, err
		}
		if err := tr.SetStateSet(e.valueSet, make([]float32, si.NParams), nil, nil, 0); err != nil {
			return res, err
		}
	}
	sc := cfg.Scorer
	if sc == nil {
		if sc, err = reward.Parse(ctx, cfg.Reward, reward.Options{Model: model, Trainer: tr, Threads: cfg.Threads, Raw: cfg.Raw, MaxLength: cfg.MaxLength}); err != nil {
			return res, &configError{Flag: "reward", Msg: err.Error()}
		}
		defer sc.Close()
	}
	if e.live, err = tr.LiveLoRA(0); err != nil {
		return res, err
	}
	defer e.live.Close()
	defer tr.Watch(ctx)()

	if !cfg.Resume {
		created := false
		if _, serr := os.Stat(cfg.Out); errors.Is(serr, os.ErrNotExist) {
			if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
				return res, err
			}
			created = true
		} else if err := removeRun(cfg.Out); err != nil {
			return res, err
		}
		defer func() {
			if err != nil && !errors.Is(err, ErrInterrupted) && len(listCheckpoints(filepath.Join(cfg.Out, "checkpoints"))) == 0 {
				removeRun(cfg.Out)
				if created {
					os.Remove(cfg.Out)
				}
			}
		}()
	}
	if err := train.WriteJSON(filepath.Join(cfg.Out, "config.json"), cfg); err != nil {
		return res, err
	}

	r := &runner{ctx: ctx, cfg: cfg, e: e, scorer: sc, train: tp, eval: ep}
	r.st = runState{klCoef: cfg.KLCoef}
	keep := -1
	if cfg.Resume && len(listCheckpoints(filepath.Join(cfg.Out, "checkpoints"))) > 0 {
		st, note, err := e.loadCheckpoint(cfg.Out)
		if err != nil {
			return res, err
		}
		if note != "" {
			r.note("%s", note)
		}
		r.st, keep = st, st.step
	}
	if r.log, err = train.OpenMetrics(filepath.Join(cfg.Out, "metrics.jsonl"), keep); err != nil {
		return res, err
	}
	defer r.log.Close()
	r.plan()
	if r.snap, err = e.snapshot(r.st); err != nil {
		return res, err
	}

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
		if ctx.Err() != nil {
			return res, r.interrupted()
		}
		return res, err
	}
	res.StoppedEarly = r.st.stopped
	res.Adapter = filepath.Join(cfg.Out, "adapter.gguf")
	if err := tr.ExportSet(0, res.Adapter); err != nil {
		return res, err
	}
	if e.valueSet >= 0 {
		// PPO's value head (a heads-only set), in align's heads GGUF
		if err := tr.ExportHeads(e.valueSet, filepath.Join(cfg.Out, "value.gguf")); err != nil {
			return res, err
		}
	}
	res.Steps, res.Epochs = r.st.step, r.st.epoch
	if err := saveCheckpoint(cfg.Out, r.snap); err != nil {
		return res, err
	}
	res.ElapsedS = time.Since(start).Seconds()
	return res, train.WriteJSON(filepath.Join(cfg.Out, "summary.json"), res)
}

// plan sets the number of steps and the schedule.
func (r *runner) plan() {
	cfg := r.cfg
	r.perEpoch = (len(r.train) + cfg.BatchPrompts - 1) / cfg.BatchPrompts
	r.total = r.perEpoch * cfg.Epochs
	if cfg.MaxSteps > 0 && cfg.MaxSteps < r.total {
		r.total = cfg.MaxSteps
	}
	r.evalEvery, r.saveEvery = cfg.EvalEvery, cfg.SaveEvery
	if r.evalEvery <= 0 {
		r.evalEvery = r.perEpoch
	}
	if r.saveEvery <= 0 {
		r.saveEvery = r.perEpoch
	}
	r.sched = train.Schedule{LR: cfg.LR, Warmup: min(cfg.WarmupSteps, r.total/2), Total: r.total, Kind: cfg.Schedule}
}

// seedOf is the rollout sampling seed of step s: a pure function of the
// run's seed and the step (the rollout RNG a resumed run continues).
func seedOf(seed uint64, s int) uint32 {
	z := seed + uint64(s+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return uint32(z ^ (z >> 31))
}

// evalSeed is the sampling seed of every held-out evaluation (the same
// each time, so evaluations compare the policy, not the draws).
func evalSeed(seed uint64) uint32 { return seedOf(seed^0x6576616c, -1) }

// interrupted saves the state after the last finished step.
func (r *runner) interrupted() error {
	if err := saveCheckpoint(r.cfg.Out, r.snap); err != nil {
		return fmt.Errorf("interrupted, and saving the checkpoint failed: %w", err)
	}
	return fmt.Errorf("step %d, checkpoint saved: %w", r.snap.st.step, ErrInterrupted)
}

func (r *runner) loop() error {
	cfg := r.cfg
	// a resumed run first does the evaluation an interruption skipped
	if s := r.st.step; s > 0 && len(r.eval) > 0 && (s%r.evalEvery == 0 || s == r.total || r.st.epochStep == 0) {
		if _, err := r.evaluateAt(s); err != nil {
			if r.ctx.Err() != nil {
				return r.interrupted()
			}
			return err
		}
	}
	for r.st.step < r.total && r.st.epoch < cfg.Epochs && !r.st.stopped {
		if r.ctx.Err() != nil {
			return r.interrupted()
		}
		order := train.EpochOrder(len(r.train), cfg.Seed, r.st.epoch)
		lo := r.st.epochStep * cfg.BatchPrompts
		idx := order[lo:min(len(order), lo+cfg.BatchPrompts)]
		row, err := r.step(idx)
		if err != nil {
			if r.ctx.Err() != nil {
				// the state after the last finished step is saved: a
				// partial update is dropped
				return r.interrupted()
			}
			return fmt.Errorf("step %d: %w", r.st.step+1, err)
		}
		r.st.step++
		r.st.epochStep++
		if kl, ok := row["kl"].(float64); ok && cfg.MaxKL > 0 && kl > cfg.MaxKL {
			r.st.stopped = true
			r.note("step %d: KL %.4g exceeds --max-kl %g: stopping", r.st.step, kl, cfg.MaxKL)
		}
		if r.st.epochStep >= r.perEpoch {
			r.st.epoch++
			r.st.epochStep = 0
		}
		row["step"], row["epoch"] = r.st.step, float64(r.st.step)/float64(r.perEpoch)
		if r.snap, err = r.e.snapshot(r.st); err != nil {
			return err
		}
		if err := r.log.Write(row); err != nil {
			return err
		}
		if cfg.Progress != nil {
			cfg.Progress(Event{Phase: "train", Done: r.st.step, Total: r.total, Stats: stats(row)})
		}
		if r.st.step%r.evalEvery == 0 || r.st.step == r.total || r.st.epochStep == 0 {
			if _, err := r.evaluateAt(r.st.step); err != nil {
				if r.ctx.Err() != nil {
					return r.interrupted()
				}
				return err
			}
		}
		if r.st.step%r.saveEvery == 0 && r.st.step < r.total {
			if err := saveCheckpoint(cfg.Out, r.snap); err != nil {
				return err
			}
		}
		if cfg.OnStep != nil {
			cfg.OnStep(r.st.step)
		}
	}
	return nil
}

func stats(row map[string]any) string {
	s := fmt.Sprintf("reward %.4f", row["reward"])
	if v, ok := row["kl"].(float64); ok {
		s += fmt.Sprintf(" kl %.4f", v)
	}
	if v, ok := row["clip_ratio"].(float64); ok {
		s += fmt.Sprintf(" clip %.3f", v)
	}
	if v, ok := row["value_loss"].(float64); ok {
		s += fmt.Sprintf(" vloss %.4f", v)
	}
	return s
}

// step is one rollout and its update; it returns the step's metrics row.
func (r *runner) step(idx []int) (map[string]any, error) {
	cfg := &r.cfg
	e := r.e
	var all []int
	for _, k := range idx {
		for g := 0; g < cfg.Group; g++ {
			all = append(all, k)
		}
	}
	t0 := time.Now()
	seqs, err := e.generate(r.ctx, r.train, all, sampler(cfg, seedOf(cfg.Seed, r.st.step)))
	if err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	tRoll := time.Since(t0)
	t0 = time.Now()
	if err := score(r.ctx, r.scorer, r.train, seqs); err != nil {
		return nil, err
	}
	tScore := time.Since(t0)
	// GRPO with one pass of one minibatch takes the sampling policy's
	// log-probs from the update's own first forward (no extra pass)
	reuseOld := cfg.Method == GRPO && cfg.PPOEpochs == 1 && cfg.MiniBatches == 1
	ps, err := e.logprobs(seqs, !reuseOld, cfg.needsRef())
	if err != nil {
		return nil, err
	}
	row := map[string]any{"split": "train", "learning_rate": r.sched.At(r.st.step)}
	scores := make([]float64, len(seqs))
	lengths := 0.0
	for i, s := range seqs {
		scores[i] = s.Score
		lengths += float64(len(s.Resp))
	}
	mean, std := meanStd(scores, true)
	row["reward"], row["reward_std"] = mean, std
	row["completions/mean_length"] = lengths / float64(len(seqs))
	klSeq := 0.0
	if cfg.needsRef() && !reuseOld {
		for _, s := range seqs {
			klSeq += seqKL(s)
		}
		klSeq /= float64(len(seqs))
	}
	trainSeqs, zeroStd := advantages(cfg, seqs, r.st.klCoef)
	t0 = time.Now()
	ls, err := e.update(cfg, trainSeqs, r.st.step, r.sched.At(r.st.step), reuseOld)
	if err != nil {
		return nil, err
	}
	tUpd := time.Since(t0)
	ls.metrics(row, cfg.Method)
	// entropy: −mean log π(a_t) of the sampled tokens, an estimate of the
	// policy's per-token entropy (exact in expectation when sampling at
	// temperature 1 without truncation)
	var ent float64
	nt := 0
	for _, s := range seqs {
		for _, lp := range s.Old {
			ent -= lp
			nt++
		}
	}
	if nt > 0 {
		row["entropy"] = ent / float64(nt)
	}
	switch cfg.Method {
	case PPO:
		row["kl"] = klSeq
		row["kl_coef"] = r.st.klCoef
		row["score_mean"] = mean
		r.kl(klSeq, len(seqs))
	case GRPO:
		row["frac_reward_zero_std"] = float64(zeroStd) / float64(len(idx))
		if cfg.needsRef() {
			var sub []*Seq
			for _, s := range seqs {
				if len(s.Old) > 0 {
					sub = append(sub, s)
				}
			}
			row["kl"] = tokenK3(sub)
		}
	}
	row["time/rollout_s"] = tRoll.Seconds()
	row["time/score_s"] = tScore.Seconds()
	row["time/old_logps_s"] = ps.old.Seconds()
	row["time/ref_logps_s"] = ps.ref.Seconds()
	row["time/value_s"] = ps.value.Seconds()
	row["time/update_s"] = tUpd.Seconds()
	return row, nil
}

// kl adapts PPO's KL coefficient (a fixed one stays).
func (r *runner) kl(kl float64, n int) {
	c := KLController{Coef: r.st.klCoef, Target: r.cfg.KLTarget, Horizon: r.cfg.KLHorizon}
	c.Update(kl, n)
	r.st.klCoef = c.Coef
}

// evaluateAt logs the held-out metrics at step once.
func (r *runner) evaluateAt(step int) (map[string]float64, error) {
	if len(r.eval) == 0 {
		return nil, nil
	}
	if row, ok := r.log.Has("eval", step); ok {
		m := map[string]float64{}
		for k, v := range row {
			if f, ok := v.(float64); ok && k != "step" && k != "epoch" {
				m[k] = f
			}
		}
		return m, nil
	}
	m, err := r.evaluate()
	if err != nil {
		return nil, err
	}
	row := map[string]any{"split": "eval", "step": step, "epoch": float64(step) / float64(max(1, r.perEpoch))}
	for k, v := range m {
		row[k] = v
	}
	return m, r.log.Write(row)
}

// evaluate samples cfg.EvalSamples completions of every held-out prompt
// with the rollout sampler and a fixed seed, and reports their mean reward
// and the mean per-sequence KL(π ‖ π_ref) of the samples.
func (r *runner) evaluate() (map[string]float64, error) {
	cfg := &r.cfg
	var all []int
	for k := range r.eval {
		for g := 0; g < cfg.EvalSamples; g++ {
			all = append(all, k)
		}
	}
	var seqs []*Seq
	const chunk = 64
	for i := 0; i < len(all); i += chunk {
		part, err := r.e.generate(r.ctx, r.eval, all[i:min(len(all), i+chunk)], sampler(cfg, evalSeed(cfg.Seed)+uint32(i)))
		if err != nil {
			return nil, fmt.Errorf("held-out rollout: %w", err)
		}
		seqs = append(seqs, part...)
	}
	if err := score(r.ctx, r.scorer, r.eval, seqs); err != nil {
		return nil, err
	}
	ev := *r.e
	ev.valueSet = -1
	if _, err := ev.logprobs(seqs, true, true); err != nil {
		return nil, err
	}
	scores := make([]float64, len(seqs))
	var kl, length float64
	for i, s := range seqs {
		scores[i] = s.Score
		kl += seqKL(s)
		length += float64(len(s.Resp))
	}
	mean, std := meanStd(scores, true)
	n := float64(len(seqs))
	return map[string]float64{"reward": mean, "reward_std": std, "kl": kl / n, "completions/mean_length": length / n,
		"kl_per_token": kl / math.Max(1, tokensOfSeqs(seqs))}, nil
}

func tokensOfSeqs(seqs []*Seq) float64 { return float64(tokensOf(seqs)) }

// IsRun reports whether dir holds a PPO or GRPO run (for the CLI's resume
// dispatch).
func IsRun(dir string) bool {
	if dir == "" {
		return false
	}
	var saved Config
	return train.ReadJSON(filepath.Join(dir, "config.json"), &saved) == nil && (saved.Method == PPO || saved.Method == GRPO)
}
