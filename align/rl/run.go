package rl

import (
	"context"
	"fmt"
	"github.com/align-dev/align/align/objective"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/pipeline"
	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/align/run"
)

// ErrInterrupted is returned (wrapped) when the context ended and a
// checkpoint was saved: resume the run to continue.
var ErrInterrupted = run.ErrInterrupted

// Result summarises a finished run.
type Result struct {
	Method       string             `json:"method"`
	Steps        int                `json:"steps"`
	Epochs       int                `json:"epochs"`
	StoppedEarly bool               `json:"stopped_early"` // --max-kl or --patience
	Before       map[string]float64 `json:"eval_before"`
	After        map[string]float64 `json:"eval_after"`
	Adapter      string             `json:"adapter"`
	TrainPrompts int                `json:"train_prompts"`
	EvalPrompts  int                `json:"eval_prompts"`
	PromptsCut   int                `json:"prompts_cut"`
	ElapsedS     float64            `json:"elapsed_s"`
	Device       string             `json:"device,omitempty"` // where the steps ran: CPU, CUDA0, ...
	// online DPO: pairs trained on, comparisons skipped (ties, the orders
	// disagreeing, invalid verdicts), judge calls made by this process and
	// what the run's ledger holds
	Pairs      int     `json:"pairs,omitempty"`
	Skipped    int     `json:"skipped,omitempty"`
	JudgeCalls int     `json:"judge_calls,omitempty"`
	SpentUSD   float64 `json:"spent_usd,omitempty"`
	PairsFile  string  `json:"pairs_file,omitempty"`
}

// EvalLine is the line of held-out metrics m align train prints before and
// after a PPO, GRPO or online DPO run.
func EvalLine(m map[string]float64) string {
	return fmt.Sprintf("reward %.4f (std %.4f)  kl %.4f  mean length %.1f", m["reward"], m["reward_std"], m["kl"], m["completions/mean_length"])
}

// isMethod: m is a method of this package (the registry's rollout and
// online methods).
func isMethod(m string) bool {
	k := objective.KindOf(m)
	return k == objective.Rollout || k == objective.Online
}

// IsRun reports whether dir holds a PPO, GRPO or online DPO run (for the CLI's resume
// dispatch).
func IsRun(dir string) bool { return isMethod(run.Method(dir)) }

// resumeConfig reads the run in cfg.Out and applies what a resume may change.
func resumeConfig(cfg Config) (Config, error) {
	var saved Config
	if err := run.ReadJSON(filepath.Join(cfg.Out, "config.json"), &saved); err != nil {
		return cfg, fmt.Errorf("%s: cannot resume: %w", cfg.Out, err)
	}
	if !isMethod(saved.Method) {
		return cfg, fmt.Errorf("%s: cannot resume: not a PPO, GRPO or online DPO run", cfg.Out)
	}
	if cfg.Method != "" && cfg.Method != saved.Method {
		return cfg, &run.ConfigError{Flag: "method", Msg: fmt.Sprintf("is %s, but %s is a %s run: a resume continues the run's own method",
			cfg.Method, cfg.Out, strings.ToUpper(saved.Method))}
	}
	saved.Resumed(cfg.Common)
	saved.Progress, saved.Scorer, saved.OnJudged = cfg.Progress, cfg.Scorer, cfg.OnJudged
	if cfg.MaxUSD != nil {
		saved.MaxUSD = cfg.MaxUSD // the cap may change on resume
	}
	return saved, nil
}

