// Package pairs defines align's preference pair records and reads them.
//
// A pair is one JSON object per line in one of two forms:
//
//	plain:          {"id", "prompt", "chosen", "rejected", "objective", "source", ...}
//	conversational: TRL's form, where prompt, chosen and rejected are lists of
//	                {"role", "content"} messages; chosen and rejected hold the
//	                response turns (usually one assistant message).
//
// TRL's implicit-prompt form (chosen and rejected are whole conversations
// and there is no prompt) is accepted too: the longest common leading run
// of messages becomes the prompt.
//
// Fields that align does not know (scores, reasoning, metadata from other
// tools) are kept in Pair.Extra and written back unchanged, so a pair
// survives a read-write round trip through any stage.
package pairs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/prompt"
)

// Message is one chat turn (align/prompt's conversation type).
type Message = prompt.Message

// Pair is one preference pair. Exactly one form is set: the plain strings
// (Prompt, Chosen, Rejected) or the message lists (PromptMessages,
// ChosenMessages, RejectedMessages); Conversational says which.
type Pair struct {
	ID        string
	Prompt    string
	Chosen    string
	Rejected  string
	Objective string // e.g. tone, accuracy, escalation, safety; selects β in weighted DPO
	Source    string // where the pair came from: synthetic, rank, import, human, ...

	PromptMessages   []Message
	ChosenMessages   []Message
	RejectedMessages []Message

	// Extra holds the fields this package does not know, verbatim.
	Extra map[string]json.RawMessage

	has uint8 // which of prompt, chosen, rejected and id the JSON had (bits 0-3)
}

const (
	hasPrompt uint8 = 1 << iota
	hasChosen
	hasRejected
	hasID // the line had an id (else it is the ContentID)
)

// Conversational reports whether the pair is in message-list form.
func (p *Pair) Conversational() bool {
	return p.PromptMessages != nil || p.ChosenMessages != nil || p.RejectedMessages != nil
}

// Messages returns the pair as chat messages in both forms: a plain pair
// becomes a user turn and one assistant turn per response. The trainer
// applies the model's chat template to these.
func (p *Pair) Messages() (prompt, chosen, rejected []Message) {
	if p.Conversational() {
		return p.PromptMessages, p.ChosenMessages, p.RejectedMessages
	}
	return []Message{{Role: "user", Content: p.Prompt}},
		[]Message{{Role: "assistant", Content: p.Chosen}},
		[]Message{{Role: "assistant", Content: p.Rejected}}
}

// Text returns prompt, chosen and rejected as plain text: the strings of a
// plain pair, or the message contents of a conversational one joined by
// newlines (with "role: " prefixes when there is more than one message).
// Rule-based judges and deduplication read this form.
func (p *Pair) Text() (prompt, chosen, rejected string) {
	if !p.Conversational() {
		return p.Prompt, p.Chosen, p.Rejected
	}
	return flatten(p.PromptMessages), flatten(p.ChosenMessages), flatten(p.RejectedMessages)
}

func flatten(ms []Message) string {
	if len(ms) == 1 {
		return ms[0].Content
	}
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(m.Role)
		b.WriteString(": ")
		b.WriteString(m.Content)
	}
	return b.String()
}

// ContentID is the id a pair without one gets: a hash of its content.
func (p *Pair) ContentID() string {
	pr, ch, rj := p.Text()
	form := "plain"
	if p.Conversational() {
		form = "chat"
	}
	return jsonl.RecordID("pair", form, pr, ch, rj)
}

var known = []string{"id", "prompt", "chosen", "rejected", "objective", "source"}

