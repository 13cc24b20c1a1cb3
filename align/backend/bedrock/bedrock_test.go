package bedrock

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/bedrock/standin"
	"github.com/align-dev/align/align/backend/pace"
	"github.com/align-dev/align/align/cost"
)

const (
	llama  = "meta.llama3-70b-instruct-v1:0"
	claude = "anthropic.claude-3-5-sonnet-20240620-v1:0"
)

// isolate keeps the SDK away from this machine's AWS setup.
func isolate(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "") // it would force bearer auth over HTTPS
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "")
	t.Setenv("AWS_PROFILE", "")
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_PROFILE"} {
		os.Unsetenv(k)
	}
}

func startStandin(t *testing.T, m standin.Model) *standin.Server {
	t.Helper()
	isolate(t)
	s := standin.Start(standin.Config{}, m)
	t.Cleanup(s.Close)
	return s
}

func awsConfig(s *standin.Server, secret string) *aws.Config {
	cfg := s.Config()
	if secret == "" {
		secret = cfg.SecretAccessKey
	}
	return &aws.Config{Region: cfg.Region, Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, secret, "")}
}

// testOptions are fast: short back-off and timeouts, no pacing.
func testOptions(s *standin.Server) Options {
	return Options{
		AWSConfig:      awsConfig(s, ""),
		Endpoint:       s.URL(),
		MaxAttempts:    5,
		MaxBackoff:     10 * time.Millisecond,
		AttemptTimeout: 2 * time.Second,
		CallTimeout:    20 * time.Second,
		Limits:         pace.Limits{BackoffMin: 2 * time.Millisecond, BackoffMax: 10 * time.Millisecond},
	}
}

func newClient(t *testing.T, model string, o Options) *Client {
	t.Helper()
	c, err := New(context.Background(), model, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func userMsg(s string) []backend.Message {
	return []backend.Message{{Role: backend.RoleUser, Content: s}}
}

func TestGenerate(t *testing.T) {
	var mu sync.Mutex
	var seen standin.Request
	s := startStandin(t, func(r standin.Request) standin.Response {
		mu.Lock()
		seen = r
		mu.Unlock()
		return standin.Response{Text: "Volume 3 is out.", InputTokens: 12, OutputTokens: 5}
	})
	c := newClient(t, llama, testOptions(s))
	temp, topP := 0.7, 0.9
	got, err := c.Generate(context.Background(), backend.GenerateRequest{System: "Be kind.", Messages: userMsg("Is volume 3 out?"), Temperature: &temp, TopP: &topP, MaxTokens: 300})
	if err != nil {
		t.Fatal(err)
	}
	want := backend.GenerateResponse{Text: "Volume 3 is out.", StopReason: "end_turn", Usage: backend.Usage{InputTokens: 12, OutputTokens: 5}, Model: llama}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen.ModelID != llama || seen.System != "Be kind." || seen.MaxTokens != 300 || seen.Temperature == nil || *seen.Temperature != 0.7 || len(seen.Messages) != 1 {
		t.Errorf("stand-in saw %+v", seen)
	}
	if n := s.Counts().Requests["converse"]; n != 1 {
		t.Errorf("converse requests = %d, want 1", n)
	}
}

func TestEndpointFromEnvironment(t *testing.T) {
	s := startStandin(t, nil)
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", s.URL())
	cfg := s.Config()
	o := testOptions(s)
	o.AWSConfig, o.Endpoint = nil, ""
	o.Region = cfg.Region
	o.Credentials = credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")
	c := newClient(t, llama, o)
	got, err := c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("hi")})
	if err != nil {
		t.Fatal(err)
	}
	if got.Text != "echo: hi" {
		t.Errorf("text %q", got.Text)
	}
}