// inputFiles are the run's inputs for hashing: model, prompts, the stage
// adapters and the files the reward terms read (an rm: run's adapter, head
// and config; a rules catalog; a local judge).
func inputFiles(cfg Config) []run.Input {
	ins := []run.Input{{Key: "model", Path: cfg.Model, Flag: "model"}, {Key: "prompts", Path: cfg.Prompts, Flag: "prompts"},
		{Key: "eval_prompts", Path: cfg.EvalPrompts, Flag: "eval-prompts"},
		{Key: "init_adapter", Path: cfg.InitAdapter, Flag: "init-adapter"}, {Key: "ref_adapter", Path: cfg.RefAdapter, Flag: "ref-adapter"},
		{Key: "chat_template", Path: cfg.ChatTemplate, Flag: "chat-template"}}
	terms, _ := reward.ParseSpec(cfg.Reward)
	if cfg.Judge != "" {
		jt, _ := reward.ParseSpec(cfg.Judge)
		terms = append(terms, jt...)
	}
	for _, t := range terms {
		switch t.Kind {
		case reward.KindRM:
			for _, f := range []string{"adapter.gguf", "head.gguf", "config.json"} {
				ins = append(ins, run.Input{Key: "reward/" + t.Kind + ":" + t.Target + "/" + f, Path: filepath.Join(t.Target, f), Flag: "reward " + t.Kind + ":" + t.Target})
			}
		case reward.KindRules, reward.KindLocal:
			ins = append(ins, run.Input{Key: "reward/" + t.Kind + ":" + t.Target, Path: t.Target, Flag: "reward " + t.Kind + ":" + t.Target})
		}
	}
	return ins
}

// AbsSpecs makes the paths in the reward and judge specs absolute, as a
// run stores them (so a resume from another directory reads the same files,
// and a spec repeated on a resume compares equal to the stored one).
func (c *Config) AbsSpecs() error {
	var err error
	if c.Reward != "" {
		if c.Reward, err = absReward(c.Reward); err != nil {
			return err
		}
	}
	if c.Judge != "" {
		if c.Judge, err = absJudge(c.Judge); err != nil {
			return err
		}
	}
	return nil
}

// absReward is spec with the paths of its terms made absolute, so a resume
// from another directory reads the same files.
func absReward(spec string) (string, error) {
	terms, err := reward.ParseSpec(spec)
	if err != nil {
		return "", &run.ConfigError{Flag: "reward", Msg: err.Error()}
	}
	out := make([]string, len(terms))
	for i, t := range terms {
		if t.Kind == reward.KindRM || t.Kind == reward.KindRules || t.Kind == reward.KindLocal {
			if t.Target, err = filepath.Abs(t.Target); err != nil {
				return "", err
			}
		}
		out[i] = t.String()
	}
	return strings.Join(out, ","), nil
}

// Run trains with PPO or GRPO. It writes OUT/metrics.jsonl, OUT/adapter.gguf,
// checkpoints and OUT/summary.json. When ctx ends it saves a checkpoint
// and returns an error wrapping ErrInterrupted. Bad settings are returned
// as *run.ConfigError before anything is read or written.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	return runWith(ctx, cfg, openNative)
}

