package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/bindings"
)

func init() { register(modelCommand) }

func modelCommand() *cli.Command {
	return &cli.Command{
		Name:  "model",
		Usage: "create and inspect GGUF models",
		Description: `Writes small random-weight models for tests and demos (init), describes
GGUF model files (info) and shows the tokens a model sees (tokenize).

Example:
   align model init --out models/tiny.gguf --seed 1
   align model info --model models/tiny.gguf --json
   align model tokenize --model models/tiny.gguf --in lines.jsonl --json`,
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

With --tokenizer DIR the model gets a real tokenizer instead: a Hugging Face
tokenizer folder (tokenizer.json and tokenizer_config.json) gives its
vocabulary (byte-level BPE as GGUF gpt2 with merges and the pre-tokenizer's
name; SentencePiece-style BPE with byte fallback, as Gemma's, as llama with
scores), BOS, EOS and end-of-turn tokens and its chat template. --shape gives
a published model's widths (llama3-1b, llama3-8b, qwen3-0.6b, gemma3-1b: hidden
size, heads, KV heads, head size, FFN, rope base, tied head as their configs)
and the architecture they need; --layers N keeps only N layers.

Example:
   align model init --out models/tiny-q4_k.gguf --type q4_k --seed 1
   align model init --out models/llama3-1b-2l.gguf --tokenizer tok/llama3_1 --shape llama3-1b --layers 2 --type q4_k
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
					&cli.StringFlag{Name: "tokenizer", Usage: "Hugging Face tokenizer `DIR` (tokenizer.json, tokenizer_config.json) whose vocabulary, special tokens and chat template the model gets", EnvVars: []string{"ALIGN_TOKENIZER"}},
					&cli.StringFlag{Name: "shape", Usage: "a published model's shape: " + strings.Join(engine.ShapeNames(), ", ") + " (sets --arch; replaces --size)", EnvVars: []string{"ALIGN_SHAPE"}},
					&cli.IntFlag{Name: "layers", Usage: "keep only `N` layers of the shape or size", EnvVars: []string{"ALIGN_LAYERS"}},
				},
				Action: func(c *cli.Context) error {
					arch, typ, size := strings.ToLower(c.String("arch")), strings.ToLower(c.String("type")), strings.ToLower(c.String("size"))
					if sh := strings.ToLower(c.String("shape")); sh != "" {
						want, ok := engine.Shapes[sh]
						if !ok {
							return usagef("--shape must be one of %s (got %q)", strings.Join(engine.ShapeNames(), ", "), sh)
						}
						if c.IsSet("size") {
							return usagef("--shape and --size exclude each other")
						}
						if c.IsSet("arch") && arch != want {
							return usagef("--shape %s is a %s model (got --arch %s)", sh, want, arch)
						}
						arch, size = want, sh
					}
					if c.Int("layers") < 0 || c.Int("layers") > 256 {
						return usagef("--layers must be between 1 and 256 (got %d)", c.Int("layers"))
					}
					if arch == "gemma3" && c.IsSet("layers") && c.Int("layers") < 6 {
						// layers 0-4 of each six use the sliding window: fewer
						// than six has no global layer, which llama.cpp's
						// sessions cannot run (an empty KV cache)
						return usagef("--layers must be at least 6 for gemma3 (every sixth layer is the global one; got %d)", c.Int("layers"))
					}
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
					if _, shape := engine.Shapes[size]; !shape {
						switch size {
						case "tiny", "small":
						case "1b", "8b": // benchmark shapes: Llama 3.2 1B and 3.1 8B, untied
							if arch != "llama" && arch != "qwen2" {
								return usagef("--size %s is for --arch llama or qwen2", size)
							}
						default:
							return usagef("--size must be tiny or small (1b and 8b: untied benchmark shapes) (got %q)", size)
						}
					}
					var vocab *engine.Vocabulary
					if dir := c.String("tokenizer"); dir != "" {
						v, err := engine.ReadHFTokenizer(dir)
						if err != nil {
							return err
						}
						vocab = v
					}
					return engine.InitModel(c.String("out"), engine.FixtureParams{
						Arch: arch, Type: typ, Size: size, Seed: c.Uint64("seed"), TiedOutput: c.Bool("tied"), Llama3Rope: c.Bool("llama3-rope"),
						Layers: c.Int("layers"), Vocab: vocab,
					})
				},
			},
			modelTokenizeCommand(),
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

