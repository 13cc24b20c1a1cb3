package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/align-dev/align/align/encode"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// evalSplitSalt decorrelates --eval-split from the data tools' splits.
const evalSplitSalt = 0x7472_6169_6e65_7661

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

// host is a run's trainer: adapter sets over one resident base (the
// native trainer), or a test's fake with one set.
type host interface {
	Info() bindings.TrainerInfo
	// Policy is the set the run trains (set 0).
	Policy() Trainer
}

// native is the native trainer as a host.
type native struct{ *bindings.Trainer }

func (n native) Policy() Trainer { return n.Set(0) }

// opener makes the host of a run: the native one, or a test's fake.
type opener func(model string, opt bindings.TrainerOptions) (host, func() error, error)

// openNative loads the model and the native trainer over its weights
// (align/run's device policy).
func openNative(model string, opt bindings.TrainerOptions) (host, func() error, error) {
	t, err := run.OpenTrainer(model, opt)
	if err != nil {
		return nil, nil, err
	}
	return native{t}, t.Close, nil
}

// isMethod reports whether m is a method of this package (a run dir of
// another package's method is not one this driver replaces).
func isMethod(m string) bool { return slices.Contains(Methods, m) }

// Run trains. It writes Out/metrics.jsonl, Out/adapter.gguf, checkpoints
// under Out/checkpoints and Out/summary.json. When ctx ends it saves a
// checkpoint and returns an error wrapping ErrInterrupted. Bad settings
// are returned as *ConfigError before anything is read or written.
func Run(ctx context.Context, cfg Config, progress Progress) (Result, error) {
	return runWith(ctx, cfg, progress, openNative)
}

