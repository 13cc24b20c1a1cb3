package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/engine"
)

func init() { register(modelCommand) }

func modelCommand() *cli.Command {
	return &cli.Command{
		Name:  "model",
		Usage: "create and inspect GGUF models",
		Description: `Writes small random-weight models for tests and demos (init) and describes
GGUF model files (info).

Example:
   align model init --out models/tiny.gguf --seed 1
   align model info --model models/tiny.gguf --json`,
		Subcommands: []*cli.Command{
			{
				Name:  "init",
				Usage: "write a small random-weight model for tests and demos",
				Description: `Writes a Llama-family GGUF model with seeded random weights, a small
SentencePiece vocabulary and a ChatML template. The same flags give the same
file, byte for byte. Sizes: tiny (~2.8M parameters, 256-wide, 2 layers) and
small (~100M parameters, 768-wide, 12 layers). Architectures: llama, qwen2
(Q/K/V bias), qwen3 (per-head Q/K RMSNorm, heads of 128) and gemma3 (scaled
embeddings, pre- and post-norms, GeGLU, tied head, sliding-window layers:
tiny has 6 layers, 5 with a window of 16 tokens, and Gemma's turn template).

Example:
   align model init --out models/tiny-q4_k.gguf --type q4_k --seed 1
   align model init --out models/small-q8_0.gguf --size small --arch qwen2
   align model init --out models/tiny-gemma3.gguf --arch gemma3 --type q8_0`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output `FILE`", Required: true, EnvVars: []string{"ALIGN_OUT"}},
					&cli.StringFlag{Name: "arch", Value: "llama", Usage: "architecture: llama, qwen2 (Q/K/V bias), qwen3 (Q/K norms) or gemma3 (sliding window, GeGLU, tied head)", EnvVars: []string{"ALIGN_ARCH"}},
					&cli.StringFlag{Name: "type", Value: "q8_0", Usage: "weight type: f32, f16, q8_0, q4_0, q4_k", EnvVars: []string{"ALIGN_TYPE"}},
					&cli.StringFlag{Name: "size", Value: "tiny", Usage: "size preset: tiny or small", EnvVars: []string{"ALIGN_SIZE"}},
					&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "weight seed", EnvVars: []string{"ALIGN_SEED"}},
					&cli.BoolFlag{Name: "tied", Usage: "tie the output head to the token embedding", EnvVars: []string{"ALIGN_TIED"}},
					&cli.BoolFlag{Name: "llama3-rope", Usage: "write Llama 3.1 rope frequency factors (llama only)", EnvVars: []string{"ALIGN_LLAMA3_ROPE"}},
				},
				Action: func(c *cli.Context) error {
					arch, typ, size := strings.ToLower(c.String("arch")), strings.ToLower(c.String("type")), strings.ToLower(c.String("size"))
					switch arch {
					case "llama", "qwen2", "qwen3", "gemma3":
					default:
						return usagef("--arch must be llama, qwen2, qwen3 or gemma3 (got %q)", arch)
					}
					if c.Bool("llama3-rope") && arch != "llama" {
						return usagef("--llama3-rope applies to --arch llama only")
					}
					switch typ {
					case "f32", "f16", "q8_0", "q4_0", "q4_k":
					default:
						return usagef("--type must be f32, f16, q8_0, q4_0 or q4_k (got %q)", typ)
					}
					switch size {
					case "tiny", "small":
					default:
						return usagef("--size must be tiny or small (got %q)", size)
					}
					return engine.InitModel(c.String("out"), engine.FixtureParams{
						Arch: arch, Type: typ, Size: size, Seed: c.Uint64("seed"), TiedOutput: c.Bool("tied"), Llama3Rope: c.Bool("llama3-rope"),
					})
				},
			},
			{
				Name:      "info",
				Usage:     "describe a GGUF model",
				ArgsUsage: " ",
				Description: `Example:
   align model info --model models/tiny-q8_0.gguf`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model `FILE`", Required: true, EnvVars: []string{"ALIGN_MODEL"}},
					&cli.BoolFlag{Name: "json", Usage: "print JSON", EnvVars: []string{"ALIGN_JSON"}},
				},
				Action: func(c *cli.Context) error {
					info, err := engine.DescribeModel(c.String("model"))
					if err != nil {
						return err
					}
					env := envOf(c)
					if c.Bool("json") {
						return json.NewEncoder(env.Stdout).Encode(info)
					}
					fmt.Fprintf(env.Stdout, "%s\narch %s, %d layers, width %d, vocab %d, context %d, %d parameters, %.1f MiB, chat template: %v\n",
						info.Desc, info.Arch, info.NLayer, info.NEmbd, info.NVocab, info.NCtxTrain, info.NParams,
						float64(info.SizeBytes)/(1<<20), info.HasChatTemplate)
					return nil
				},
			},
		},
	}
}
