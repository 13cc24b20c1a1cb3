package backend

import (
	"errors"
	"fmt"
)

// InvalidOutputError reports that a model answered but its output is not
// what was asked for: no JSON object, no tool call, truncated text, or an
// object that fails the schema. A repair attempt (asking again with the
// problem stated) may help; the call itself succeeded and was billed.
type InvalidOutputError struct {
	Model  string
	Reason string // what is wrong, lowercase, e.g. "missing tool call"
	Raw    string // the model's output as text, for the dead-letter file
	Usage  Usage  // tokens the failed attempt consumed
	Err    error  // underlying parse or validation error, if any
}

func (e *InvalidOutputError) Error() string {
	msg := "invalid model output"
	if e.Model != "" {
		msg += " from " + e.Model
	}
	msg += ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *InvalidOutputError) Unwrap() error { return e.Err }

// CallError reports that a call to a model server failed: the server could
// not be reached, timed out, refused the request, or kept failing through the
// backend's retries. Repeating the same request may or may not help; a repair
// prompt will not.
type CallError struct {
	Op        string // "generate", "judge", "screen", "structured"
	Model     string
	Status    int    // HTTP status of the last attempt, 0 when none arrived
	Code      string // service error code, e.g. "ThrottlingException", when known
	Retryable bool   // the last failure was of a transient kind (retries ran out)
	Err       error
}

func (e *CallError) Error() string {
	msg := e.Op + " " + e.Model
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Status != 0 {
		msg += fmt.Sprintf(" (http %d)", e.Status)
	}
	return msg + ": " + e.Err.Error()
}

func (e *CallError) Unwrap() error { return e.Err }

// IsInvalidOutput reports whether err says the model's output was invalid,
// so that a repair attempt may help.
func IsInvalidOutput(err error) bool {
	var e *InvalidOutputError
	return errors.As(err, &e)
}

// IsCallFailed reports whether err says the call itself failed.
func IsCallFailed(err error) bool {
	var e *CallError
	return errors.As(err, &e)
}
