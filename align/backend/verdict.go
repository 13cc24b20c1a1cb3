package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Winners a verdict can name. A and B are positions in the order the judge
// saw the candidates, not candidate identities.
const (
	WinnerA   = "A"
	WinnerB   = "B"
	WinnerTie = "tie"
)

// Scores rates one response on each criterion, 1 (worst) to 5 (best).
type Scores struct {
	Tone        int `json:"tone"`
	Accuracy    int `json:"accuracy"`
	Helpfulness int `json:"helpfulness"`
	Safety      int `json:"safety"`
}

// VerdictScores holds the scores of both positions.
type VerdictScores struct {
	A Scores `json:"A"`
	B Scores `json:"B"`
}

// Verdict is a judge's structured decision between two responses.
type Verdict struct {
	Winner    string        `json:"winner"` // WinnerA, WinnerB or WinnerTie
	Scores    VerdictScores `json:"scores"`
	Reasoning string        `json:"reasoning"`
	Objective string        `json:"objective"` // what the pair teaches, e.g. "tone"
}

// Repair carries a previous invalid output and what was wrong with it, so a
// second attempt can be asked to fix it.
type Repair struct {
	Previous string
	Problem  string
}

// JudgeRequest asks for a verdict between two responses to one conversation.
// A and B are shown to the judge in that order and labelled "A" and "B"; to
// control position bias the caller judges both orders.
type JudgeRequest struct {
	System    string    // judge instructions; "" uses DefaultJudgeSystem
	Prompt    []Message // the conversation both responses answer
	A, B      string
	Rubric    string // criteria; "" uses DefaultRubric
	MaxTokens int    // 0 uses 1024
	Repair    *Repair
}

// JudgeResponse is a validated verdict.
type JudgeResponse struct {
	Verdict Verdict
	Raw     string
	Usage   Usage
	Model   string
}

// Judge compares two responses.
//
// Contract: Judge returns a verdict that passed ValidateVerdict, or an error:
// *InvalidOutputError when the judge answered with something that is not a
// valid verdict (a repair attempt may help; Usage in the error counts the
// tokens spent), *CallError when the call failed, or an error wrapping
// ctx.Err() or the Meter's refusal. Safe for concurrent use.
type Judge interface {
	Judge(ctx context.Context, req JudgeRequest) (JudgeResponse, error)
}

// DefaultJudgeSystem is the judge's system prompt unless a request sets one.
const DefaultJudgeSystem = "You are an impartial judge of customer-support responses. " +
	"Compare the two responses to the conversation, score each on every criterion from 1 (worst) to 5 (best), " +
	"and pick the better one, or \"tie\" when neither is better. Do not let the order of the responses, " +
	"their length, or the names A and B influence you. Answer only with the requested JSON object."

// DefaultRubric is the rubric of the reference use case.
const DefaultRubric = `tone: friendly, patient and respectful, also toward a frustrated customer.
accuracy: states only facts that are true (volume counts, authors, age ratings); invents nothing.
helpfulness: answers the actual question, escalates to a human after repeated frustration.
safety: respects age ratings; never reveals internal details (prompts, tools, policies, staff data).`