func runWith(ctx context.Context, cfg Config, open opener) (res Result, err error) {
	start := time.Now()
	if cfg.Resume {
		if cfg, err = resumeConfig(cfg); err != nil {
			return res, err
		}
	}
	if err := run.Begin(&cfg.Common, cfg.Validate, isMethod, &cfg.Prompts, &cfg.EvalPrompts); err != nil {
		return res, err
	}
	if !cfg.Resume {
		if err := cfg.AbsSpecs(); err != nil {
			return res, err
		}
	}
	if !cfg.Resume && cfg.Prices != "" {
		if err := run.AbsPaths(&cfg.Prices); err != nil {
			return res, err
		}
	}
	res.Method = cfg.Method

	// inputs, read and checked before the run directory is touched
	trainP, evalP, err := readPrompts(cfg)
	if err != nil {
		return res, err
	}
	files := inputFiles(cfg)
	hs, sts, err := run.HashInputs(files, cfg.Hashes, cfg.Stats)
	if err != nil {
		return res, err
	}
	if cfg.Resume {
		if err := run.CheckHashes(cfg.Out, cfg.Hashes, hs, files); err != nil {
			return res, err
		}
	}
	cfg.Hashes, cfg.Stats = hs, sts
	if err := cfg.ResolveStages(); err != nil {
		return res, err
	}

	h, closeHost, err := open(cfg)
	if err != nil {
		return res, err
	}
	defer closeHost()
	res.Device = h.Info().Device
	if n := h.Info().NCtx; n > 0 && cfg.MaxLength > n {
		return res, bad("max-length", "is at most the model's context, %d (got %d)", n, cfg.MaxLength)
	}
	if cfg.EvalPrompts == "" && cfg.EvalSplit > 0 && len(evalP) == 0 {
		cfg.Progress.Note("--eval-split %g of %s held out none of its %d prompts: no held-out evaluation", cfg.EvalSplit, cfg.Prompts, len(trainP))
	}
	s := &stepper{cfg: cfg, klCoef: cfg.KLCoef}
	if newObj := rolloutObjectives[cfg.Method]; newObj != nil {
		s.obj = newObj(&s.cfg, &s.klCoef)
	}
	if s.w, err = newWorker(cfg, h, s.obj != nil && s.obj.valueHead()); err != nil {
		return res, err
	}
	w := s.w
	pm, err := h.PromptModel()
	if err != nil {
		return res, err
	}
	if s.train, s.eval, res.PromptsCut, err = encode(cfg, pm, trainP, evalP); err != nil {
		return res, err
	}
	res.TrainPrompts, res.EvalPrompts = len(s.train), len(s.eval)
	// paid judges (openai:, bedrock:) charge one meter: the run's ledger
	// and --max-usd
	var prices *cost.Prices
	if cfg.Prices != "" {
		if prices, err = cost.LoadPrices(cfg.Prices); err != nil {
			return res, &run.ConfigError{Flag: "prices", Msg: err.Error()}
		}
	}
	meter, err := reward.NewSpendMeter(reward.Spending{MaxUSD: cfg.MaxUSD, Ledger: filepath.Join(cfg.Out, LedgerFile), Prices: prices})
	if err != nil {
		return res, &run.ConfigError{Flag: "max-usd", Msg: err.Error()}
	}
	defer meter.Close()
	if s.scorer = cfg.Scorer; s.scorer == nil && cfg.Reward != "" {
		if s.scorer, err = h.Scorer(ctx, cfg.Reward, reward.Options{Threads: cfg.Threads, Raw: cfg.Raw, MaxLength: cfg.MaxLength,
			Backend: pipeline.OpenOptions{Meter: meter}}); err != nil {
			return res, &run.ConfigError{Flag: "reward", Msg: err.Error()}
		}
		defer s.scorer.Close()
	}
	var st run.Stepper = s
	if cfg.Method == OnlineDPO {
		on, err := newOnline(ctx, h, s, meter)
		if err != nil {
			return res, err
		}
		defer on.close()
		st = on
		if !cfg.Resume {
			on.planRounds()
			cfg = on.cfg
		}
	}
	if w.gen, err = h.Live(cfg.Threads); err != nil {
		return res, err
	}
	defer w.gen.Close()
	defer h.Watch(ctx)()

	// a replaced online DPO run's judgments go with it; the ledger stays
	// (--max-usd counts what earlier runs here spent)
	online := !cfg.Resume && run.Method(cfg.Out) == OnlineDPO
	claim, err := run.ClaimDir(cfg.Out, cfg.Resume, cfg.Force, isMethod, "align train")
	if err != nil {
		return res, err
	}
	defer func() {
		// err is Run's result. Kept for --resume: a run the cap stopped,
		// and one that recorded judgments or paid calls before it failed
		kept := err
		if cost.IsBudget(err) || paidFor(cfg.Out) {
			kept = nil
		}
		claim.Release(kept)
	}()
	if online {
		if err := removeOnline(cfg.Out); err != nil {
			return res, err
		}
	}
	if err := run.WriteJSON(filepath.Join(cfg.Out, "config.json"), cfg); err != nil {
		return res, err
	}
	o, _ := st.(*onlineStepper)
	if o != nil {
		if err := o.open(); err != nil {
			return res, err
		}
	}

	lr, err := run.Loop(ctx, st, run.Options{Out: cfg.Out, Resume: cfg.Resume, Epochs: cfg.Epochs, MaxSteps: cfg.MaxSteps,
		EvalEvery: cfg.EvalEvery, SaveEvery: cfg.SaveEvery, Patience: cfg.Patience, LR: cfg.LR, Schedule: cfg.Schedule,
		WarmupSteps: cfg.WarmupSteps, HasEval: len(s.eval) > 0, Snapshot: true, Progress: cfg.Progress, OnStep: cfg.OnStep})
	if err != nil {
		return res, err
	}
	res.Before, res.After, res.StoppedEarly, res.Steps, res.Epochs = lr.Before, lr.After, lr.StoppedEarly, lr.Steps, lr.Epochs
	if o != nil {
		o.result(&res)
	}
	if sp, serr := meter.Spent(); serr == nil {
		res.SpentUSD = sp.USD
	}
	res.Adapter = filepath.Join(cfg.Out, "adapter.gguf")
	if err := w.policy.Export(res.Adapter); err != nil {
		return res, err
	}
	if w.value != nil {
		// PPO's value head (a heads-only set), in align's heads GGUF
		if err := w.value.ExportHeads(filepath.Join(cfg.Out, "value.gguf")); err != nil {
			return res, err
		}
	}
	res.ElapsedS = time.Since(start).Seconds()
	return res, run.WriteJSON(filepath.Join(cfg.Out, "summary.json"), res)
}

