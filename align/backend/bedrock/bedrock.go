// Package bedrock implements backend.Generator, Structurer, Judge and
// Screener over Amazon Bedrock's Converse API (aws-sdk-go-v2
// bedrockruntime), and batch inference helpers over the control plane and
// S3.
//
// Reliability follows DESIGN §6: the SDK's standard retryer with
// ModelNotReadyException and truncated bodies added as retryable and its
// shared retry-token bucket disabled (a burst drains it and stops retries);
// client-side pacing (requests and tokens per minute, concurrency cap,
// back-off gate on throttling) so throttles stay at zero; a per-attempt HTTP
// timeout (the SDK has no read timeout by default) and a per-call context
// budget.
package bedrock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/pace"
)

// ToolMode says how StructuredCall obtains JSON.
type ToolMode string

// Tool modes.
const (
	ToolAuto  ToolMode = ""     // ToolForce for Anthropic Claude model ids, ToolText otherwise
	ToolForce ToolMode = "tool" // one tool with the schema as input schema, toolChoice naming it
	ToolText  ToolMode = "text" // the schema in the prompt, JSON parsed from the text
)

// Options configures a Client. Zero values take the defaults noted.
type Options struct {
	// AWSConfig, when set, is used as is (region, credentials, endpoint
	// resolution). Otherwise config.LoadDefaultConfig runs with Region and
	// Credentials applied, which also honours AWS_ENDPOINT_URL_BEDROCK_RUNTIME.
	AWSConfig   *aws.Config
	Region      string                  // "" uses the standard chain (AWS_REGION, profile)
	Credentials aws.CredentialsProvider // nil uses the standard chain
	Endpoint    string                  // base endpoint override, e.g. http://127.0.0.1:PORT

	MaxAttempts    int           // attempts per call including the first; default 8
	MaxBackoff     time.Duration // ceiling of the SDK's jittered back-off; default 20s
	AttemptTimeout time.Duration // per HTTP attempt, headers and body; default 2m
	CallTimeout    time.Duration // per call from the first attempt, retries and their pacing included; default 10m

	Limits pace.Limits   // client-side pacing; ignored when Pacer is set
	Pacer  *pace.Pacer   // share one pacer between clients of one quota
	Meter  backend.Meter // budget and ledger; nil charges nothing

	MaxTokens int      // output ceiling when a request sets none; default 1024
	ToolMode  ToolMode // how StructuredCall gets JSON; default ToolAuto
}

// Stats counts a client's work.
type Stats struct {
	Calls     int64 // calls started (after the meter and pacer admitted them)
	Attempts  int64 // HTTP attempts, retries included
	Throttles int64 // attempts answered with throttling or ModelNotReady
	Failures  int64 // calls that returned a *backend.CallError
}

// Client talks to one Bedrock model. Safe for concurrent use.
type Client struct {
	rt    *bedrockruntime.Client
	model string
	opts  Options
	pacer *pace.Pacer

	calls, attempts, throttles, failures atomic.Int64
}

var (
	_ backend.Generator  = (*Client)(nil)
	_ backend.Structurer = (*Client)(nil)
	_ backend.Judge      = (*Client)(nil)
	_ backend.Screener   = (*Client)(nil)
)

// LoadConfig loads the AWS configuration the standard way (environment,
// shared config, IMDS) with opts.Region and opts.Credentials applied, or
// returns *opts.AWSConfig when set.
func LoadConfig(ctx context.Context, opts Options) (aws.Config, error) {
	if opts.AWSConfig != nil {
		return *opts.AWSConfig, nil
	}
	var lo []func(*config.LoadOptions) error
	if opts.Region != "" {
		lo = append(lo, config.WithRegion(opts.Region))
	}
	if opts.Credentials != nil {
		lo = append(lo, config.WithCredentialsProvider(opts.Credentials))
	}
	// The SDK's own log lines (IMDS fall-backs, header warnings) would reach
	// the user's terminal unasked; align reports failures itself.
	lo = append(lo, config.WithLogger(logging.Nop{}))
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("bedrock: load aws config: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("bedrock: no aws region: set AWS_REGION or a profile region")
	}
	return cfg, nil
}

