package backend

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"syscall"
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
	Attempts  int    // HTTP attempts made, retries included; 0 when unknown
	// Unreachable says the server could not be reached or would not let
	// this client in: connection refused, unknown host, TLS failure, no or
	// bad credentials, access denied. Every further call will fail the same
	// way until someone fixes the set-up, so stages stop after a few.
	Unreachable bool
	Err         error
}

func (e *CallError) Error() string {
	msg := e.Op
	if e.Model != "" {
		msg += " " + e.Model
	}
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

// IsUnreachable reports whether err says the server could not be reached
// or refused this client's credentials (see CallError.Unreachable).
func IsUnreachable(err error) bool {
	var e *CallError
	return errors.As(err, &e) && e.Unreachable
}

// AttemptsOf returns the HTTP attempts a failed call made (retries
// included), or 1 when err does not say.
func AttemptsOf(err error) int {
	var e *CallError
	if errors.As(err, &e) && e.Attempts > 0 {
		return e.Attempts
	}
	return 1
}

// DialFailed reports whether err says no connection could be made: a
// refused or timed-out dial, an unknown host, or a failed TLS handshake.
// Clients use it to set CallError.Unreachable.
func DialFailed(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return true
	}
	var ce *tls.CertificateVerificationError
	var re tls.RecordHeaderError
	return errors.As(err, &ce) || errors.As(err, &re) || errors.Is(err, syscall.ECONNREFUSED)
}
