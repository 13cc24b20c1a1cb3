package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/bindings"
)

// Config is one training run.
type Config struct {
	Method    string // sft, dpo, ipo, cdpo, hinge
	Model     string
	Data      string
	EvalData  string
	EvalSplit float64 // fraction of Data held out when EvalData is empty
	Out       string
	Resume    bool

	Epochs         int
	LR             float64
	Schedule       string // cosine, linear, constant
	WarmupSteps    int
	WeightDecay    float64
	MaxGradNorm    float64
	GradAccum      int // micro-batches per optimiser step
	BatchTokens    int // padded tokens per micro-batch
	MaxLength      int
	Rank           int
	Alpha          float64
	Targets        []string // q, k, v, o, gate, up, down
	Seed           uint64
	Threads        int
	Beta           float64 // > 0 overrides the table
	BetaTable      map[string]float64
	LabelSmoothing float64
	RPOAlpha       float64 // > 0: add α·(mean token NLL of the chosen response) to preference losses (RPO)
	EvalEvery      int     // optimiser steps between held-out evaluations (0: each epoch)
	SaveEvery      int     // optimiser steps between checkpoints (0: each epoch)
	Patience       int     // evaluations without a better held-out margin before stopping (0: off)
	SkipInvalid    bool
	Raw            bool // no chat template
	MaxSteps       int  // stop after this many optimiser steps (0: all epochs); for tests and benchmarks

	// OnStep, if set, is called after each optimiser step (tests use it to
	// interrupt a run at a chosen step).
	OnStep func(step int) `json:"-"`
}

// DefaultConfig returns the defaults the CLI shows.
func DefaultConfig() Config {
	return Config{
		Method: DPO, EvalSplit: 0.1, Epochs: 3, LR: 5e-4, Schedule: "cosine", WarmupSteps: 10, WeightDecay: 0,
		MaxGradNorm: 1, GradAccum: 1, BatchTokens: 2048, MaxLength: 512, Rank: 8, Alpha: 16,
		Targets: []string{"q", "k", "v", "o"}, Seed: 1, EvalEvery: 0, SaveEvery: 0, Patience: 0,
	}
}

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
	TrainPairs   int                `json:"train_pairs"`
	EvalPairs    int                `json:"eval_pairs"`
	Truncation   Truncation         `json:"truncation"`
	Skipped      int                `json:"skipped"`
	TokensPerS   float64            `json:"tokens_per_s"`
	ElapsedS     float64            `json:"elapsed_s"`
}

func (c *Config) validate() error {
	if !slices.Contains(Methods, c.Method) {
		return fmt.Errorf("--method must be one of %s (got %q)", strings.Join(Methods, ", "), c.Method)
	}
	switch {
	case c.Model == "":
		return errors.New("--model is required")
	case c.Data == "" && !c.Resume:
		return errors.New("--data is required")
	case c.Out == "":
		return errors.New("--out is required")
	case c.Epochs < 1:
		return fmt.Errorf("--epochs must be at least 1 (got %d)", c.Epochs)
	case !(c.LR > 0):
		return fmt.Errorf("--lr must be positive (got %g)", c.LR)
	case c.GradAccum < 1:
		return fmt.Errorf("--grad-accum must be at least 1 (got %d)", c.GradAccum)
	case c.BatchTokens < 16:
		return fmt.Errorf("--batch-tokens must be at least 16 (got %d)", c.BatchTokens)
	case c.Rank < 1:
		return fmt.Errorf("--lora-rank must be at least 1 (got %d)", c.Rank)
	case c.EvalSplit < 0 || c.EvalSplit >= 1:
		return fmt.Errorf("--eval-split must be in [0, 1) (got %g)", c.EvalSplit)
	case c.LabelSmoothing < 0 || c.LabelSmoothing >= 0.5:
		return fmt.Errorf("--label-smoothing must be in [0, 0.5) (got %g)", c.LabelSmoothing)
	case c.MaxLength > MaxScored || (c.Method != SFT && 2*c.MaxLength > MaxScored):
		return fmt.Errorf("--max-length is at most %d for %s (a pair's scored tokens must fit one micro-batch; got %d)",
			map[bool]int{true: MaxScored, false: MaxScored / 2}[c.Method == SFT], c.Method, c.MaxLength)
	case c.RPOAlpha < 0:
		return fmt.Errorf("--rpo-alpha must not be negative (got %g)", c.RPOAlpha)
	case c.Beta < 0:
		return fmt.Errorf("--beta must be positive (got %g)", c.Beta)
	}
	switch c.Schedule {
	case "cosine", "linear", "constant":
	default:
		return fmt.Errorf("--schedule must be cosine, linear or constant (got %q)", c.Schedule)
	}
	if _, err := targetBits(c.Targets); err != nil {
		return err
	}
	return nil
}