// templateFlags are the chat-template flags of every command that formats
// conversations (sample, model tokenize; train, eval and collect take the
// same).
func templateFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "chat-template", Usage: "render conversations with the Jinja chat template in `FILE` instead of the model's", EnvVars: []string{"ALIGN_CHAT_TEMPLATE"}},
		&cli.StringFlag{Name: "chat-template-kwargs", Usage: "extra template variables: `KEY=VALUE,...` or a JSON object (e.g. enable_thinking=false)", EnvVars: []string{"ALIGN_CHAT_TEMPLATE_KWARGS"}},
	}
}

// templateOptions reads --raw, --chat-template and --chat-template-kwargs.
// A bad kwargs string is a usage error; an unreadable template file an
// error naming it.
func templateOptions(c *cli.Context) (prompt.Options, error) {
	o := prompt.Options{Raw: c.Bool("raw")}
	kw, err := prompt.ParseKwargs(c.String("chat-template-kwargs"))
	if err != nil {
		return o, usagef("--chat-template-kwargs: %v", err)
	}
	o.Kwargs = kw
	if path := c.String("chat-template"); path != "" {
		if o.Raw {
			return o, usagef("--chat-template and --raw exclude each other")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return o, fmt.Errorf("--chat-template: %w", err)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			return o, fmt.Errorf("--chat-template: %s is empty", path)
		}
		o.Template = string(b)
	}
	env := envOf(c)
	o.OnWarning = func(w string) { fmt.Fprintf(env.Stderr, "align: warning: %s\n", w) }
	return o, nil
}

// tokenizeLine is one input line of model tokenize: text, or messages (with
// add_generation_prompt).
type tokenizeLine struct {
	Text                *string          `json:"text"`
	Messages            []prompt.Message `json:"messages"`
	AddGenerationPrompt *bool            `json:"add_generation_prompt"`
}

// tokenizeResult is one output line of model tokenize --json.
type tokenizeResult struct {
	Line          int      `json:"line"`
	Text          string   `json:"text,omitempty"` // the rendered conversation
	Tokens        []int32  `json:"tokens"`
	Pieces        []string `json:"pieces"`
	ResponseStart *int     `json:"response_start,omitempty"` // first trained token of a conversation that ends with the assistant
	Unknown       int      `json:"unknown_chars,omitempty"`
}

func modelTokenizeCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "GGUF model `FILE`", Required: true, EnvVars: []string{"ALIGN_MODEL"}},
		&cli.StringFlag{Name: "in", Usage: "JSON lines `FILE` ('-': standard input)", Value: "-", EnvVars: []string{"ALIGN_IN"}},
		&cli.BoolFlag{Name: "raw", Usage: "the plain format instead of the chat template (as train --raw)", EnvVars: []string{"ALIGN_RAW"}},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON object per line", EnvVars: []string{"ALIGN_JSON"}},
	}
	return &cli.Command{
		Name:      "tokenize",
		Usage:     "show the text and tokens a model sees",
		ArgsUsage: " ",
		Description: `Reads JSON lines. A line with "text" gives its tokens (BOS as the model
adds it; control-token text is not parsed). A line with "messages" (role and
content) gives the conversation as align formats it for the model (its chat
template, as train, sample and eval render it) and its tokens; with
"add_generation_prompt" (default: true unless the last message is the
assistant's) the assistant's header is appended. A conversation that ends
with the assistant's message is split as training splits it: response_start
is the first token the loss trains on, and the response ends with the
template's end-of-turn token. The documented way to see exactly what the
model is trained on.

Example:
   echo '{"text": "Is Berserk finished?"}' | align model tokenize -m models/tiny.gguf
   align model tokenize -m model.gguf --in chats.jsonl --chat-template-kwargs enable_thinking=false --json`,
		Flags:  append(flags, templateFlags()...),
		Action: runModelTokenize,
	}
}

