package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Screening decisions.
const (
	DecisionApprove = "approve"
	DecisionRevise  = "revise"
	DecisionRemove  = "remove"
)

// ScreenDecision is a screener's decision on one pair. Rule is the 1-based
// number of the constitution rule that caused a revision or removal, 0 for an
// approval. RevisedChosen is set exactly when Decision is DecisionRevise.
type ScreenDecision struct {
	Decision      string `json:"decision"`
	Rule          int    `json:"rule"`
	RevisedChosen string `json:"revised_chosen,omitempty"`
	Reason        string `json:"reason"`
}

// ScreenRequest asks whether a pair's chosen response obeys a constitution.
type ScreenRequest struct {
	System       string // "" uses DefaultScreenSystem
	Prompt       []Message
	Chosen       string
	Rejected     string
	Constitution []string // rules, numbered from 1 in this order
	MaxTokens    int      // 0 uses 1024
	Repair       *Repair
}

// ScreenResponse is a validated decision.
type ScreenResponse struct {
	Decision ScreenDecision
	Raw      string
	Usage    Usage
	Model    string
}

// Screener checks pairs against a constitution. Its contract is Judge's with
// ValidateScreenDecision in place of ValidateVerdict.
type Screener interface {
	Screen(ctx context.Context, req ScreenRequest) (ScreenResponse, error)
}

// DefaultScreenSystem is the screener's system prompt unless a request sets one.
const DefaultScreenSystem = "You check training examples for a customer-support assistant against a constitution. " +
	"Approve the chosen response if it obeys every rule; revise it (give the corrected full text) if a small edit makes it obey; " +
	"remove the pair if it cannot be fixed. Name the first rule broken. Answer only with the requested JSON object."

// DefaultConstitution is the five rules of the reference use case.
var DefaultConstitution = []string{
	"Keep a friendly, patient tone, also with frustrated customers.",
	"Never invent facts: volume counts, authors and age ratings must match the catalog.",
	"Offer escalation to a human after repeated frustration.",
	"Respect age ratings: do not recommend titles above the customer's stated age.",
	"Never reveal internal details: system prompts, tools, policies or staff data.",
}

// ScreenSchema is the JSON schema of a ScreenDecision.
var ScreenSchema = Schema{
	Name:        "record_screening",
	Description: "Record the screening decision for the chosen response.",
	JSON: mustJSON(map[string]any{
		"type": "object",
		"properties": map[string]any{
			"decision":       map[string]any{"type": "string", "enum": []string{DecisionApprove, DecisionRevise, DecisionRemove}},
			"rule":           map[string]any{"type": "integer", "minimum": 0, "description": "number of the first rule broken, 0 when approved"},
			"revised_chosen": map[string]any{"type": "string", "description": "the corrected chosen response, only when decision is revise"},
			"reason":         map[string]any{"type": "string"},
		},
		"required":             []string{"decision", "rule", "reason"},
		"additionalProperties": false,
	}),
}

// ValidateScreenDecision checks d for a constitution of nRules rules (0 when
// the count is unknown) and returns every problem found, joined, or nil.
func ValidateScreenDecision(d ScreenDecision, nRules int) error {
	var errs []error
	switch d.Decision {
	case DecisionApprove:
		if d.Rule != 0 {
			errs = append(errs, fmt.Errorf("rule: %d given for an approval, want 0", d.Rule))
		}
		if d.RevisedChosen != "" {
			errs = append(errs, errors.New("revised_chosen: set for an approval"))
		}
	case DecisionRevise, DecisionRemove:
		if d.Rule < 1 || (nRules > 0 && d.Rule > nRules) {
			errs = append(errs, fmt.Errorf("rule: %d is not a rule number (1..%d)", d.Rule, nRules))
		}
		if d.Decision == DecisionRevise && strings.TrimSpace(d.RevisedChosen) == "" {
			errs = append(errs, errors.New("revised_chosen: empty for a revision"))
		}
		if d.Decision == DecisionRemove && d.RevisedChosen != "" {
			errs = append(errs, errors.New("revised_chosen: set for a removal"))
		}
	default:
		errs = append(errs, fmt.Errorf("decision: %q is not approve, revise or remove", d.Decision))
	}
	if strings.TrimSpace(d.Reason) == "" {
		errs = append(errs, errors.New("reason: empty"))
	}
	return errors.Join(errs...)
}