func targetBits(ts []string) (uint32, error) {
	names := map[string]uint32{"q": bindings.TargetQ, "k": bindings.TargetK, "v": bindings.TargetV, "o": bindings.TargetO,
		"gate": bindings.TargetGate, "up": bindings.TargetUp, "down": bindings.TargetDown}
	var bits uint32
	for _, t := range ts {
		b, ok := names[strings.ToLower(strings.TrimSpace(t))]
		if !ok {
			return 0, fmt.Errorf("unknown LoRA target %q (want q, k, v, o, gate, up, down)", t)
		}
		bits |= b
	}
	if bits == 0 {
		return 0, errors.New("no LoRA targets")
	}
	return bits, nil
}

// runState is what the loop carries between steps.
type runState struct {
	step, epoch, epochStep int // optimiser steps done; cursor
	bestMargin             float64
	badEvals               int
	best                   []float32 // adapter params at the best held-out margin
	bestStep               int
}

// Progress receives one human line per update (stderr); nil: silent.
type Progress func(line string, final bool)

// Run trains. It writes Out/metrics.jsonl, Out/adapter.gguf, checkpoints
// under Out/checkpoints and Out/summary.json. When ctx ends it saves a
// checkpoint and returns an error wrapping ErrInterrupted.
func Run(ctx context.Context, cfg Config, progress Progress) (Result, error) {
	start := time.Now()
	var res Result
	if cfg.Resume {
		saved, err := loadConfig(cfg.Out)
		if err != nil {
			return res, err
		}
		threads, onStep := cfg.Threads, cfg.OnStep
		cfg = saved
		cfg.Resume = true
		cfg.Threads, cfg.OnStep = threads, onStep
	}
	if err := cfg.validate(); err != nil {
		return res, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return res, err
	}
	sft := cfg.Method == SFT
	eps := cfg.LabelSmoothing
	if cfg.Method == CDPO && eps == 0 {
		eps = 0.1
	}
	betas := BetaTable{Table: MergeBetas(cfg.BetaTable), Override: cfg.Beta}

	// data
	trainPairs, stats, err := pairs.Load(cfg.Data, pairs.LoadOptions{SkipInvalid: cfg.SkipInvalid})
	if err != nil {
		return res, err
	}
	res.Skipped = stats.Skipped
	var evalPairs []pairs.Pair
	if cfg.EvalData != "" {
		evalPairs, _, err = pairs.Load(cfg.EvalData, pairs.LoadOptions{SkipInvalid: cfg.SkipInvalid})
		if err != nil {
			return res, err
		}
	} else if cfg.EvalSplit > 0 {
		// salted: files written by `align data synth/split` were split by the
		// same id hash, and an unsalted split of their train half with the
		// same seed would hold out nothing
		trainPairs, evalPairs, err = pairs.Split(trainPairs, cfg.EvalSplit, cfg.Seed^evalSplitSalt)
		if err != nil {
			return res, err
		}
	}
	if len(trainPairs) == 0 {
		return res, fmt.Errorf("%s: no training pairs", cfg.Data)
	}
	vocab, err := bindings.LoadModel(cfg.Model, bindings.ModelOptions{VocabOnly: true})
	if err != nil {
		return res, err
	}
	defer vocab.Close()
	enc, err := NewEncoder(vocab, cfg.MaxLength, cfg.Raw)
	if err != nil {
		return res, err
	}
	train, trunc, skipped, err := enc.Encode(trainPairs, betas, cfg.SkipInvalid)
	if err != nil {
		return res, fmt.Errorf("%s: %w", cfg.Data, err)
	}
	eval, trunc2, skipped2, err := enc.Encode(evalPairs, betas, cfg.SkipInvalid)
	if err != nil {
		return res, fmt.Errorf("eval: %w", err)
	}
	res.Skipped += skipped + skipped2
	res.Truncation = Truncation{trunc.PromptsCut + trunc2.PromptsCut, trunc.ResponsesCut + trunc2.ResponsesCut}
	res.TrainPairs, res.EvalPairs = len(train), len(eval)

	targets, _ := targetBits(cfg.Targets)
	tr, err := bindings.NewTrainerFromFile(cfg.Model, bindings.TrainerOptions{Threads: cfg.Threads, Rank: cfg.Rank,
		Alpha: float32(cfg.Alpha), Targets: targets, Seed: cfg.Seed})
	if err != nil {
		return res, err
	}
	defer tr.Close()

	if !cfg.Resume {
		// written first, so an interruption at any later point can resume
		os.RemoveAll(filepath.Join(cfg.Out, "checkpoints"))
		os.Remove(filepath.Join(cfg.Out, "eval_before.json"))
		if err := saveConfig(cfg); err != nil {
			return res, err
		}
	}
	// reference log-probs: once per pair at adapter scale 0, cached on disk
	if !sft {
		if progress != nil {
			progress(fmt.Sprintf("reference log-probs for %d train and %d eval pairs (adapter off) ...", len(train), len(eval)), false)
		}
		if err := referenceLogps(ctx, tr, cfg, train, eval); err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("computing reference log-probs (those done are kept): %w", ErrInterrupted)
			}
			return res, err
		}
	}

	st := runState{bestMargin: math.Inf(-1)}
	metricsPath := filepath.Join(cfg.Out, "metrics.jsonl")
	fresh := true
	if cfg.Resume && len(listCheckpoints(filepath.Join(cfg.Out, "checkpoints"))) > 0 {
		ck, err := loadCheckpoint(cfg.Out, tr)
		if err != nil {
			return res, err
		}
		st = ck
		fresh = false
		if err := trimMetrics(metricsPath, st.step); err != nil {
			return res, err
		}
	}
	if fresh {
		// a new run, or one interrupted before its first checkpoint
		os.Remove(metricsPath)
	}
	mf, err := os.OpenFile(metricsPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return res, err
	}
	defer mf.Close()
	writeRow := func(row map[string]any) error {
		b, err := json.Marshal(row)
		if err != nil {
			return err
		}
		_, err = mf.Write(append(b, '\n'))
		return err
	}

	// schedule
	// packing depends on each epoch's order, so epochs can differ by a step
	total := 0
	for e := 0; e < cfg.Epochs; e++ {
		total += (len(Pack(train, EpochOrder(len(train), cfg.Seed, e), cfg.BatchTokens, sft)) + cfg.GradAccum - 1) / cfg.GradAccum
	}
	perEpoch := max(1, total/cfg.Epochs) // for the defaults of --eval-every and --save-every
	if cfg.MaxSteps > 0 && cfg.MaxSteps < total {
		total = cfg.MaxSteps
	}
	sched := Schedule{LR: cfg.LR, Warmup: min(cfg.WarmupSteps, total/2), Total: total, Kind: cfg.Schedule}
	evalEvery := cfg.EvalEvery
	if evalEvery <= 0 {
		evalEvery = perEpoch
	}
	saveEvery := cfg.SaveEvery
	if saveEvery <= 0 {
		saveEvery = perEpoch
	}

	evaluate := func(step int) (map[string]float64, error) {
		if len(eval) == 0 {
			return nil, nil
		}
		m, err := Evaluate(ctx, tr, eval, cfg.BatchTokens, sft, cfg.Method, eps)
		if err != nil {
			return nil, err
		}
		row := map[string]any{"split": "eval", "step": step, "epoch": float64(step) / float64(max(perEpoch, 1))}
		for k, v := range m {
			row[k] = v
		}
		return m, writeRow(row)
	}
	if fresh || readJSON(filepath.Join(cfg.Out, "eval_before.json"), &res.Before) != nil {
		res.Before, err = evaluate(0)
		if err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("before the first step: %w", ErrInterrupted)
			}
			return res, err
		}
		if err := writeJSON(filepath.Join(cfg.Out, "eval_before.json"), res.Before); err != nil {
			return res, err
		}
	}

	var tokens int64
	loopStart := time.Now()
	stopped := false
	lastEvalStep := -1
	// evaluateAt evaluates unless this step already was (epoch ends)
	evaluateAt := func(step int) (map[string]float64, error) {
		if step == lastEvalStep {
			return nil, nil
		}
		return evaluate(step)
	}
	for st.step < total && st.epoch < cfg.Epochs && !stopped {
		order := EpochOrder(len(train), cfg.Seed, st.epoch)
		mbs := Pack(train, order, cfg.BatchTokens, sft)
		for st.epochStep*cfg.GradAccum < len(mbs) && st.step < total {
			if ctx.Err() != nil {
				if err := saveCheckpoint(cfg.Out, tr, st); err != nil {
					return res, fmt.Errorf("interrupted, and saving the checkpoint failed: %w", err)
				}
				return res, fmt.Errorf("step %d, checkpoint saved: %w", st.step, ErrInterrupted)
			}
			group := mbs[st.epochStep*cfg.GradAccum : min(len(mbs), (st.epochStep+1)*cfg.GradAccum)]
			nEx := 0
			for _, mb := range group {
				nEx += len(mb.Examples)
			}
			var m Metrics
			var sftLoss float64
			var sftTokens int
			if sft {
				for _, mb := range group {
					for _, i := range mb.Examples {
						sftTokens += len(train[i].Chosen)
					}
				}
			}
			for _, mb := range group {
				b := BuildBatch(train, mb, sft)
				out, err := tr.ForwardGrad(b)
				sums := out.Sums
				if err != nil {
					return res, fmt.Errorf("step %d: %w", st.step, err)
				}
				d := make([]float64, len(sums))
				if sft {
					for k := range sums {
						d[k] = -1 / float64(sftTokens) // mean token NLL over the step
						sftLoss -= sums[k] / float64(sftTokens)
					}
				} else {
					for k, i := range mb.Examples {
						ex := &train[i]
						p := PairLogps{PiW: sums[2*k], PiL: sums[2*k+1], RefW: ex.RefW, RefL: ex.RefL, NW: len(ex.Chosen), NL: len(ex.Rejected)}
						l, err := PreferenceLoss(cfg.Method, ex.Beta, eps, p)
						if err != nil {
							return res, err
						}
						if cfg.RPOAlpha > 0 {
							nll := -p.PiW / float64(p.NW)
							l.Loss += cfg.RPOAlpha * nll
							l.DPiW -= cfg.RPOAlpha / float64(p.NW)
							m.NLL += nll
						}
						m.Add(l, p)
						d[2*k] = l.DPiW / float64(nEx)
						d[2*k+1] = l.DPiL / float64(nEx)
					}
				}
				if err := tr.BackwardSums(b, d); err != nil {
					return res, fmt.Errorf("step %d: %w", st.step, err)
				}
				tokens += int64(b.NSeq * b.NTok)
			}
			gnorm, err := tr.GradNorm(1)
			if err != nil {
				return res, err
			}
			clip := 1.0
			if cfg.MaxGradNorm > 0 && gnorm > cfg.MaxGradNorm {
				clip = cfg.MaxGradNorm / gnorm
			}
			lr := sched.At(st.step)
			if err := tr.Step(bindings.AdamW{LR: float32(lr), Beta1: 0.9, Beta2: 0.999, Eps: 1e-8,
				WeightDecay: float32(cfg.WeightDecay), GradScale: float32(clip)}); err != nil {
				return res, err
			}
			st.step++
			st.epochStep++
			elapsed := time.Since(loopStart).Seconds()
			tps := float64(tokens) / math.Max(elapsed, 1e-9)
			row := map[string]any{"split": "train", "step": st.step, "epoch": float64(st.step) / float64(max(perEpoch, 1)),
				"learning_rate": lr, "grad_norm": gnorm, "tokens_per_s": tps}
			if sft {
				row["loss"] = sftLoss
			} else {
				for k, v := range m.Map() {
					row[k] = v
				}
			}
			if err := writeRow(row); err != nil {
				return res, err
			}
			if progress != nil {
				progress(progressLine(st.step, total, row, tps, time.Since(loopStart)), false)
			}
			if st.step%evalEvery == 0 || st.step == total {
				em, err := evaluate(st.step)
				if err != nil && ctx.Err() != nil {
					// interrupted during the evaluation: the step is done
					if err := saveCheckpoint(cfg.Out, tr, st); err != nil {
						return res, fmt.Errorf("interrupted, and saving the checkpoint failed: %w", err)
					}
					return res, fmt.Errorf("step %d, checkpoint saved: %w", st.step, ErrInterrupted)
				}
				if err != nil {
					return res, err
				}
				lastEvalStep = st.step
				if em != nil && cfg.Patience > 0 {
					key := "rewards/margins"
					val := em[key]
					if sft {
						val = -em["loss"]
					}
					if val > st.bestMargin {
						st.bestMargin, st.badEvals, st.bestStep = val, 0, st.step
						s, err := tr.GetState()
						if err != nil {
							return res, err
						}
						st.best = s.Params
					} else if st.badEvals++; st.badEvals >= cfg.Patience {
						stopped = true
						res.StoppedEarly = true
						break
					}
				}
			}
			if st.step%saveEvery == 0 && st.step < total {
				if err := saveCheckpoint(cfg.Out, tr, st); err != nil {
					return res, err
				}
			}
			if cfg.OnStep != nil {
				cfg.OnStep(st.step)
			}
		}
		if !stopped && st.epochStep*cfg.GradAccum >= len(mbs) {
			st.epoch++
			st.epochStep = 0
			// one summary row per finished epoch
			if err := writeRow(map[string]any{"split": "train_epoch", "step": st.step, "epoch": st.epoch,
				"tokens_per_s": float64(tokens) / math.Max(time.Since(loopStart).Seconds(), 1e-9)}); err != nil {
				return res, err
			}
			if ctx.Err() == nil {
				if em, err := evaluateAt(st.step); err != nil && ctx.Err() == nil {
					return res, err
				} else if em != nil {
					lastEvalStep = st.step
				}
			}
		}
	}
	if progress != nil {
		progress("", true)
	}
	if lastEvalStep != st.step {
		if _, err := evaluate(st.step); err != nil {
			return res, err
		}
	}
	if res.StoppedEarly && st.best != nil {
		// export the adapter of the best held-out evaluation
		if err := tr.SetState(st.best, nil, nil, int64(st.step)); err != nil {
			return res, err
		}
	}
	if len(eval) > 0 {
		res.After, err = Evaluate(ctx, tr, eval, cfg.BatchTokens, sft, cfg.Method, eps)
		if err != nil {
			return res, err
		}
	}
	res.Adapter = filepath.Join(cfg.Out, "adapter.gguf")
	if err := tr.Export(res.Adapter); err != nil {
		return res, err
	}
	res.Steps = st.step
	res.Epochs = st.epoch
	res.ElapsedS = time.Since(start).Seconds()
	res.TokensPerS = float64(tokens) / math.Max(time.Since(loopStart).Seconds(), 1e-9)
	if err := saveCheckpoint(cfg.Out, tr, st); err != nil {
		return res, err
	}
	return res, writeJSON(filepath.Join(cfg.Out, "summary.json"), res)
}

