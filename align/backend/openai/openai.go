// Package openai implements backend.Generator, Structurer, Judge and
// Screener for any OpenAI-compatible /v1/chat/completions server (llama.cpp
// server, ollama, vLLM, OpenAI). Structured calls ask for
// response_format json_schema where the server supports it and fall back to
// the schema in the prompt and JSON parsed from the text where it does not.
// Retries, timeouts and pacing match backend/bedrock.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/pace"
)

// JSONMode says how StructuredCall obtains JSON.
type JSONMode string

// JSON modes.
const (
	JSONAuto   JSONMode = ""       // json_schema; on a 400 naming response_format, text from then on
	JSONSchema JSONMode = "schema" // response_format {"type": "json_schema"} only
	JSONObject JSONMode = "object" // response_format {"type": "json_object"} plus the schema in the prompt
	JSONText   JSONMode = "text"   // the schema in the prompt, JSON parsed from the text
)

// Options configures a Client. Zero values take the defaults noted.
type Options struct {
	BaseURL string // server root or .../v1, e.g. http://127.0.0.1:8080
	Model   string // model name sent in requests; servers with one model may ignore it
	APIKey  string // bearer token; "" uses $OPENAI_API_KEY when set, else none

	HTTPClient     *http.Client  // nil: a client with AttemptTimeout
	MaxAttempts    int           // default 6
	BaseBackoff    time.Duration // first retry delay (jittered, doubling); default 200ms
	MaxBackoff     time.Duration // default 20s
	AttemptTimeout time.Duration // per HTTP attempt; default 2m
	CallTimeout    time.Duration // per call; default 10m

	Limits pace.Limits
	Pacer  *pace.Pacer
	Meter  backend.Meter

	MaxTokens int // default 1024
	JSONMode  JSONMode
}

// Stats counts a client's work.
type Stats struct {
	Calls, Attempts, Throttles, Failures int64
	Fallbacks                            int64 // switches from json_schema to text mode
}

// Client talks to one OpenAI-compatible server. Safe for concurrent use.
type Client struct {
	url   string
	opts  Options
	http  *http.Client
	pacer *pace.Pacer
	text  atomic.Bool // auto mode fell back to text

	calls, attempts, throttles, failures, fallbacks atomic.Int64
}

var (
	_ backend.Generator  = (*Client)(nil)
	_ backend.Structurer = (*Client)(nil)
	_ backend.Judge      = (*Client)(nil)
	_ backend.Screener   = (*Client)(nil)
)

// New returns a client for opts.
func New(opts Options) (*Client, error) {
	base := strings.TrimRight(opts.BaseURL, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("openai: base url %q: want http or https", opts.BaseURL)
	}
	if !strings.HasSuffix(base, "/v1") {
		base += "/v1"
	}
	if opts.APIKey == "" {
		opts.APIKey = os.Getenv("OPENAI_API_KEY")
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 6
	}
	if opts.BaseBackoff <= 0 {
		opts.BaseBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 20 * time.Second
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 2 * time.Minute
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 10 * time.Minute
	}
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = 1024
	}
	c := &Client{url: base + "/chat/completions", opts: opts, http: opts.HTTPClient, pacer: opts.Pacer}
	if c.http == nil {
		c.http = &http.Client{Timeout: opts.AttemptTimeout}
	}
	if c.pacer == nil {
		c.pacer = pace.New(opts.Limits)
	}
	return c, nil
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Calls: c.calls.Load(), Attempts: c.attempts.Load(), Throttles: c.throttles.Load(), Failures: c.failures.Load(), Fallbacks: c.fallbacks.Load()}
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model          string        `json:"model,omitempty"`
	Messages       []chatMessage `json:"messages"`
	Temperature    *float64      `json:"temperature,omitempty"`
	TopP           *float64      `json:"top_p,omitempty"`
	MaxTokens      int           `json:"max_tokens"`
	Seed           *int64        `json:"seed,omitempty"`
	ResponseFormat any           `json:"response_format,omitempty"`
}

type chatResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// httpError is a non-2xx answer.
type httpError struct {
	status     int
	code, msg  string
	retryAfter time.Duration
}

