package train

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"time"

	"github.com/align-dev/align/bindings"
)

// BenchConfig configures a training benchmark.
type BenchConfig struct {
	Model    string
	Method   string // sft or dpo
	Seq      int    // tokens per sequence; a step trains two sequences per pair
	Pairs    int    // pairs (DPO) or pairs of SFT examples per step (0: 1)
	Steps    int    // timed steps (after one warm-up step)
	Sample   int    // after training, tokens to generate from the live policy (0: none): one sequence, then BatchSeqs at once
	Threads  int
	Rank     int
	Targets  []string
	Baseline bool   // also measure llama.cpp prompt processing and the machine's matmul peak
	Device   string // "" or "cpu"; "cuda" (or a ggml device name such as CUDA0) in a CUDA build
	// BackwardWeights: the CPU trainer's transposed weight copies ("" or
	// auto, q8_0, q4_k; bindings.TrainerOptions)
	BackwardWeights string
	// Recompute trains with gradient checkpointing: the backward recomputes
	// each layer from its saved input (bindings.TrainerOptions.Recompute)
	Recompute bool
}

// onCPU reports whether a device name means the CPU backend.
func onCPU(device string) bool { return device == "" || strings.EqualFold(device, "cpu") }

// In BenchResult, fields a run did not measure (the baseline without
// Baseline, the reference forward for SFT) are left out of the JSON.

// BenchResult is what `align bench train` prints.
type BenchResult struct {
	Model        string  `json:"model"`
	Device       string  `json:"device"`
	Arch         string  `json:"arch"`
	BaseParams   int64   `json:"base_params"`
	Method       string  `json:"method"`
	Seq          int     `json:"seq"`
	Threads      int     `json:"threads"`
	StepMS       float64 `json:"step_ms"`
	TokensPerS   float64 `json:"tokens_per_s"`     // sequence tokens trained per second (2·seq per step)
	FLOPsPerStep float64 `json:"model_flops_step"` // see FLOPs
	GFLOPS       float64 `json:"achieved_gflops"`
	PeakF32      float64 `json:"peak_gflops_f32,omitempty"`  // measured ggml F32 GEMM rate
	PeakQ8       float64 `json:"peak_gflops_q8_0,omitempty"` // measured ggml Q8_0 GEMM rate
	MFU          float64 `json:"mfu,omitempty"`              // achieved / max(peak f32, peak q8_0)
	PeakRSSMB    float64 `json:"peak_rss_mb"`                // process peak before the baseline runs
	RefMS        float64 `json:"reference_ms,omitempty"`     // one forward at adapter scale 0 (DPO; cached in training)
	PPTokensPerS float64 `json:"llama_pp_tokens_per_s,omitempty"`
	TrainOverPP  float64 `json:"train_over_pp,omitempty"`
	BaseBytes    int64   `json:"base_bytes"`
	TransBytes   int64   `json:"transposed_bytes"`
	Seqs         int     `json:"seqs"`          // sequences per step (2 · pairs)
	Scored       int     `json:"scored_tokens"` // scored tokens per step
	BodyMB       float64 `json:"body_compute_mb"`
	HeadMB       float64 `json:"head_compute_mb"`   // the LM head's compute buffer: O(n_vocab · chunk)
	Recompute    bool    `json:"recompute"`         // gradient checkpointing (body: its largest piece)
	CheckpointMB float64 `json:"checkpoint_mb"`     // with Recompute: layer inputs and seams kept between forward and backward
	TrainRSSMB   float64 `json:"train_peak_rss_mb"` // peak RSS after training, before any sampling
	// generation from the live policy (no adapter file): one sequence, then
	// BatchSeqs sequences decoded together (tokens/s over all of them)
	SampleTokensPerS float64 `json:"live_sample_tokens_per_s,omitempty"`
	BatchSeqs        int     `json:"live_batch_seqs,omitempty"`
	BatchTokensPerS  float64 `json:"live_batch_tokens_per_s,omitempty"`
}

// benchBatchSeqs is how many sequences --sample decodes at once (GRPO's G).
const benchBatchSeqs = 8

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

// Validate checks the benchmark's settings; the first bad one is returned
// as a *ConfigError.
func (c *BenchConfig) Validate() error {
	switch {
	case c.Model == "":
		return bad("model", "is required")
	case c.Method != SFT && c.Method != DPO:
		return bad("method", "must be sft or dpo (got %q)", c.Method)
	case c.Seq < 8:
		return bad("seq", "must be at least 8 (got %d)", c.Seq)
	case c.Steps < 1:
		return bad("steps", "must be at least 1 (got %d)", c.Steps)
	case c.Threads < 0 || c.Threads > MaxThreads():
		return bad("threads", "must be in [0, %d], 0 for all cores (got %d)", MaxThreads(), c.Threads)
	case c.Rank < 1:
		return bad("lora-rank", "must be at least 1 (got %d)", c.Rank)
	case c.Pairs < 0 || c.Pairs > 256:
		return bad("pairs", "must be in [1, 256] (got %d)", c.Pairs)
	case c.Sample < 0:
		return bad("sample", "must not be negative (got %d)", c.Sample)
	}
	if _, err := targetBits(c.Targets); err != nil {
		return &ConfigError{Flag: "lora-targets", Msg: err.Error()}
	}
	return CheckBackwardWeights(c.BackwardWeights)
}

// Bench times training steps on two random sequences of Seq tokens, with
// the optimiser step training uses.
func Bench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	return bench(ctx, cfg, openNative)
}