// Evaluate computes held-out metrics at the current adapter (TRL names for
// the DPO family; "loss" and "logps/chosen" for SFT).
func Evaluate(ctx context.Context, tr *bindings.Trainer, exs []Example, budget int, sft bool, method string, eps float64) (map[string]float64, error) {
	order := make([]int, len(exs))
	for i := range order {
		order[i] = i
	}
	var m Metrics
	var nll float64
	var ntok int
	for _, mb := range Pack(exs, order, budget, sft) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := BuildBatch(exs, mb, sft)
		out, err := tr.Forward(b, 1)
		sums := out.Sums
		if err != nil {
			return nil, err
		}
		for k, i := range mb.Examples {
			ex := &exs[i]
			if sft {
				nll -= sums[k]
				ntok += len(ex.Chosen)
				m.N++
				m.LogpsChosen += sums[k]
				continue
			}
			p := PairLogps{PiW: sums[2*k], PiL: sums[2*k+1], RefW: ex.RefW, RefL: ex.RefL, NW: len(ex.Chosen), NL: len(ex.Rejected)}
			l, err := PreferenceLoss(method, ex.Beta, eps, p)
			if err != nil {
				return nil, err
			}
			m.Add(l, p)
		}
	}
	if sft {
		return map[string]float64{"loss": nll / math.Max(float64(ntok), 1), "logps/chosen": m.LogpsChosen / math.Max(float64(m.N), 1)}, nil
	}
	return m.Map(), nil
}

