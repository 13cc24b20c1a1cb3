package train

import (
	"strings"
	"testing"
)

// Each method prints its own held-out line (EvalLine): the pairwise methods
// their accuracy and margin, with log-probs except the reward model; SFT its
// loss and log-probs; KTO on unpaired examples its rewards of each kind.
func TestEvalLine(t *testing.T) {
	pair := map[string]float64{"loss": 0.5, "rewards/accuracies": 0.75, "rewards/margins": 0.25, "rewards/chosen": 0.5,
		"rewards/rejected": 0.25, "logps/chosen": -12, "logps/rejected": -14, "kl": 0.1}
	unpaired := map[string]float64{"loss": 0.5, "kl": 0.1, "rewards/chosen": 0.5, "rewards/rejected": -0.25}
	for _, method := range Methods {
		line := EvalLine(method, pair)
		has := func(s string) bool { return strings.Contains(line, s) }
		switch method {
		case SFT:
			if line != "loss 0.5000  logps chosen -12.00" {
				t.Errorf("sft: %q", line)
			}
		case RM:
			if !has("accuracy 0.750  margin +0.2500") || has("logps") {
				t.Errorf("rm: %q (the head's rewards, no log-probs)", line)
			}
		default:
			if !has("accuracy 0.750  margin +0.2500") || !has("logps chosen -12.00 rejected -14.00") {
				t.Errorf("%s: %q", method, line)
			}
		}
	}
	if got, want := EvalLine(KTO, unpaired), "loss 0.5000  kl 0.1000  rewards desirable +0.5000 undesirable -0.2500"; got != want {
		t.Errorf("kto on unpaired examples: %q, want %q", got, want)
	}
	if got := EvalLine("ppo", pair); got != "" {
		t.Errorf("ppo (align/rl's): %q", got)
	}
}
