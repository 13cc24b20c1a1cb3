package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/bedrock"
	"github.com/align-dev/align/align/backend/local"
	"github.com/align-dev/align/align/backend/openai"
	"github.com/align-dev/align/align/backend/pace"
	"github.com/align-dev/align/align/backend/rules"
)

// OpenOptions configures the backends Open makes. Zero values take each
// backend's defaults.
type OpenOptions struct {
	Endpoint  string      // bedrock: runtime endpoint override (also AWS_ENDPOINT_URL_BEDROCK_RUNTIME)
	Region    string      // bedrock: "" uses the standard chain
	AWSConfig *aws.Config // bedrock: used as is when set (tests)
	APIKey    string      // openai: bearer token

	MaxAttempts    int
	MaxBackoff     time.Duration
	AttemptTimeout time.Duration // per HTTP attempt
	CallTimeout    time.Duration // per call, retries included

	Limits pace.Limits // client-side pacing (requests, tokens, concurrency)
	Pacer  *pace.Pacer // shared pacer; overrides Limits
	Meter  backend.Meter
	Batch  bool // bedrock: price calls at the batch discount (informational)

	Local local.Options // local: threads, context, sessions
}

// Backend is an opened backend spec. Fields a kind cannot serve are nil:
// a rules backend has no Generator.
type Backend struct {
	Spec      backend.Spec
	Model     string // the model id (bedrock), model name (openai), or spec; part of record ids
	Generator backend.Generator
	Judge     backend.Judge
	Screener  backend.Screener
	Bedrock   *bedrock.Client // set for bedrock specs
	OpenAI    *openai.Client  // set for openai specs
	close     func() error
	meter     *meterSwitch
}

// meterSwitch is the Meter Open gives a client: it forwards to the meter a
// stage sets (the stage opens the ledger next to its output, after the
// backend exists) or to OpenOptions.Meter until then.
type meterSwitch struct {
	mu sync.Mutex
	m  backend.Meter
}

func (s *meterSwitch) set(m backend.Meter) {
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
}

func (s *meterSwitch) Reserve(ctx context.Context, model string, in, maxOut int) (func(int, int), error) {
	s.mu.Lock()
	m := s.m
	s.mu.Unlock()
	if m == nil {
		return func(int, int) {}, nil
	}
	return m.Reserve(ctx, model, in, maxOut)
}

// SetMeter makes the backend's calls charge m from now on.
func (b *Backend) SetMeter(m backend.Meter) {
	if b != nil && b.meter != nil {
		b.meter.set(m)
	}
}

// Close releases the backend (a local model's memory). Nil-safe.
func (b *Backend) Close() error {
	if b == nil || b.close == nil {
		return nil
	}
	return b.close()
}

// Stats returns the client's attempt and throttle counters where the
// backend keeps them.
func (b *Backend) Stats() (attempts, throttles, failures int64) {
	switch {
	case b.Bedrock != nil:
		s := b.Bedrock.Stats()
		return s.Attempts, s.Throttles, s.Failures
	case b.OpenAI != nil:
		s := b.OpenAI.Stats()
		return s.Attempts, s.Throttles, s.Failures
	}
	return 0, 0, 0
}

// Open parses spec ("bedrock:MODEL", "openai:URL[#model]", "local:FILE.gguf"
// or "rules:CATALOG.json") and opens the backend. It lives here, not in
// align/backend, because it imports every implementation.
func Open(ctx context.Context, spec string, o OpenOptions) (*Backend, error) {
	s, err := backend.ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	b := &Backend{Spec: s, Model: s.String(), meter: &meterSwitch{m: o.Meter}}
	switch s.Kind {
	case backend.KindBedrock:
		c, err := bedrock.New(ctx, s.Target, bedrock.Options{
			AWSConfig: o.AWSConfig, Region: o.Region, Endpoint: o.Endpoint,
			MaxAttempts: o.MaxAttempts, MaxBackoff: o.MaxBackoff, AttemptTimeout: o.AttemptTimeout, CallTimeout: o.CallTimeout,
			Limits: o.Limits, Pacer: o.Pacer, Meter: b.meter,
		})
		if err != nil {
			return nil, err
		}
		b.Model, b.Bedrock = s.Target, c
		b.Generator, b.Judge, b.Screener = c, c, c
	case backend.KindOpenAI:
		c, err := openai.New(openai.Options{BaseURL: s.Target, Model: s.Model, APIKey: o.APIKey,
			MaxAttempts: o.MaxAttempts, MaxBackoff: o.MaxBackoff, AttemptTimeout: o.AttemptTimeout, CallTimeout: o.CallTimeout,
			Limits: o.Limits, Pacer: o.Pacer, Meter: b.meter})
		if err != nil {
			return nil, err
		}
		if s.Model != "" {
			b.Model = s.Model
		}
		b.OpenAI = c
		b.Generator, b.Judge, b.Screener = c, c, c
	case backend.KindLocal:
		if err := openLocal(b, s.Target, o.Local); err != nil {
			return nil, err
		}
	case backend.KindRules:
		r, err := rules.Open(s.Target)
		if err != nil {
			return nil, err
		}
		b.Judge, b.Screener = r, r
	default:
		return nil, fmt.Errorf("backend %q: unsupported kind", spec)
	}
	return b, nil
}
