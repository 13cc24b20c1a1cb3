package train

import (
	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// Layout is how an objective lays out a micro-batch's examples as
// sequences of the native batch: align/objective's layouts of the dataset
// methods, with this package's packing rules as methods.
type Layout objective.Layout

const (
	// LayoutPair: sequences 2k and 2k+1 are example k's prompt + chosen and
	// prompt + rejected (the DPO family, the reward model).
	LayoutPair = Layout(objective.LayoutPair)
	// LayoutSingle: sequence k is example k's prompt + chosen (SFT).
	LayoutSingle = Layout(objective.LayoutSingle)
	// LayoutUnpaired: sequence k is example k's prompt + its one labelled
	// completion (Chosen; Undesirable says which kind), KTO.
	LayoutUnpaired = Layout(objective.LayoutUnpaired)
	// objective.LayoutRolloutGroup (a prompt's sampled completions,
	// run.Layout) is the layout of align/rl's rollout objectives; no
	// objective here has it.
)

func (l Layout) String() string { return objective.Layout(l).String() }

// perExample is the number of sequences an example contributes.
func (l Layout) perExample() int {
	if l == LayoutPair {
		return 2
	}
	return 1
}

// responses are the scored responses of ex in this layout, in batch order.
func (l Layout) responses(ex *Example) [][]int32 {
	if l == LayoutPair {
		return [][]int32{ex.Chosen, ex.Rejected}
	}
	return [][]int32{ex.Chosen}
}

// seqLen is the longest sequence ex contributes.
func (l Layout) seqLen(ex *Example) int {
	n := 0
	for _, r := range l.responses(ex) {
		n = max(n, len(r))
	}
	return len(ex.Prompt) + n
}

// Pack groups examples in order into micro-batches whose padded size
// (sequences × longest sequence) stays within tokenBudget; each holds at
// least one example. (The native head is chunked: no cap on scored tokens.)
func Pack(exs []Example, order []int, tokenBudget int, l Layout) []MicroBatch {
	return pack(exs, order, tokenBudget, l.perExample(), l.seqLen)
}

func pack(exs []Example, order []int, tokenBudget, perEx int, seqLen func(*Example) int) []MicroBatch {
	var out []MicroBatch
	var cur MicroBatch
	longest := 0
	for _, i := range order {
		l := seqLen(&exs[i])
		nl := max(longest, l)
		if len(cur.Examples) > 0 && (len(cur.Examples)+1)*perEx*nl > tokenBudget {
			out = append(out, cur)
			cur = MicroBatch{}
			nl = l
		}
		cur.Examples = append(cur.Examples, i)
		longest = nl
	}
	if len(cur.Examples) > 0 {
		out = append(out, cur)
	}
	return out
}

// BuildBatch lays out a micro-batch for the native trainer in layout l;
// response tokens are scored.
func BuildBatch(exs []Example, mb MicroBatch, l Layout) *bindings.Batch {
	var seqs []run.Seq
	for _, i := range mb.Examples {
		ex := &exs[i]
		for _, r := range l.responses(ex) {
			seqs = append(seqs, run.Seq{Prompt: ex.Prompt, Response: r})
		}
	}
	return run.Layout(seqs, false)
}
