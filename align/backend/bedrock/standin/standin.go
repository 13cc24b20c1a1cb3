// Package standin is an in-process stand-in for Amazon Bedrock that the real
// aws-sdk-go-v2 talks to over 127.0.0.1, for tests.
//
// It verifies SigV4 signatures against a known static secret (403 with
// X-Amzn-ErrorType on a mismatch); serves the runtime routes
// POST /model/{id}/converse and /model/{id}/invoke with a scriptable fake
// model (a Go func from request to response); serves the batch-inference
// control plane (CreateModelInvocationJob, GetModelInvocationJob,
// ListModelInvocationJobs) reading JSONL input from and writing .jsonl.out
// plus manifest to an in-process, path-style S3 stand-in (PutObject,
// GetObject, ListObjectsV2); and injects faults on demand: throttling,
// 5xx, ModelNotReadyException, slow or hung responses, connection resets
// and truncated bodies, or throttling above a configured rate. It counts
// requests per route and per fault.
//
// Point a client at it with BaseEndpoint = URL() (S3: S3URL(), path
// style), static credentials Config.AccessKeyID/SecretAccessKey, region
// Config.Region, and AWS_BEARER_TOKEN_BEDROCK unset.
package standin

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Config holds the stand-in's identity. Zero fields take the defaults.
type Config struct {
	AccessKeyID     string // default DefaultAccessKeyID
	SecretAccessKey string // default DefaultSecretAccessKey
	SessionToken    string // required on requests when set
	Region          string // default "us-east-1"
	Account         string // for ARNs; default "123456789012"
	// JobPolls is how many GetModelInvocationJob calls a batch job takes to
	// finish: 0 means 2 (InProgress, then done).
	JobPolls int
}

// Default credentials the stand-in accepts.
const (
	DefaultAccessKeyID     = "AKIDSTANDIN000000000"
	DefaultSecretAccessKey = "standin/secret/key/0000000000000000000000"
)

// Message is one conversation turn as the fake model sees it.
type Message struct {
	Role string
	Text string
}

// Request is what the fake model is asked.
type Request struct {
	Route       string // "converse", "invoke" or "batch"
	ModelID     string
	System      string
	Messages    []Message
	Tools       []string        // converse: names of offered tools
	ToolName    string          // converse: the tool toolChoice forces ("" when none is forced)
	ToolSchema  json.RawMessage // converse: input schema of the forced (or first) tool
	MaxTokens   int
	Temperature *float64
	TopP        *float64
	Body        json.RawMessage // the raw request body (invoke and batch: model-native)
	RecordID    string          // batch only
}

// Response is what the fake model answers.
type Response struct {
	Text       string
	ToolInput  json.RawMessage // converse: answer with a toolUse block holding this input
	ToolName   string          // name for the toolUse block; default Request.ToolName
	StopReason string          // default "end_turn", or "tool_use" with ToolInput
	// Token counts reported in usage; 0 means estimated from the text.
	InputTokens, OutputTokens int
	Body                      json.RawMessage // invoke and batch: the raw model-native body; default built from Text
	Err                       *APIError       // answer with this error instead
}

// APIError is an error response in Bedrock's form.
type APIError struct {
	Status  int
	Type    string // X-Amzn-ErrorType, e.g. "ValidationException"
	Message string
}

// Model is a scriptable fake model. It may be called concurrently.
type Model func(Request) Response

// EchoModel answers every request with "echo: " and the last user message.
func EchoModel(req Request) Response {
	last := ""
	for _, m := range req.Messages {
		if m.Role == "user" {
			last = m.Text
		}
	}
	if len(last) > 200 {
		last = last[:200]
	}
	return Response{Text: "echo: " + last}
}

// FaultKind names an injected fault.
type FaultKind string

// Fault kinds.
const (
	FaultThrottle      FaultKind = "throttle"        // 429 ThrottlingException
	FaultModelNotReady FaultKind = "model-not-ready" // 429 ModelNotReadyException
	FaultInternal      FaultKind = "internal"        // 500 InternalServerException
	FaultUnavailable   FaultKind = "unavailable"     // 503 ServiceUnavailableException
	FaultSlow          FaultKind = "slow"            // wait Delay, then answer normally
	FaultHang          FaultKind = "hang"            // never answer; wait for the client to give up
	FaultReset         FaultKind = "reset"           // close the connection with a TCP RST, no response
	FaultTruncate      FaultKind = "truncate"        // send headers and half the body, then close
	FaultRateThrottle  FaultKind = "rate-throttle"   // 429 from ThrottleAbove (counted, not injected)
)

// Fault is an injected fault. Route limits it to one route ("converse",
// "invoke", or a control-plane operation name); "" matches converse and
// invoke.
type Fault struct {
	Kind  FaultKind
	Route string
	Delay time.Duration // FaultSlow only
}