func runWith(ctx context.Context, cfg Config, progress Progress, open opener) (res Result, err error) {
	start := time.Now()
	if cfg.Resume {
		if cfg, err = resumeConfig(cfg); err != nil {
			return res, err
		}
	}
	// everything is read and checked before the run directory is touched
	if err := run.Begin(&cfg.Common, cfg.Validate, isMethod, &cfg.Data, &cfg.EvalData); err != nil {
		return res, err
	}
	in, err := readPairs(cfg)
	if err != nil {
		return res, err
	}
	if err := resolveStages(&cfg); err != nil { // --init-adapter, --ref-adapter (stage.go)
		return res, err
	}
	topt := cfg.TrainerOptions()
	// the reward model trains a set of its own (rewardTrainer): no policy set
	topt.NoPolicySet = cfg.Method == RM
	eng, closeTr, err := open(cfg.Model, topt)
	if err != nil {
		return res, err
	}
	defer closeTr()
	tr := eng.Policy()
	res.Device = eng.Info().Device
	if err := encodeInputs(cfg, eng, in); err != nil {
		return res, err
	}
	train, eval := in.train, in.eval
	res.Skipped, res.Truncation = in.skipped, in.trunc
	res.TrainPairs, res.EvalPairs = len(train), len(eval)

	refForward, err := setupStages(eng, cfg)
	if err != nil {
		return res, err
	}
	if cfg.Method == RM { // the reward set: LoRA + the reward head
		if tr, err = rewardTrainer(eng, cfg); err != nil {
			return res, err
		}
	}
	if n := eng.Info().NCtx; n > 0 && cfg.MaxLength > n {
		return res, bad("max-length", "is at most the model's context, %d (got %d)", n, cfg.MaxLength)
	}
	if cfg.EvalData == "" && cfg.EvalSplit > 0 && len(in.evalPairs)+len(in.evalUnpaired) == 0 {
		progress.Note("--eval-split %g of %s held out none of its %d pairs: no held-out evaluation", cfg.EvalSplit, in.dataName, len(in.trainPairs)+len(in.trainUnpaired))
	}
	if cfg.Method == KTO {
		if note := ktoBalance(cfg, train); note != "" {
			progress.Note("%s", note)
		}
	}
	// the native trainer stops a running forward/backward when ctx ends
	// (within a graph node), not only between steps
	if nt, ok := eng.(native); ok {
		defer nt.Watch(ctx)()
	}

	keep := []string{cfg.Model, cfg.Data, cfg.EvalData} // before --data - becomes the stored copy
	claim, err := run.ClaimDir(cfg.Out, cfg.Resume, cfg.Force, isMethod, "align train", keep...)
	if err != nil {
		return res, err
	}
	defer func() { claim.Release(err) }()
	if !cfg.Resume {
		if in.stdin != nil {
			p := filepath.Join(cfg.Out, run.StoredData)
			if err := run.WriteSynced(p, in.stdin); err != nil {
				return res, err
			}
			if cfg.Data, err = filepath.Abs(p); err != nil {
				return res, err
			}
			h, st, err := run.HashFile(p)
			if err != nil {
				return res, err
			}
			in.hashes["data"], in.stats["data"] = h, st
		}
	}
	cfg.Hashes, cfg.Stats = in.hashes, in.stats
	// written first, so an interruption at any later point can resume; on
	// resume it records what --epochs and --max-steps changed
	if err := saveConfig(cfg); err != nil {
		return res, err
	}

	obj := newObjective(cfg)
	if obj.needsReference() {
		err := referenceLogps(ctx, refForward, cfg, progress, train, eval)
		if err != nil && ctx.Err() != nil {
			return res, fmt.Errorf("computing reference log-probs (those done are kept): %w", run.ErrInterrupted)
		}
		if err != nil {
			return res, err
		}
	}
	st := &stepper{tr: tr, obj: obj, evalObj: evalObjective(obj, eval), cfg: cfg, train: train, eval: eval, packed: map[int][]MicroBatch{},
		opt: optimiser{weightDecay: cfg.WeightDecay, maxGradNorm: cfg.MaxGradNorm}}
	lr, err := run.Loop(ctx, st, run.Options{Out: cfg.Out, Resume: cfg.Resume, Epochs: cfg.Epochs, MaxSteps: cfg.MaxSteps,
		EvalEvery: cfg.EvalEvery, SaveEvery: cfg.SaveEvery, Patience: cfg.Patience, LR: cfg.LR, Schedule: cfg.Schedule,
		WarmupSteps: cfg.WarmupSteps, HasEval: len(eval) > 0, Progress: progress, OnStep: cfg.OnStep})
	if err != nil {
		return res, err
	}
	res.Before, res.After, res.StoppedEarly = lr.Before, lr.After, lr.StoppedEarly
	res.Steps, res.Epochs, res.TokensPerS = lr.Steps, lr.Epochs, lr.TokensPerS
	res.Adapter = filepath.Join(cfg.Out, "adapter.gguf")
	if err := tr.Export(res.Adapter); err != nil {
		return res, err
	}
	if cfg.Method == RM {
		if res.Head, err = exportHeads(tr, cfg.Out); err != nil {
			return res, err
		}
	}
	res.ElapsedS = time.Since(start).Seconds()
	return res, run.WriteJSON(filepath.Join(cfg.Out, "summary.json"), res)
}

// stepper is a run of one of this package's objectives as the harness
// steps it: packed micro-batches of each epoch's order, one optimiser step
// per GradAccum of them.
type stepper struct {
	tr          Trainer
	obj         method
	evalObj     method // obj, or how obj scores held-out examples (KTO on pairs)
	opt         optimiser
	cfg         Config
	train, eval []Example
	packed      map[int][]MicroBatch // by epoch
}

func (s *stepper) pack(epoch int) []MicroBatch {
	mbs, ok := s.packed[epoch]
	if !ok {
		mbs = Pack(s.train, EpochOrder(len(s.train), s.cfg.Seed, epoch), s.cfg.BatchTokens, s.obj.layout())
		s.packed = map[int][]MicroBatch{epoch: mbs} // one epoch at a time
	}
	return mbs
}

func (s *stepper) EpochSteps(e int) int {
	return (len(s.pack(e)) + s.cfg.GradAccum - 1) / s.cfg.GradAccum
}

