// Package backend defines the small interfaces the preference-data pipeline
// (collect, rank, screen) consumes, the request and response types they
// exchange, the judge and screener output schemas with their validators, and
// the parser for backend specs such as "bedrock:<model-id>".
//
// Implementations live in sub-packages (backend/bedrock, backend/openai) or
// elsewhere (local, rules); each asserts the interfaces it satisfies, e.g.
// `var _ backend.Judge = (*Client)(nil)`.
package backend

import (
	"context"
	"encoding/json"

	"github.com/align-dev/align/align/prompt"
)

// Role is the author of a message in a conversation.
type Role = string

// Roles of a conversation. A system prompt is not a message: it goes in the
// request's System field.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
)

// Message is one turn of a conversation (align/prompt's conversation
// type).
type Message = prompt.Message

// Usage counts the tokens a call consumed, as reported by the model server.
type Usage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

// Add returns the sum of two usages.
func (u Usage) Add(v Usage) Usage {
	return Usage{InputTokens: u.InputTokens + v.InputTokens, OutputTokens: u.OutputTokens + v.OutputTokens}
}

// GenerateRequest asks a model for one response to a conversation.
//
// Temperature and TopP are pointers so that "unset" (use the model's default)
// differs from zero. Seed is passed to backends that support it and ignored
// by those that do not (Bedrock Converse has no seed).
type GenerateRequest struct {
	System      string
	Messages    []Message
	Temperature *float64
	TopP        *float64
	MaxTokens   int // 0 means the backend's default
	Seed        *int64
}

// GenerateResponse is a model's response.
type GenerateResponse struct {
	Text       string
	StopReason string // backend-specific, e.g. "end_turn", "max_tokens", "length"
	Usage      Usage
	Model      string // the model id that answered
}

// Generator produces responses to conversations.
//
// Contract: Generate blocks until the response is complete, ctx is done, or
// the backend gives up after its retries; it is safe for concurrent use. A
// non-nil error is a *CallError (the call failed; repeating the same request
// later may succeed) unless ctx ended, in which case it wraps ctx.Err(), or a
// spending limit refused the call, in which case it wraps the Meter's error.
// Usage is reported even when the text is empty.
type Generator interface {
	Generate(ctx context.Context, req GenerateRequest) (GenerateResponse, error)
}

// Schema is a JSON schema a structured call must satisfy, with a name that
// tool-calling backends use as the tool name.
type Schema struct {
	Name        string          // [a-zA-Z0-9_-]{1,64}
	Description string          // what the object means, for the model
	JSON        json.RawMessage // a JSON Schema object
}

// StructuredRequest asks a model for one JSON object matching Schema.
type StructuredRequest struct {
	System      string
	Messages    []Message
	Schema      Schema
	Temperature *float64
	MaxTokens   int
	Seed        *int64
}

// StructuredResponse is the JSON object a model returned. JSON is the
// object's bytes (not yet validated against the schema beyond being a JSON
// object); Raw is the model's whole output as text, kept for dead letters.
type StructuredResponse struct {
	JSON  json.RawMessage
	Raw   string
	Usage Usage
	Model string
}

// Structurer makes calls whose output is a JSON object. Judges and screeners
// share it.
//
// Contract: as Generator, plus: when the model answered but its output holds
// no JSON object (no tool call, truncated or non-JSON text), the error is an
// *InvalidOutputError carrying the raw output and the usage spent, and a
// repair attempt may help.
type Structurer interface {
	StructuredCall(ctx context.Context, req StructuredRequest) (StructuredResponse, error)
}

// Meter is charged around every billable call. Reserve is called before the
// call with the worst case (estimated input tokens plus the output-token
// ceiling); a non-nil error refuses the call and is returned to the caller
// wrapped, so errors.As finds it. The returned settle function is called
// exactly once with the tokens actually used (zero when the call failed
// without producing output).
//
// cost.Meter implements it; the consumer (a backend) defines it here.
type Meter interface {
	Reserve(ctx context.Context, model string, inputTokens, maxOutputTokens int) (settle func(inputTokens, outputTokens int), err error)
}
