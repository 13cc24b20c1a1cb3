package run

import "github.com/align-dev/align/bindings"

// Files of a reward-model run (--method rm) besides adapter.gguf, and its
// head's name: align/train writes them, align/reward reads them.
const (
	HeadFile   = "head.gguf"
	RewardHead = "reward"
)

// RewardSet is the adapter set of a reward-model run of c: LoRA on c's
// targets and one scalar head, "reward".
func RewardSet(c *Common) bindings.SetOptions {
	targets, _ := TargetBits(c.Targets)
	return bindings.SetOptions{Name: "reward", Rank: c.Rank, Alpha: float32(c.Alpha), Targets: targets, Seed: c.Seed,
		Heads: []bindings.HeadSpec{{Name: RewardHead, Dim: 1}}}
}

// HeadsAtLast turns b into a reward model's batch: no token is scored and
// the heads read each sequence's last token (the response's end-of-turn
// marker).
func HeadsAtLast(b *bindings.Batch) *bindings.Batch {
	clear(b.Scored)
	b.HeadAt = make([]uint8, len(b.Scored))
	for k, n := range b.Lengths {
		b.HeadAt[k*b.NTok+int(n)-1] = 1
	}
	return b
}