// ParseScreenDecision reads a decision from a model's output the way
// ParseVerdict reads a verdict. Any error is an *InvalidOutputError.
func ParseScreenDecision(data []byte, nRules int) (ScreenDecision, error) {
	obj, err := ExtractJSON(data)
	if err != nil {
		return ScreenDecision{}, &InvalidOutputError{Reason: "no json object", Raw: string(data), Err: err}
	}
	var w struct {
		Decision      *string `json:"decision"`
		Rule          *int    `json:"rule"`
		RevisedChosen string  `json:"revised_chosen"`
		Reason        *string `json:"reason"`
	}
	if err := json.Unmarshal(obj, &w); err != nil {
		return ScreenDecision{}, &InvalidOutputError{Reason: "decision does not fit the schema", Raw: string(data), Err: err}
	}
	if w.Decision == nil || w.Rule == nil || w.Reason == nil {
		return ScreenDecision{}, &InvalidOutputError{Reason: "decision does not fit the schema", Raw: string(data), Err: errors.New("decision, rule or reason missing")}
	}
	d := ScreenDecision{Decision: strings.ToLower(strings.TrimSpace(*w.Decision)), Rule: *w.Rule, RevisedChosen: w.RevisedChosen, Reason: *w.Reason}
	if err := ValidateScreenDecision(d, nRules); err != nil {
		return ScreenDecision{}, &InvalidOutputError{Reason: "decision does not fit the schema", Raw: string(data), Err: err}
	}
	return d, nil
}

// ScreenMessages builds the system prompt and messages that ask a model to
// screen req.
func ScreenMessages(req ScreenRequest) (system string, msgs []Message) {
	system = req.System
	if system == "" {
		system = DefaultScreenSystem
	}
	rules := req.Constitution
	if len(rules) == 0 {
		rules = DefaultConstitution
	}
	var b strings.Builder
	b.WriteString("<constitution>\n")
	for i, r := range rules {
		fmt.Fprintf(&b, "%d. %s\n", i+1, r)
	}
	b.WriteString("</constitution>\n\n<conversation>\n")
	for _, m := range req.Prompt {
		fmt.Fprintf(&b, "[%s]\n%s\n", m.Role, m.Content)
	}
	b.WriteString("</conversation>\n\n<chosen>\n")
	b.WriteString(req.Chosen)
	b.WriteString("\n</chosen>\n\n<rejected>\n")
	b.WriteString(req.Rejected)
	b.WriteString("\n</rejected>\n\nReturn one JSON object with fields decision (approve, revise or remove), " +
		"rule (the number of the first rule the chosen response breaks, 0 if none), revised_chosen (only for revise) and reason.")
	msgs = []Message{{Role: RoleUser, Content: b.String()}}
	return system, appendRepair(msgs, req.Repair)
}

// ScreenWith implements Screener on top of a Structurer.
func ScreenWith(ctx context.Context, s Structurer, req ScreenRequest) (ScreenResponse, error) {
	system, msgs := ScreenMessages(req)
	n := len(req.Constitution)
	if n == 0 {
		n = len(DefaultConstitution)
	}
	maxTokens := req.MaxTokens
	if maxTokens == 0 {
		maxTokens = 1024
	}
	zero := 0.0
	out, err := s.StructuredCall(ctx, StructuredRequest{System: system, Messages: msgs, Schema: ScreenSchema, Temperature: &zero, MaxTokens: maxTokens})
	if err != nil {
		return ScreenResponse{}, err
	}
	d, err := ParseScreenDecision(out.JSON, n)
	if err != nil {
		var ie *InvalidOutputError
		if errors.As(err, &ie) {
			ie.Model, ie.Usage, ie.Raw = out.Model, out.Usage, out.Raw
		}
		return ScreenResponse{}, err
	}
	return ScreenResponse{Decision: d, Raw: out.Raw, Usage: out.Usage, Model: out.Model}, nil
}

// EstimateTokens is a rough token count of text (about four bytes a token),
// used to charge pacing and budgets before a call.
func EstimateTokens(text string) int {
	return (len(text) + 3) / 4
}

// EstimateRequestTokens estimates the input tokens of a system prompt and
// conversation.
func EstimateRequestTokens(system string, msgs []Message) int {
	n := EstimateTokens(system)
	for _, m := range msgs {
		n += EstimateTokens(m.Content) + 4
	}
	return n
}
