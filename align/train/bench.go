package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// BenchConfig configures a training benchmark. Its defaults (DefaultBench)
// are train's where they share a setting.
type BenchConfig struct {
	Model    string
	Method   string // sft, or a pair method of BenchMethods
	Seq      int    // tokens per sequence; a step trains two sequences per pair
	Pairs    int    // pairs (DPO) or pairs of SFT examples per step
	Steps    int    // timed steps (after one warm-up step)
	Sample   int    // after training, tokens to generate from the live policy (0: none): one sequence, then BatchSeqs at once
	Threads  int
	Rank     int
	Alpha    float64 // LoRA alpha (0: 2·Rank)
	Targets  []string
	Baseline bool   // also measure llama.cpp prompt processing and the machine's matmul peak
	Device   string // as train's --device: auto (or ""), cpu, cuda, or a ggml device name such as CUDA0
	// BackwardWeights: the CPU trainer's transposed weight copies ("" or
	// auto, q8_0, q4_k, tiles; bindings.TrainerOptions)
	BackwardWeights string
	// Recompute is train's --recompute: auto (or ""), on or off (gradient
	// checkpointing: the backward recomputes each layer from its saved input)
	Recompute string
	// SamplePrompt is the text the live policy continues with Sample (raw,
	// with the model's BOS; "": BenchSamplePrompt).
	SamplePrompt string
	// SampleSeed is the first sampling seed (0: 1). A generation that ends
	// before Sample tokens (end of sequence) is tried again with the next
	// seeds, so that the rate is over the tokens asked for.
	SampleSeed uint32
	// SaveAdapter, when set, is where the live policy's adapter is written
	// before sampling (llama.cpp's LoRA GGUF), so that llama.cpp can run the
	// same generation (scripts/bench-sample.sh).
	SaveAdapter string
}

// BenchSamplePrompt is the default text --sample continues.
const BenchSamplePrompt = "Hello! Can you recommend a manga series for my nephew? He is twelve and loves sports and adventure stories."

// BenchSampleTries is how many seeds --sample tries for a generation of the
// full length before it reports a shorter one.
const BenchSampleTries = 8

