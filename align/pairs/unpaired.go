package pairs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/align-dev/align/align/jsonl"
)

// Unpaired is one rated response, TRL's unpaired preference format (what
// KTO trains on): a prompt, one completion and whether it is desirable.
//
//	plain:          {"id", "prompt", "completion", "label": true|false, "objective", "source", ...}
//	conversational: prompt (or "messages") and completion are lists of
//	                {"role", "content"} messages
//
// Exactly one form is set, as for Pair; unknown fields are kept in Extra.
type Unpaired struct {
	ID         string
	Prompt     string
	Completion string
	Label      bool // true: desirable (a thumbs up)
	Objective  string
	Source     string

	PromptMessages     []Message
	CompletionMessages []Message

	Extra map[string]json.RawMessage

	hasID bool
}

var knownUnpaired = []string{"id", "prompt", "messages", "completion", "label", "objective", "source"}

// isUnpaired reports whether a record is in the unpaired form: it has a
// "label" or a "completion" field (a pair has neither).
func isUnpaired(raw []byte) bool {
	var probe struct {
		Label      json.RawMessage `json:"label"`
		Completion json.RawMessage `json:"completion"`
	}
	if json.Unmarshal(raw, &probe) != nil {
		return false
	}
	return probe.Label != nil || probe.Completion != nil
}

// Conversational reports whether u is in message-list form.
func (u *Unpaired) Conversational() bool {
	return u.PromptMessages != nil || u.CompletionMessages != nil
}

// Messages returns the prompt and the completion as chat messages (a plain
// example becomes a user turn and an assistant turn).
func (u *Unpaired) Messages() (prompt, completion []Message) {
	if u.Conversational() {
		return u.PromptMessages, u.CompletionMessages
	}
	return []Message{{Role: "user", Content: u.Prompt}}, []Message{{Role: "assistant", Content: u.Completion}}
}

// Text returns the prompt and the completion as plain text (see Pair.Text).
func (u *Unpaired) Text() (prompt, completion string) {
	if !u.Conversational() {
		return u.Prompt, u.Completion
	}
	return flatten(u.PromptMessages), flatten(u.CompletionMessages)
}

// ContentID is the id an example without one gets: a hash of its content
// and label.
func (u *Unpaired) ContentID() string {
	pr, co := u.Text()
	form := "plain"
	if u.Conversational() {
		form = "chat"
	}
	return jsonl.RecordID("unpaired", form, pr, co, fmt.Sprint(u.Label))
}

