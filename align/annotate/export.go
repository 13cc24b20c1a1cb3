package annotate

import (
	"encoding/json"
	"sort"

	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
)

// ExportReport counts what Export did with each labelled item.
type ExportReport struct {
	Items         int `json:"items"`          // items with a standing label (skips included)
	Pairs         int `json:"pairs"`          // written: a majority prefers one response
	Ties          int `json:"ties"`           // dropped: the majority says tie
	Disagreements int `json:"disagreements"`  // dropped: no choice has more than half of the labels
	SkippedOnly   int `json:"skipped_only"`   // dropped: every label is a skip
	TooFewVotes   int `json:"too_few_labels"` // dropped: fewer labels (skips left out) than MinVotes
}

// Export turns the standing labels into preference pairs by majority vote:
// an item becomes a pair when one response has more than half of its labels
// (skips left out); a tie majority, no majority, only skips, or fewer than
// minVotes labels drop the item, counted in the report. Pairs keep the
// input's form (a conversation stays a message list), with source "human",
// id hash("annotate", item id), and the item id, the input indexes
// [chosen, rejected], the vote counts and the annotators as extra fields.
func Export(g *Ledger, minVotes int) ([]pairs.Pair, ExportReport) {
	if minVotes < 1 {
		minVotes = 1
	}
	items, order := collect(g)
	var rep ExportReport
	var out []pairs.Pair
	for _, id := range order {
		v := items[id]
		rep.Items++
		n := v.count[0] + v.count[1] + v.count[2]
		switch m := v.majority(); {
		case n == 0:
			rep.SkippedOnly++
		case n < minVotes:
			rep.TooFewVotes++
		case m == catNone:
			rep.Disagreements++
		case m == catTie:
			rep.Ties++
		default:
			out = append(out, pairOf(v, m))
			rep.Pairs++
		}
	}
	return out, rep
}

func pairOf(v *itemVotes, m category) pairs.Pair {
	l := v.first
	ch, rj := int(m), 1-int(m)
	p := pairs.Pair{ID: jsonl.RecordID("annotate", l.ItemID), Objective: l.Objective, Source: "human"}
	if l.Messages != nil {
		if l.System != "" && l.Format == "pairs" {
			p.PromptMessages = append(p.PromptMessages, pairs.Message{Role: "system", Content: l.System})
		}
		p.PromptMessages = append(p.PromptMessages, l.Messages...)
		p.ChosenMessages = []pairs.Message{{Role: "assistant", Content: l.Responses[ch]}}
		p.RejectedMessages = []pairs.Message{{Role: "assistant", Content: l.Responses[rj]}}
	} else {
		p.Prompt, p.Chosen, p.Rejected = l.Prompt, l.Responses[ch], l.Responses[rj]
	}
	var names []string
	for n := range v.by {
		names = append(names, n)
	}
	sort.Strings(names)
	extra := map[string]any{
		"item_id":    l.ItemID,
		"indexes":    [2]int{l.Indexes[ch], l.Indexes[rj]},
		"votes":      map[string]int{"chosen": v.count[ch], "rejected": v.count[rj], "tie": v.count[catTie]},
		"annotators": names,
	}
	if l.CandidatesID != "" {
		extra["candidates_id"] = l.CandidatesID
	}
	if l.PromptID != "" {
		extra["prompt_id"] = l.PromptID
	}
	if l.PairID != "" {
		extra["pair_id"] = l.PairID
	}
	if l.System != "" && !(l.Messages != nil && l.Format == "pairs") {
		extra["system"] = l.System
	}
	p.Extra = map[string]json.RawMessage{}
	for k, x := range extra {
		b, _ := json.Marshal(x)
		p.Extra[k] = b
	}
	return p
}
