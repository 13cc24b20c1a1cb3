package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/rl"
)

// runRL is `align train --method ppo|grpo` (or the resume of such a run).
func runRL(c *cli.Context, cfg *rl.Config) error {
	env := envOf(c)
	pr := &trainProgress{w: env.Stderr, tty: isTerminal(env.Stderr)}
	if pr.tty {
		pr.width = termWidth(env.Stderr)
	}
	cfg.Progress = pr.event
	res, err := rl.Run(c.Context, *cfg)
	pr.end()
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
	fmt.Fprintln(env.Stderr)
	for _, e := range []struct {
		label string
		m     map[string]float64
	}{{"held-out before", res.Before}, {"held-out after ", res.After}} {
		if len(e.m) > 0 {
			fmt.Fprintf(env.Stdout, "%s: reward %.4f (std %.4f)  kl %.4f  mean length %.1f\n", e.label, e.m["reward"], e.m["reward_std"], e.m["kl"], e.m["completions/mean_length"])
		}
	}
	fmt.Fprintf(env.Stdout, "adapter: %s\n", res.Adapter)
	return nil
}