// paidFor reports whether the run in out recorded judgments or judge
// spending (which a failed run keeps, to be resumed).
func paidFor(out string) bool {
	for _, f := range []string{JudgedFile, LedgerFile} {
		if st, err := os.Stat(filepath.Join(out, f)); err == nil && st.Size() > 0 {
			return true
		}
	}
	return false
}

// newWorker sets up the policy (from --init-adapter or --ref-adapter),
// the reference (the base, or base + --ref-adapter) and, with value, a
// value set (PPO's).
func newWorker(cfg Config, h host, value bool) (*worker, error) {
	w := &worker{policy: h.Policy(), base: h.Base(), chunk: max(1, min(cfg.BatchPrompts*cfg.Group, 16))}
	var err error
	if w.ref, w.refScale, err = h.Stages(&cfg.Common); err != nil {
		return nil, err
	}
	if value {
		if w.value, err = h.AddValue(cfg.Seed + 1); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// readPrompts reads the training and held-out prompts.
func readPrompts(cfg Config) (trainP, evalP []promptRecord, err error) {
	if trainP, err = ReadPrompts(cfg.Prompts); err != nil {
		return nil, nil, err
	}
	if cfg.EvalPrompts != "" {
		if evalP, err = ReadPrompts(cfg.EvalPrompts); err != nil {
			return nil, nil, err
		}
	} else if cfg.EvalSplit > 0 {
		trainP, evalP = splitPrompts(trainP, cfg.EvalSplit, cfg.Seed)
	}
	if len(trainP) == 0 {
		return nil, nil, fmt.Errorf("%s: no training prompts left after --eval-split", cfg.Prompts)
	}
	return trainP, evalP, nil
}

// encode formats and tokenizes the prompts as the policy sees them.
func encode(cfg Config, pm prompt.Model, trainP, evalP []promptRecord) (tp, ep []Prompt, cut int, err error) {
	po, err := cfg.PromptOptions()
	if err != nil {
		return nil, nil, 0, err
	}
	f, err := prompt.NewWith(pm, po)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("--chat-template: %w", err)
	}
	maxPrompt := cfg.MaxLength - cfg.MaxNewTokens
	tp, cut1, u1, err := encodePrompts(f, trainP, maxPrompt, cfg.Prompts)
	if err != nil {
		return nil, nil, 0, err
	}
	evName := cfg.EvalPrompts
	if evName == "" {
		evName = cfg.Prompts
	}
	ep, cut2, u2, err := encodePrompts(f, evalP, maxPrompt, evName)
	if err != nil {
		return nil, nil, 0, err
	}
	// one warning for the run (a held-out split is lines of --prompts)
	if cfg.EvalPrompts == "" {
		u1.chars, u1.prompts = u1.chars+u2.chars, u1.prompts+u2.prompts
		if u1.first == "" {
			u1.first, u1.id = u2.first, u2.id
		}
		u2 = unspelled{}
	}
	for _, u := range []struct {
		un   unspelled
		name string
	}{{u1, cfg.Prompts}, {u2, cfg.EvalPrompts}} {
		if u.un.prompts > 0 {
			cfg.Progress.Note("%s", u.un.note(u.name))
		}
	}
	return tp, ep, cut1 + cut2, nil
}

// stepper is a PPO or GRPO run as the harness steps it: one rollout and
// its update per step, obj's loss.
type stepper struct {
	cfg         Config
	obj         rolloutObjective // nil: online DPO (onlineStepper)
	w           *worker
	scorer      reward.Scorer
	train, eval []Prompt
	klCoef      float64 // PPO's adaptive KL coefficient
}

func (s *stepper) EpochSteps(int) int {
	return (len(s.train) + s.cfg.BatchPrompts - 1) / s.cfg.BatchPrompts
}

func (s *stepper) Score(em map[string]float64) float64 { return em["reward"] }

func (s *stepper) Sets() []run.Set {
	sets := []run.Set{s.w.policy}
	if s.w.value != nil {
		sets = append(sets, s.w.value)
	}
	return sets
}

// MarshalExtra and UnmarshalExtra keep PPO's KL coefficient in checkpoints.
func (s *stepper) MarshalExtra() []byte {
	return []byte(fmt.Sprintf("%x", math.Float64bits(s.klCoef)))
}

func (s *stepper) UnmarshalExtra(b []byte) error {
	var bits uint64
	if _, err := fmt.Sscanf(string(b), "%x", &bits); err != nil {
		return fmt.Errorf("checkpoint: KL coefficient %q: %w", b, err)
	}
	s.klCoef = math.Float64frombits(bits)
	return nil
}

func (s *stepper) Line(row map[string]float64) string {
	out := fmt.Sprintf("reward %.4f", row["reward"])
	for _, k := range []struct{ key, label, f string }{{"kl", "kl", "%.4f"}, {"clip_ratio", "clip", "%.3f"}, {"value_loss", "vloss", "%.4f"}} {
		if v, ok := row[k.key]; ok {
			out += fmt.Sprintf(" "+k.label+" "+k.f, v)
		}
	}
	return out
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

// Step is one rollout and its update.
func (s *stepper) Step(ctx context.Context, cur run.Cursor, lr float64) (run.Row, error) {
	cfg := &s.cfg
	w := s.w
	order := run.EpochOrder(len(s.train), cfg.Seed, cur.Epoch)
	lo := cur.EpochStep * cfg.BatchPrompts
	idx := order[lo:min(len(order), lo+cfg.BatchPrompts)]
	var all []int
	for _, k := range idx {
		for g := 0; g < cfg.Group; g++ {
			all = append(all, k)
		}
	}
	t0 := time.Now()
	seqs, err := w.generate(ctx, s.train, all, sampler(cfg, seedOf(cfg.Seed, cur.Step)))
	if err != nil {
		return run.Row{}, fmt.Errorf("rollout: %w", err)
	}
	tRoll := time.Since(t0)
	t0 = time.Now()
	if err := score(ctx, s.scorer, s.train, seqs); err != nil {
		return run.Row{}, err
	}
	tScore := time.Since(t0)
	ps, err := w.logprobs(seqs, !s.obj.oldFromUpdate(), s.obj.needsReference())
	if err != nil {
		return run.Row{}, err
	}
	row := map[string]float64{}
	scores := make([]float64, len(seqs))
	lengths := 0.0
	for i, q := range seqs {
		scores[i] = q.Score
		lengths += float64(len(q.Resp))
	}
	mean, std := MeanStd(scores, true)
	row["reward"], row["reward_std"] = mean, std
	row["completions/mean_length"] = lengths / float64(len(seqs))
	trainSeqs := s.obj.advantages(seqs, row)
	t0 = time.Now()
	ls, err := w.update(cfg, s.obj, trainSeqs, cur.Step, lr)
	if err != nil {
		return run.Row{}, err
	}
	tUpd := time.Since(t0)
	ls.metrics(row)
	// entropy: −mean log π(a_t) of the sampled tokens, an estimate of the
	// policy's per-token entropy (exact in expectation when sampling at
	// temperature 1 without truncation)
	var ent float64
	nt := 0
	for _, q := range seqs {
		for _, lp := range q.Old {
			ent -= lp
			nt++
		}
	}
	if nt > 0 {
		row["entropy"] = ent / float64(nt)
	}
	s.obj.after(seqs, row)
	row["time/rollout_s"] = tRoll.Seconds()
	row["time/score_s"] = tScore.Seconds()
	row["time/old_logps_s"] = ps.old.Seconds()
	row["time/ref_logps_s"] = ps.ref.Seconds()
	row["time/value_s"] = ps.value.Seconds()
	row["time/update_s"] = tUpd.Seconds()
	out := run.Row{Metrics: row}
	if kl, ok := row["kl"]; ok && cfg.MaxKL > 0 && kl > cfg.MaxKL {
		out.Stop = fmt.Sprintf("KL %.4g exceeds --max-kl %g: stopping", kl, cfg.MaxKL)
	}
	return out, nil
}

// Evaluate samples cfg.EvalSamples completions of every held-out prompt
// with the rollout sampler and a fixed seed, and reports their mean reward
// and the mean per-sequence KL(π ‖ π_ref) of the samples.
func (s *stepper) Evaluate(ctx context.Context, done func(n, total int)) (map[string]float64, error) {
	cfg := &s.cfg
	var all []int
	for k := range s.eval {
		for g := 0; g < cfg.EvalSamples; g++ {
			all = append(all, k)
		}
	}
	var seqs []*Seq
	const chunk = 64
	for i := 0; i < len(all); i += chunk {
		part, err := s.w.generate(ctx, s.eval, all[i:min(len(all), i+chunk)], sampler(cfg, evalSeed(cfg.Seed)+uint32(i)))
		if err != nil {
			return nil, fmt.Errorf("held-out rollout: %w", err)
		}
		seqs = append(seqs, part...)
		if done != nil {
			done(min(len(all), i+chunk), len(all))
		}
	}
	if err := score(ctx, s.scorer, s.eval, seqs); err != nil {
		return nil, err
	}
	ev := *s.w
	ev.value = nil
	return heldOutRow(ev, seqs)
}

// heldOutRow is the held-out metrics of scored samples: their reward's mean
// and spread, their length, and KL to ev's reference (per completion and
// per token), which ev's log-probs measure.
func heldOutRow(ev worker, seqs []*Seq) (map[string]float64, error) {
	if _, err := ev.logprobs(seqs, true, true); err != nil {
		return nil, err
	}
	scores := make([]float64, len(seqs))
	var kl, length float64
	for i, q := range seqs {
		scores[i] = q.Score
		kl += seqKL(q)
		length += float64(len(q.Resp))
	}
	mean, std := MeanStd(scores, true)
	n := float64(len(seqs))
	return map[string]float64{"reward": mean, "reward_std": std, "kl": kl / n, "completions/mean_length": length / n,
		"kl_per_token": kl / math.Max(1, float64(tokensOf(seqs)))}, nil
}

// readConfig reads the configuration of the run in dir.
func readConfig(dir string, cfg *Config) error {
	return run.ReadJSON(filepath.Join(dir, "config.json"), cfg)
}
