package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/rl"
)

// runRL is `align train --method ppo|grpo|online-dpo` (or the resume of
// such a run).
func runRL(c *cli.Context, cfg *rl.Config) error {
	env := envOf(c)
	pr := &trainProgress{w: env.Stderr, tty: isTerminal(env.Stderr)}
	if pr.tty {
		pr.width = termWidth(env.Stderr)
	}
	cfg.Progress = pr.event
	res, err := rl.Run(c.Context, *cfg)
	pr.end()
	if cost.IsBudget(err) {
		// --max-usd: the steps before the cap are checkpointed
		return &ExitCodeError{Code: ExitBudget, Err: err}
	}
	if err != nil {
		return runError(err)
	}
	if c.Bool("json") {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	fmt.Fprintf(env.Stderr, "align: %s %s, %d train / %d held-out prompts, %.1fs", strings.ToUpper(res.Method), plural(res.Steps, "step"),
		res.TrainPrompts, res.EvalPrompts, res.ElapsedS)
	if res.Device != "" && !strings.EqualFold(res.Device, "cpu") {
		fmt.Fprintf(env.Stderr, " on %s", res.Device)
	}
	if res.StoppedEarly {
		fmt.Fprint(env.Stderr, ", stopped early (--max-kl)")
	}
	if res.PromptsCut > 0 {
		fmt.Fprintf(env.Stderr, ", --max-length cut %s", plural(res.PromptsCut, "prompt"))
	}
	if res.Method == rl.OnlineDPO {
		fmt.Fprintf(env.Stderr, ", %s trained on, %s skipped (samples the ranking did not separate)", plural(res.Pairs, "pair"), plural(res.Skipped, "prompt"))
		if res.JudgeCalls > 0 {
			fmt.Fprintf(env.Stderr, ", %s", plural(res.JudgeCalls, "judge call"))
		}
	}
	if res.SpentUSD > 0 {
		fmt.Fprintf(env.Stderr, ", $%.4f spent on judges in all", res.SpentUSD)
	}
	fmt.Fprintln(env.Stderr)
	for _, e := range []struct {
		label string
		m     map[string]float64
	}{{"held-out before", res.Before}, {"held-out after ", res.After}} {
		if len(e.m) > 0 {
			fmt.Fprintf(env.Stdout, "%s: %s\n", e.label, rl.EvalLine(e.m))
		}
	}
	fmt.Fprintf(env.Stdout, "adapter: %s\n", res.Adapter)
	if res.PairsFile != "" {
		fmt.Fprintf(env.Stdout, "pairs: %s\n", res.PairsFile)
	}
	return nil
}
