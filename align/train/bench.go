package train

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/align-dev/align/bindings"
)

// BenchConfig configures a training benchmark.
type BenchConfig struct {
	Model    string
	Method   string // sft or dpo
	Seq      int    // tokens per sequence; a step trains two sequences (one pair)
	Steps    int    // timed steps (after one warm-up step)
	Threads  int
	Rank     int
	Targets  []string
	Baseline bool // also measure llama.cpp prompt processing and the machine's matmul peak
}

// BenchResult is what `align bench train` prints.
type BenchResult struct {
	Model        string  `json:"model"`
	Arch         string  `json:"arch"`
	BaseParams   int64   `json:"base_params"`
	Method       string  `json:"method"`
	Seq          int     `json:"seq"`
	Threads      int     `json:"threads"`
	StepMS       float64 `json:"step_ms"`
	TokensPerS   float64 `json:"tokens_per_s"`     // sequence tokens trained per second (2·seq per step)
	FLOPsPerStep float64 `json:"model_flops_step"` // see FLOPs
	GFLOPS       float64 `json:"achieved_gflops"`
	PeakF32      float64 `json:"peak_gflops_f32"`  // measured ggml F32 GEMM rate
	PeakQ8       float64 `json:"peak_gflops_q8_0"` // measured ggml Q8_0 GEMM rate
	MFU          float64 `json:"mfu"`              // achieved / max(peak f32, peak q8_0)
	PeakRSSMB    float64 `json:"peak_rss_mb"`      // process peak before the baseline runs
	RefMS        float64 `json:"reference_ms"`     // one forward at adapter scale 0 (DPO; cached in training)
	PPTokensPerS float64 `json:"llama_pp_tokens_per_s"`
	TrainOverPP  float64 `json:"train_over_pp"`
	BaseBytes    int64   `json:"base_bytes"`
	TransBytes   int64   `json:"transposed_bytes"`
}

// FLOPs counts one training step's model FLOPs: the frozen matmuls forward
// (2·N per token) and their input gradients backward (2·N per token; no
// weight gradients for a frozen base), the LM head at scored positions
// (same 4·d·V per position), attention scores and mixing (4·T²·d per layer
// and sequence forward, twice that backward), and the LoRA terms (6·r·(in +
// out) per token per adapted matrix: forward, input and weight gradients).
func FLOPs(info bindings.TrainerInfo, rank int, targets uint32, seqs, T int) float64 {
	d, L, ff, V := float64(info.NEmbd), float64(info.NLayer), float64(info.NFF), float64(info.NVocab)
	hd := d / float64(info.NHead)
	nq, nkv := hd*float64(info.NHead), hd*float64(info.NHeadKV)
	mats := L * (d*nq + 2*d*nkv + nq*d + 3*d*ff)
	tokens := float64(seqs * T)
	scored := float64(seqs * (T - 1))
	attn := 4 * float64(T) * float64(T) * nq * L * float64(seqs)
	var lora float64
	type m struct {
		bit     uint32
		in, out float64
	}
	for _, x := range []m{{bindings.TargetQ, d, nq}, {bindings.TargetK, d, nkv}, {bindings.TargetV, d, nkv}, {bindings.TargetO, nq, d},
		{bindings.TargetGate, d, ff}, {bindings.TargetUp, d, ff}, {bindings.TargetDown, ff, d}} {
		if targets&x.bit != 0 {
			lora += 6 * float64(rank) * (x.in + x.out) * L
		}
	}
	return 4*mats*tokens + 4*d*V*scored + 3*attn + lora*tokens
}

func peakRSSMB() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // KiB on Linux
}