// NewRetryer returns the SDK's standard retryer with ModelNotReadyException
// and truncated response bodies retryable, ModelNotReadyException treated as
// throttling for back-off, and the shared retry-token bucket disabled
// (pacing replaces it).
func NewRetryer(maxAttempts int, maxBackoff time.Duration) aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = maxAttempts
		so.MaxBackoff = maxBackoff
		so.RateLimiter = ratelimit.None
		so.Retryables = append(so.Retryables,
			retry.RetryableErrorCode{Codes: map[string]struct{}{"ModelNotReadyException": {}}},
			retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return aws.TrueTernary // body cut short: the connection broke mid-response
				}
				return aws.UnknownTernary
			}))
		so.Throttles = append(so.Throttles, retry.IsErrorThrottleFunc(func(err error) aws.Ternary {
			if isThrottle(err) {
				return aws.TrueTernary
			}
			return aws.UnknownTernary
		}))
	})
}

func isThrottle(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ThrottlingException", "ModelNotReadyException", "TooManyRequestsException", "ServiceQuotaExceededException":
			return true
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == 429
}

// New returns a client for model (a Bedrock model id, inference profile id
// or ARN).
func New(ctx context.Context, model string, opts Options) (*Client, error) {
	if model == "" {
		return nil, errors.New("bedrock: empty model id")
	}
	cfg, err := LoadConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	opts.retryDefaults()
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 2 * time.Minute
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 10 * time.Minute
	}
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = 1024
	}
	c := &Client{model: model, opts: opts, pacer: opts.Pacer}
	if c.pacer == nil {
		c.pacer = pace.New(opts.Limits)
	}
	c.rt = bedrockruntime.NewFromConfig(cfg, func(o *bedrockruntime.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.Retryer = NewRetryer(opts.MaxAttempts, opts.MaxBackoff)
		o.Logger = logging.Nop{}
		o.HTTPClient = awshttp.NewBuildableClient().WithTimeout(opts.AttemptTimeout)
		o.APIOptions = append(o.APIOptions, c.addPacing)
	})
	return c, nil
}

// Model returns the model id the client calls.
func (c *Client) Model() string { return c.model }

// Runtime returns the underlying SDK client.
func (c *Client) Runtime() *bedrockruntime.Client { return c.rt }

// Pacer returns the client's pacer.
func (c *Client) Pacer() *pace.Pacer { return c.pacer }

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Calls: c.calls.Load(), Attempts: c.attempts.Load(), Throttles: c.throttles.Load(), Failures: c.failures.Load()}
}

// addPacing inserts, after the retry middleware, a step that every attempt
// passes: it waits for the pacer (requests per minute, throttle back-off)
// and reports throttles and successes back to it.
func (c *Client) addPacing(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("AlignPacing",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if err := c.pacer.Attempt(ctx); err != nil {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, err
			}
			c.attempts.Add(1)
			if n, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
				n.Add(1)
			}
			out, md, err := next.HandleFinalize(ctx, in)
			switch {
			case err == nil:
				c.pacer.OK()
			case isThrottle(err):
				c.throttles.Add(1)
				c.pacer.Throttled()
			}
			return out, md, err
		}), "Retry", middleware.After)
}

// admit charges the meter and the pacer for a call; done settles both.
func (c *Client) admit(ctx context.Context, inTokens, maxTokens int) (done func(backend.Usage), err error) {
	settle := func(int, int) {}
	if c.opts.Meter != nil {
		s, err := c.opts.Meter.Reserve(ctx, c.model, inTokens, maxTokens)
		if err != nil {
			return nil, fmt.Errorf("bedrock %s: %w", c.model, err)
		}
		settle = s
	}
	t, err := c.pacer.Acquire(ctx, inTokens+maxTokens)
	if err != nil {
		settle(0, 0)
		return nil, fmt.Errorf("bedrock %s: waiting for pacing: %w", c.model, err)
	}
	c.calls.Add(1)
	return func(u backend.Usage) {
		t.Done(u.InputTokens + u.OutputTokens)
		settle(u.InputTokens, u.OutputTokens)
	}, nil
}

// attemptsKey keys the per-call attempt counter in a call's context.
type attemptsKey struct{}

