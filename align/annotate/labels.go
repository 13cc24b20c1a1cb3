package annotate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/jsonl"
)

// Choices an annotator can make, as the API takes them ("a" and "b" are the
// positions shown) and as the labels file records them.
const (
	ChoiceA    = "a"
	ChoiceB    = "b"
	ChoiceTie  = "tie"
	ChoiceSkip = "skip"
	ChoiceUndo = "undo" // labels file only: withdraws the annotator's previous label of the item
)

// Label is one line of the labels file.
//
// ShownOrder is the input indexes of the responses as shown: ShownOrder[0]
// was on the left as "A", ShownOrder[1] on the right as "B". ChosenIndex is
// the input index of the preferred response (null for tie, skip and undo).
// For candidates the indexes are positions in the record's "responses"; for
// pairs 0 is "chosen" and 1 is "rejected". Scores, when given, are aligned
// with Indexes. The item's text is copied into every label so that stats and
// export need nothing but this file.
type Label struct {
	ItemID      string  `json:"item_id"`
	Annotator   string  `json:"annotator"`
	Choice      string  `json:"choice"`
	ShownOrder  []int   `json:"shown_order,omitempty"`
	ChosenIndex *int    `json:"chosen_index"`
	Time        string  `json:"time"`              // RFC 3339, UTC
	Seconds     float64 `json:"seconds,omitempty"` // from the item being handed out to the label, when known

	Scores []backend.Scores `json:"scores,omitempty"` // 1–5 per criterion (0: not given), for Indexes[0] and Indexes[1]
	Reason string           `json:"reason,omitempty"`

	Format       string    `json:"format,omitempty"` // "candidates" or "pairs"
	CandidatesID string    `json:"candidates_id,omitempty"`
	PromptID     string    `json:"prompt_id,omitempty"`
	PairID       string    `json:"pair_id,omitempty"`
	Indexes      []int     `json:"indexes,omitempty"`
	Objective    string    `json:"objective,omitempty"`
	System       string    `json:"system,omitempty"`
	Prompt       string    `json:"prompt,omitempty"`
	Messages     []Message `json:"messages,omitempty"`
	Responses    []string  `json:"responses,omitempty"`
}

// category is a label's choice in the item's own terms: which of the
// item's two responses (Indexes[0] or Indexes[1]) was preferred.
type category int8

const (
	catNone   category = -1 // skip (or no label)
	catFirst  category = 0  // Indexes[0] preferred
	catSecond category = 1  // Indexes[1] preferred
	catTie    category = 2
)

var catNames = [...]string{"first", "second", "tie"}

func (c category) String() string {
	if c < 0 || int(c) >= len(catNames) {
		return "none"
	}
	return catNames[c]
}

// check validates one record of a labels file on its own.
func (l *Label) check() error {
	if l.ItemID == "" {
		return errors.New(`missing "item_id"`)
	}
	if l.Annotator == "" {
		return errors.New(`missing "annotator"`)
	}
	switch l.Choice {
	case ChoiceUndo, ChoiceSkip:
		return nil
	case ChoiceA, ChoiceB, ChoiceTie:
	default:
		return fmt.Errorf("choice %q is not a, b, tie, skip or undo", l.Choice)
	}
	if len(l.Indexes) != 2 {
		return errors.New(`want "indexes" with two response indexes`)
	}
	if l.Choice != ChoiceTie {
		if l.ChosenIndex == nil || (*l.ChosenIndex != l.Indexes[0] && *l.ChosenIndex != l.Indexes[1]) {
			return fmt.Errorf("choice %q: chosen_index is not one of indexes %v", l.Choice, l.Indexes)
		}
	}
	if l.Choice != ChoiceUndo && len(l.Responses) != 2 {
		return errors.New(`want "responses" with the two texts`)
	}
	return nil
}

// category of a label (skip is catNone).
func (l *Label) category() category {
	switch l.Choice {
	case ChoiceTie:
		return catTie
	case ChoiceA, ChoiceB:
		if *l.ChosenIndex == l.Indexes[0] {
			return catFirst
		}
		return catSecond
	}
	return catNone
}

// Ledger is the effective content of a labels file after replaying undos:
// for every (annotator, item) the label that stands.
type Ledger struct {
	// Labels are the standing labels (skips included) in file order.
	Labels []*Label
	// Undone counts labels withdrawn by an undo.
	Undone int
	// Lines is the number of records read.
	Lines int

	undoneBy map[string]int // annotator -> labels withdrawn

	at    map[string]map[string]int // annotator -> item -> index in labels (standing)
	stack map[string][]int          // annotator -> indexes in labels of standing labels, in order
}

func newLedger() *Ledger {
	return &Ledger{at: map[string]map[string]int{}, stack: map[string][]int{}, undoneBy: map[string]int{}}
}

// add replays one record: a label stands until its annotator's undo of the
// same item; an undo must withdraw that annotator's latest standing label;
// a second standing label of an item by one annotator is an error.
func (g *Ledger) add(l *Label) error {
	if err := l.check(); err != nil {
		return err
	}
	g.Lines++
	m := g.at[l.Annotator]
	if m == nil {
		m = map[string]int{}
		g.at[l.Annotator] = m
	}
	if l.Choice == ChoiceUndo {
		st := g.stack[l.Annotator]
		k, ok := m[l.ItemID]
		if !ok || len(st) == 0 || st[len(st)-1] != k {
			return fmt.Errorf("undo of item %q by %q, which is not that annotator's latest standing label", l.ItemID, l.Annotator)
		}
		g.stack[l.Annotator] = st[:len(st)-1]
		delete(m, l.ItemID)
		g.Labels[k] = nil
		g.Undone++
		g.undoneBy[l.Annotator]++
		return nil
	}
	if _, dup := m[l.ItemID]; dup {
		return fmt.Errorf("second label of item %q by %q without an undo", l.ItemID, l.Annotator)
	}
	m[l.ItemID] = len(g.Labels)
	g.stack[l.Annotator] = append(g.stack[l.Annotator], len(g.Labels))
	g.Labels = append(g.Labels, l)
	return nil
}

// standing returns the standing labels in file order.
func (g *Ledger) standing() []*Label {
	out := make([]*Label, 0, len(g.Labels))
	for _, l := range g.Labels {
		if l != nil {
			out = append(out, l)
		}
	}
	return out
}

// ReadLabels replays a labels file ("-" is standard input; ".zst" is read
// transparently). A torn last line (a crash while writing) is ignored, as
// the server drops it on restart; any other bad line is an error naming the
// file and line.
func ReadLabels(path string) (*Ledger, error) {
	rc, err := jsonl.Open(path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	name := path
	if path == "-" {
		name = "stdin"
	}
	return readLabels(rc, name)
}

func readLabels(r io.Reader, name string) (*Ledger, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// A last line without its newline is a torn write: the server drops it
	// on restart (jsonl.OpenAppend), so it never stood.
	if i := bytes.LastIndexByte(data, '\n'); i+1 < len(data) {
		data = data[:i+1]
	}
	g := newLedger()
	jr := jsonl.NewReader(bytes.NewReader(data), name)
	var pending error // a line that is not JSON is fatal unless it is the last (torn)
	for {
		raw, line, err := jr.NextRaw()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if pending != nil {
			return nil, pending
		}
		if !json.Valid(raw) {
			pending = fmt.Errorf("%s:%d: invalid JSON in a record before the last", name, line)
			continue
		}
		var l Label
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if err := g.add(&l); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
	return g, nil
}
