package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/engine"
)

func init() { register(sampleCommand) }

func sampleCommand() *cli.Command {
	return &cli.Command{
		Name:      "sample",
		Usage:     "generate text from a GGUF model, optionally with LoRA adapters",
		ArgsUsage: " ",
		Description: `Generates a response to --prompt (or standard input) and streams it to
standard output. The model's chat template (its Jinja text, rendered as
Hugging Face renders it; --chat-template FILE replaces it and
--chat-template-kwargs sets its variables, e.g. enable_thinking=false) is
applied when it has one; --raw (or a model without one) uses the plain
format training uses with --raw: the system message and the prompt, each
followed by a newline. Generation ends at the model's end-of-turn token
(stop: eog). The
same --seed gives the same output. Characters the model's vocabulary cannot
spell become <unk>, with one warning on standard error.

Example:
   align sample --model models/tiny-q8_0.gguf --prompt "Is Berserk finished?" --seed 1 -n 32
   echo "hi" | align sample -m base.gguf --lora run/adapter.gguf:1.0 --json`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model `FILE`", Required: true, EnvVars: []string{"ALIGN_MODEL"}},
			&cli.StringSliceFlag{Name: "lora", Usage: "LoRA adapter `FILE[:SCALE]` (repeatable)", EnvVars: []string{"ALIGN_LORA"}},
			&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "prompt `TEXT` ('-' or absent: read standard input)", EnvVars: []string{"ALIGN_PROMPT"}},
			&cli.StringFlag{Name: "system", Usage: "system message `TEXT`", EnvVars: []string{"ALIGN_SYSTEM"}},
			&cli.BoolFlag{Name: "raw", Usage: "do not apply the chat template", EnvVars: []string{"ALIGN_RAW"}},
			&cli.IntFlag{Name: "max-tokens", Aliases: []string{"n"}, Value: 128, Usage: "tokens to generate", EnvVars: []string{"ALIGN_MAX_TOKENS"}},
			&cli.Float64Flag{Name: "temperature", Aliases: []string{"temp"}, Value: 0.8, Usage: "sampling temperature (0: greedy)", EnvVars: []string{"ALIGN_TEMPERATURE"}},
			&cli.Float64Flag{Name: "top-p", Value: 0.95, Usage: "nucleus sampling mass (1: off)", EnvVars: []string{"ALIGN_TOP_P"}},
			&cli.IntFlag{Name: "top-k", Value: 40, Usage: "keep the K most likely tokens (0: off)", EnvVars: []string{"ALIGN_TOP_K"}},
			&cli.Float64Flag{Name: "min-p", Value: 0.05, Usage: "drop tokens below this fraction of the top probability (0: off)", EnvVars: []string{"ALIGN_MIN_P"}},
			&cli.Int64Flag{Name: "seed", Value: -1, Usage: "sampling seed (-1: random, printed with --json)", EnvVars: []string{"ALIGN_SEED"}},
			&cli.StringSliceFlag{Name: "stop", Usage: "stop `STRING` (repeatable)", EnvVars: []string{"ALIGN_STOP"}},
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads (0: all cores)", EnvVars: []string{"ALIGN_THREADS"}},
			&cli.IntFlag{Name: "ctx-size", Aliases: []string{"c"}, Usage: "context length (0: prompt + max tokens)", EnvVars: []string{"ALIGN_CTX_SIZE"}},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object (text and speed) instead of streaming", EnvVars: []string{"ALIGN_JSON"}},
		}, templateFlags()...),
		Action: runSample,
	}
}

func runSample(c *cli.Context) error {
	env := envOf(c)
	if c.NArg() > 0 {
		return usagef("sample takes no arguments (got %q); use --prompt", c.Args().First())
	}
	prompt := c.String("prompt")
	if !c.IsSet("prompt") || prompt == "-" {
		if stdinIsTerminal(env.Stdin) {
			fmt.Fprintln(env.Stderr, "align: reading the prompt from standard input (end it with Ctrl-D; or pass --prompt TEXT)")
		}
		b, err := io.ReadAll(env.Stdin)
		if err != nil {
			return fmt.Errorf("reading prompt from standard input: %w", err)
		}
		prompt = string(b)
	}
	if prompt == "" {
		return usagef("empty prompt: pass --prompt TEXT or pipe text to standard input")
	}
	n := c.Int("max-tokens")
	if n <= 0 {
		return usagef("--max-tokens must be positive (got %d)", n)
	}
	if tp := c.Float64("top-p"); tp < 0 || tp > 1 {
		return usagef("--top-p must be in [0, 1] (got %g)", tp)
	}
	if mp := c.Float64("min-p"); mp < 0 || mp > 1 {
		return usagef("--min-p must be in [0, 1] (got %g)", mp)
	}
	seed := c.Int64("seed")
	if seed < -1 || seed > 0xFFFFFFFF {
		return usagef("--seed must be in [0, 4294967295] or -1 (got %d)", seed)
	}
	if seed == -1 {
		seed = int64(rand.Uint32())
	}
	var adapters []engine.Adapter
	for _, spec := range c.StringSlice("lora") {
		a, err := engine.ParseAdapter(spec)
		if err != nil {
			return usagef("--lora %s: %v", spec, err)
		}
		adapters = append(adapters, a)
	}
	topts, err := templateOptions(c)
	if err != nil {
		return err
	}
	asJSON := c.Bool("json")
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()
	req := engine.SampleRequest{
		Model:          c.String("model"),
		Adapters:       adapters,
		Prompt:         prompt,
		System:         c.String("system"),
		Raw:            c.Bool("raw"),
		ChatTemplate:   topts.Template,
		TemplateKwargs: topts.Kwargs,
		Threads:        c.Int("threads"),
		NCtx:           c.Int("ctx-size"),
		OnWarning:      func(w string) { fmt.Fprintf(env.Stderr, "align: warning: %s\n", w) },
		Sampler: engine.Sampler{
			Temperature: float32(c.Float64("temperature")),
			TopP:        float32(c.Float64("top-p")),
			TopK:        c.Int("top-k"),
			MinP:        float32(c.Float64("min-p")),
			Seed:        uint32(seed),
			MaxTokens:   n,
			Stop:        c.StringSlice("stop"),
		},
	}
	endsLine := true // the streamed text so far is empty or ends with a newline
	if !asJSON {
		tty := isTerminal(env.Stdout)
		req.OnText = func(t string) bool {
			if tty {
				t = printable(t)
			}
			if t != "" {
				endsLine = strings.HasSuffix(t, "\n")
			}
			out.WriteString(t)
			out.Flush()
			return true
		}
	}
	res, err := engine.Sample(c.Context, req)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		return enc.Encode(res)
	}
	// end the text's line before the stats line, which a terminal shows
	// right after it
	if !endsLine {
		out.WriteString("\n")
	}
	out.Flush()
	fmt.Fprintf(env.Stderr, "align: %d prompt tokens (%.1f tokens/s), %d generated (%.1f tokens/s), stop: %s, seed %d\n",
		res.PromptTokens, res.PromptTPS, res.GeneratedTokens, res.TPS, res.StopReason, res.Seed)
	return nil
}

// stdinIsTerminal reports whether the prompt would be typed by hand (tests
// replace it).
var stdinIsTerminal = func(r io.Reader) bool { return isTerminal(r) }

// printable makes model output safe for a terminal: invalid UTF-8 becomes
// U+FFFD and control characters other than newline and tab are dropped
// (pipes and --json get the text unchanged).
func printable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