// DefaultBench is align bench train's configuration before flags: train's
// LoRA (rank 16, alpha 32, all seven targets), device and recompute.
func DefaultBench() BenchConfig {
	d := DefaultConfig()
	return BenchConfig{Method: DPO, Seq: 256, Pairs: 1, Steps: 5, Rank: d.Rank, Alpha: d.Alpha, Targets: d.Targets,
		Baseline: true, Device: "auto", BackwardWeights: "auto", Recompute: "auto", SampleSeed: 1}
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
	Rank         int     `json:"lora_rank"`
	Alpha        float64 `json:"lora_alpha"`
	Targets      string  `json:"lora_targets"`
	Seqs         int     `json:"seqs"`          // sequences per step (2 · pairs)
	Scored       int     `json:"scored_tokens"` // scored tokens per step
	BodyMB       float64 `json:"body_compute_mb"`
	HeadMB       float64 `json:"head_compute_mb"`   // the LM head's compute buffer: O(n_vocab · chunk)
	Recompute    bool    `json:"recompute"`         // gradient checkpointing (body: its largest piece)
	CheckpointMB float64 `json:"checkpoint_mb"`     // with Recompute: layer inputs and seams kept between forward and backward
	TrainRSSMB   float64 `json:"train_peak_rss_mb"` // peak RSS after training, before any sampling
	// generation from the live policy (no adapter file): one sequence, then
	// BatchSeqs sequences decoded together (tokens/s over all of them).
	// Each rate is generated tokens over the time from the first sampled
	// token to the last (the prompt's decode is PromptMS, apart); Tokens
	// says how many were generated (SampleRequested per sequence unless a
	// sequence ended at end-of-sequence with every seed tried) and Seed the
	// seed of sequence 0.
	SampleRequested  int     `json:"live_sample_requested,omitempty"`
	SamplePrompt     int     `json:"live_prompt_tokens,omitempty"`
	SampleSeed       uint32  `json:"live_sample_seed,omitempty"`
	SampleTokens     int     `json:"live_sample_tokens,omitempty"`
	SampleMS         float64 `json:"live_sample_ms,omitempty"`
	SampleTokensPerS float64 `json:"live_sample_tokens_per_s,omitempty"`
	BatchSeqs        int     `json:"live_batch_seqs,omitempty"`
	BatchSeed        uint32  `json:"live_batch_seed,omitempty"`
	BatchTokens      int     `json:"live_batch_tokens,omitempty"`
	BatchMS          float64 `json:"live_batch_ms,omitempty"`
	BatchTokensPerS  float64 `json:"live_batch_tokens_per_s,omitempty"`
	SavedAdapter     string  `json:"live_adapter,omitempty"` // BenchConfig.SaveAdapter
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
	case !slices.Contains(BenchMethods, c.Method):
		return bad("method", "must be one of %s (got %q)", strings.Join(BenchMethods, ", "), c.Method)
	case c.Seq < 8:
		return bad("seq", "must be at least 8 (got %d)", c.Seq)
	case c.Steps < 1:
		return bad("steps", "must be at least 1 (got %d)", c.Steps)
	case c.Threads < 0 || c.Threads > MaxThreads():
		return bad("threads", "must be in [0, %d], 0 for all cores (got %d)", MaxThreads(), c.Threads)
	case c.Rank < 1 || c.Rank > benchMaxRank:
		return bad("lora-rank", "must be in [1, %d] (got %d)", benchMaxRank, c.Rank)
	case c.Alpha < 0 || math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0):
		return bad("lora-alpha", "must be a finite number, 0 (2 x rank) or more (got %g)", c.Alpha)
	case c.Pairs < 1 || c.Pairs > 256:
		return bad("pairs", "must be in [1, 256] (got %d)", c.Pairs)
	case c.Sample < 0:
		return bad("sample", "must not be negative (got %d)", c.Sample)
	}
	if _, err := targetBits(c.Targets); err != nil {
		return &ConfigError{Flag: "lora-targets", Msg: err.Error()}
	}
	if err := CheckRecompute(c.Recompute); err != nil {
		return err
	}
	return CheckBackwardWeights(c.BackwardWeights)
}

// BenchMethods are the methods align bench train times: SFT on single
// sequences, the others on pairs with their objective's loss and the
// method's default settings (DPO's reference forward is timed apart, as
// training computes it once per pair and caches it).
var BenchMethods = []string{SFT, DPO, ORPO, SimPO, KTO}

// benchMaxRank is the native trainer's largest LoRA rank.
const benchMaxRank = 4096

// checkModel checks what depends on the machine and the model before any
// weight is loaded: a GPU for a GPU --device, and the sample's prompt
// (tokenized with the model's tokenizer, which it returns).
func (c *BenchConfig) checkModel() ([]int32, error) {
	if d := ResolveDevice(c.Device); !onCPU(d) && bindings.GPUDevice() == "" {
		return nil, bad("device", "%s: this build or machine has no GPU (a CUDA build is made with make cuda); pass auto or cpu", c.Device)
	}
	if c.Sample == 0 {
		return nil, nil
	}
	m, err := bindings.LoadModel(c.Model, bindings.ModelOptions{VocabOnly: true})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	text := c.SamplePrompt
	if text == "" {
		text = BenchSamplePrompt
	}
	prompt, err := m.Tokenize(text, true, false)
	if err != nil {
		return nil, err
	}
	if len(prompt) == 0 {
		return nil, bad("sample-prompt", "has no tokens")
	}
	return prompt, nil
}

// checkContext checks --seq, and the sample's prompt plus --sample, against
// the model's training context nctx (0: unknown), before any step runs.
func (c *BenchConfig) checkContext(nctx, prompt int) error {
	if nctx <= 0 {
		return nil
	}
	if c.Seq > nctx {
		return bad("seq", "must be at most the model's training context, %d (got %d)", nctx, c.Seq)
	}
	if c.Sample > 0 && prompt+c.Sample > nctx {
		return bad("sample", "plus the %d prompt tokens must be at most the model's training context, %d (got %d)", prompt, nctx, c.Sample)
	}
	return nil
}

// Bench times training steps on two random sequences of Seq tokens, with
// the optimiser step training uses.
func Bench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	return bench(ctx, cfg, openNative)
}