// Counts is a snapshot of what the stand-in saw.
type Counts struct {
	Requests      map[string]int    // by route: "converse", "invoke", "CreateModelInvocationJob", "s3:PutObject", ...
	Faults        map[FaultKind]int // faults served, FaultRateThrottle included
	BadSignatures int
	Answered      int // model answers served on converse and invoke (2xx)
}

type pending struct {
	f Fault
	n int
}

// Server is a running stand-in. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	rt, s3s *httptest.Server
	closing chan struct{}

	mu        sync.Mutex
	model     Model
	faults    []pending
	counts    Counts
	rateN     int
	rateWin   time.Duration
	admitted  []time.Time
	objects   map[string][]byte // "bucket/key"
	jobs      map[string]*job   // by job id
	jobOrder  []string
	nextJobID int
}

// Start starts a stand-in on 127.0.0.1 (two listeners: Bedrock and S3)
// serving model m (nil: EchoModel).
func Start(cfg Config, m Model) *Server {
	if cfg.AccessKeyID == "" {
		cfg.AccessKeyID = DefaultAccessKeyID
	}
	if cfg.SecretAccessKey == "" {
		cfg.SecretAccessKey = DefaultSecretAccessKey
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Account == "" {
		cfg.Account = "123456789012"
	}
	if cfg.JobPolls <= 0 {
		cfg.JobPolls = 2
	}
	if m == nil {
		m = EchoModel
	}
	s := &Server{
		cfg:     cfg,
		closing: make(chan struct{}),
		model:   m,
		counts:  Counts{Requests: map[string]int{}, Faults: map[FaultKind]int{}},
		objects: map[string][]byte{},
		jobs:    map[string]*job{},
	}
	s.rt = newLoopbackServer(http.HandlerFunc(s.serveBedrock))
	s.s3s = newLoopbackServer(http.HandlerFunc(s.serveS3))
	return s
}

func newLoopbackServer(h http.Handler) *httptest.Server {
	ts := httptest.NewUnstartedServer(h)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("standin: listen on 127.0.0.1: " + err.Error())
	}
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	return ts
}

// URL is the base endpoint of the Bedrock runtime and control plane.
func (s *Server) URL() string { return s.rt.URL }

// S3URL is the base endpoint of the S3 stand-in (use path-style addressing).
func (s *Server) S3URL() string { return s.s3s.URL }

// Config returns the configuration in effect (defaults filled in).
func (s *Server) Config() Config { return s.cfg }

// Close releases hung requests and stops both listeners.
func (s *Server) Close() {
	select {
	case <-s.closing:
		return
	default:
	}
	close(s.closing)
	s.rt.CloseClientConnections()
	s.rt.Close()
	s.s3s.Close()
}

// SetModel replaces the fake model.
func (s *Server) SetModel(m Model) {
	s.mu.Lock()
	s.model = m
	s.mu.Unlock()
}

// Inject makes the next n requests matching f.Route fail with f. Faults
// queue in the order injected.
func (s *Server) Inject(f Fault, n int) {
	s.mu.Lock()
	s.faults = append(s.faults, pending{f, n})
	s.mu.Unlock()
}

// ThrottleAbove answers 429 ThrottlingException to converse and invoke
// requests beyond n admitted in any sliding window of length per; n <= 0
// turns it off.
func (s *Server) ThrottleAbove(n int, per time.Duration) {
	s.mu.Lock()
	s.rateN, s.rateWin, s.admitted = n, per, nil
	s.mu.Unlock()
}

// Counts returns a snapshot of the counters.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counts{Requests: map[string]int{}, Faults: map[FaultKind]int{}, BadSignatures: s.counts.BadSignatures, Answered: s.counts.Answered}
	for k, v := range s.counts.Requests {
		c.Requests[k] = v
	}
	for k, v := range s.counts.Faults {
		c.Faults[k] = v
	}
	return c
}

// ResetCounts zeroes the counters.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	s.counts = Counts{Requests: map[string]int{}, Faults: map[FaultKind]int{}}
	s.mu.Unlock()
}

// PutObject stores an object in the S3 stand-in directly.
func (s *Server) PutObject(bucket, key string, data []byte) {
	s.mu.Lock()
	s.objects[bucket+"/"+key] = append([]byte(nil), data...)
	s.mu.Unlock()
}

// Object returns an object from the S3 stand-in directly.
func (s *Server) Object(bucket, key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[bucket+"/"+key]
	return b, ok
}

func (s *Server) count(route string) {
	s.mu.Lock()
	s.counts.Requests[route]++
	s.mu.Unlock()
}

