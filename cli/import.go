package cli

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/pipeline"
)

func init() { register(importCommand) }

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "make pairs from feedback logs and human labels",
		ArgsUsage: " ",
		Description: `Turns implicit feedback (thumbs up or down on responses to the same prompt:
{"prompt" | "messages", "response", "rating": "up" | "down"}) into pairs
(liked over disliked, source "feedback"), reads human-labelled pair files
(source "human" unless set), merges them, removes duplicates and splits them
into train and eval files. --feedback and --labeled take one file each
time they are given, a comma-separated list, or a quoted glob that align
expands (an unquoted glob is split by the shell into several arguments).

--unpaired writes --out-train and --out-eval in TRL's unpaired format
({"prompt" | "messages", "completion", "label": true|false}, what align
train --method kto reads) instead of pairs: every rated response once
(label true for a thumbs up), and each labelled pair as its chosen (true)
and rejected (false) response. Nothing is dropped for lack of a partner.
The pairs are still made where a prompt has both a liked and a disliked
response; --out-pairs-train and --out-pairs-eval write them (e.g. as
held-out pairs for --eval-data, where KTO logs pair accuracy). Both
outputs are split by prompt with the same hash, so a prompt's examples
and its pairs are always on the same side.

Example:
   align import --feedback thumbs.jsonl --labeled reviewed.jsonl --out-train train.jsonl --out-eval eval.jsonl
   align import --feedback 'logs/2024-*.jsonl.zst' --out-train t.jsonl --out-eval e.jsonl --eval-fraction 0.1
   align import --feedback thumbs.jsonl --unpaired --out-train kto.jsonl --out-eval kto-eval.jsonl \
      --out-pairs-eval pairs-eval.jsonl`,
		Flags: append(outFlags(),
			&cli.StringSliceFlag{Name: "feedback", Usage: "feedback log `FILE` (repeatable; a quoted glob is expanded)", EnvVars: []string{"ALIGN_FEEDBACK"}},
			&cli.StringSliceFlag{Name: "labeled", Usage: "human-labelled pairs `FILE` (repeatable; a quoted glob is expanded)", EnvVars: []string{"ALIGN_LABELED"}},
			&cli.StringFlag{Name: "label-source", Value: "human", Usage: "source tag for labelled pairs without one", EnvVars: []string{"ALIGN_LABEL_SOURCE"}},
			&cli.IntFlag{Name: "max-per-prompt", Value: 4, Usage: "feedback pairs per prompt at most", EnvVars: []string{"ALIGN_MAX_PER_PROMPT"}},
			&cli.BoolFlag{Name: "unpaired", Usage: "write TRL's unpaired format (prompt, completion, label) for --method kto: every rated response, none dropped", EnvVars: []string{"ALIGN_UNPAIRED"}},
			&cli.StringFlag{Name: "out-pairs-train", Usage: "with --unpaired: also write the pairs made (train side) to `FILE`", EnvVars: []string{"ALIGN_OUT_PAIRS_TRAIN"}},
			&cli.StringFlag{Name: "out-pairs-eval", Usage: "with --unpaired: also write the pairs made (held-out side) to `FILE`", EnvVars: []string{"ALIGN_OUT_PAIRS_EVAL"}},
			evalFractionFlag(),
			seedFlag(),
		),
		Action: runImport,
	}
}