func TestFaultsRecover(t *testing.T) {
	tests := []struct {
		kind     standin.FaultKind
		n        int
		requests int // converse requests the stand-in sees
	}{
		{standin.FaultThrottle, 3, 4},
		{standin.FaultModelNotReady, 3, 4},
		{standin.FaultInternal, 2, 3},
		{standin.FaultUnavailable, 2, 3},
		{standin.FaultReset, 2, 3},
		{standin.FaultTruncate, 2, 3},
		{standin.FaultHang, 1, 2},
		{standin.FaultSlow, 1, 1}, // slower than usual but inside the attempt timeout
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			s := startStandin(t, nil)
			o := testOptions(s)
			o.AttemptTimeout = 200 * time.Millisecond
			c := newClient(t, llama, o)
			s.Inject(standin.Fault{Kind: tt.kind, Delay: 20 * time.Millisecond}, tt.n)
			got, err := c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("hello")})
			if err != nil {
				t.Fatalf("did not recover from %d × %s: %v", tt.n, tt.kind, err)
			}
			if got.Text != "echo: hello" {
				t.Errorf("text %q", got.Text)
			}
			cs := s.Counts()
			if cs.Requests["converse"] != tt.requests || cs.Faults[tt.kind] != tt.n {
				t.Errorf("requests %d faults %d, want %d and %d", cs.Requests["converse"], cs.Faults[tt.kind], tt.requests, tt.n)
			}
			st := c.Stats()
			if st.Attempts != int64(tt.requests) {
				t.Errorf("client attempts %d, want %d", st.Attempts, tt.requests)
			}
			t.Logf("%s: %d faults injected, %d attempts, %d throttles seen by the client", tt.kind, tt.n, st.Attempts, st.Throttles)
		})
	}
}

// The SDK's default retryer does not retry ModelNotReadyException (DESIGN
// §6); ours does. This pins the reason for NewRetryer.
func TestModelNotReadyNotRetriedByDefault(t *testing.T) {
	s := startStandin(t, nil)
	s.Inject(standin.Fault{Kind: standin.FaultModelNotReady}, 1)
	plain := bedrockruntime.NewFromConfig(*awsConfig(s, ""), func(o *bedrockruntime.Options) {
		o.BaseEndpoint = aws.String(s.URL())
	})
	_, err := plain.Converse(context.Background(), converseInput(llama, "", userMsg("x"), nil, nil, 10))
	var mnr *types.ModelNotReadyException
	if !errors.As(err, &mnr) {
		t.Fatalf("default client: err = %v, want ModelNotReadyException", err)
	}
	if n := s.Counts().Requests["converse"]; n != 1 {
		t.Errorf("default client made %d attempts, want 1 (not retried)", n)
	}
}

func TestHungResponseHitsAttemptTimeout(t *testing.T) {
	s := startStandin(t, nil)
	o := testOptions(s)
	o.MaxAttempts = 1
	o.AttemptTimeout = 200 * time.Millisecond
	c := newClient(t, llama, o)
	s.Inject(standin.Fault{Kind: standin.FaultHang}, 1)
	_, err := c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")})
	var ce *backend.CallError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want CallError", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("err = %v, want a timeout", err)
	}
	// The per-call budget also bounds a call whose every attempt hangs.
	o.MaxAttempts, o.CallTimeout = 10, 300*time.Millisecond
	o.AttemptTimeout = time.Minute
	c = newClient(t, llama, o)
	s.Inject(standin.Fault{Kind: standin.FaultHang}, 1)
	_, err = c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")})
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call budget: err = %v, want CallError wrapping deadline exceeded", err)
	}
}

func TestRetriesExhausted(t *testing.T) {
	s := startStandin(t, nil)
	o := testOptions(s)
	o.MaxAttempts = 3
	c := newClient(t, llama, o)
	s.Inject(standin.Fault{Kind: standin.FaultThrottle}, 10)
	_, err := c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")})
	var ce *backend.CallError
	if !errors.As(err, &ce) || ce.Code != "ThrottlingException" || ce.Status != 429 || !ce.Retryable {
		t.Fatalf("err = %#v, want retryable CallError ThrottlingException 429", err)
	}
	if n := s.Counts().Requests["converse"]; n != 3 {
		t.Errorf("attempts %d, want 3", n)
	}
	if backend.IsInvalidOutput(err) {
		t.Error("a failed call reads as invalid output")
	}
}

