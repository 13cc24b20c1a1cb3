// Package pipeline turns prompts into preference pairs: collect (sample
// candidate responses), rank (judge them in both orders and keep the
// verdicts both orders agree on), screen (check pairs against a
// constitution) and import (pairs from feedback logs and human labels).
//
// Every stage reads JSON Lines and appends one record per finished item to
// its outputs, flushed per record, with a deterministic id (a hash of the
// stage, the model, the prompt and the settings). A rerun skips the ids its
// outputs already hold and drops a torn last line, so a killed run
// continues where it stopped and ends with the same files. Every input is
// accounted for: in the output, a ties file, a removed file or a
// dead-letter file, never silently dropped. Calls go through the backends'
// pacers and a cost meter whose ledger lives next to the output.
package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/jsonl"
)

// Prompt is one line of a prompts file: {"id"?, "prompt" | "messages",
// "system"?, "objective"?}. A prompt without an id gets a hash of its
// conversation.
type Prompt struct {
	ID        string            `json:"id,omitempty"`
	System    string            `json:"system,omitempty"`
	Prompt    string            `json:"prompt,omitempty"`
	Messages  []backend.Message `json:"messages,omitempty"`
	Objective string            `json:"objective,omitempty"`
}

// ParsePrompt reads one prompts line. Exactly one of "prompt" (a non-empty
// string) and "messages" (a non-empty list of {"role", "content"} with
// roles user and assistant, a leading system message allowed, ending with a
// user turn) must be given. Unknown fields are ignored.
func ParsePrompt(line []byte) (Prompt, error) {
	var w struct {
		ID        *string           `json:"id"`
		System    *string           `json:"system"`
		Prompt    *string           `json:"prompt"`
		Messages  []json.RawMessage `json:"messages"`
		Objective *string           `json:"objective"`
	}
	t := strings.TrimSpace(string(line))
	if !strings.HasPrefix(t, "{") {
		return Prompt{}, errors.New("want a JSON object")
	}
	if err := json.Unmarshal(line, &w); err != nil {
		return Prompt{}, err
	}
	var p Prompt
	if w.ID != nil {
		p.ID = *w.ID
	}
	if w.System != nil {
		p.System = *w.System
	}
	if w.Objective != nil {
		p.Objective = *w.Objective
	}
	switch {
	case w.Prompt != nil && w.Messages != nil:
		return Prompt{}, errors.New(`give "prompt" or "messages", not both`)
	case w.Prompt != nil:
		if strings.TrimSpace(*w.Prompt) == "" {
			return Prompt{}, errors.New(`"prompt" is empty`)
		}
		p.Prompt = *w.Prompt
	case w.Messages != nil:
		for i, raw := range w.Messages {
			var m struct {
				Role    *string `json:"role"`
				Content *string `json:"content"`
			}
			if err := json.Unmarshal(raw, &m); err != nil || m.Role == nil || m.Content == nil {
				return Prompt{}, fmt.Errorf("message %d: want {\"role\", \"content\"} strings", i)
			}
			switch backend.Role(*m.Role) {
			case backend.RoleUser, backend.RoleAssistant:
				p.Messages = append(p.Messages, backend.Message{Role: backend.Role(*m.Role), Content: *m.Content})
			case "system":
				if i != 0 || p.System != "" {
					return Prompt{}, fmt.Errorf("message %d: a system message must come first, once", i)
				}
				p.System = *m.Content
			default:
				return Prompt{}, fmt.Errorf("message %d: role %q is not user, assistant or system", i, *m.Role)
			}
		}
		if len(p.Messages) == 0 || p.Messages[len(p.Messages)-1].Role != backend.RoleUser {
			return Prompt{}, errors.New(`"messages" must end with a user message`)
		}
	default:
		return Prompt{}, errors.New(`missing "prompt" or "messages"`)
	}
	if p.ID == "" {
		p.ID = jsonl.RecordID("prompt", p.Key())
	}
	return p, nil
}

// Conversation returns the prompt as messages.
func (p Prompt) Conversation() []backend.Message {
	if p.Messages != nil {
		return p.Messages
	}
	return []backend.Message{{Role: backend.RoleUser, Content: p.Prompt}}
}

// Key is a canonical text of the conversation (system prompt included),
// used in record ids.
func (p Prompt) Key() string {
	b, _ := json.Marshal(struct {
		S string            `json:"s"`
		M []backend.Message `json:"m"`
	}{p.System, p.Conversation()})
	return string(b)
}

// Customer returns the user turns joined by newlines.
func (p Prompt) Customer() string {
	var parts []string
	for _, m := range p.Conversation() {
		if m.Role == backend.RoleUser {
			parts = append(parts, m.Content)
		}
	}
	return strings.Join(parts, "\n")
}

// Response is one sampled response of a candidate record.
type Response struct {
	Text        string  `json:"text"`
	Temperature float64 `json:"temperature"`
	TopP        float64 `json:"top_p"`
	StopReason  string  `json:"stop_reason,omitempty"`
}

// Candidate is one line of collect's output: a prompt and its responses.
type Candidate struct {
	ID        string            `json:"id"`
	PromptID  string            `json:"prompt_id"`
	System    string            `json:"system,omitempty"`
	Prompt    string            `json:"prompt,omitempty"`
	Messages  []backend.Message `json:"messages,omitempty"`
	Objective string            `json:"objective,omitempty"`
	Generator string            `json:"generator"`
	Responses []Response        `json:"responses"`
}

// AsPrompt returns the candidate's prompt.
func (c Candidate) AsPrompt() Prompt {
	return Prompt{ID: c.PromptID, System: c.System, Prompt: c.Prompt, Messages: c.Messages, Objective: c.Objective}
}

// ParseCandidate reads one candidates line.
func ParseCandidate(line []byte) (Candidate, error) {
	var c Candidate
	if err := json.Unmarshal(line, &c); err != nil {
		return Candidate{}, err
	}
	if c.ID == "" {
		return Candidate{}, errors.New(`missing "id"`)
	}
	if (c.Prompt == "") == (len(c.Messages) == 0) {
		return Candidate{}, errors.New(`want "prompt" or "messages"`)
	}
	if len(c.Responses) < 2 {
		return Candidate{}, fmt.Errorf("%d responses, want at least 2", len(c.Responses))
	}
	return c, nil
}

// DeadLetter is a record that could not be processed: the input it came
// from, what went wrong, and the model's last raw output when there was
// one. --retry-failed processes dead letters again.
type DeadLetter struct {
	ID       string `json:"id"`
	Stage    string `json:"stage"`
	Model    string `json:"model"`
	Error    string `json:"error"`
	Kind     string `json:"kind"` // "invalid_output", "call_failed", "unreachable", "timeout", "batch_failed"
	Raw      string `json:"raw,omitempty"`
	Attempts int    `json:"attempts"` // HTTP attempts, retries included, of all the calls made

	Input json.RawMessage `json:"input"`
}

// idOf reads the "id" field of a record, for OpenAppend.
func idOf(raw json.RawMessage) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", err
	}
	if r.ID == "" {
		return "", errors.New(`record without "id"`)
	}
	return r.ID, nil
}

// LoadPrompts reads a prompts file (JSON Lines of Prompt records: align
// eval's and align train --method ppo|grpo's --prompts); errors name
// file:line.
func LoadPrompts(path string) ([]Prompt, error) {
	f, err := jsonl.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := jsonl.NewReader(f, path)
	var out []Prompt
	for {
		raw, line, err := r.NextRaw()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		p, err := ParsePrompt(raw)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no prompts", path)
	}
	return out, nil
}