// callError builds the error of a call that made attempts attempts.
func (c *Client) callError(op string, parent context.Context, err error, attempts int) error {
	if parent.Err() != nil {
		return fmt.Errorf("%s %s: %w", op, c.model, parent.Err())
	}
	c.failures.Add(1)
	ce := &backend.CallError{Op: op, Model: c.model, Err: err, Attempts: attempts}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		ce.Code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		ce.Status = re.HTTPStatusCode()
	}
	ce.Unreachable = backend.DialFailed(err) || credentialsFailed(ce.Code, ce.Status, err)
	var me *retry.MaxAttemptsError
	ce.Retryable = errors.As(err, &me) || errors.Is(err, context.DeadlineExceeded)
	return ce
}

// credentialsFailed reports whether a call failed for want of (valid)
// credentials or access: every further call would fail the same way.
func credentialsFailed(code string, status int, err error) bool {
	switch code {
	case "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException", "AccessDeniedException",
		"IncompleteSignature", "MissingAuthenticationToken", "InvalidClientTokenId", "ExpiredToken":
		return true
	}
	if status == 401 || status == 403 {
		return true
	}
	// the SDK could not sign the request: no credentials in the chain
	msg := err.Error()
	return strings.Contains(msg, "get identity:") || strings.Contains(msg, "failed to retrieve credentials") ||
		strings.Contains(msg, "failed to refresh cached credentials")
}

func f32(p *float64) *float32 {
	if p == nil {
		return nil
	}
	v := float32(*p)
	return &v
}

func converseInput(model, system string, msgs []backend.Message, temp, topP *float64, maxTokens int) *bedrockruntime.ConverseInput {
	in := &bedrockruntime.ConverseInput{
		ModelId:         aws.String(model),
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(int32(maxTokens)), Temperature: f32(temp), TopP: f32(topP)},
	}
	if system != "" {
		in.System = []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: system}}
	}
	for _, m := range msgs {
		role := types.ConversationRoleUser
		if m.Role == backend.RoleAssistant {
			role = types.ConversationRoleAssistant
		}
		in.Messages = append(in.Messages, types.Message{Role: role, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: m.Content}}})
	}
	return in
}

func usageOf(out *bedrockruntime.ConverseOutput) backend.Usage {
	var u backend.Usage
	if out != nil && out.Usage != nil {
		u.InputTokens = int(aws.ToInt32(out.Usage.InputTokens))
		u.OutputTokens = int(aws.ToInt32(out.Usage.OutputTokens))
	}
	return u
}