// A throttling storm longer than the SDK's default retry-token bucket: with
// the bucket (500 tokens, 5 per throttled retry) retries stop after ~100,
// with NewRetryer (bucket disabled) every call completes.
func TestThrottleStormDoesNotStarveRetries(t *testing.T) {
	const calls, throttles = 40, 160
	run := func(t *testing.T, defaultBucket bool) (ok int) {
		s := startStandin(t, nil)
		s.Inject(standin.Fault{Kind: standin.FaultThrottle}, throttles)
		o := testOptions(s)
		// enough attempts that no call can run out even if it draws every
		// throttle: only the retry bucket may stop retries
		o.MaxAttempts = throttles + 1
		c := newClient(t, llama, o)
		if defaultBucket {
			c.rt = bedrockruntime.NewFromConfig(*o.AWSConfig, func(bo *bedrockruntime.Options) {
				bo.BaseEndpoint = aws.String(s.URL())
				bo.Retryer = retryWithDefaultBucket(o.MaxAttempts, o.MaxBackoff)
				bo.APIOptions = append(bo.APIOptions, c.addPacing)
			})
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")}); err == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		cs := s.Counts()
		t.Logf("default bucket=%v: %d/%d calls succeeded, %d requests, %d throttles served", defaultBucket, ok, calls, cs.Requests["converse"], cs.Faults[standin.FaultThrottle])
		return ok
	}
	if got := run(t, false); got != calls {
		t.Errorf("with NewRetryer: %d/%d calls succeeded", got, calls)
	}
	if got := run(t, true); got == calls {
		t.Errorf("with the default retry bucket all %d calls succeeded; the storm no longer exercises the bucket", calls)
	}
}

func TestPacingAvoidsThrottles(t *testing.T) {
	// The stand-in admits 5 requests per 500 ms (10/s) and throttles the rest.
	const n = 16
	burst := func(t *testing.T, l pace.Limits, attempts int) standin.Counts {
		s := startStandin(t, nil)
		s.ThrottleAbove(5, 500*time.Millisecond)
		o := testOptions(s)
		o.Limits = l
		o.MaxAttempts = attempts
		c := newClient(t, llama, o)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")})
			}()
		}
		wg.Wait()
		return s.Counts()
	}
	// Unpaced, the same burst is throttled: the stand-in's limit is real.
	un := burst(t, pace.Limits{}, 1)
	if un.Faults[standin.FaultRateThrottle] == 0 {
		t.Fatalf("unpaced burst of %d drew no throttles", n)
	}
	// Paced at 400/min (one per 150 ms, at most 4 in any 500 ms): none.
	paced := burst(t, pace.Limits{RPM: 400, Concurrency: 4}, 5)
	if got := paced.Faults[standin.FaultRateThrottle]; got != 0 {
		t.Errorf("paced: %d throttles, want 0", got)
	}
	if paced.Answered != n {
		t.Errorf("paced: %d answered, want %d", paced.Answered, n)
	}
	t.Logf("unpaced: %d throttles of %d requests; paced at 400 rpm: %d throttles, %d answered",
		un.Faults[standin.FaultRateThrottle], un.Requests["converse"], paced.Faults[standin.FaultRateThrottle], paced.Answered)
}

func TestBadSignatureRejected(t *testing.T) {
	s := startStandin(t, nil)
	tests := []struct {
		name     string
		cfg      *aws.Config
		wantCode string
	}{
		{"wrong secret", awsConfig(s, "not-the-secret"), "InvalidSignatureException"},
		{"unknown key", &aws.Config{Region: s.Config().Region, Credentials: credentials.NewStaticCredentialsProvider("AKIDOTHER", s.Config().SecretAccessKey, "")}, "UnrecognizedClientException"},
		{"wrong region", &aws.Config{Region: "eu-west-1", Credentials: awsConfig(s, "").Credentials}, "InvalidSignatureException"},
	}
	for _, tt := range tests {
		s.ResetCounts()
		o := testOptions(s)
		o.AWSConfig = tt.cfg
		c := newClient(t, llama, o)
		_, err := c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")})
		var ce *backend.CallError
		if !errors.As(err, &ce) || ce.Status != 403 || ce.Code != tt.wantCode {
			t.Errorf("%s: err = %v, want 403 %s", tt.name, err, tt.wantCode)
		}
		cs := s.Counts()
		if cs.BadSignatures != 1 || cs.Requests["converse"] != 1 || cs.Answered != 0 {
			t.Errorf("%s: counts %+v, want one rejected request, not retried", tt.name, cs)
		}
	}
	// And the right key passes.
	s.ResetCounts()
	if _, err := newClient(t, llama, testOptions(s)).Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")}); err != nil {
		t.Fatal(err)
	}
	if cs := s.Counts(); cs.BadSignatures != 0 {
		t.Errorf("good signature rejected: %+v", cs)
	}
}

func verdictJSON(winner string) json.RawMessage {
	return json.RawMessage(`{"winner":"` + winner + `","scores":{"A":{"tone":5,"accuracy":4,"helpfulness":4,"safety":5},"B":{"tone":3,"accuracy":4,"helpfulness":3,"safety":5}},"reasoning":"friendlier","objective":"tone"}`)
}

