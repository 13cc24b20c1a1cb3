package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
)

// ImportConfig configures Import.
type ImportConfig struct {
	Feedback     []string // implicit feedback logs (JSONL)
	Labeled      []string // human-labelled pair files (any form pairs.Load reads)
	LabelSource  string   // source tag for labelled pairs without one; default "human"
	OutTrain     string
	OutEval      string
	EvalFraction float64
	Seed         uint64
	MaxPerPrompt int // feedback pairs per prompt at most; default 4
	Stdin        io.Reader
	// Unpaired writes OutTrain and OutEval in TRL's unpaired format (what
	// KTO trains on) instead: every rated response once, label true for a
	// thumbs up, and each labelled pair's chosen (true) and rejected
	// (false). The pairs are still made where a prompt has both kinds and
	// go to OutPairsTrain and OutPairsEval when set. Both splits are by
	// prompt, so a prompt's examples and pairs are on the same side.
	Unpaired                    bool
	OutPairsTrain, OutPairsEval string
}

// ImportReport is what Import did.
type ImportReport struct {
	FeedbackEvents int            `json:"feedback_events"`
	FeedbackPairs  int            `json:"feedback_pairs"`
	LabeledPairs   int            `json:"labeled_pairs"` // kept from the labelled files, repeats within a file excluded
	Duplicates     int            `json:"duplicates"`
	Unpaired       int            `json:"unpaired_prompts"` // prompts with only ups or only downs
	Train          int            `json:"train"`
	Eval           int            `json:"eval"`
	BySource       map[string]int `json:"by_source"`
	// Unpaired: the examples written (desirable + undesirable) and the
	// pairs in the pair files.
	Desirable   int `json:"desirable,omitempty"`
	Undesirable int `json:"undesirable,omitempty"`
	PairsTrain  int `json:"pairs_train,omitempty"`
	PairsEval   int `json:"pairs_eval,omitempty"`
}

// ParseFeedback reads one line of a feedback log: a prompt (as in a
// prompts file), the "response" shown, and the user's thumbs up or down in
// "rating" ("up"/"down", "+1"/"-1", 1/-1, true/false; "thumbs" and
// "feedback" are synonyms). It returns the prompt, the response and whether
// it was liked.
func ParseFeedback(line []byte) (Prompt, string, bool, error) {
	var w struct {
		Response *string         `json:"response"`
		Rating   json.RawMessage `json:"rating"`
		Thumbs   json.RawMessage `json:"thumbs"`
		Feedback json.RawMessage `json:"feedback"`
	}
	if err := json.Unmarshal(line, &w); err != nil {
		return Prompt{}, "", false, err
	}
	p, err := ParsePrompt(line)
	if err != nil {
		return Prompt{}, "", false, err
	}
	if w.Response == nil || strings.TrimSpace(*w.Response) == "" {
		return Prompt{}, "", false, errors.New(`missing "response"`)
	}
	r := w.Rating
	if r == nil {
		r = w.Thumbs
	}
	if r == nil {
		r = w.Feedback
	}
	var up bool
	switch strings.ToLower(strings.Trim(strings.TrimSpace(string(r)), `"`)) {
	case "up", "+1", "1", "true", "thumbs_up", "like", "good":
		up = true
	case "down", "-1", "false", "thumbs_down", "dislike", "bad":
	default:
		return Prompt{}, "", false, fmt.Errorf(`"rating" %s is not up or down`, string(r))
	}
	return p, *w.Response, up, nil
}