func bench(ctx context.Context, cfg BenchConfig, open opener) (BenchResult, error) {
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(2 * cfg.Rank)
	}
	if cfg.SampleSeed == 0 {
		cfg.SampleSeed = 1
	}
	device := ResolveDevice(cfg.Device)
	recompute := run.ResolveRecompute(cfg.Recompute, device)
	res := BenchResult{Model: cfg.Model, Method: cfg.Method, Seq: cfg.Seq, Threads: cfg.Threads, Recompute: recompute,
		Rank: cfg.Rank, Alpha: cfg.Alpha, Targets: strings.Join(cfg.Targets, ",")}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	samplePrompt, err := cfg.checkModel()
	if err != nil {
		return res, err
	}
	targets, _ := targetBits(cfg.Targets)
	eng, closeTr, err := open(cfg.Model, bindings.TrainerOptions{Threads: cfg.Threads, Rank: cfg.Rank, Alpha: float32(cfg.Alpha), Targets: targets, Seed: 1, Device: device, BackwardWeights: cfg.BackwardWeights, Recompute: recompute})
	if err != nil {
		return res, err
	}
	defer closeTr()
	tr, info := eng.Policy(), eng.Info()
	if err := cfg.checkContext(info.NCtx, len(samplePrompt)); err != nil {
		return res, err
	}
	res.Arch, res.BaseParams, res.BaseBytes, res.TransBytes = info.Arch, info.NBaseParams, info.BaseBytes, info.TransposedBytes
	res.Device = info.Device
	// 2·Pairs sequences of Seq random tokens, the first of each unscored:
	// for SFT 2·Pairs examples, for DPO Pairs pairs (sharing the first token)
	pairs := cfg.Pairs
	r := rand.New(rand.NewPCG(1, 2))
	toks := make([]int32, 2*pairs*cfg.Seq)
	for i := range toks {
		toks[i] = int32(5 + r.IntN(info.NVocab-5))
	}
	var exs []Example
	obj := newObjective(Defaults(cfg.Method))
	for p := 0; p < pairs; p++ {
		a, b := toks[2*p*cfg.Seq:(2*p+1)*cfg.Seq], toks[(2*p+1)*cfg.Seq:(2*p+2)*cfg.Seq]
		if obj.layout() == LayoutPair {
			exs = append(exs, Example{ID: fmt.Sprintf("bench-%d", p), Beta: 0.1, Prompt: a[:1], Chosen: a[1:], Rejected: b[1:]})
		} else {
			// KTO: a desirable and an undesirable example, each the
			// other's mismatched sequence for z0
			exs = append(exs, Example{ID: fmt.Sprintf("bench-%d-a", p), Beta: 0.1, Prompt: a[:1], Chosen: a[1:], KL: b[1:]},
				Example{ID: fmt.Sprintf("bench-%d-b", p), Beta: 0.1, Prompt: b[:1], Chosen: b[1:], Undesirable: true, KL: a[1:]})
		}
	}
	res.Seqs, res.Scored = 2*pairs, 2*pairs*(cfg.Seq-1)
	group := []MicroBatch{{Examples: make([]int, len(exs))}}
	for i := range exs {
		group[0].Examples[i] = i
	}
	if obj.needsReference() && obj.layout() == LayoutPair {
		t0 := time.Now()
		out, err := tr.Forward(BuildBatch(exs, group[0], LayoutPair), 0)
		if err != nil {
			return res, err
		}
		res.RefMS = float64(time.Since(t0).Microseconds()) / 1000
		for p := range exs {
			exs[p].RefW, exs[p].RefL = out.Sums[2*p], out.Sums[2*p+1]
		}
	}
	if cfg.Method == KTO { // the reference of the matched and the mismatched sequences
		t0 := time.Now()
		out, err := tr.Forward(BuildBatch(exs, group[0], LayoutUnpaired), 0)
		if err != nil {
			return res, err
		}
		seqs := make([]run.Seq, len(exs))
		for p := range exs {
			seqs[p] = run.Seq{Prompt: exs[p].Prompt, Response: exs[p].KL}
		}
		kl, err := tr.Forward(run.Layout(seqs, false), 0)
		if err != nil {
			return res, err
		}
		for p := range exs {
			exs[p].RefW, exs[p].RefKL = out.Sums[p], kl.Sums[p]
		}
		res.RefMS = float64(time.Since(t0).Microseconds()) / 1000
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
			if err := benchSample(ctx, nt, cfg, samplePrompt, &res); err != nil {
				return res, err
			}
			res.PeakRSSMB = peakRSSMB()
		}
	}
	if !cfg.Baseline || !onCPU(device) {
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
	// llama.cpp prompt processing of one sequence, same model, threads and
	// weight buffers as the trainer's (Trainable: no AMX on AMX CPUs)
	m, err := bindings.LoadModel(cfg.Model, bindings.ModelOptions{Threads: cfg.Threads, Trainable: true})
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
// adapter file, the trainer's copy of the base) after prompt: one sequence
// through a session (as align sample), then benchBatchSeqs sequences
// decoded together (as PPO and GRPO roll out). The sampler is align
// sample's (temperature 0.8, top-p 0.95, top-k 40, min-p 0.05). A
// generation that ends at end-of-sequence before cfg.Sample tokens would
// time fewer tokens than asked (one token takes no decode at all): it is
// run again with the next seeds, and the longest is kept.
func benchSample(ctx context.Context, nt *bindings.Trainer, cfg BenchConfig, prompt []int32, res *BenchResult) error {
	if cfg.SaveAdapter != "" {
		// the weights sampling uses (sampling does not change them)
		if err := nt.Set(0).Export(cfg.SaveAdapter); err != nil {
			return fmt.Errorf("--save-adapter %s: %w", cfg.SaveAdapter, err)
		}
		res.SavedAdapter = cfg.SaveAdapter
	}
	live, err := nt.Set(0).LiveLoRA()
	if err != nil {
		return err
	}
	defer live.Close()
	ad := []bindings.LoRAScale{{LoRA: live, Scale: 1}}
	res.SampleRequested, res.SamplePrompt = cfg.Sample, len(prompt)
	s, err := bindings.NewSession(nt.Model(), bindings.SessionOptions{NCtx: len(prompt) + cfg.Sample + 16, Threads: cfg.Threads, Adapters: ad})
	if err != nil {
		return err
	}
	defer s.Close()
	sp := bindings.SamplerParams{Temperature: 0.8, TopP: 0.95, TopK: 40, MinP: 0.05, MaxTokens: cfg.Sample}
	for try := uint32(0); try < BenchSampleTries; try++ {
		sp.Seed = cfg.SampleSeed + try
		g, err := s.Generate(ctx, prompt, sp, nil)
		if err != nil {
			return err
		}
		if g.GeneratedTokens > res.SampleTokens {
			res.SampleSeed, res.SampleTokens, res.SampleMS = sp.Seed, g.GeneratedTokens, g.GenerateMS
		}
		if g.GeneratedTokens == cfg.Sample {
			break
		}
	}
	res.SampleTokensPerS = rate(res.SampleTokens, res.SampleMS)
	prompts := make([][]int32, benchBatchSeqs)
	for i := range prompts {
		prompts[i] = prompt
	}
	res.BatchSeqs = benchBatchSeqs
	for try := uint32(0); try < BenchSampleTries; try++ {
		sp.Seed = cfg.SampleSeed + try*benchBatchSeqs // sequence i: seed + i
		br, err := bindings.GenerateBatch(ctx, nt.Model(), ad, prompts, sp, cfg.Threads)
		if err != nil {
			return err
		}
		if br.GeneratedTokens > res.BatchTokens {
			res.BatchSeed, res.BatchTokens, res.BatchMS = sp.Seed, br.GeneratedTokens, br.GenerateMS
		}
		if br.GeneratedTokens == benchBatchSeqs*cfg.Sample {
			break
		}
	}
	res.BatchTokensPerS = rate(res.BatchTokens, res.BatchMS)
	return nil
}

// rate is tokens per second over ms milliseconds (0 when nothing was timed).
func rate(tokens int, ms float64) float64 {
	if tokens == 0 || ms <= 0 {
		return 0
	}
	return float64(tokens) / (ms / 1000)
}