func runModelTokenize(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("model tokenize takes no arguments (got %q); use --in", c.Args().First())
	}
	opts, err := templateOptions(c)
	if err != nil {
		return err
	}
	env := envOf(c)
	in := c.String("in")
	var r *jsonl.Reader
	if in == "-" {
		r = jsonl.NewReader(env.Stdin, "standard input")
	} else {
		f, err := jsonl.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = jsonl.NewReader(f, in)
	}
	m, err := engine.LoadModel(c.String("model"), bindings.ModelOptions{VocabOnly: true})
	if err != nil {
		return err
	}
	defer m.Close()
	f, err := engine.NewFormatter(m, opts)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()
	asJSON := c.Bool("json")
	for {
		var ln tokenizeLine
		line, err := r.Next(&ln)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		res, err := tokenizeOne(f, ln)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", r.Name(), line, err)
		}
		res.Line = line
		res.Pieces = make([]string, len(res.Tokens))
		for i, t := range res.Tokens {
			res.Pieces[i], _ = m.Detokenize([]int32{t}, true)
		}
		if asJSON {
			if err := json.NewEncoder(out).Encode(res); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(out, "line %d: %d tokens", line, len(res.Tokens))
		if res.ResponseStart != nil {
			fmt.Fprintf(out, ", the response from token %d", *res.ResponseStart)
		}
		fmt.Fprintln(out)
		if res.Text != "" {
			fmt.Fprintf(out, "text: %q\n", res.Text)
		}
		for i, t := range res.Tokens {
			mark := ""
			if res.ResponseStart != nil && i >= *res.ResponseStart {
				mark = " *"
			}
			fmt.Fprintf(out, "  %6d %q%s\n", t, res.Pieces[i], mark)
		}
		if res.Unknown > 0 {
			fmt.Fprintf(env.Stderr, "align: warning: %s:%d: %d characters the vocabulary cannot spell became <unk>\n", r.Name(), line, res.Unknown)
		}
	}
}

func tokenizeOne(f *prompt.Formatter, ln tokenizeLine) (tokenizeResult, error) {
	switch {
	case ln.Text != nil && ln.Messages != nil:
		return tokenizeResult{}, errors.New("give text or messages, not both")
	case ln.Text != nil:
		toks, u, err := f.TokenizeText(*ln.Text)
		return tokenizeResult{Tokens: toks, Unknown: u.Count}, err
	case len(ln.Messages) == 0:
		return tokenizeResult{}, errors.New("no text or messages")
	}
	for i, m := range ln.Messages {
		switch m.Role {
		case "system", "user", "assistant", "tool":
		default:
			return tokenizeResult{}, fmt.Errorf("messages[%d]: role %q is not system, user, assistant or tool", i, m.Role)
		}
	}
	last := len(ln.Messages) - 1
	endsWithAssistant := ln.Messages[last].Role == "assistant"
	agp := !endsWithAssistant
	if ln.AddGenerationPrompt != nil {
		agp = *ln.AddGenerationPrompt
	}
	if endsWithAssistant && !agp {
		// split as training does: the trailing assistant turns are the response
		k := last
		for k > 0 && ln.Messages[k-1].Role == "assistant" {
			k--
		}
		if k > 0 {
			text, err := f.Render(ln.Messages, false)
			if err != nil {
				return tokenizeResult{}, err
			}
			p, r, u, err := f.EncodePair(ln.Messages[:k], ln.Messages[k:])
			if err != nil {
				return tokenizeResult{}, err
			}
			start := len(p)
			return tokenizeResult{Text: text, Tokens: append(p, r...), ResponseStart: &start, Unknown: u.Count}, nil
		}
	}
	text, err := f.Render(ln.Messages, agp)
	if err != nil {
		return tokenizeResult{}, err
	}
	toks, u, err := f.Tokenize(text)
	return tokenizeResult{Text: text, Tokens: toks, Unknown: u.Count}, err
}