func (e *httpError) Error() string {
	s := fmt.Sprintf("http %d", e.status)
	if e.code != "" {
		s += " " + e.code
	}
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

func retryableStatus(s int) bool {
	switch s {
	case 408, 409, 425, 429, 500, 502, 503, 504:
		return true
	}
	return false
}

func messages(system string, msgs []backend.Message) []chatMessage {
	var out []chatMessage
	if system != "" {
		out = append(out, chatMessage{Role: "system", Content: system})
	}
	for _, m := range msgs {
		out = append(out, chatMessage{Role: string(m.Role), Content: m.Content})
	}
	return out
}

// attempt makes one HTTP attempt.
func (c *Client) attempt(ctx context.Context, body []byte) (*chatResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.opts.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.APIKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		he := &httpError{status: resp.StatusCode}
		var eb struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
				Code    any    `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Error.Message != "" {
			he.msg, he.code = eb.Error.Message, eb.Error.Type
		} else {
			he.msg = strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			he.retryAfter = time.Duration(s) * time.Second
		}
		return nil, he
	}
	var cr chatResponse
	if err := json.Unmarshal(data, &cr); err != nil {
		return nil, fmt.Errorf("decoding response: %w", err)
	}
	if len(cr.Choices) == 0 {
		return nil, errors.New("response has no choices")
	}
	return &cr, nil
}

func (c *Client) backoff(n int, err error) time.Duration {
	d := min(c.opts.BaseBackoff<<min(n, 20), c.opts.MaxBackoff)
	d = time.Duration(rand.Int64N(int64(d) + 1))
	var he *httpError
	if errors.As(err, &he) && he.retryAfter > 0 {
		d = max(d, min(he.retryAfter, c.opts.MaxBackoff))
	}
	return d
}

// retryable reports whether an attempt's error is transient.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var he *httpError
	if errors.As(err, &he) {
		return retryableStatus(he.status)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true // timeouts, resets, refused connections
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset")
}

// do runs one metered, paced call with retries.
func (c *Client) do(ctx context.Context, op string, req chatRequest, estIn int) (*chatResponse, error) {
	settle := func(int, int) {}
	if c.opts.Meter != nil {
		s, err := c.opts.Meter.Reserve(ctx, c.opts.Model, estIn, req.MaxTokens)
		if err != nil {
			return nil, fmt.Errorf("openai %s: %w", c.opts.Model, err)
		}
		settle = s
	}
	t, err := c.pacer.Acquire(ctx, estIn+req.MaxTokens)
	if err != nil {
		settle(0, 0)
		return nil, fmt.Errorf("openai %s: waiting for pacing: %w", c.opts.Model, err)
	}
	c.calls.Add(1)
	var u backend.Usage
	defer func() {
		t.Done(u.InputTokens + u.OutputTokens)
		settle(u.InputTokens, u.OutputTokens)
	}()
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	var last error
	made := 0 // attempts of this call
	for n := 0; n < c.opts.MaxAttempts; n++ {
		if n > 0 {
			tm := time.NewTimer(c.backoff(n-1, last))
			select {
			case <-cctx.Done():
				tm.Stop()
				return nil, c.fail(ctx, op, cctx.Err(), last, made)
			case <-tm.C:
			}
		}
		if err := c.pacer.Attempt(cctx); err != nil {
			return nil, c.fail(ctx, op, err, last, made)
		}
		c.attempts.Add(1)
		made++
		body, _ := json.Marshal(req)
		resp, err := c.attempt(cctx, body)
		if err == nil {
			c.pacer.OK()
			u = backend.Usage{InputTokens: resp.Usage.PromptTokens, OutputTokens: resp.Usage.CompletionTokens}
			return resp, nil
		}
		last = err
		var he *httpError
		if errors.As(err, &he) && he.status == 429 {
			c.throttles.Add(1)
			c.pacer.Throttled()
		}
		if c.opts.JSONMode == JSONAuto && req.ResponseFormat != nil && errors.As(err, &he) && he.status == 400 &&
			(strings.Contains(he.msg, "response_format") || strings.Contains(he.msg, "json_schema")) {
			return nil, errSchemaUnsupported
		}
		if !retryable(cctx, err) {
			break
		}
	}
	return nil, c.fail(ctx, op, nil, last, made)
}

var errSchemaUnsupported = errors.New("server does not support response_format json_schema")

// fail builds the error of a call that made attempts HTTP attempts.
func (c *Client) fail(parent context.Context, op string, cause, last error, attempts int) error {
	if parent.Err() != nil {
		return fmt.Errorf("%s %s: %w", op, c.opts.Model, parent.Err())
	}
	c.failures.Add(1)
	err := last
	if cause != nil {
		if last != nil {
			err = fmt.Errorf("%w (last attempt: %v)", cause, last)
		} else {
			err = cause
		}
	}
	ce := &backend.CallError{Op: op, Model: c.opts.Model, Err: err, Attempts: attempts}
	var he *httpError
	if errors.As(last, &he) {
		ce.Status, ce.Code = he.status, he.code
		ce.Unreachable = he.status == 401 || he.status == 403
	} else if last != nil {
		ce.Unreachable = backend.DialFailed(last)
	}
	ce.Retryable = last != nil && retryable(context.Background(), last)
	return ce
}

func (c *Client) maxTokens(n int) int {
	if n > 0 {
		return n
	}
	return c.opts.MaxTokens
}

func content(r *chatResponse) string {
	m := r.Choices[0].Message
	if m.Content != nil {
		return *m.Content
	}
	if m.Refusal != nil {
		return *m.Refusal
	}
	return ""
}

func (c *Client) modelOf(r *chatResponse) string {
	if r.Model != "" {
		return r.Model
	}
	return c.opts.Model
}

// Generate implements backend.Generator.
func (c *Client) Generate(ctx context.Context, req backend.GenerateRequest) (backend.GenerateResponse, error) {
	cr := chatRequest{Model: c.opts.Model, Messages: messages(req.System, req.Messages), Temperature: req.Temperature, TopP: req.TopP, MaxTokens: c.maxTokens(req.MaxTokens), Seed: req.Seed}
	resp, err := c.do(ctx, "generate", cr, backend.EstimateRequestTokens(req.System, req.Messages))
	if err != nil {
		return backend.GenerateResponse{}, err
	}
	return backend.GenerateResponse{Text: content(resp), StopReason: resp.Choices[0].FinishReason,
		Usage: backend.Usage{InputTokens: resp.Usage.PromptTokens, OutputTokens: resp.Usage.CompletionTokens}, Model: c.modelOf(resp)}, nil
}

// StructuredCall implements backend.Structurer.
func (c *Client) StructuredCall(ctx context.Context, req backend.StructuredRequest) (backend.StructuredResponse, error) {
	mode := c.opts.JSONMode
	if mode == JSONAuto && c.text.Load() {
		mode = JSONText
	}
	for {
		system := req.System
		cr := chatRequest{Model: c.opts.Model, Temperature: req.Temperature, MaxTokens: c.maxTokens(req.MaxTokens), Seed: req.Seed}
		switch mode {
		case JSONAuto, JSONSchema:
			cr.ResponseFormat = map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": req.Schema.Name, "schema": req.Schema.JSON, "strict": true}}
		case JSONObject:
			cr.ResponseFormat = map[string]string{"type": "json_object"}
			system += "\n\nRespond with only one JSON object that satisfies this JSON schema:\n" + string(req.Schema.JSON)
		default:
			system += "\n\nRespond with only one JSON object that satisfies this JSON schema, no other text:\n" + string(req.Schema.JSON)
		}
		cr.Messages = messages(system, req.Messages)
		resp, err := c.do(ctx, "structured", cr, backend.EstimateRequestTokens(system, req.Messages)+backend.EstimateTokens(string(req.Schema.JSON)))
		if errors.Is(err, errSchemaUnsupported) {
			c.text.Store(true)
			c.fallbacks.Add(1)
			mode = JSONText
			continue
		}
		if err != nil {
			return backend.StructuredResponse{}, err
		}
		text := content(resp)
		u := backend.Usage{InputTokens: resp.Usage.PromptTokens, OutputTokens: resp.Usage.CompletionTokens}
		out := backend.StructuredResponse{Raw: text, Usage: u, Model: c.modelOf(resp)}
		obj, err := backend.ExtractJSON([]byte(text))
		if err != nil {
			reason := "no json object"
			if resp.Choices[0].FinishReason == "length" {
				reason += " (stopped at max tokens)"
			}
			return out, &backend.InvalidOutputError{Model: out.Model, Reason: reason, Raw: text, Usage: u, Err: err}
		}
		out.JSON = obj
		return out, nil
	}
}

// Judge implements backend.Judge through StructuredCall.
func (c *Client) Judge(ctx context.Context, req backend.JudgeRequest) (backend.JudgeResponse, error) {
	return backend.JudgeWith(ctx, c, req)
}

// Screen implements backend.Screener through StructuredCall.
func (c *Client) Screen(ctx context.Context, req backend.ScreenRequest) (backend.ScreenResponse, error) {
	return backend.ScreenWith(ctx, c, req)
}