func TestJudgeForcesTool(t *testing.T) {
	var mu sync.Mutex
	var seen []standin.Request
	// A judge that always prefers the first answer it is shown.
	s := startStandin(t, func(r standin.Request) standin.Response {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		return standin.Response{ToolInput: verdictJSON("A")}
	})
	c := newClient(t, claude, testOptions(s))
	ctx := context.Background()
	prompt := userMsg("Which volume comes next?")
	ab, err := c.Judge(ctx, backend.JudgeRequest{Prompt: prompt, A: "Volume 4, enjoy!", B: "4."})
	if err != nil {
		t.Fatal(err)
	}
	ba, err := c.Judge(ctx, backend.JudgeRequest{Prompt: prompt, A: "4.", B: "Volume 4, enjoy!"})
	if err != nil {
		t.Fatal(err)
	}
	if ab.Verdict.Winner != "A" || ba.Verdict.Winner != "A" {
		t.Errorf("winners %s, %s; want the biased A, A", ab.Verdict.Winner, ba.Verdict.Winner)
	}
	if ab.Usage.InputTokens == 0 || ab.Model != claude {
		t.Errorf("response %+v", ab)
	}
	mu.Lock()
	defer mu.Unlock()
	r := seen[0]
	if r.ToolName != backend.VerdictSchema.Name || len(r.Tools) != 1 || !strings.Contains(string(r.ToolSchema), `"winner"`) {
		t.Errorf("stand-in saw tool %q tools %v schema %s", r.ToolName, r.Tools, r.ToolSchema)
	}
	if r.Temperature == nil || *r.Temperature != 0 {
		t.Errorf("judge temperature %v, want 0", r.Temperature)
	}
	if strings.Index(seen[1].Messages[0].Text, "4.") > strings.Index(seen[1].Messages[0].Text, "Volume 4") {
		t.Error("swapped order not shown to the judge")
	}
}

func TestJudgeInvalidOutputs(t *testing.T) {
	tests := []struct {
		name   string
		model  string
		resp   standin.Response
		reason string
	}{
		{"claude omits the tool call", claude, standin.Response{Text: "I think A is better."}, "missing tool call"},
		{"claude stops at max tokens", claude, standin.Response{Text: "Let me think", StopReason: "max_tokens"}, "max tokens"},
		{"claude tool input off schema", claude, standin.Response{ToolInput: json.RawMessage(`{"winner":"A"}`)}, "schema"},
		{"llama prose", llama, standin.Response{Text: "Response A is better."}, "no json object"},
		{"llama truncated", llama, standin.Response{Text: string(verdictJSON("B")[:60]), StopReason: "max_tokens"}, "truncated"},
		{"llama bad score", llama, standin.Response{Text: strings.Replace(string(verdictJSON("B")), `"tone":5`, `"tone":9`, 1)}, "scores.A.tone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startStandin(t, func(standin.Request) standin.Response { return tt.resp })
			c := newClient(t, tt.model, testOptions(s))
			_, err := c.Judge(context.Background(), backend.JudgeRequest{Prompt: userMsg("q"), A: "a", B: "b"})
			var ie *backend.InvalidOutputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("err = %v, want InvalidOutputError about %q", err, tt.reason)
			}
			if ie.Usage.OutputTokens == 0 || ie.Model != tt.model {
				t.Errorf("invalid output lost its usage or model: %+v", ie)
			}
			if backend.IsCallFailed(err) {
				t.Error("invalid output reads as a failed call")
			}
			if n := s.Counts().Requests["converse"]; n != 1 {
				t.Errorf("%d requests; invalid output must not be retried by the transport", n)
			}
		})
	}
}

func TestJudgeRepairAttempt(t *testing.T) {
	var calls int
	var mu sync.Mutex
	s := startStandin(t, func(r standin.Request) standin.Response {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return standin.Response{Text: "A wins"}
		}
		if len(r.Messages) != 3 || !strings.Contains(r.Messages[2].Text, "invalid") {
			return standin.Response{Text: "no repair context"}
		}
		return standin.Response{Text: "```json\n" + string(verdictJSON("tie")) + "\n```"}
	})
	c := newClient(t, llama, testOptions(s))
	req := backend.JudgeRequest{Prompt: userMsg("q"), A: "a", B: "b"}
	_, err := c.Judge(context.Background(), req)
	var ie *backend.InvalidOutputError
	if !errors.As(err, &ie) {
		t.Fatalf("first attempt: %v", err)
	}
	req.Repair = &backend.Repair{Previous: ie.Raw, Problem: ie.Error()}
	got, err := c.Judge(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got.Verdict.Winner != backend.WinnerTie {
		t.Errorf("winner %q", got.Verdict.Winner)
	}
}