// takeFault returns the fault for this request, if any: rate throttling
// first, then the injected queue.
func (s *Server) takeFault(route string, runtime bool) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if runtime && s.rateN > 0 {
		now := time.Now()
		keep := s.admitted[:0]
		for _, t := range s.admitted {
			if now.Sub(t) < s.rateWin {
				keep = append(keep, t)
			}
		}
		s.admitted = keep
		if len(s.admitted) >= s.rateN {
			s.counts.Faults[FaultRateThrottle]++
			return Fault{Kind: FaultRateThrottle}, true
		}
		s.admitted = append(s.admitted, now)
	}
	for i := range s.faults {
		p := &s.faults[i]
		if p.n <= 0 || !(p.f.Route == route || (p.f.Route == "" && runtime)) {
			continue
		}
		p.n--
		s.counts.Faults[p.f.Kind]++
		return p.f, true
	}
	return Fault{}, false
}

func writeAPIError(w http.ResponseWriter, e APIError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", e.Type+":http://internal.amazon.com/coral/com.amazon.bedrock/")
	w.Header().Set("X-Amzn-RequestId", "standin")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(map[string]string{"message": e.Message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-RequestId", "standin")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// serveFault answers with f. It reports false when f does not end the
// request (FaultSlow) and the normal answer should follow.
func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, f Fault, okBody func() []byte) bool {
	switch f.Kind {
	case FaultThrottle, FaultRateThrottle:
		writeAPIError(w, APIError{429, "ThrottlingException", "Too many requests, please wait before trying again."})
	case FaultModelNotReady:
		writeAPIError(w, APIError{429, "ModelNotReadyException", "Model is not ready to serve inference requests."})
	case FaultInternal:
		writeAPIError(w, APIError{500, "InternalServerException", "An internal server error occurred."})
	case FaultUnavailable:
		writeAPIError(w, APIError{503, "ServiceUnavailableException", "Service is unavailable."})
	case FaultSlow:
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
		case <-s.closing:
		}
		return false
	case FaultHang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
	case FaultReset:
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("standin: response writer cannot hijack")
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			conn.Close()
		}
	case FaultTruncate:
		body := okBody()
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("standin: response writer cannot hijack")
		}
		conn, buf, err := hj.Hijack()
		if err == nil {
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amzn-RequestId: standin\r\n")
			buf.WriteString("Content-Length: " + itoa(len(body)) + "\r\n\r\n")
			buf.Write(body[:len(body)/2])
			buf.Flush()
			conn.Close()
		}
	}
	return true
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func (s *Server) serveBedrock(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	route, modelID, jobID := bedrockRoute(r)
	s.count(route)
	if err := verifySigV4(r, body, s.cfg, "bedrock"); err != nil {
		s.mu.Lock()
		s.counts.BadSignatures++
		s.mu.Unlock()
		se := err.(*sigError)
		writeAPIError(w, APIError{403, se.code, se.msg})
		return
	}
	runtime := route == "converse" || route == "invoke"
	if route == "" {
		writeAPIError(w, APIError{404, "UnknownOperationException", "no route for " + r.Method + " " + r.URL.Path})
		return
	}
	var answer func() (int, []byte)
	switch route {
	case "converse":
		answer = func() (int, []byte) { return s.converse(modelID, body) }
	case "invoke":
		answer = func() (int, []byte) { return s.invoke(modelID, body) }
	case "CreateModelInvocationJob":
		answer = func() (int, []byte) { return s.createJob(body) }
	case "GetModelInvocationJob":
		answer = func() (int, []byte) { return s.getJob(jobID) }
	case "ListModelInvocationJobs":
		answer = func() (int, []byte) { return s.listJobs(r.URL.Query()) }
	}
	var once sync.Once
	var status int
	var out []byte
	compute := func() { once.Do(func() { status, out = answer() }) }
	if f, ok := s.takeFault(route, runtime); ok {
		if s.serveFault(w, r, f, func() []byte { compute(); return out }) {
			return
		}
	}
	compute()
	if runtime && status == 200 {
		s.mu.Lock()
		s.counts.Answered++
		s.mu.Unlock()
	}
	if status != 200 {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		json.Unmarshal(out, &e)
		writeAPIError(w, APIError{status, e.Type, e.Message})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-RequestId", "standin")
	w.WriteHeader(200)
	w.Write(out)
}

// bedrockRoute names the operation of r and extracts its path labels.
func bedrockRoute(r *http.Request) (route, modelID, jobID string) {
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	parts := strings.Split(strings.TrimPrefix(raw, "/"), "/")
	unesc := func(s string) string {
		u, err := pathUnescape(s)
		if err != nil {
			return s
		}
		return u
	}
	switch {
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "model" && parts[2] == "converse":
		return "converse", unesc(parts[1]), ""
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "model" && parts[2] == "invoke":
		return "invoke", unesc(parts[1]), ""
	case r.Method == http.MethodPost && len(parts) == 1 && parts[0] == "model-invocation-job":
		return "CreateModelInvocationJob", "", ""
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "model-invocation-job":
		id := unesc(parts[1])
		if i := strings.LastIndexByte(id, '/'); i >= 0 {
			id = id[i+1:]
		}
		return "GetModelInvocationJob", "", id
	case r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "model-invocation-jobs":
		return "ListModelInvocationJobs", "", ""
	}
	return "", "", ""
}