// referenceLogps fills RefW/RefL, reading Out/reference.json when it holds
// every id (a resumed run) and writing it otherwise.
func referenceLogps(ctx context.Context, tr *bindings.Trainer, cfg Config, sets ...[]Example) error {
	type ref struct{ W, L float64 }
	path := filepath.Join(cfg.Out, "reference.json")
	cache := map[string]ref{}
	readJSON(path, &cache)
	missing := false
	for _, set := range sets {
		for i := range set {
			if r, ok := cache[set[i].ID]; ok {
				set[i].RefW, set[i].RefL = r.W, r.L
			} else {
				missing = true
			}
		}
	}
	if !missing {
		return nil
	}
	for _, set := range sets {
		order := make([]int, len(set))
		for i := range order {
			order[i] = i
		}
		for _, mb := range Pack(set, order, cfg.BatchTokens, false) {
			if err := ctx.Err(); err != nil {
				writeJSON(path, cache) // keep what is done for the resumed run
				return err
			}
			if done := func() bool {
				for _, i := range mb.Examples {
					r, ok := cache[set[i].ID]
					if !ok {
						return false
					}
					set[i].RefW, set[i].RefL = r.W, r.L
				}
				return true
			}(); done {
				continue
			}
			out, err := tr.Forward(BuildBatch(set, mb, false), 0)
			sums := out.Sums
			if err != nil {
				return fmt.Errorf("reference log-probs: %w", err)
			}
			for k, i := range mb.Examples {
				set[i].RefW, set[i].RefL = sums[2*k], sums[2*k+1]
				cache[set[i].ID] = ref{sums[2*k], sums[2*k+1]}
			}
		}
	}
	return writeJSON(path, cache)
}

func progressLine(step, total int, row map[string]any, tps float64, elapsed time.Duration) string {
	const width = 24
	filled := width * step / max(total, 1)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	eta := time.Duration(float64(elapsed) / float64(step) * float64(total-step)).Round(time.Second)
	s := fmt.Sprintf("step %d/%d [%s] loss %.4f", step, total, bar, row["loss"])
	if v, ok := row["rewards/margins"]; ok {
		s += fmt.Sprintf(" margin %.3f acc %.2f", v, row["rewards/accuracies"])
	}
	return s + fmt.Sprintf(" lr %.2e %.0f tok/s ETA %s", row["learning_rate"], tps, eta)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
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

// trimMetrics drops rows of steps after the checkpoint (written by the run
// that died after it) so a resumed run's metrics read as one run.
func trimMetrics(path string, step int) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var keep []byte
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var row struct {
			Step int `json:"step"`
		}
		if json.Unmarshal([]byte(line), &row) != nil || row.Step > step {
			continue // torn line or a step after the checkpoint
		}
		keep = append(keep, line...)
		keep = append(keep, '\n')
	}
	return os.WriteFile(path, keep, 0o644)
}

var _ io.Writer = (*os.File)(nil)