func bench(ctx context.Context, cfg BenchConfig, open opener) (BenchResult, error) {
	res := BenchResult{Model: cfg.Model, Method: cfg.Method, Seq: cfg.Seq, Threads: cfg.Threads, Recompute: cfg.Recompute}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	targets, _ := targetBits(cfg.Targets)
	eng, closeTr, err := open(cfg.Model, bindings.TrainerOptions{Threads: cfg.Threads, Rank: cfg.Rank, Alpha: float32(2 * cfg.Rank), Targets: targets, Seed: 1, Device: cfg.Device, BackwardWeights: cfg.BackwardWeights, Recompute: cfg.Recompute})
	if err != nil {
		return res, err
	}
	defer closeTr()
	tr, info := eng.Policy(), eng.Info()
	res.Arch, res.BaseParams, res.BaseBytes, res.TransBytes = info.Arch, info.NBaseParams, info.BaseBytes, info.TransposedBytes
	res.Device = info.Device
	// 2·Pairs sequences of Seq random tokens, the first of each unscored:
	// for SFT 2·Pairs examples, for DPO Pairs pairs (sharing the first token)
	pairs := max(cfg.Pairs, 1)
	r := rand.New(rand.NewPCG(1, 2))
	toks := make([]int32, 2*pairs*cfg.Seq)
	for i := range toks {
		toks[i] = int32(5 + r.IntN(info.NVocab-5))
	}
	var exs []Example
	var obj method = sftObjective{}
	if cfg.Method == DPO {
		obj = prefObjective{method: DPO}
	}
	for p := 0; p < pairs; p++ {
		a, b := toks[2*p*cfg.Seq:(2*p+1)*cfg.Seq], toks[(2*p+1)*cfg.Seq:(2*p+2)*cfg.Seq]
		if cfg.Method == DPO {
			exs = append(exs, Example{ID: fmt.Sprintf("bench-%d", p), Beta: 0.1, Prompt: a[:1], Chosen: a[1:], Rejected: b[1:]})
		} else {
			exs = append(exs, Example{ID: fmt.Sprintf("bench-%d-a", p), Prompt: a[:1], Chosen: a[1:]},
				Example{ID: fmt.Sprintf("bench-%d-b", p), Prompt: b[:1], Chosen: b[1:]})
		}
	}
	res.Seqs, res.Scored = 2*pairs, 2*pairs*(cfg.Seq-1)
	group := []MicroBatch{{Examples: make([]int, len(exs))}}
	for i := range exs {
		group[0].Examples[i] = i
	}
	if cfg.Method == DPO {
		t0 := time.Now()
		out, err := tr.Forward(BuildBatch(exs, group[0], false), 0)
		if err != nil {
			return res, err
		}
		res.RefMS = float64(time.Since(t0).Microseconds()) / 1000
		for p := range exs {
			exs[p].RefW, exs[p].RefL = out.Sums[2*p], out.Sums[2*p+1]
		}
	}
	opt := optimiser{}
	step := func() error {
		_, err := opt.step(tr, obj, exs, group, 1e-4)
		return err
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
	res.TrainRSSMB = peakRSSMB()
	res.PeakRSSMB = res.TrainRSSMB
	res.StepMS = secs * 1000
	res.TokensPerS = float64(res.Seqs*cfg.Seq) / secs
	res.FLOPsPerStep = FLOPs(info, cfg.Rank, targets, res.Seqs, cfg.Seq)
	res.GFLOPS = res.FLOPsPerStep / secs / 1e9
	if n, ok := eng.(native); ok {
		nt := n.Trainer
		body, head := nt.ComputeBytes()
		res.BodyMB, res.HeadMB = float64(body)/(1<<20), float64(head)/(1<<20)
		res.CheckpointMB = float64(nt.CheckpointBytes()) / (1 << 20)
		if cfg.Sample > 0 {
			if err := benchSample(ctx, nt, cfg, toks[:min(cfg.Seq, 32)], &res); err != nil {
				return res, err
			}
			res.PeakRSSMB = peakRSSMB()
		}
	}
	if !cfg.Baseline || !onCPU(cfg.Device) {
		// the baseline is CPU-only (ggml CPU GEMM peak, CPU prompt processing);
		// GPU MFU against the card's peak: native/gpu (scripts/gpu-check.sh)
		return res, nil
	}
	closeTr()
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
	seq := toks[:cfg.Seq]
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

// benchSample generates cfg.Sample tokens from the live policy of nt (no
// adapter file, the trainer's copy of the base): one sequence through a
// session, then benchBatchSeqs sequences decoded together.
func benchSample(ctx context.Context, nt *bindings.Trainer, cfg BenchConfig, prompt []int32, res *BenchResult) error {
	live, err := nt.Set(0).LiveLoRA()
	if err != nil {
		return err
	}
	defer live.Close()
	ad := []bindings.LoRAScale{{LoRA: live, Scale: 1}}
	s, err := bindings.NewSession(nt.Model(), bindings.SessionOptions{NCtx: len(prompt) + cfg.Sample + 16, Threads: cfg.Threads, Adapters: ad})
	if err != nil {
		return err
	}
	sp := bindings.SamplerParams{Temperature: 0.8, TopP: 0.95, TopK: 40, Seed: 1, MaxTokens: cfg.Sample}
	g, err := s.Generate(ctx, prompt, sp, nil)
	s.Close()
	if err != nil {
		return err
	}
	res.SampleTokensPerS = float64(g.GeneratedTokens) / (g.GenerateMS / 1000)
	prompts := make([][]int32, benchBatchSeqs)
	for i := range prompts {
		prompts[i] = prompt
	}
	br, err := bindings.GenerateBatch(ctx, nt.Model(), ad, prompts, sp, cfg.Threads)
	if err != nil {
		return err
	}
	res.BatchSeqs = benchBatchSeqs
	res.BatchTokensPerS = float64(br.GeneratedTokens) / (br.GenerateMS / 1000)
	return nil
}