// UnmarshalJSON reads either form and checks types; Validate checks
// content.
func (u *Unpaired) UnmarshalJSON(b []byte) error {
	if firstByte(b) != '{' {
		return errors.New("want a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*u = Unpaired{}
	for _, f := range []struct {
		k   string
		dst *string
	}{{"id", &u.ID}, {"objective", &u.Objective}, {"source", &u.Source}} {
		if raw, ok := m[f.k]; ok && !isNull(raw) {
			if err := json.Unmarshal(raw, f.dst); err != nil {
				return fmt.Errorf("field %q: want a string", f.k)
			}
		}
	}
	raw, ok := m["label"]
	if !ok || isNull(raw) {
		return errors.New(`missing field "label" (true: desirable, false: undesirable)`)
	}
	if err := json.Unmarshal(raw, &u.Label); err != nil {
		return fmt.Errorf(`field "label": want true or false (got %s)`, bytes.TrimSpace(raw))
	}
	pk := "prompt"
	if _, has := m["prompt"]; !has {
		if _, has := m["messages"]; has {
			pk = "messages"
		}
	} else if _, has := m["messages"]; has {
		return errors.New(`both "prompt" and "messages": give the prompt once`)
	}
	kinds := map[string]byte{}
	for _, k := range []string{pk, "completion"} {
		raw, ok := m[k]
		if !ok || isNull(raw) {
			return fmt.Errorf("missing field %q", k)
		}
		c := firstByte(raw)
		if c != '"' && c != '[' {
			return fmt.Errorf("field %q: want a string or a list of messages", k)
		}
		kinds[k] = c
	}
	if kinds[pk] != kinds["completion"] {
		return errors.New(`field "completion": mixes plain text and message lists`)
	}
	if kinds[pk] == '[' {
		var err error
		if u.PromptMessages, err = parseMessages(m[pk]); err != nil {
			return fmt.Errorf("field %q: %w", pk, err)
		}
		if u.CompletionMessages, err = parseMessages(m["completion"]); err != nil {
			return fmt.Errorf(`field "completion": %w`, err)
		}
	} else {
		if pk == "messages" {
			return errors.New(`field "messages": want a list of messages`)
		}
		json.Unmarshal(m["prompt"], &u.Prompt)
		json.Unmarshal(m["completion"], &u.Completion)
	}
	for k, v := range m {
		if slices.Contains(knownUnpaired, k) {
			continue
		}
		if u.Extra == nil {
			u.Extra = map[string]json.RawMessage{}
		}
		u.Extra[k] = slices.Clone(v)
	}
	return nil
}

// Validate checks that u can be trained on: a non-empty prompt and
// completion, roles a chat template renders, and an allowed objective.
func (u *Unpaired) Validate(objectives []string) error {
	if u.Conversational() {
		for _, f := range []struct {
			k  string
			ms []Message
		}{{"prompt", u.PromptMessages}, {"completion", u.CompletionMessages}} {
			blank := true
			for _, m := range f.ms {
				if strings.TrimSpace(m.Content) != "" {
					blank = false
				}
			}
			if blank {
				return fmt.Errorf("empty %q", f.k)
			}
		}
		if err := checkRoles(u.PromptMessages, u.CompletionMessages, nil); err != nil {
			return errors.New(strings.Replace(err.Error(), `field "chosen"`, `field "completion"`, 1))
		}
	} else {
		if strings.TrimSpace(u.Prompt) == "" {
			return errors.New(`empty "prompt"`)
		}
		if strings.TrimSpace(u.Completion) == "" {
			return errors.New(`empty "completion"`)
		}
	}
	if len(objectives) > 0 && !slices.Contains(objectives, u.Objective) {
		return fmt.Errorf("unknown objective %q (allowed: %s)", u.Objective, strings.Join(objectives, ", "))
	}
	return nil
}

// ParseUnpaired reads one unpaired example from one JSON line and
// validates it (without an objective set); one without an id gets its
// ContentID.
func ParseUnpaired(line []byte) (Unpaired, error) { return parseUnpaired(line, nil) }

// parseUnpaired reads and validates one unpaired record.
func parseUnpaired(line []byte, objectives []string) (Unpaired, error) {
	var u Unpaired
	if err := json.Unmarshal(line, &u); err != nil {
		return Unpaired{}, err
	}
	if err := u.Validate(objectives); err != nil {
		return Unpaired{}, err
	}
	if u.ID == "" {
		u.ID = u.ContentID()
	} else {
		u.hasID = true
	}
	return u, nil
}

// MarshalJSON writes u in its own form: id, prompt, completion, label,
// objective and source, then Extra's fields sorted by name.
func (u Unpaired) MarshalJSON() ([]byte, error) {
	var o object
	field := o.field
	if u.ID != "" {
		field("id", u.ID)
	}
	if u.Conversational() {
		field("prompt", u.PromptMessages)
		field("completion", u.CompletionMessages)
	} else {
		field("prompt", u.Prompt)
		field("completion", u.Completion)
	}
	field("label", u.Label)
	if u.Objective != "" {
		field("objective", u.Objective)
	}
	if u.Source != "" {
		field("source", u.Source)
	}
	o.extra(u.Extra, knownUnpaired)
	return o.bytes()
}

// SaveUnpaired writes examples to path as JSON Lines, atomically.
func SaveUnpaired(path string, us []Unpaired) error {
	return jsonl.WriteFileAtomic(path, func(w io.Writer) error {
		for i := range us {
			if err := jsonl.Encode(w, us[i]); err != nil {
				return fmt.Errorf("example %d (%s): %w", i, us[i].ID, err)
			}
		}
		return nil
	})
}

// Unpaired returns the pair as two unpaired examples: the chosen response
// desirable, the rejected one undesirable (ids "ID#desirable" and
// "ID#undesirable").
func (p *Pair) Unpaired() (desirable, undesirable Unpaired) {
	base := Unpaired{Objective: p.Objective, Source: p.Source, Prompt: p.Prompt, PromptMessages: p.PromptMessages, hasID: true}
	desirable, undesirable = base, base
	desirable.ID, desirable.Label, desirable.Completion, desirable.CompletionMessages = p.ID+"#desirable", true, p.Chosen, p.ChosenMessages
	undesirable.ID, undesirable.Completion, undesirable.CompletionMessages = p.ID+"#undesirable", p.Rejected, p.RejectedMessages
	return desirable, undesirable
}

// SplitUnpaired divides examples into train and eval by InEval of their
// ids, as Split does pairs.
func SplitUnpaired(us []Unpaired, evalFraction float64, seed uint64) (train, eval []Unpaired, err error) {
	if evalFraction < 0 || evalFraction > 1 || evalFraction != evalFraction {
		return nil, nil, fmt.Errorf("eval fraction %g not in [0, 1]", evalFraction)
	}
	for _, u := range us {
		if InEval(u.ID, evalFraction, seed) {
			eval = append(eval, u)
		} else {
			train = append(train, u)
		}
	}
	return train, eval, nil
}