// Bench times training steps on two random sequences of Seq tokens.
func Bench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	res := BenchResult{Model: cfg.Model, Method: cfg.Method, Seq: cfg.Seq, Threads: cfg.Threads}
	if cfg.Method != SFT && cfg.Method != DPO {
		return res, fmt.Errorf("--method must be sft or dpo (got %q)", cfg.Method)
	}
	if cfg.Seq < 8 || cfg.Steps < 1 {
		return res, fmt.Errorf("--seq must be at least 8 and --steps at least 1")
	}
	targets, err := targetBits(cfg.Targets)
	if err != nil {
		return res, err
	}
	tr, err := bindings.NewTrainerFromFile(cfg.Model, bindings.TrainerOptions{Threads: cfg.Threads, Rank: cfg.Rank, Alpha: float32(2 * cfg.Rank), Targets: targets, Seed: 1})
	if err != nil {
		return res, err
	}
	defer tr.Close()
	info := tr.Info()
	res.Arch, res.BaseParams, res.BaseBytes, res.TransBytes = info.Arch, info.NBaseParams, info.BaseBytes, info.TransposedBytes
	r := rand.New(rand.NewPCG(1, 2))
	b := &bindings.Batch{NSeq: 2, NTok: cfg.Seq, Tokens: make([]int32, 2*cfg.Seq), Lengths: []int32{int32(cfg.Seq), int32(cfg.Seq)}, Scored: make([]uint8, 2*cfg.Seq)}
	for i := range b.Tokens {
		b.Tokens[i] = int32(5 + r.IntN(info.NVocab-5))
		if i%cfg.Seq != 0 {
			b.Scored[i] = 1
		}
	}
	var ref []float64
	if cfg.Method == DPO {
		t0 := time.Now()
		out, err := tr.Forward(b, 0)
		ref = out.Sums
		if err != nil {
			return res, err
		}
		res.RefMS = float64(time.Since(t0).Microseconds()) / 1000
	}
	step := func() error {
		out, err := tr.ForwardGrad(b)
		if err != nil {
			return err
		}
		sums := out.Sums
		d := []float64{-1.0 / float64(2*(cfg.Seq-1)), -1.0 / float64(2*(cfg.Seq-1))}
		if cfg.Method == DPO {
			l, err := PreferenceLoss(DPO, 0.1, 0, PairLogps{PiW: sums[0], PiL: sums[1], RefW: ref[0], RefL: ref[1]})
			if err != nil {
				return err
			}
			d = []float64{l.DPiW, l.DPiL}
		}
		if err := tr.BackwardSums(b, d); err != nil {
			return err
		}
		return tr.Step(bindings.AdamW{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, GradScale: 1})
	}
	if err := step(); err != nil { // warm-up: allocations, page faults
		return res, err
	}
	t0 := time.Now()
	for i := 0; i < cfg.Steps; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := step(); err != nil {
			return res, err
		}
	}
	secs := time.Since(t0).Seconds() / float64(cfg.Steps)
	res.PeakRSSMB = peakRSSMB()
	res.StepMS = secs * 1000
	res.TokensPerS = float64(2*cfg.Seq) / secs
	res.FLOPsPerStep = FLOPs(info, cfg.Rank, targets, 2, cfg.Seq)
	res.GFLOPS = res.FLOPsPerStep / secs / 1e9
	if !cfg.Baseline {
		return res, nil
	}
	tr.Close()
	if res.PeakF32, err = bindings.BenchMatmul(cfg.Threads, "f32", 2048, 512, 2048, 5); err != nil {
		return res, err
	}
	if res.PeakQ8, err = bindings.BenchMatmul(cfg.Threads, "q8_0", 2048, 512, 2048, 5); err != nil {
		return res, err
	}
	res.MFU = res.GFLOPS / max(res.PeakF32, res.PeakQ8)
	// llama.cpp prompt processing of one sequence, same model and threads
	m, err := bindings.LoadModel(cfg.Model, bindings.ModelOptions{Threads: cfg.Threads})
	if err != nil {
		return res, err
	}
	defer m.Close()
	s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: cfg.Seq, NBatch: cfg.Seq, Threads: cfg.Threads})
	if err != nil {
		return res, err
	}
	defer s.Close()
	seq := b.Tokens[:cfg.Seq]
	if _, err := s.LogProbs(ctx, seq); err != nil { // warm-up
		return res, err
	}
	reps := max(3, cfg.Steps)
	t0 = time.Now()
	for i := 0; i < reps; i++ {
		if _, err := s.LogProbs(ctx, seq); err != nil {
			return res, err
		}
	}
	res.PPTokensPerS = float64(cfg.Seq*reps) / time.Since(t0).Seconds()
	res.TrainOverPP = res.TokensPerS / res.PPTokensPerS
	return res, nil
}
