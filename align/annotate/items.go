// Package annotate is align's human labelling: a small web server that hands
// preference items (two responses to one conversation) to named annotators,
// records their choices durably in a labels file, and, from that file,
// agreement statistics (Cohen's κ, Krippendorff's α, the judge's agreement
// with the human majority) and training pairs by majority vote.
//
// The labels file is JSON Lines, append-only: one record per label, and a
// record with choice "undo" that withdraws the same annotator's previous
// label of that item. Every reader (the server on restart, Stats, Export)
// replays the file in order, so what a label file means never depends on
// anything but its lines.
package annotate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/pipeline"
	"github.com/align-dev/align/align/prompt"
)

// Message is one chat turn of an item's conversation (align/prompt's
// conversation type).
type Message = prompt.Message

// Item is one comparison to label: a conversation and two responses.
type Item struct {
	ID string // stable: the candidate id (two responses), CANDID#i-j (more), or the pair id

	// Format is "candidates" (from collect) or "pairs".
	Format       string
	CandidatesID string // candidates: the record's id
	PromptID     string // candidates: the prompt's id
	PairID       string // pairs: the pair's id
	// Indexes are the two responses' indexes in the input record: for a
	// candidate, positions in "responses" (i < j); for a pair, 0 is
	// "chosen" and 1 is "rejected".
	Indexes [2]int

	System    string
	Prompt    string    // set when the input had a plain prompt
	Messages  []Message // set when the input had a conversation
	Responses [2]string // the texts of Indexes[0] and Indexes[1]
	Objective string

	Line int // line in the input file
}

// LoadItems reads items from a collect candidates file or a pairs file
// (JSON Lines, ".zst" read transparently; the form is told per line: a
// record with "responses" is a candidate record, else a pair). A candidate
// record with n > 2 responses gives one item per pair of responses, as rank
// judges them. Errors name the file and line; repeated item ids are an
// error.
func LoadItems(path string) ([]Item, error) {
	rc, err := jsonl.Open(path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	name := path
	if path == "-" {
		name = "stdin"
	}
	return ReadItems(rc, name)
}

// ReadItems is LoadItems over a reader; name prefixes error messages.
func ReadItems(r io.Reader, name string) ([]Item, error) {
	jr := jsonl.NewReader(r, name)
	var items []Item
	seen := map[string]int{}
	for {
		raw, line, err := jr.NextRaw()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		its, err := parseItems(raw)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		for _, it := range its {
			if first, dup := seen[it.ID]; dup {
				return nil, fmt.Errorf("%s:%d: item id %q repeats line %d", name, line, it.ID, first)
			}
			seen[it.ID] = line
			it.Line = line
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: no items (want collect candidates or pairs, one JSON object per line)", name)
	}
	return items, nil
}

func parseItems(raw []byte) ([]Item, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil || probe == nil {
		if err == nil {
			err = errors.New("want a JSON object")
		}
		return nil, err
	}
	if _, ok := probe["responses"]; ok {
		c, err := pipeline.ParseCandidate(raw)
		if err != nil {
			return nil, err
		}
		msgs := slices.Clone(c.Messages)
		var out []Item
		n := len(c.Responses)
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				id := c.ID
				if n > 2 {
					id = c.ID + "#" + strconv.Itoa(i) + "-" + strconv.Itoa(j)
				}
				out = append(out, Item{ID: id, Format: "candidates", CandidatesID: c.ID, PromptID: c.PromptID, Indexes: [2]int{i, j},
					System: c.System, Prompt: c.Prompt, Messages: msgs, Objective: c.Objective,
					Responses: [2]string{c.Responses[i].Text, c.Responses[j].Text}})
			}
		}
		return out, nil
	}
	p, err := pairs.ParseLine(raw)
	if err != nil {
		return nil, err
	}
	it := Item{ID: p.ID, Format: "pairs", PairID: p.ID, Indexes: [2]int{0, 1}, Objective: p.Objective}
	_, ch, rj := p.Text()
	it.Responses = [2]string{ch, rj}
	if p.Conversational() {
		for i, m := range p.PromptMessages {
			if i == 0 && m.Role == "system" {
				it.System = m.Content
				continue
			}
			it.Messages = append(it.Messages, m)
		}
	} else {
		it.Prompt = p.Prompt
	}
	if raw, ok := p.Extra["system"]; ok && it.System == "" {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			it.System = s
		}
	}
	return []Item{it}, nil
}