// UnmarshalJSON reads either form. It checks types only; Validate checks
// content.
func (p *Pair) UnmarshalJSON(b []byte) error {
	if firstByte(b) != '{' {
		return errors.New("want a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*p = Pair{}
	str := func(k string, dst *string) error {
		raw, ok := m[k]
		if !ok || isNull(raw) {
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("field %q: want a string", k)
		}
		return nil
	}
	for _, f := range []struct {
		k   string
		dst *string
	}{{"id", &p.ID}, {"objective", &p.Objective}, {"source", &p.Source}} {
		if err := str(f.k, f.dst); err != nil {
			return err
		}
	}
	// prompt, chosen, rejected: all strings or all message lists.
	kinds := map[string]byte{}
	for _, k := range []string{"prompt", "chosen", "rejected"} {
		raw, ok := m[k]
		if !ok || isNull(raw) {
			continue
		}
		c := firstByte(raw)
		if c != '"' && c != '[' {
			return fmt.Errorf("field %q: want a string or a list of messages", k)
		}
		kinds[k] = c
		p.has |= map[string]uint8{"prompt": hasPrompt, "chosen": hasChosen, "rejected": hasRejected}[k]
	}
	var form byte
	for _, k := range []string{"prompt", "chosen", "rejected"} {
		if c, ok := kinds[k]; ok {
			if form != 0 && c != form {
				return fmt.Errorf("field %q: mixes plain text and message lists", k)
			}
			form = c
		}
	}
	if form == '[' {
		for _, f := range []struct {
			k   string
			dst *[]Message
		}{{"prompt", &p.PromptMessages}, {"chosen", &p.ChosenMessages}, {"rejected", &p.RejectedMessages}} {
			raw, ok := m[f.k]
			if !ok || isNull(raw) {
				continue
			}
			ms, err := parseMessages(raw)
			if err != nil {
				return fmt.Errorf("field %q: %w", f.k, err)
			}
			*f.dst = ms
		}
		if _, ok := kinds["prompt"]; !ok {
			p.splitImplicitPrompt()
		}
	} else {
		for _, f := range []struct {
			k   string
			dst *string
		}{{"prompt", &p.Prompt}, {"chosen", &p.Chosen}, {"rejected", &p.Rejected}} {
			if err := str(f.k, f.dst); err != nil {
				return err
			}
		}
		p.fromHH()
	}
	for k, v := range m {
		if slices.Contains(known, k) {
			continue
		}
		if p.Extra == nil {
			p.Extra = map[string]json.RawMessage{}
		}
		p.Extra[k] = slices.Clone(v)
	}
	return nil
}

// splitImplicitPrompt moves the common leading messages of chosen and
// rejected into the prompt (TRL's implicit-prompt form).
func (p *Pair) splitImplicitPrompt() {
	c, r := p.ChosenMessages, p.RejectedMessages
	n := 0
	for n < len(c)-1 && n < len(r)-1 && c[n] == r[n] {
		n++
	}
	if n == 0 {
		return
	}
	p.PromptMessages = slices.Clone(c[:n])
	p.ChosenMessages = c[n:]
	p.RejectedMessages = r[n:]
}

func parseMessages(raw json.RawMessage) ([]Message, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errors.New("want a list of messages")
	}
	ms := make([]Message, 0, len(items))
	for i, it := range items {
		var f map[string]json.RawMessage
		if err := json.Unmarshal(it, &f); err != nil || f == nil {
			return nil, fmt.Errorf("message %d: want an object with \"role\" and \"content\"", i)
		}
		var m Message
		for _, k := range []string{"role", "content"} {
			raw, ok := f[k]
			if !ok {
				return nil, fmt.Errorf("message %d: missing %q", i, k)
			}
			dst := &m.Role
			if k == "content" {
				dst = &m.Content
			}
			if err := json.Unmarshal(raw, dst); err != nil || isNull(raw) {
				return nil, fmt.Errorf("message %d: %q: want a string", i, k)
			}
		}
		if m.Role == "" {
			return nil, fmt.Errorf("message %d: empty role", i)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func firstByte(raw json.RawMessage) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// MarshalJSON writes the pair in its own form, known fields first in a fixed
// order, then Extra's fields sorted by name. Empty known fields other than
// prompt, chosen and rejected are left out.
func (p Pair) MarshalJSON() ([]byte, error) {
	var o object
	field := o.field
	if p.ID != "" {
		field("id", p.ID)
	}
	if p.Conversational() {
		for _, f := range []struct {
			k  string
			ms []Message
		}{{"prompt", p.PromptMessages}, {"chosen", p.ChosenMessages}, {"rejected", p.RejectedMessages}} {
			if f.ms == nil {
				f.ms = []Message{}
			}
			field(f.k, f.ms)
		}
	} else {
		field("prompt", p.Prompt)
		field("chosen", p.Chosen)
		field("rejected", p.Rejected)
	}
	if p.Objective != "" {
		field("objective", p.Objective)
	}
	if p.Source != "" {
		field("source", p.Source)
	}
	o.extra(p.Extra, known)
	return o.bytes()
}

// Validate checks that the pair can be trained on: prompt, chosen and
// rejected present and non-empty, chosen different from rejected, and, when
// objectives is not empty, an objective from that set.
func (p *Pair) Validate(objectives []string) error {
	if p.Conversational() {
		for _, f := range []struct {
			k  string
			ms []Message
		}{{"prompt", p.PromptMessages}, {"chosen", p.ChosenMessages}, {"rejected", p.RejectedMessages}} {
			if f.ms == nil {
				return fmt.Errorf("missing field %q", f.k)
			}
			if len(f.ms) == 0 {
				return fmt.Errorf("empty %q", f.k)
			}
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
		if err := checkRoles(p.PromptMessages, p.ChosenMessages, p.RejectedMessages); err != nil {
			return err
		}
		if slices.Equal(p.ChosenMessages, p.RejectedMessages) {
			return errors.New("\"chosen\" and \"rejected\" are identical")
		}
	} else {
		for _, f := range []struct {
			k, v string
			bit  uint8
		}{{"prompt", p.Prompt, hasPrompt}, {"chosen", p.Chosen, hasChosen}, {"rejected", p.Rejected, hasRejected}} {
			if strings.TrimSpace(f.v) != "" {
				continue
			}
			if p.has&f.bit == 0 && f.v == "" {
				return fmt.Errorf("missing field %q", f.k)
			}
			return fmt.Errorf("empty %q", f.k)
		}
		if p.Chosen == p.Rejected {
			return errors.New("\"chosen\" and \"rejected\" are identical")
		}
	}
	if len(objectives) > 0 {
		if p.Objective == "" {
			return fmt.Errorf("missing field \"objective\" (allowed: %s)", strings.Join(objectives, ", "))
		}
		if !slices.Contains(objectives, p.Objective) {
			return fmt.Errorf("unknown objective %q (allowed: %s)", p.Objective, strings.Join(objectives, ", "))
		}
	}
	return nil
}

// checkRoles checks the roles of a conversational pair, so that a pair the
// chat template cannot render fails where it is read: the prompt holds
// system (first only), user and assistant turns and ends with a user turn;
// chosen and rejected hold assistant turns only.
func checkRoles(prompt, chosen, rejected []Message) error {
	for i, m := range prompt {
		switch m.Role {
		case "user", "assistant":
		case "system":
			if i != 0 {
				return fmt.Errorf("field \"prompt\": message %d: a system message must come first", i)
			}
		default:
			return fmt.Errorf("field \"prompt\": message %d: role %q is not system, user or assistant", i, m.Role)
		}
	}
	if last := prompt[len(prompt)-1]; last.Role != "user" {
		return fmt.Errorf("field \"prompt\": ends with a %q message, want a user message before the response", last.Role)
	}
	for _, f := range []struct {
		k  string
		ms []Message
	}{{"chosen", chosen}, {"rejected", rejected}} {
		for i, m := range f.ms {
			if m.Role != "assistant" {
				return fmt.Errorf("field %q: message %d: role %q in a response, want assistant messages only", f.k, i, m.Role)
			}
		}
	}
	return nil
}

// ParseLine reads one pair from one JSON line and validates it (without an
// objective set). A pair without an id gets its ContentID.
func ParseLine(line []byte) (Pair, error) { return parse(line, nil) }

func parse(line []byte, objectives []string) (Pair, error) {
	var p Pair
	if err := json.Unmarshal(line, &p); err != nil {
		return Pair{}, err
	}
	if err := p.Validate(objectives); err != nil {
		return Pair{}, err
	}
	if p.ID == "" {
		p.ID = p.ContentID()
	} else {
		p.has |= hasID
	}
	return p, nil
}

// fromHH turns Anthropic's HH-RLHF text format into messages: chosen and
// rejected each a whole "\n\nHuman: ...\n\nAssistant: ..." conversation
// (the common leading turns become the prompt), or a prompt in that form
// ending with "Assistant:" and plain responses.
func (p *Pair) fromHH() {
	switch {
	case p.Prompt == "" && p.Chosen != "" && p.Rejected != "":
		c, okc := hhTurns(p.Chosen)
		r, okr := hhTurns(p.Rejected)
		if !okc || !okr {
			return
		}
		p.Chosen, p.Rejected = "", ""
		p.ChosenMessages, p.RejectedMessages = c, r
		p.splitImplicitPrompt()
	case p.Prompt != "":
		pm, ok := hhTurns(p.Prompt)
		if !ok || len(pm) == 0 || pm[len(pm)-1].Role != "assistant" || pm[len(pm)-1].Content != "" {
			return
		}
		p.Prompt = ""
		p.PromptMessages = pm[:len(pm)-1]
		p.ChosenMessages = []Message{{Role: "assistant", Content: strings.TrimSpace(p.Chosen)}}
		p.RejectedMessages = []Message{{Role: "assistant", Content: strings.TrimSpace(p.Rejected)}}
		p.Chosen, p.Rejected = "", ""
	}
}

// hhTurns parses HH text: turns introduced by "Human:" and "Assistant:"
// after a blank line (the first one may open the text). ok is false when
// the text does not start with a turn.
func hhTurns(s string) ([]Message, bool) {
	const human, assistant = "\n\nHuman:", "\n\nAssistant:"
	if strings.HasPrefix(s, "Human:") {
		s = "\n\n" + s
	}
	if !strings.HasPrefix(s, human) {
		return nil, false
	}
	var ms []Message
	for s != "" {
		role, marker := "user", human
		if strings.HasPrefix(s, assistant) {
			role, marker = "assistant", assistant
		} else if !strings.HasPrefix(s, human) {
			return nil, false
		}
		s = s[len(marker):]
		next := len(s)
		if i := strings.Index(s, human); i >= 0 {
			next = i
		}
		if i := strings.Index(s, assistant); i >= 0 && i < next {
			next = i
		}
		ms = append(ms, Message{Role: role, Content: strings.TrimSpace(s[:next])})
		s = s[next:]
	}
	return ms, true
}
