package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/train"
)

func init() { register(benchCommand) }

func benchCommand() *cli.Command {
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
RSS compares between runs. With --device cuda (a CUDA build, ` + "`make cuda`" + `) the
whole step runs on the GPU and the CPU baseline is skipped; the GPU's MFU and
memory come from scripts/gpu-check.sh.

Example:
   align bench train --model models/small-q8_0.gguf --method dpo --seq 256
   align bench train --model models/small-q8_0.gguf --method dpo --seq 256 --recompute
   align bench train --model models/tiny-q8_0.gguf --method sft --json
   align bench train --model llama-8b-q4_k.gguf --method dpo --seq 512 --device cuda`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Required: true, Usage: "GGUF model `FILE`", EnvVars: []string{"ALIGN_MODEL"}},
				&cli.StringFlag{Name: "method", Value: "dpo", Usage: "sft or dpo", EnvVars: []string{"ALIGN_METHOD"}},
				&cli.IntFlag{Name: "seq", Value: 256, Usage: "tokens per sequence", EnvVars: []string{"ALIGN_SEQ"}},
				&cli.IntFlag{Name: "pairs", Value: 1, Usage: "pairs per step (2 sequences each)", EnvVars: []string{"ALIGN_PAIRS"}},
				&cli.IntFlag{Name: "steps", Value: 5, Usage: "timed steps", EnvVars: []string{"ALIGN_STEPS"}},
				&cli.IntFlag{Name: "sample", Usage: "after training, generate `N` tokens from the live policy (one sequence, then 8 at once)", EnvVars: []string{"ALIGN_SAMPLE"}},
				&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads (0: all cores)", EnvVars: []string{"ALIGN_THREADS"}},
				&cli.IntFlag{Name: "lora-rank", Value: 8, Usage: "rank r of each LoRA adapter", EnvVars: []string{"ALIGN_LORA_RANK"}},
				&cli.StringFlag{Name: "lora-targets", Value: "q,k,v,o", Usage: "comma-separated: q,k,v,o,gate,up,down", EnvVars: []string{"ALIGN_LORA_TARGETS"}},
				&cli.BoolFlag{Name: "no-baseline", Usage: "skip the llama.cpp and matmul-peak measurements", EnvVars: []string{"ALIGN_NO_BASELINE"}},
				&cli.BoolFlag{Name: "recompute", Usage: "gradient checkpointing: recompute each layer in the backward (less activation memory)", EnvVars: []string{"ALIGN_RECOMPUTE"}},
				&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, or cuda (a GPU of a CUDA build: `make cuda`) or a ggml device name", EnvVars: []string{"ALIGN_DEVICE"}},
				&cli.StringFlag{Name: "backward-weights", Value: "auto", Usage: train.BackwardWeightsUsage, EnvVars: []string{"ALIGN_BACKWARD_WEIGHTS"}},
				&cli.BoolFlag{Name: "json", Usage: "print JSON", EnvVars: []string{"ALIGN_JSON"}},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return usagef("bench train takes no arguments (got %q)", c.Args().First())
				}
				cfg := train.BenchConfig{
					Model: c.String("model"), Method: strings.ToLower(c.String("method")), Seq: c.Int("seq"), Pairs: c.Int("pairs"), Steps: c.Int("steps"), Sample: c.Int("sample"),
					Threads: c.Int("threads"), Rank: c.Int("lora-rank"), Targets: strings.Split(c.String("lora-targets"), ","),
					Baseline: !c.Bool("no-baseline"), Device: c.String("device"), BackwardWeights: c.String("backward-weights"), Recompute: c.Bool("recompute"),
				}
				if err := cfg.Validate(); err != nil {
					return &UsageError{Err: err}
				}
				if cfg.Threads == 0 {
					cfg.Threads = numCPU()
				}
				res, err := train.Bench(c.Context, cfg)
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
				fmt.Fprintf(env.Stdout, "%s, %d x %d tokens (%d scored), %d threads: %.1f ms/step, %.0f tokens/s, %.2f GFLOP/step, %.1f GFLOP/s, peak RSS %.0f MiB\n",
					res.Method, res.Seqs, res.Seq, res.Scored, res.Threads, res.StepMS, res.TokensPerS, res.FLOPsPerStep/1e9, res.GFLOPS, res.TrainRSSMB)
				fmt.Fprintf(env.Stdout, "compute buffers: body %.1f MiB, LM head %.1f MiB\n", res.BodyMB, res.HeadMB)
				if res.Recompute {
					fmt.Fprintf(env.Stdout, "recompute: body buffer is its largest piece (one layer); checkpoints %.1f MiB\n", res.CheckpointMB)
				}
				if res.BatchSeqs > 0 {
					fmt.Fprintf(env.Stdout, "live policy: %.0f tokens/s one sequence, %.0f tokens/s over %d at once; peak RSS with sampling %.0f MiB (%.2f x training)\n",
						res.SampleTokensPerS, res.BatchTokensPerS, res.BatchSeqs, res.PeakRSSMB, res.PeakRSSMB/res.TrainRSSMB)
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