func (s *stepper) Step(ctx context.Context, cur run.Cursor, lr float64) (run.Row, error) {
	mbs, ga := s.pack(cur.Epoch), s.cfg.GradAccum
	group := mbs[cur.EpochStep*ga : min(len(mbs), (cur.EpochStep+1)*ga)]
	ss, err := s.opt.step(s.tr, s.obj, s.train, group, lr)
	if err != nil {
		return run.Row{}, err
	}
	m := s.obj.metrics(ss.metrics)
	m["grad_norm"] = ss.gradNorm
	return run.Row{Metrics: m, Tokens: ss.tokens}, nil
}

func (s *stepper) Evaluate(ctx context.Context, done func(n, total int)) (map[string]float64, error) {
	if len(s.eval) == 0 {
		return nil, nil
	}
	return evaluate(ctx, s.tr, s.evalObj, s.eval, s.cfg.BatchTokens, done)
}

func (s *stepper) Score(em map[string]float64) float64 { return s.obj.score(em) }

func (s *stepper) Line(m map[string]float64) string {
	return s.obj.line(m) + fmt.Sprintf(" lr %.2e %.0f tok/s", m["learning_rate"], m["tokens_per_s"])
}

func (s *stepper) Sets() []run.Set { return []run.Set{s.tr} }

// inputs are a run's pairs, read and checked, then tokenized.
type inputs struct {
	stdin                 []byte // the pairs of --data -, kept in the run
	dataName              string
	trainPairs, evalPairs []pairs.Pair
	// KTO's unpaired examples (pairs.LoadAll), beside its pairs
	trainUnpaired, evalUnpaired []pairs.Unpaired
	train, eval                 []Example
	hashes                      map[string]string // see Config.Hashes; no "data" for stdin yet
	stats                       map[string]run.FileStat
	trunc                       Truncation
	skipped                     int
}

// inputFiles are the run's inputs for hashing.
func inputFiles(cfg Config, stdin bool) []run.Input {
	data := cfg.Data
	if stdin {
		data = "" // hashed once kept in the run
	}
	return []run.Input{{Key: "model", Path: cfg.Model, Flag: "model"}, {Key: "data", Path: data, Flag: "data"},
		{Key: "eval_data", Path: cfg.EvalData, Flag: "eval-data"}, {Key: "init_adapter", Path: cfg.InitAdapter, Flag: "init-adapter"},
		{Key: "ref_adapter", Path: cfg.RefAdapter, Flag: "ref-adapter"}, {Key: "chat_template", Path: cfg.ChatTemplate, Flag: "chat-template"}}
}

