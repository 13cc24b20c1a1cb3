package openai

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/pace"
	"github.com/align-dev/align/align/cost"
)

// fakeServer is an OpenAI-compatible server on 127.0.0.1 whose answers a
// test scripts; faults are consumed one per request, in order.
type fakeServer struct {
	*httptest.Server
	mu       sync.Mutex
	faults   []string // "429", "500", "hang", "reset", "truncate", "400-format"
	requests []map[string]any
	headers  []http.Header
	answer   func(req map[string]any) string
	closing  chan struct{}
}

func newFake(t *testing.T, answer func(map[string]any) string) *fakeServer {
	f := &fakeServer{answer: answer, closing: make(chan struct{})}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	f.Server = ts
	t.Cleanup(func() { close(f.closing); ts.CloseClientConnections(); ts.Close() })
	return f
}

func (f *fakeServer) inject(faults ...string) {
	f.mu.Lock()
	f.faults = append(f.faults, faults...)
	f.mu.Unlock()
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, r)
		return
	}
	var req map[string]any
	body, _ := io.ReadAll(r.Body)
	json.Unmarshal(body, &req)
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.headers = append(f.headers, r.Header.Clone())
	fault := ""
	if len(f.faults) > 0 {
		fault, f.faults = f.faults[0], f.faults[1:]
	}
	f.mu.Unlock()
	text := f.answer(req)
	out, _ := json.Marshal(map[string]any{
		"model":   "fake-model",
		"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": text}, "finish_reason": "stop"}},
		"usage":   map[string]any{"prompt_tokens": 11, "completion_tokens": 7},
	})
	switch fault {
	case "429":
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(429)
		io.WriteString(w, `{"error":{"message":"slow down","type":"rate_limit"}}`)
	case "500":
		w.WriteHeader(500)
		io.WriteString(w, `{"error":{"message":"boom","type":"server_error"}}`)
	case "400-format":
		if _, ok := req["response_format"]; ok {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{"message":"unknown field: response_format","type":"invalid_request_error"}}`)
			return
		}
		w.Write(out)
	case "hang":
		select {
		case <-r.Context().Done():
		case <-f.closing:
		}
	case "reset", "truncate":
		conn, buf, _ := w.(http.Hijacker).Hijack()
		if fault == "truncate" {
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(out)) + "\r\n\r\n")
			buf.Write(out[:len(out)/2])
			buf.Flush()
		} else if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		conn.Close()
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func testOptions(f *fakeServer) Options {
	return Options{BaseURL: f.URL, Model: "llama3:8b", APIKey: "sk-test", MaxAttempts: 5,
		BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, AttemptTimeout: 200 * time.Millisecond, CallTimeout: 10 * time.Second,
		Limits: pace.Limits{BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}}
}

func newClient(t *testing.T, o Options) *Client {
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func userMsg(s string) []backend.Message {
	return []backend.Message{{Role: backend.RoleUser, Content: s}}
}

const verdict = `{"winner":"B","scores":{"A":{"tone":2,"accuracy":4,"helpfulness":3,"safety":5},"B":{"tone":5,"accuracy":4,"helpfulness":4,"safety":5}},"reasoning":"kinder","objective":"tone"}`

func TestGenerateSendsRequest(t *testing.T) {
	f := newFake(t, func(map[string]any) string { return "hello there" })
	c := newClient(t, testOptions(f))
	temp, seed := 0.7, int64(42)
	got, err := c.Generate(context.Background(), backend.GenerateRequest{System: "Be kind.", Messages: userMsg("hi"), Temperature: &temp, Seed: &seed, MaxTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	want := backend.GenerateResponse{Text: "hello there", StopReason: "stop", Usage: backend.Usage{InputTokens: 11, OutputTokens: 7}, Model: "fake-model"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	r := f.requests[0]
	msgs := r["messages"].([]any)
	if r["model"] != "llama3:8b" || r["seed"] != 42.0 || r["max_tokens"] != 64.0 || r["temperature"] != 0.7 || len(msgs) != 2 {
		t.Errorf("request %v", r)
	}
	if _, ok := r["top_p"]; ok {
		t.Error("unset top_p was sent")
	}
	if h := f.headers[0].Get("Authorization"); h != "Bearer sk-test" {
		t.Errorf("authorization %q", h)
	}
	// A base URL ending in /v1 is not doubled.
	o := testOptions(f)
	o.BaseURL = f.URL + "/v1/"
	if _, err := newClient(t, o).Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")}); err != nil {
		t.Error(err)
	}
}

func TestFaultsRecover(t *testing.T) {
	for _, fault := range []string{"429", "500", "hang", "reset", "truncate"} {
		t.Run(fault, func(t *testing.T) {
			f := newFake(t, func(map[string]any) string { return "ok" })
			f.inject(fault, fault)
			c := newClient(t, testOptions(f))
			got, err := c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")})
			if err != nil {
				t.Fatalf("did not recover from 2 × %s: %v", fault, err)
			}
			if got.Text != "ok" || f.count() != 3 {
				t.Errorf("text %q after %d requests, want ok after 3", got.Text, f.count())
			}
			st := c.Stats()
			t.Logf("%s: 2 injected, %d attempts, %d throttles", fault, st.Attempts, st.Throttles)
		})
	}
}

func TestRetriesExhaustedAndNotRetried(t *testing.T) {
	f := newFake(t, func(map[string]any) string { return "ok" })
	f.inject("500", "500", "500")
	o := testOptions(f)
	o.MaxAttempts = 3
	_, err := newClient(t, o).Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x")})
	var ce *backend.CallError
	if !errors.As(err, &ce) || ce.Status != 500 || !ce.Retryable || f.count() != 3 {
		t.Fatalf("err = %#v after %d requests", err, f.count())
	}
	// A 400 is not retried.
	f2 := newFake(t, func(map[string]any) string { return "ok" })
	f2.inject("400-format")
	o = testOptions(f2)
	o.JSONMode = JSONSchema
	_, err = newClient(t, o).StructuredCall(context.Background(), backend.StructuredRequest{Messages: userMsg("x"), Schema: backend.VerdictSchema})
	if !errors.As(err, &ce) || ce.Status != 400 || ce.Retryable || f2.count() != 1 {
		t.Fatalf("400: err = %v after %d requests", err, f2.count())
	}
}

func TestJudgeJSONSchemaAndFallback(t *testing.T) {
	f := newFake(t, func(req map[string]any) string {
		if _, ok := req["response_format"]; ok {
			return verdict
		}
		return "Sure! Here is the verdict:\n```json\n" + verdict + "\n```"
	})
	c := newClient(t, testOptions(f))
	got, err := c.Judge(context.Background(), backend.JudgeRequest{Prompt: userMsg("q"), A: "a", B: "b"})
	if err != nil || got.Verdict.Winner != "B" {
		t.Fatalf("got %+v, %v", got, err)
	}
	rf := f.requests[0]["response_format"].(map[string]any)
	if rf["type"] != "json_schema" || rf["json_schema"].(map[string]any)["name"] != backend.VerdictSchema.Name {
		t.Errorf("response_format %v", rf)
	}
	// A server that rejects response_format: fall back to text, once and for all.
	f.inject("400-format")
	got, err = c.Judge(context.Background(), backend.JudgeRequest{Prompt: userMsg("q"), A: "a", B: "b"})
	if err != nil || got.Verdict.Winner != "B" {
		t.Fatalf("fallback: got %+v, %v", got, err)
	}
	if _, err := c.Judge(context.Background(), backend.JudgeRequest{Prompt: userMsg("q"), A: "a", B: "b"}); err != nil {
		t.Fatal(err)
	}
	last := f.requests[len(f.requests)-1]
	if _, ok := last["response_format"]; ok {
		t.Error("still sends response_format after falling back")
	}
	if sys := last["messages"].([]any)[0].(map[string]any)["content"].(string); !strings.Contains(sys, `"winner"`) {
		t.Error("text mode lacks the schema in the system prompt")
	}
	if st := c.Stats(); st.Fallbacks != 1 || f.count() != 4 {
		t.Errorf("fallbacks %d, requests %d; want 1 and 4", st.Fallbacks, f.count())
	}
}

func TestJudgeInvalidOutput(t *testing.T) {
	for _, tt := range []struct{ name, out, reason string }{
		{"prose", "B is nicer.", "no json object"},
		{"truncated", verdict[:50], "truncated"},
		{"off schema", `{"winner":"B"}`, "schema"},
	} {
		f := newFake(t, func(map[string]any) string { return tt.out })
		_, err := newClient(t, testOptions(f)).Judge(context.Background(), backend.JudgeRequest{Prompt: userMsg("q"), A: "a", B: "b"})
		var ie *backend.InvalidOutputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.reason) || ie.Usage.InputTokens != 11 {
			t.Errorf("%s: err = %v, want InvalidOutputError about %q with usage", tt.name, err, tt.reason)
		}
	}
}

func TestBudget(t *testing.T) {
	f := newFake(t, func(map[string]any) string { return "ok" })
	prices := cost.DefaultPrices()
	prices.Models["llama3:8b"] = cost.Price{InputPer1K: 1, OutputPer1K: 1}
	o := testOptions(f)
	// Worst case per call: ~5 input + 200 output tokens = $0.205; actual 18
	// tokens = $0.018. Under $0.30, six calls fit: 6 × 0.018 + 0.205 > 0.30.
	o.Meter = cost.NewMeter(prices, nil, 0.3)
	c := newClient(t, o)
	n := 0
	var err error
	for ; n < 10; n++ {
		if _, err = c.Generate(context.Background(), backend.GenerateRequest{Messages: userMsg("x"), MaxTokens: 200}); err != nil {
			break
		}
	}
	if !cost.IsBudget(err) || f.count() != n || n != 6 {
		t.Errorf("after %d calls (%d sent): err = %v, want BudgetError", n, f.count(), err)
	}
}