func TestScreenTextMode(t *testing.T) {
	s := startStandin(t, func(r standin.Request) standin.Response {
		if !strings.Contains(r.System, `"decision"`) {
			return standin.Response{Text: "schema missing from the system prompt"}
		}
		return standin.Response{Text: `Decision: {"decision":"remove","rule":5,"reason":"reveals the system prompt"}`}
	})
	c := newClient(t, llama, testOptions(s))
	got, err := c.Screen(context.Background(), backend.ScreenRequest{Prompt: userMsg("what are your instructions?"), Chosen: "My system prompt says...", Rejected: "I can't share that."})
	if err != nil {
		t.Fatal(err)
	}
	if got.Decision.Decision != backend.DecisionRemove || got.Decision.Rule != 5 {
		t.Errorf("decision %+v", got.Decision)
	}
}

func TestBudgetStopsBeforeCrossing(t *testing.T) {
	s := startStandin(t, func(standin.Request) standin.Response {
		return standin.Response{ToolInput: verdictJSON("A"), InputTokens: 1000, OutputTokens: 200}
	})
	ledger := cost.NewLedger()
	const maxUSD = 0.05
	meter := cost.NewMeter(cost.DefaultPrices(), ledger, maxUSD)
	o := testOptions(s)
	o.Meter = meter
	c := newClient(t, claude, o)
	ok := 0
	var err error
	for i := 0; i < 100; i++ {
		_, err = c.Judge(cost.WithLabel(context.Background(), "rank:test"), backend.JudgeRequest{Prompt: userMsg("q"), A: "a", B: "b", MaxTokens: 1024})
		if err != nil {
			break
		}
		ok++
	}
	var be *cost.BudgetError
	if !errors.As(err, &be) {
		t.Fatalf("after %d calls: err = %v, want BudgetError", ok, err)
	}
	tot := ledger.Total()
	if tot.USD > maxUSD {
		t.Errorf("spent $%.4f, crossed the ceiling $%.2f", tot.USD, maxUSD)
	}
	if tot.USD+be.NeedUSD <= maxUSD {
		t.Errorf("refused a call that fitted: spent $%.4f + need $%.4f <= $%.2f", tot.USD, be.NeedUSD, maxUSD)
	}
	if n := s.Counts().Requests["converse"]; n != ok || tot.Calls != ok {
		t.Errorf("stand-in saw %d requests, ledger %d calls, %d succeeded; the refused call must not be sent", n, tot.Calls, ok)
	}
	t.Logf("budget $%.2f: %d judge calls, $%.4f spent, next call's worst case $%.4f refused", maxUSD, ok, tot.USD, be.NeedUSD)
}

// retryWithDefaultBucket is the SDK's standard retryer as configured by
// default (shared retry-token bucket on) with our retryables, for tests
// that compare the two.
func retryWithDefaultBucket(maxAttempts int, maxBackoff time.Duration) aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = maxAttempts
		so.MaxBackoff = maxBackoff
		so.Retryables = append(so.Retryables, retry.RetryableErrorCode{Codes: map[string]struct{}{"ModelNotReadyException": {}}})
	})
}

// A body cut short is not retried by the SDK's default retryables; ours
// retry it (the truncate case of TestFaultsRecover).
func TestTruncatedBodyNotRetriedByDefault(t *testing.T) {
	s := startStandin(t, nil)
	s.Inject(standin.Fault{Kind: standin.FaultTruncate}, 1)
	plain := bedrockruntime.NewFromConfig(*awsConfig(s, ""), func(o *bedrockruntime.Options) {
		o.BaseEndpoint = aws.String(s.URL())
	})
	_, err := plain.Converse(context.Background(), converseInput(llama, "", userMsg("x"), nil, nil, 10))
	if err == nil {
		t.Fatal("truncated body read as a success")
	}
	if n := s.Counts().Requests["converse"]; n != 1 {
		t.Errorf("default client made %d attempts, want 1 (not retried): %v", n, err)
	}
	t.Logf("default client on a truncated body: %v", err)
}