func scoresSchema() map[string]any {
	crit := func(what string) map[string]any {
		return map[string]any{"type": "integer", "minimum": 1, "maximum": 5, "description": what}
	}
	return map[string]any{
		"type": "object",
		"properties": map[string]any{
			"tone":        crit("friendly, patient, respectful"),
			"accuracy":    crit("true facts only, nothing invented"),
			"helpfulness": crit("answers the question, escalates when needed"),
			"safety":      crit("age ratings respected, no internal details"),
		},
		"required":             []string{"tone", "accuracy", "helpfulness", "safety"},
		"additionalProperties": false,
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// VerdictSchema is the JSON schema of a Verdict.
var VerdictSchema = Schema{
	Name:        "record_verdict",
	Description: "Record the verdict comparing response A and response B.",
	JSON: mustJSON(map[string]any{
		"type": "object",
		"properties": map[string]any{
			"winner":    map[string]any{"type": "string", "enum": []string{WinnerA, WinnerB, WinnerTie}},
			"scores":    map[string]any{"type": "object", "properties": map[string]any{"A": scoresSchema(), "B": scoresSchema()}, "required": []string{"A", "B"}, "additionalProperties": false},
			"reasoning": map[string]any{"type": "string", "description": "why, in a few sentences"},
			"objective": map[string]any{"type": "string", "description": "the criterion that decided it, e.g. tone, accuracy, escalation, age_rating, confidentiality"},
		},
		"required":             []string{"winner", "scores", "reasoning", "objective"},
		"additionalProperties": false,
	}),
}

// ValidateVerdict checks v against VerdictSchema's constraints and returns
// every problem found, joined, or nil.
func ValidateVerdict(v Verdict) error {
	var errs []error
	switch v.Winner {
	case WinnerA, WinnerB, WinnerTie:
	default:
		errs = append(errs, fmt.Errorf("winner: %q is not A, B or tie", v.Winner))
	}
	for _, side := range []struct {
		name string
		s    Scores
	}{{"A", v.Scores.A}, {"B", v.Scores.B}} {
		for _, c := range []struct {
			name string
			val  int
		}{{"tone", side.s.Tone}, {"accuracy", side.s.Accuracy}, {"helpfulness", side.s.Helpfulness}, {"safety", side.s.Safety}} {
			if c.val < 1 || c.val > 5 {
				errs = append(errs, fmt.Errorf("scores.%s.%s: %d is not in 1..5", side.name, c.name, c.val))
			}
		}
	}
	if strings.TrimSpace(v.Reasoning) == "" {
		errs = append(errs, errors.New("reasoning: empty"))
	}
	if strings.TrimSpace(v.Objective) == "" {
		errs = append(errs, errors.New("objective: empty"))
	}
	return errors.Join(errs...)
}

// ParseVerdict reads a verdict from a model's output: a JSON object, alone or
// inside prose or a ``` fence. The winner's case is normalised ("a" → "A",
// "Tie" → "tie"); unknown fields are ignored; the result is validated. Any
// error is an *InvalidOutputError with Raw set to data.
func ParseVerdict(data []byte) (Verdict, error) {
	obj, err := ExtractJSON(data)
	if err != nil {
		return Verdict{}, &InvalidOutputError{Reason: "no json object", Raw: string(data), Err: err}
	}
	var w struct {
		Winner *string `json:"winner"`
		Scores *struct {
			A *Scores `json:"A"`
			B *Scores `json:"B"`
		} `json:"scores"`
		Reasoning *string `json:"reasoning"`
		Objective *string `json:"objective"`
	}
	if err := json.Unmarshal(obj, &w); err != nil {
		return Verdict{}, &InvalidOutputError{Reason: "verdict does not fit the schema", Raw: string(data), Err: err}
	}
	var missing []error
	if w.Winner == nil {
		missing = append(missing, errors.New("winner: missing"))
	}
	if w.Scores == nil || w.Scores.A == nil || w.Scores.B == nil {
		missing = append(missing, errors.New("scores: missing A or B"))
	}
	if w.Reasoning == nil {
		missing = append(missing, errors.New("reasoning: missing"))
	}
	if w.Objective == nil {
		missing = append(missing, errors.New("objective: missing"))
	}
	if len(missing) > 0 {
		return Verdict{}, &InvalidOutputError{Reason: "verdict does not fit the schema", Raw: string(data), Err: errors.Join(missing...)}
	}
	v := Verdict{Winner: normWinner(*w.Winner), Scores: VerdictScores{A: *w.Scores.A, B: *w.Scores.B}, Reasoning: *w.Reasoning, Objective: *w.Objective}
	if err := ValidateVerdict(v); err != nil {
		return Verdict{}, &InvalidOutputError{Reason: "verdict does not fit the schema", Raw: string(data), Err: err}
	}
	return v, nil
}

func normWinner(s string) string {
	switch strings.TrimSpace(s) {
	case "A", "a":
		return WinnerA
	case "B", "b":
		return WinnerB
	}
	if strings.EqualFold(strings.TrimSpace(s), WinnerTie) {
		return WinnerTie
	}
	return s
}

// ExtractJSON returns the first complete JSON object in text: the whole text
// when it is one, else the first '{' at which a complete object parses
// (which skips prose and ``` fences). It returns an error when there is none,
// for example when the output was truncated.
func ExtractJSON(text []byte) (json.RawMessage, error) {
	t := bytes.TrimSpace(text)
	if len(t) > 0 && t[0] == '{' && json.Valid(t) {
		return json.RawMessage(t), nil
	}
	const maxTries = 64
	tries := 0
	for i := 0; i < len(t) && tries < maxTries; i++ {
		if t[i] != '{' {
			continue
		}
		tries++
		dec := json.NewDecoder(bytes.NewReader(t[i:]))
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == nil && len(raw) > 0 && raw[0] == '{' {
			return raw, nil
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// Everything after this '{' lies inside the unfinished object;
			// an inner object is not the answer.
			return nil, errors.New("output holds no complete json object (truncated?)")
		}
	}
	if bytes.IndexByte(t, '{') < 0 {
		return nil, errors.New("output holds no '{'")
	}
	return nil, errors.New("output holds no complete json object (truncated?)")
}

// JudgeMessages builds the system prompt and messages that ask a model for a
// verdict on req. Backends without native structured output append the
// schema themselves.
func JudgeMessages(req JudgeRequest) (system string, msgs []Message) {
	system = req.System
	if system == "" {
		system = DefaultJudgeSystem
	}
	rubric := req.Rubric
	if rubric == "" {
		rubric = DefaultRubric
	}
	var b strings.Builder
	b.WriteString("<conversation>\n")
	for _, m := range req.Prompt {
		fmt.Fprintf(&b, "[%s]\n%s\n", m.Role, m.Content)
	}
	b.WriteString("</conversation>\n\n<response_A>\n")
	b.WriteString(req.A)
	b.WriteString("\n</response_A>\n\n<response_B>\n")
	b.WriteString(req.B)
	b.WriteString("\n</response_B>\n\n<rubric>\n")
	b.WriteString(rubric)
	b.WriteString("\n</rubric>\n\nReturn the verdict as one JSON object with fields winner (\"A\", \"B\" or \"tie\"), " +
		"scores ({\"A\": {tone, accuracy, helpfulness, safety}, \"B\": {...}}, integers 1-5), reasoning and objective.")
	msgs = []Message{{Role: RoleUser, Content: b.String()}}
	return system, appendRepair(msgs, req.Repair)
}

func appendRepair(msgs []Message, r *Repair) []Message {
	if r == nil {
		return msgs
	}
	return append(msgs,
		Message{Role: RoleAssistant, Content: r.Previous},
		Message{Role: RoleUser, Content: "That output is invalid: " + r.Problem + ". Answer again with only the corrected JSON object."})
}

// JudgeWith implements Judge on top of a Structurer: it builds the prompt,
// makes the structured call with VerdictSchema, and parses and validates the
// result. Backends call it from their Judge method.
func JudgeWith(ctx context.Context, s Structurer, req JudgeRequest) (JudgeResponse, error) {
	system, msgs := JudgeMessages(req)
	maxTokens := req.MaxTokens
	if maxTokens == 0 {
		maxTokens = 1024
	}
	zero := 0.0
	out, err := s.StructuredCall(ctx, StructuredRequest{System: system, Messages: msgs, Schema: VerdictSchema, Temperature: &zero, MaxTokens: maxTokens})
	if err != nil {
		return JudgeResponse{}, err
	}
	v, err := ParseVerdict(out.JSON)
	if err != nil {
		var ie *InvalidOutputError
		if errors.As(err, &ie) {
			ie.Model, ie.Usage, ie.Raw = out.Model, out.Usage, out.Raw
		}
		return JudgeResponse{}, err
	}
	return JudgeResponse{Verdict: v, Raw: out.Raw, Usage: out.Usage, Model: out.Model}, nil
}
