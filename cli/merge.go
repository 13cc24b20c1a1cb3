package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/mergefile"
	"github.com/align-dev/align/align/train"
)

func init() { register(mergeCommand) }

func mergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "fold LoRA adapters into a GGUF base model",
		ArgsUsage: " ",
		Description: `Writes a model llama.cpp loads without adapters: every adapted weight
becomes W + Σ SCALE · alpha / r · B·A (llama.cpp's scaling of --lora), the
sum taken in F32 and quantized back with ggml's quantizers to the base
tensor's type, or to --type for every weight matrix (rows a K-quant block
does not divide fall back to a near type: q4_k → q5_0, q5_k → q5_1,
q6_k → q8_0, others → q8_0 or f16). Metadata is copied (general.file_type
follows --type) and tensors nothing changes are copied byte for byte. The
base is streamed a bounded chunk of rows at a time, so a large model never
needs twice its size in memory. The file is written atomically; an existing
--out is replaced only with --force.

A merged quantized model differs from base + adapter by about one
quantization of the model to that type (the adapter's update is quantized
with the weight; at run time llama.cpp adds it in F32).

Example:
   align merge --model models/tiny-q8_0.gguf --lora runs/dpo/adapter.gguf --out models/tiny-dpo.gguf
   align merge -m base-f16.gguf --lora sft.gguf:1 --lora style.gguf:0.5 --out merged-q4_k.gguf --type q4_k`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "base GGUF model `FILE`", Required: true, EnvVars: []string{"ALIGN_MODEL"}},
			&cli.StringSliceFlag{Name: "lora", Usage: "LoRA adapter `FILE[:SCALE]` to fold in (repeatable; scale 1 by default)", Required: true, EnvVars: []string{"ALIGN_LORA"}},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "merged model `FILE`", Required: true, EnvVars: []string{"ALIGN_OUT"}},
			&cli.StringFlag{Name: "type", Usage: "type of the weight matrices: f32, f16, bf16, q8_0, q5_0, q5_1, q4_0, q4_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs (default: the base's)", EnvVars: []string{"ALIGN_TYPE"}},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing --out", EnvVars: []string{"ALIGN_FORCE"}},
			&cli.BoolFlag{Name: "json", Usage: "print what was written as JSON on stdout", EnvVars: []string{"ALIGN_JSON"}},
		},
		Action: runMerge,
	}
}

func runMerge(c *cli.Context) error {
	env := envOf(c)
	if c.NArg() > 0 {
		return usagef("merge takes no arguments (got %q)", c.Args().First())
	}
	var adapters []train.MergeAdapter
	for _, spec := range c.StringSlice("lora") {
		a, err := engine.ParseAdapter(spec)
		if err != nil {
			return usagef("--lora %s: %v", spec, err)
		}
		adapters = append(adapters, train.MergeAdapter{Path: a.Path, Scale: a.Scale})
	}
	model, out := c.String("model"), c.String("out")
	inputs := []namedPath{{"model", model}}
	for _, a := range adapters {
		inputs = append(inputs, namedPath{"lora", a.Path})
	}
	if err := checkDistinct(inputs, []namedPath{{"out", out}}); err != nil {
		return err
	}
	typ := strings.ToLower(c.String("type"))
	if typ != "" && !mergefile.ValidType(typ) {
		return usagef("--type %s: want one of %s", c.String("type"), strings.Join(mergefile.Types, ", "))
	}
	if err := checkNewFile("out", out, c.Bool("force")); err != nil {
		return err
	}
	// what a merge killed before it could clean up left next to --out
	removed, err := mergefile.RemoveStaleTemps(out)
	for _, p := range removed {
		fmt.Fprintf(env.Stderr, "align: removed %s, left by a merge that was killed\n", p)
	}
	if err != nil {
		return err
	}
	res, err := train.Merge(c.Context, model, adapters, out, train.MergeOptions{Type: typ, Force: c.Bool("force")})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(env.Stdout).Encode(map[string]any{"out": out, "tensors": res.Tensors, "merged": res.Merged,
			"converted": res.Converted, "fallback": res.Fallback, "copied": res.Copied, "bytes": res.Bytes})
	}
	fmt.Fprintf(env.Stderr, "align: %s: %d tensors, %d with adapters folded in, %d converted", out, res.Tensors, res.Merged, res.Converted)
	if res.Fallback > 0 {
		fmt.Fprintf(env.Stderr, " (%d to a near type: rows the --type block does not divide)", res.Fallback)
	}
	fmt.Fprintf(env.Stderr, ", %d copied, %.1f MiB\n", res.Copied, float64(res.Bytes)/(1<<20))
	return nil
}