// Import builds pairs from feedback logs (for each prompt, liked responses
// are chosen over disliked ones; source "feedback") and human-labelled pair
// files (source "human" unless set), merges them, removes duplicates and
// splits them into train and eval files.
func Import(c ImportConfig) (ImportReport, error) {
	if c.LabelSource == "" {
		c.LabelSource = "human"
	}
	if c.MaxPerPrompt <= 0 {
		c.MaxPerPrompt = 4
	}
	rep := ImportReport{BySource: map[string]int{}}
	type group struct {
		p        Prompt
		up, down []string
	}
	groups := map[string]*group{}
	var order []string
	for _, path := range c.Feedback {
		rc, err := jsonl.Open(path)
		if err != nil {
			return rep, err
		}
		var r io.Reader = rc
		name := path
		if path == "-" && c.Stdin != nil {
			r, name = c.Stdin, "stdin"
		}
		jr := jsonl.NewReader(r, name)
		for {
			raw, line, err := jr.NextRaw()
			if err == io.EOF {
				break
			}
			if err != nil {
				rc.Close()
				return rep, err
			}
			p, resp, up, err := ParseFeedback(raw)
			if err != nil {
				rc.Close()
				return rep, fmt.Errorf("%s:%d: %w", name, line, err)
			}
			rep.FeedbackEvents++
			k := p.Key()
			g := groups[k]
			if g == nil {
				g = &group{p: p}
				groups[k] = g
				order = append(order, k)
			}
			if g.p.Objective == "" {
				g.p.Objective = p.Objective
			}
			if up {
				g.up = appendNew(g.up, resp)
			} else {
				g.down = appendNew(g.down, resp)
			}
		}
		rc.Close()
	}
	var all []pairs.Pair
	for _, k := range order {
		g := groups[k]
		if len(g.up) == 0 || len(g.down) == 0 {
			rep.Unpaired++
			continue
		}
		n := 0
		for i := 0; i < len(g.up)*len(g.down) && n < c.MaxPerPrompt; i++ {
			ch, rj := g.up[i%len(g.up)], g.down[(i/len(g.up))%len(g.down)]
			if ch == rj {
				continue
			}
			p := pairs.Pair{ID: jsonl.RecordID("import", "feedback", k, ch, rj), Objective: g.p.Objective, Source: "feedback", Chosen: ch, Rejected: rj}
			if g.p.Messages != nil {
				p.PromptMessages = slices.Clone(g.p.Messages)
				p.ChosenMessages = []pairs.Message{{Role: "assistant", Content: ch}}
				p.RejectedMessages = []pairs.Message{{Role: "assistant", Content: rj}}
				p.Chosen, p.Rejected = "", ""
			} else {
				p.Prompt = g.p.Prompt
			}
			all = append(all, p)
			n++
		}
	}
	rep.FeedbackPairs = len(all)
	fromFeedback := map[string]bool{}
	for _, p := range all {
		fromFeedback[p.ID] = true
	}
	for _, path := range c.Labeled {
		ps, st, err := pairs.Load(path, pairs.LoadOptions{Dedupe: true})
		if err != nil {
			return rep, err
		}
		rep.Duplicates += st.Duplicates
		for i := range ps {
			if ps[i].Source == "" {
				ps[i].Source = c.LabelSource
			}
		}
		rep.LabeledPairs += len(ps)
		all = append(all, ps...)
	}
	all, rep.Duplicates = pairs.Dedupe(all)
	// Ids must stay unique after merging files.
	seen := map[string]bool{}
	kept := all[:0]
	for _, p := range all {
		if seen[p.ID] {
			rep.Duplicates++
			continue
		}
		seen[p.ID] = true
		kept = append(kept, p)
	}
	all = kept
	sort.SliceStable(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	for _, p := range all {
		rep.BySource[p.Source]++
	}
	if c.Unpaired {
		var us []pairs.Unpaired
		for _, k := range order {
			g := groups[k]
			for _, kind := range []struct {
				rs []string
				up bool
			}{{g.up, true}, {g.down, false}} {
				for _, r := range kind.rs {
					u := pairs.Unpaired{ID: jsonl.RecordID("import", "feedback-unpaired", k, r, fmt.Sprint(kind.up)),
						Objective: g.p.Objective, Source: "feedback", Completion: r, Label: kind.up}
					if g.p.Messages != nil {
						u.PromptMessages = slices.Clone(g.p.Messages)
						u.CompletionMessages, u.Completion = []pairs.Message{{Role: "assistant", Content: r}}, ""
					} else {
						u.Prompt = g.p.Prompt
					}
					us = append(us, u)
				}
			}
		}
		for i := range all {
			if !fromFeedback[all[i].ID] {
				d, u := all[i].Unpaired()
				us = append(us, d, u)
			}
		}
		return importUnpaired(c, rep, us, all)
	}
	train, eval, err := pairs.Split(all, c.EvalFraction, c.Seed)
	if err != nil {
		return rep, err
	}
	rep.Train, rep.Eval = len(train), len(eval)
	if err := pairs.Save(c.OutTrain, train); err != nil {
		return rep, err
	}
	if err := pairs.Save(c.OutEval, eval); err != nil {
		return rep, err
	}
	return rep, nil
}

func appendNew(xs []string, s string) []string {
	for _, x := range xs {
		if x == s {
			return xs
		}
	}
	return append(xs, s)
}

// importUnpaired writes the unpaired examples us (split by prompt) to
// OutTrain and OutEval, and the pairs ps to OutPairsTrain and OutPairsEval
// when they are set, split by prompt the same way.
func importUnpaired(c ImportConfig, rep ImportReport, us []pairs.Unpaired, ps []pairs.Pair) (ImportReport, error) {
	inEval := func(prompt string) bool {
		return pairs.InEval(jsonl.RecordID("import-prompt", prompt), c.EvalFraction, c.Seed)
	}
	seen := map[string]bool{}
	var train, eval []pairs.Unpaired
	for _, u := range us {
		if seen[u.ID] {
			rep.Duplicates++
			continue
		}
		seen[u.ID] = true
		if u.Label {
			rep.Desirable++
		} else {
			rep.Undesirable++
		}
		if pr, _ := u.Text(); inEval(pr) {
			eval = append(eval, u)
		} else {
			train = append(train, u)
		}
	}
	rep.Train, rep.Eval = len(train), len(eval)
	if err := pairs.SaveUnpaired(c.OutTrain, train); err != nil {
		return rep, err
	}
	if err := pairs.SaveUnpaired(c.OutEval, eval); err != nil {
		return rep, err
	}
	var ptrain, peval []pairs.Pair
	for _, p := range ps {
		if pr, _, _ := p.Text(); inEval(pr) {
			peval = append(peval, p)
		} else {
			ptrain = append(ptrain, p)
		}
	}
	rep.PairsTrain, rep.PairsEval = len(ptrain), len(peval)
	for _, f := range []struct {
		path string
		ps   []pairs.Pair
	}{{c.OutPairsTrain, ptrain}, {c.OutPairsEval, peval}} {
		if f.path == "" {
			continue
		}
		if err := pairs.Save(f.path, f.ps); err != nil {
			return rep, err
		}
	}
	return rep, nil
}