// readPairs loads the pairs, checks --beta-table against their objectives
// and hashes the inputs (a resumed run: against the run's, reading only
// files whose size, time or inode changed).
func readPairs(cfg Config) (*inputs, error) {
	in := &inputs{dataName: cfg.Data}
	opt := pairs.LoadOptions{SkipInvalid: cfg.SkipInvalid, Unpaired: cfg.Method == KTO}
	var stats pairs.Stats
	var err error
	var data, evalData pairs.Data
	if cfg.Data == "-" {
		r := cfg.Stdin
		if r == nil {
			r = os.Stdin
		}
		if in.stdin, err = io.ReadAll(r); err != nil {
			return nil, fmt.Errorf("stdin: %w", err)
		}
		in.dataName = "stdin"
		data, stats, err = pairs.ReadAll(bytes.NewReader(in.stdin), in.dataName, opt)
	} else {
		data, stats, err = pairs.LoadAll(cfg.Data, opt)
	}
	if err != nil {
		return nil, err
	}
	in.trainPairs, in.trainUnpaired = data.Pairs, data.Unpaired
	in.skipped = stats.Skipped
	if cfg.EvalData != "" {
		if evalData, _, err = pairs.LoadAll(cfg.EvalData, opt); err != nil {
			return nil, err
		}
		in.evalPairs, in.evalUnpaired = evalData.Pairs, evalData.Unpaired
	}
	objectives := map[string]bool{}
	for _, set := range [][]pairs.Pair{in.trainPairs, in.evalPairs} {
		for i := range set {
			objectives[strings.ToLower(set[i].Objective)] = true
		}
	}
	for _, set := range [][]pairs.Unpaired{in.trainUnpaired, in.evalUnpaired} {
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
		if in.trainPairs, in.evalPairs, err = pairs.Split(in.trainPairs, cfg.EvalSplit, cfg.Seed^evalSplitSalt); err != nil {
			return nil, err
		}
		if in.trainUnpaired, in.evalUnpaired, err = pairs.SplitUnpaired(in.trainUnpaired, cfg.EvalSplit, cfg.Seed^evalSplitSalt); err != nil {
			return nil, err
		}
	}
	if len(in.trainPairs)+len(in.trainUnpaired) == 0 {
		return nil, fmt.Errorf("%s: no training pairs", in.dataName)
	}
	files := inputFiles(cfg, in.stdin != nil)
	if in.hashes, in.stats, err = run.HashInputs(files, cfg.Hashes, cfg.Stats); err != nil {
		return nil, err
	}
	if cfg.Resume {
		if err := run.CheckHashes(cfg.Out, cfg.Hashes, in.hashes, files); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// encodeInputs tokenizes the pairs with the trainer's model (no second
// load of the base for its vocabulary) and fills the margins.
func encodeInputs(cfg Config, eng host, in *inputs) error {
	var vocab *bindings.Model
	if nt, ok := eng.(native); ok {
		vocab = nt.Model()
	} else { // a test's fake: the vocabulary of the named model
		v, err := bindings.LoadModel(cfg.Model, bindings.ModelOptions{VocabOnly: true})
		if err != nil {
			return err
		}
		defer v.Close()
		vocab = v
	}
	po, err := cfg.PromptOptions()
	if err != nil {
		return err
	}
	enc, err := NewEncoderWith(vocab, cfg.MaxLength, po)
	if err != nil {
		return err
	}
	betas := BetaTable{Table: MergeBetas(cfg.BetaTable), Override: cfg.Beta}
	train, trunc, skipped, err := enc.Encode(in.trainPairs, betas, cfg.SkipInvalid)
	if err != nil {
		return positioned(in.dataName, cfg.Data, err)
	}
	eval, trunc2, skipped2, err := enc.Encode(in.evalPairs, betas, cfg.SkipInvalid)
	if err != nil {
		if cfg.EvalData == "" { // --eval-split: the held-out pairs are lines of --data
			return positioned(in.dataName, cfg.Data, err)
		}
		return positioned(cfg.EvalData, cfg.EvalData, err)
	}
	if err := applyMargins(cfg, in.dataName, train, in.trainPairs, eval, in.evalPairs); err != nil {
		return err
	}

	in.train, in.eval = train, eval
	in.skipped += skipped + skipped2
	in.trunc = trunc.Add(trunc2)
	if cfg.Method == KTO {
		return ktoInputs(cfg, enc, betas, in)
	}
	return nil
}

// saveConfig writes the run's config.json. KTO's example weights (1 by
// default for every method) are written for KTO runs only.
func saveConfig(cfg Config) error {
	if cfg.Method != KTO {
		cfg.DesirableWeight, cfg.UndesirableWeight = 0, 0
	}
	return run.WriteJSON(filepath.Join(cfg.Out, "config.json"), cfg)
}

func loadConfig(out string) (Config, error) {
	var cfg Config
	if err := run.ReadJSON(filepath.Join(out, "config.json"), &cfg); err != nil {
		return cfg, fmt.Errorf("%s: cannot resume: %w", out, err)
	}
	return cfg, nil
}

// LoadRunConfig reads the configuration of the run in dir.
func LoadRunConfig(dir string) (Config, error) { return loadConfig(dir) }

// resumeConfig reads the run in cfg.Out and applies what a resume may
// change. The run is read and written in cfg.Out, wherever it started.
func resumeConfig(cfg Config) (Config, error) {
	saved, err := loadConfig(cfg.Out)
	if err != nil {
		return cfg, err
	}
	if !isMethod(saved.Method) {
		return cfg, fmt.Errorf("%s: cannot resume: not a --method %s run", cfg.Out, strings.Join(Methods, "|"))
	}
	saved.Resumed(cfg.Common)
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
	var pe *encode.PairError
	if errors.As(err, &pe) {
		if line := lineOf(path, pe.ID); line > 0 {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// referenceLogps fills RefW/RefL (and RefKL), reading Out/reference.json
// when it holds every id (a resumed run) and writing it otherwise.
func referenceLogps(ctx context.Context, forward func(*bindings.Batch) (Outputs, error), cfg Config, progress Progress, sets ...[]Example) error {
	type ref struct {
		W, L float64
		KL   float64 `json:",omitempty"`
	}
	path := filepath.Join(cfg.Out, "reference.json")
	cache := map[string]ref{}
	run.ReadJSON(path, &cache)
	missing := 0
	for _, set := range sets {
		for i := range set {
			if r, ok := cache[set[i].ID]; ok {
				set[i].RefW, set[i].RefL, set[i].RefKL = r.W, r.L, r.KL
			} else {
				missing++
			}
		}
	}
	if missing == 0 {
		return nil
	}
	var todo [][]MicroBatch
	var lays []Layout
	total := 0
	for _, set := range sets {
		order := make([]int, len(set))
		for i := range order {
			order[i] = i
		}
		// packed as the held-out evaluation packs them, so that a policy
		// equal to the reference scores exactly its log-probs (step 0's
		// held-out margins are 0)
		lay := LayoutPair
		if len(set) > 0 && len(set[0].Rejected) == 0 {
			lay = LayoutUnpaired
		}
		var mbs []MicroBatch
		for _, mb := range Pack(set, order, cfg.BatchTokens, lay) {
			for _, i := range mb.Examples {
				if _, ok := cache[set[i].ID]; !ok {
					mbs = append(mbs, mb)
					break
				}
			}
		}
		todo, lays = append(todo, mbs), append(lays, lay)
		total += len(mbs)
	}
	t0, done := time.Now(), 0
	progress.Send(Event{Phase: "reference", Done: 0, Total: total})
	for s, set := range sets {
		for _, mb := range todo[s] {
			if err := ctx.Err(); err != nil {
				run.WriteJSON(path, cache) // keep what is done for the resumed run
				return err
			}
			lay := lays[s]
			out, err := forward(BuildBatch(set, mb, lay))
			if err != nil {
				return fmt.Errorf("reference log-probs: %w", err)
			}
			if len(out.Sums) != lay.perExample()*len(mb.Examples) {
				return fmt.Errorf("reference log-probs: %d sums for %d sequences", len(out.Sums), lay.perExample()*len(mb.Examples))
			}
			// KTO's mismatched sequences: one more forward, the one its
			// objective's prepare runs over this micro-batch
			var kl []run.Seq
			for _, i := range mb.Examples {
				if len(set[i].KL) > 0 {
					kl = append(kl, run.Seq{Prompt: set[i].Prompt, Response: set[i].KL})
				}
			}
			var klSums []float64
			if len(kl) > 0 {
				ko, err := forward(run.Layout(kl, false))
				if err != nil {
					return fmt.Errorf("reference log-probs: %w", err)
				}
				if len(ko.Sums) != len(kl) {
					return fmt.Errorf("reference log-probs: %d sums for %d sequences", len(ko.Sums), len(kl))
				}
				klSums = ko.Sums
			}
			j, k := 0, 0
			for _, i := range mb.Examples {
				ex := &set[i]
				ex.RefW = out.Sums[j]
				j++
				if lay == LayoutPair {
					ex.RefL = out.Sums[j]
					j++
				}
				if len(ex.KL) > 0 {
					ex.RefKL = klSums[k]
					k++
				}
				cache[ex.ID] = ref{ex.RefW, ex.RefL, ex.RefKL}
			}
			done++
			progress.Send(Event{Phase: "reference", Done: done, Total: total, ETA: run.ETA(time.Since(t0), done, total)})
		}
	}
	return run.WriteJSON(path, cache)
}
