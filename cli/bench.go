package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/train"
)

func init() { register(benchCommand) }

func benchCommand() *cli.Command {
	d := train.DefaultBench()
	return &cli.Command{
		Name:  "bench",
		Usage: "measure speed and memory",
		Description: `Benchmarks; each subcommand prints a human summary or, with --json, one
JSON object (fields a run did not measure are left out).

Example:
   align bench train --model models/tiny-q8_0.gguf --method dpo --seq 128 --no-baseline
   align bench train --help`,
		Subcommands: []*cli.Command{{
			Name:      "train",
			Usage:     "time LoRA training steps on two sequences (one pair)",
			ArgsUsage: " ",
			Description: `Times --steps training steps (after a warm-up) on two random sequences of
--seq tokens and prints step time, tokens/s, model FLOPs per step (see
align/train.FLOPs: forward and input-gradient matmuls, LM head, attention,
LoRA), the measured ggml matmul peak of this machine (F32 and Q8_0) and MFU
against the larger, peak RSS, and llama.cpp's prompt-processing speed on
the same model and threads with the ratio. One method per process, so peak
RSS compares between runs. --method sft trains the two sequences as two
examples; dpo, orpo and simpo as one pair with the method's loss and
defaults (DPO's reference forward is timed apart: training computes it once
per pair and caches it; ORPO and SimPO have none). scripts/bench-methods-step.sh
runs each method in its own process on the same sequences and prints step
time and peak RSS as ratios to DPO's. The LoRA, --device and --recompute take train's
values and defaults. With a GPU (--device auto on a CUDA build on a GPU
host, or --device cuda) the whole step runs on the GPU and the CPU baseline
is skipped; the GPU's MFU and memory come from scripts/gpu-check.sh.

--sample N then generates N tokens from the live policy after
--sample-prompt: one sequence as align sample does, then 8 decoded
together as PPO and GRPO roll out, with align sample's sampler. Rates are
generated tokens over the time from the first sampled token to the last;
a generation that ends at end-of-sequence before N tokens is run again
with the next seeds (the seed and token counts are printed). --save-adapter
writes the live adapter, so that llama.cpp can run the same generation
(make bench).

Example:
   align bench train --model models/small-q8_0.gguf --method dpo --seq 256
   align bench train --model models/small-q8_0.gguf --method dpo --seq 256 --recompute on
   align bench train --model models/tiny-q8_0.gguf --method sft --json
   align bench train --model models/small-q8_0.gguf --method orpo --seq 256
   align bench train --model models/small-q8_0.gguf --method sft --seq 64 --steps 1 --sample 128 --save-adapter /tmp/live.gguf
   align bench train --model llama-8b-q4_k.gguf --method dpo --seq 512 --device cuda`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Required: true, Usage: "GGUF model `FILE`", EnvVars: []string{"ALIGN_MODEL"}},
				&cli.StringFlag{Name: "method", Value: d.Method, Usage: strings.Join(train.BenchMethods, ", ") + " (pair methods with train's defaults; kto: the pairs' sequences as unpaired examples, plus its no-gradient pass over mismatched ones)", EnvVars: []string{"ALIGN_METHOD"}},
				&cli.IntFlag{Name: "seq", Value: d.Seq, Usage: "tokens per sequence (at most the model's training context)", EnvVars: []string{"ALIGN_SEQ"}},
				&cli.IntFlag{Name: "pairs", Value: d.Pairs, Usage: "pairs per step (2 sequences each), 1 to 256", EnvVars: []string{"ALIGN_PAIRS"}},
				&cli.IntFlag{Name: "steps", Value: d.Steps, Usage: "timed steps", EnvVars: []string{"ALIGN_STEPS"}},
				&cli.IntFlag{Name: "sample", Usage: "after training, generate `N` tokens from the live policy (one sequence, then 8 at once)", EnvVars: []string{"ALIGN_SAMPLE"}},
				&cli.StringFlag{Name: "sample-prompt", Value: train.BenchSamplePrompt, Usage: "`TEXT` --sample continues (raw, no chat template)", EnvVars: []string{"ALIGN_SAMPLE_PROMPT"}},
				&cli.UintFlag{Name: "sample-seed", Value: uint(d.SampleSeed), Usage: "first seed of --sample (sequence i of the 8: seed + i)", EnvVars: []string{"ALIGN_SAMPLE_SEED"}},
				&cli.StringFlag{Name: "save-adapter", Usage: "with --sample: write the live policy's adapter to `FILE` (llama.cpp LoRA GGUF)", EnvVars: []string{"ALIGN_SAVE_ADAPTER"}},
				&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads (0: all cores)", EnvVars: []string{"ALIGN_THREADS"}},
				&cli.IntFlag{Name: "lora-rank", Value: d.Rank, Usage: "rank r of each LoRA adapter", EnvVars: []string{"ALIGN_LORA_RANK"}},
				&cli.Float64Flag{Name: "lora-alpha", Value: d.Alpha, Usage: "LoRA alpha (scale alpha/r)", EnvVars: []string{"ALIGN_LORA_ALPHA"}},
				&cli.StringFlag{Name: "lora-targets", Value: strings.Join(d.Targets, ","), Usage: "comma-separated: q,k,v,o,gate,up,down", EnvVars: []string{"ALIGN_LORA_TARGETS"}},
				&cli.BoolFlag{Name: "no-baseline", Usage: "skip the llama.cpp and matmul-peak measurements", EnvVars: []string{"ALIGN_NO_BASELINE"}},
				&cli.StringFlag{Name: "recompute", Value: d.Recompute, Usage: train.RecomputeUsage, EnvVars: []string{"ALIGN_RECOMPUTE"}},
				&cli.StringFlag{Name: "device", Value: d.Device, Usage: train.DeviceUsage, EnvVars: []string{"ALIGN_DEVICE"}},
				&cli.StringFlag{Name: "backward-weights", Value: d.BackwardWeights, Usage: train.BackwardWeightsUsage, EnvVars: []string{"ALIGN_BACKWARD_WEIGHTS"}},
				&cli.BoolFlag{Name: "json", Usage: "print JSON", EnvVars: []string{"ALIGN_JSON"}},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return usagef("bench train takes no arguments (got %q)", c.Args().First())
				}
				seed := c.Uint("sample-seed")
				if seed == 0 || seed > 0xFFFFFFFF-64 {
					return usagef("--sample-seed %d: want a value in [1, %d]", seed, 0xFFFFFFFF-64)
				}
				cfg := train.BenchConfig{
					Model: c.String("model"), Method: strings.ToLower(c.String("method")), Seq: c.Int("seq"), Pairs: c.Int("pairs"), Steps: c.Int("steps"), Sample: c.Int("sample"),
					Threads: c.Int("threads"), Rank: c.Int("lora-rank"), Alpha: c.Float64("lora-alpha"), Targets: strings.Split(c.String("lora-targets"), ","),
					Baseline: !c.Bool("no-baseline"), Device: c.String("device"), BackwardWeights: c.String("backward-weights"), Recompute: strings.ToLower(c.String("recompute")),
					SamplePrompt: c.String("sample-prompt"), SampleSeed: uint32(seed), SaveAdapter: c.String("save-adapter"),
				}
				if err := cfg.Validate(); err != nil {
					return &UsageError{Err: err}
				}
				if cfg.SaveAdapter != "" {
					if cfg.Sample == 0 {
						return usagef("--save-adapter needs --sample")
					}
					if err := checkDistinct([]namedPath{{"model", cfg.Model}}, []namedPath{{"save-adapter", cfg.SaveAdapter}}); err != nil {
						return err
					}
				}
				if cfg.Threads == 0 {
					cfg.Threads = numCPU()
				}
				res, err := train.Bench(c.Context, cfg)
				var ce *train.ConfigError
				if errors.As(err, &ce) {
					// a value the model or machine cannot take (--seq past its
					// context, a GPU --device without one): found before any step
					return &UsageError{Err: err}
				}
				if err != nil {
					return err
				}
				env := envOf(c)
				if c.Bool("json") {
					return json.NewEncoder(env.Stdout).Encode(res)
				}
				fmt.Fprintf(env.Stdout, "device %s\n", res.Device)
				fmt.Fprintf(env.Stdout, "model %s (%s, %.1fM base params, %.1f MiB + %.1f MiB transposed copies)\n", res.Model, res.Arch,
					float64(res.BaseParams)/1e6, float64(res.BaseBytes)/(1<<20), float64(res.TransBytes)/(1<<20))
				fmt.Fprintf(env.Stdout, "LoRA rank %d, alpha %g, %s\n", res.Rank, res.Alpha, res.Targets)
				fmt.Fprintf(env.Stdout, "%s, %d x %d tokens (%d scored), %d threads: %.1f ms/step, %.0f tokens/s, %.2f GFLOP/step, %.1f GFLOP/s, peak RSS %.0f MiB\n",
					res.Method, res.Seqs, res.Seq, res.Scored, res.Threads, res.StepMS, res.TokensPerS, res.FLOPsPerStep/1e9, res.GFLOPS, res.TrainRSSMB)
				fmt.Fprintf(env.Stdout, "compute buffers: body %.1f MiB, LM head %.1f MiB\n", res.BodyMB, res.HeadMB)
				if res.Recompute {
					fmt.Fprintf(env.Stdout, "recompute: body buffer is its largest piece (one layer); checkpoints %.1f MiB\n", res.CheckpointMB)
				}
				if res.BatchSeqs > 0 {
					fmt.Fprintf(env.Stdout, "live policy, %d-token prompt: %.0f tokens/s one sequence (%d of %d tokens, seed %d), %.0f tokens/s over %d at once (%d of %d tokens, seeds %d-%d); peak RSS with sampling %.0f MiB (%.2f x training)\n",
						res.SamplePrompt, res.SampleTokensPerS, res.SampleTokens, res.SampleRequested, res.SampleSeed,
						res.BatchTokensPerS, res.BatchSeqs, res.BatchTokens, res.BatchSeqs*res.SampleRequested, res.BatchSeed, res.BatchSeed+uint32(res.BatchSeqs)-1,
						res.PeakRSSMB, res.PeakRSSMB/res.TrainRSSMB)
					if res.SampleTokens < res.SampleRequested || res.BatchTokens < res.BatchSeqs*res.SampleRequested {
						fmt.Fprintf(env.Stderr, "align: note: the policy ended a sequence at end-of-sequence before --sample %d with each of %d seeds; the rates are over the tokens generated\n", res.SampleRequested, train.BenchSampleTries)
					}
					if res.SavedAdapter != "" {
						fmt.Fprintf(env.Stderr, "align: wrote the live adapter to %s\n", res.SavedAdapter)
					}
				}
				if res.PeakF32 > 0 {
					fmt.Fprintf(env.Stdout, "machine peak (ggml GEMM): f32 %.1f GFLOP/s, q8_0 %.1f GFLOP/s; MFU %.1f%%\n", res.PeakF32, res.PeakQ8, 100*res.MFU)
					fmt.Fprintf(env.Stdout, "llama.cpp prompt processing: %.0f tokens/s; training / prompt processing = %.2f\n", res.PPTokensPerS, res.TrainOverPP)
				}
				return nil
			},
		}},
	}
}
