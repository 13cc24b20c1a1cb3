package cli

import (
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/rl"
)

// withOnline adds --method online-dpo to the train flag table: the flags
// it shares with PPO and GRPO (prompts, reward, sampling; --beta,
// --init-adapter and --ref-adapter come from its registry row), its own
// (--judge, --samples, --rounds) and the spending cap of the RL methods'
// paid judges (--max-usd, --prices).
func withOnline(rows []trainFlag) []trainFlag {
	shared := []string{"prompts", "eval-prompts", "reward", "rollout-batch", "max-new-tokens", "temperature", "top-p", "top-k", "min-p",
		"eval-samples"}
	for i := range rows {
		if slices.Contains(shared, rows[i].name()) {
			rows[i].methods = append(slices.Clone(rows[i].methods), rl.OnlineDPO)
		}
	}
	o := rl.Defaults(rl.OnlineDPO)
	online := []string{rl.OnlineDPO}
	paid := []string{rl.PPO, rl.GRPO, rl.OnlineDPO}
	r := func(f func(r *rl.Config) any) func(j *job) any { return func(j *job) any { return f(&j.r) } }
	return append(rows,
		trainFlag{flag: &cli.StringFlag{Name: "judge", Usage: "online-dpo: pairwise judge `SPEC` that ranks the samples, both orders (rules:CATALOG.json, local:FILE.gguf, openai:URL[#model], bedrock:MODEL); or rank them by --reward", Category: catOnline, EnvVars: env("judge")},
			methods: online, field: r(func(r *rl.Config) any { return &r.Judge }), hint: "PPO and GRPO take a scalar --reward"},
		trainFlag{flag: &cli.IntFlag{Name: "samples", Value: o.Samples, Usage: "online-dpo: completions per prompt and step (K); DPO trains on the best against the worst", Category: catOnline, EnvVars: env("samples")},
			methods: online, field: r(func(r *rl.Config) any { return &r.Samples }), hint: "PPO and GRPO take --group"},
		trainFlag{flag: &cli.IntFlag{Name: "rounds", Value: o.Rounds, Usage: "online-dpo: iterative DPO, the run in N rounds of equal steps; the reference moves to the policy at the start of each (1: the initial policy throughout)", Category: catOnline, EnvVars: env("rounds")},
			methods: online, field: r(func(r *rl.Config) any { return &r.Rounds })},
		trainFlag{flag: &cli.Float64Flag{Name: "max-usd", DefaultText: "no limit", Usage: "stop cleanly with a checkpoint (exit 3) before paid judges (openai:, bedrock:) spend more than `USD`, OUT/ledger.jsonl's earlier runs included (0: spend nothing; may change with --resume)", Category: catOnline, EnvVars: env("max-usd")},
			methods: paid, resumable: true, field: r(func(r *rl.Config) any { return &r.MaxUSD }), hint: "no judge is paid"},
		trainFlag{flag: &cli.StringFlag{Name: "prices", Usage: "price table `FILE` (JSON) overriding the built-in prices of paid judges", Category: catOnline, EnvVars: env("prices")},
			methods: paid, path: true, field: r(func(r *rl.Config) any { return &r.Prices }), hint: "no judge is paid"},
	)
}

// catOnline is the help category of online DPO's flags and the spending cap.
const catOnline = "ONLINE DPO, SPENDING (--method online-dpo; --max-usd, --prices also ppo, grpo)"

// onlineRanker checks that online DPO has one way to rank its samples.
func onlineRanker(c *cli.Context) error {
	switch j, r := c.String("judge") != "", c.String("reward") != ""; {
	case !j && !r:
		return usagef("--method online-dpo needs --judge SPEC (a pairwise judge) or --reward SPEC (a scalar reward) to rank its samples")
	case j && r:
		return usagef("--judge and --reward both rank online-dpo's samples: give one")
	}
	return nil
}