// converse runs one metered, paced Converse call.
func (c *Client) converse(ctx context.Context, op string, in *bedrockruntime.ConverseInput, estIn int) (*bedrockruntime.ConverseOutput, backend.Usage, error) {
	maxTokens := int(aws.ToInt32(in.InferenceConfig.MaxTokens))
	done, err := c.admit(ctx, estIn, maxTokens)
	if err != nil {
		return nil, backend.Usage{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	var attempts atomic.Int32
	out, err := c.rt.Converse(context.WithValue(cctx, attemptsKey{}, &attempts), in)
	u := usageOf(out)
	done(u)
	if err != nil {
		return nil, u, c.callError(op, ctx, err, int(attempts.Load()))
	}
	return out, u, nil
}

func textOf(out *bedrockruntime.ConverseOutput) (text string, tools []types.ToolUseBlock) {
	msg, ok := out.Output.(*types.ConverseOutputMemberMessage)
	if !ok {
		return "", nil
	}
	var b strings.Builder
	for _, blk := range msg.Value.Content {
		switch v := blk.(type) {
		case *types.ContentBlockMemberText:
			b.WriteString(v.Value)
		case *types.ContentBlockMemberToolUse:
			tools = append(tools, v.Value)
		}
	}
	return b.String(), tools
}

// Generate implements backend.Generator. Seed is ignored: Converse has none.
func (c *Client) Generate(ctx context.Context, req backend.GenerateRequest) (backend.GenerateResponse, error) {
	maxTokens := req.MaxTokens
	if maxTokens <= 0 {
		maxTokens = c.opts.MaxTokens
	}
	in := converseInput(c.model, req.System, req.Messages, req.Temperature, req.TopP, maxTokens)
	out, u, err := c.converse(ctx, "generate", in, backend.EstimateRequestTokens(req.System, req.Messages))
	if err != nil {
		return backend.GenerateResponse{}, err
	}
	text, _ := textOf(out)
	return backend.GenerateResponse{Text: text, StopReason: string(out.StopReason), Usage: u, Model: c.model}, nil
}

func (c *Client) toolMode() ToolMode {
	if c.opts.ToolMode != ToolAuto {
		return c.opts.ToolMode
	}
	if strings.Contains(c.model, "anthropic.claude") {
		return ToolForce
	}
	return ToolText
}

// StructuredCall implements backend.Structurer. With ToolForce the schema
// becomes the input schema of a single tool that toolChoice names, and the
// tool call's input is the answer; a response without that tool call is an
// *backend.InvalidOutputError. With ToolText the schema goes into the system
// prompt and the first JSON object in the text is the answer.
func (c *Client) StructuredCall(ctx context.Context, req backend.StructuredRequest) (backend.StructuredResponse, error) {
	maxTokens := req.MaxTokens
	if maxTokens <= 0 {
		maxTokens = c.opts.MaxTokens
	}
	mode := c.toolMode()
	system := req.System
	if mode == ToolText {
		system += "\n\nRespond with only one JSON object that satisfies this JSON schema, no other text:\n" + string(req.Schema.JSON)
	}
	in := converseInput(c.model, system, req.Messages, req.Temperature, nil, maxTokens)
	if mode == ToolForce {
		var schema any
		if err := json.Unmarshal(req.Schema.JSON, &schema); err != nil {
			return backend.StructuredResponse{}, fmt.Errorf("bedrock: schema %s: %w", req.Schema.Name, err)
		}
		in.ToolConfig = &types.ToolConfiguration{
			Tools: []types.Tool{&types.ToolMemberToolSpec{Value: types.ToolSpecification{
				Name:        aws.String(req.Schema.Name),
				Description: aws.String(req.Schema.Description),
				InputSchema: &types.ToolInputSchemaMemberJson{Value: document.NewLazyDocument(schema)},
			}}},
			ToolChoice: &types.ToolChoiceMemberTool{Value: types.SpecificToolChoice{Name: aws.String(req.Schema.Name)}},
		}
	}
	est := backend.EstimateRequestTokens(system, req.Messages)
	if mode == ToolForce {
		est += backend.EstimateTokens(string(req.Schema.JSON))
	}
	out, u, err := c.converse(ctx, "structured", in, est)
	if err != nil {
		return backend.StructuredResponse{}, err
	}
	text, tools := textOf(out)
	resp := backend.StructuredResponse{Raw: text, Usage: u, Model: c.model}
	if mode == ToolForce {
		for _, t := range tools {
			if aws.ToString(t.Name) != req.Schema.Name || t.Input == nil {
				continue
			}
			b, err := t.Input.MarshalSmithyDocument()
			if err != nil {
				return resp, &backend.InvalidOutputError{Model: c.model, Reason: "unreadable tool input", Raw: text, Usage: u, Err: err}
			}
			resp.JSON, resp.Raw = b, string(b)
			if len(b) == 0 || b[0] != '{' {
				return resp, &backend.InvalidOutputError{Model: c.model, Reason: "tool input is not a json object", Raw: string(b), Usage: u}
			}
			return resp, nil
		}
		reason := "missing tool call"
		if out.StopReason == types.StopReasonMaxTokens {
			reason += " (stopped at max tokens)"
		}
		return resp, &backend.InvalidOutputError{Model: c.model, Reason: reason, Raw: text, Usage: u}
	}
	obj, err := backend.ExtractJSON([]byte(text))
	if err != nil {
		return resp, &backend.InvalidOutputError{Model: c.model, Reason: "no json object", Raw: text, Usage: u, Err: err}
	}
	resp.JSON = obj
	return resp, nil
}

// Judge implements backend.Judge through StructuredCall.
func (c *Client) Judge(ctx context.Context, req backend.JudgeRequest) (backend.JudgeResponse, error) {
	return backend.JudgeWith(ctx, c, req)
}

// Screen implements backend.Screener through StructuredCall.
func (c *Client) Screen(ctx context.Context, req backend.ScreenRequest) (backend.ScreenResponse, error) {
	return backend.ScreenWith(ctx, c, req)
}

// retryDefaults fills the retry settings that runtime and batch clients share.
func (o *Options) retryDefaults() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 20 * time.Second
	}
}