func runImport(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("import takes no arguments (got %q): quote a glob so that align expands it, e.g. --feedback 'logs/*.jsonl'", c.Args().First())
	}
	feedback, err := expandGlobs("feedback", c.StringSlice("feedback"))
	if err != nil {
		return err
	}
	labeled, err := expandGlobs("labeled", c.StringSlice("labeled"))
	if err != nil {
		return err
	}
	if len(feedback) == 0 && len(labeled) == 0 {
		return usagef("give --feedback or --labeled files")
	}
	if err := checkFraction(c.Float64("eval-fraction")); err != nil {
		return err
	}
	if err := checkIntsAtLeast(c, 1, "max-per-prompt"); err != nil {
		return err
	}
	unpaired := c.Bool("unpaired")
	for _, f := range []string{"out-pairs-train", "out-pairs-eval"} {
		if c.String(f) != "" && !unpaired {
			return usagef("--%s needs --unpaired (without it --out-train and --out-eval are the pairs)", f)
		}
	}
	var inputs []namedPath
	for _, f := range feedback {
		inputs = append(inputs, namedPath{"feedback", f})
	}
	for _, f := range labeled {
		inputs = append(inputs, namedPath{"labeled", f})
	}
	if err := checkOuts(c, inputs...); err != nil {
		return err
	}
	outs := []namedPath{{"out-train", c.String("out-train")}, {"out-eval", c.String("out-eval")}}
	for _, f := range []string{"out-pairs-train", "out-pairs-eval"} {
		if c.String(f) != "" {
			outs = append(outs, namedPath{f, c.String(f)})
		}
	}
	if err := checkDistinct(inputs, outs); err != nil {
		return err
	}
	rep, err := pipeline.Import(pipeline.ImportConfig{
		Feedback: feedback, Labeled: labeled, LabelSource: c.String("label-source"),
		OutTrain: c.String("out-train"), OutEval: c.String("out-eval"), EvalFraction: c.Float64("eval-fraction"),
		Seed: c.Uint64("seed"), MaxPerPrompt: c.Int("max-per-prompt"), Stdin: envOf(c).Stdin,
		Unpaired: unpaired, OutPairsTrain: c.String("out-pairs-train"), OutPairsEval: c.String("out-pairs-eval"),
	})
	if err != nil {
		return err
	}
	if unpaired {
		fmt.Fprintf(envOf(c).Stderr, "import: %s → %s (%d desirable, %d undesirable; %d train, %d eval), %s labelled; %s where a prompt has both (%d train, %d eval); %s dropped\n",
			fmtCount(rep.FeedbackEvents, "feedback event", "feedback events"), fmtCount(rep.Desirable+rep.Undesirable, "unpaired example", "unpaired examples"),
			rep.Desirable, rep.Undesirable, rep.Train, rep.Eval, fmtCount(rep.LabeledPairs, "pair", "pairs"),
			fmtCount(rep.FeedbackPairs, "pair", "pairs"), rep.PairsTrain, rep.PairsEval, fmtCount(rep.Duplicates, "duplicate", "duplicates"))
		return nil
	}
	fmt.Fprintf(envOf(c).Stderr, "import: %s → %s (%s unpaired), %s labelled, %s dropped; %d train, %d eval; by source: %s\n",
		fmtCount(rep.FeedbackEvents, "feedback event", "feedback events"), fmtCount(rep.FeedbackPairs, "pair", "pairs"),
		fmtCount(rep.Unpaired, "prompt", "prompts"), fmtCount(rep.LabeledPairs, "pair", "pairs"),
		fmtCount(rep.Duplicates, "duplicate", "duplicates"), rep.Train, rep.Eval, bySource(rep.BySource))
	return nil
}

// bySource formats counts per source as "feedback 3, human 2", sorted by
// name; "none" when empty.
func bySource(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	parts := make([]string, len(ks))
	for i, k := range ks {
		name := k
		if name == "" {
			name = "(none)"
		}
		parts[i] = fmt.Sprintf("%s %d", name, m[k])
	}
	return strings.Join(parts, ", ")
}

// expandGlobs expands the glob patterns among files (align expands them,
// so a quoted pattern works where the shell would split one flag into
// several arguments). A pattern that matches nothing is an error; a plain
// name is kept as given, so a missing file fails with its own name.
func expandGlobs(flag string, files []string) ([]string, error) {
	var out []string
	for _, f := range files {
		if f == "-" || !strings.ContainsAny(f, "*?[") {
			out = append(out, f)
			continue
		}
		m, err := filepath.Glob(f)
		if err != nil {
			return nil, usagef("--%s %s: %v", flag, f, err)
		}
		if len(m) == 0 {
			return nil, usagef("--%s %s: no file matches", flag, f)
		}
		out = append(out, m...)
	}
	return out, nil
}
