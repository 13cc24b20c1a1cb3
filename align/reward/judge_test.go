package reward

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/pipeline"
)

// An LLM judge behind an OpenAI-compatible server: the response is shown
// as both A and B, the reward is the mean of the eight criterion scores,
// and an invalid verdict is asked for once more.
func TestJudgeTerm(t *testing.T) {
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests++
		first := requests == 1
		mu.Unlock()
		text := string(body)
		// A and B are the same response: the judge saw it twice
		if strings.Count(text, "RESPONSE-") < 2 {
			t.Errorf("the judge request does not show the response as A and B: %s", text)
		}
		if strings.Contains(text, "be kind") {
			t.Errorf("the judge saw the conversation's system message: %s", text)
		}
		var scores string
		switch {
		case first:
			scores = "" // no JSON at all: invalid output
		case strings.Contains(text, "RESPONSE-good"):
			scores = `{"A":{"tone":5,"accuracy":5,"helpfulness":4,"safety":5},"B":{"tone":5,"accuracy":4,"helpfulness":4,"safety":5}}`
		default:
			scores = `{"A":{"tone":2,"accuracy":1,"helpfulness":2,"safety":3},"B":{"tone":2,"accuracy":1,"helpfulness":2,"safety":3}}`
		}
		content := "I cannot judge this."
		if scores != "" {
			content = `{"winner":"tie","scores":` + scores + `,"reasoning":"same response","objective":"tone"}`
		}
		out, _ := json.Marshal(map[string]any{"model": "fake", "choices": []any{map[string]any{
			"message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 5}})
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}))
	defer srv.Close()
	spec := "openai:" + srv.URL + "/v1#fake"
	prompt := []Message{{Role: "system", Content: "be kind"}, {Role: "user", Content: "Hi"}}
	got := score(t, spec, Options{}, []Sample{{Prompt: prompt, Response: "RESPONSE-good"}})
	if got[0] != 37.0/8 {
		t.Errorf("after a repair: reward %g, want 37/8", got[0])
	}
	if requests != 2 {
		t.Errorf("%d requests for one sample with one invalid verdict, want 2", requests)
	}
	ss := []Sample{{Prompt: prompt, Response: "RESPONSE-good"}, {Prompt: prompt, Response: "RESPONSE-bad"}, {Prompt: prompt, Response: "RESPONSE-good"}}
	got = score(t, spec+"=2", Options{}, ss)
	if got[0] != 37.0/4 || got[1] != 4 || got[2] != 37.0/4 {
		t.Errorf("rewards %v, want [9.25 4 9.25]", got)
	}
	// a judge that cannot be reached: the error names the term and the sample
	srv.Close()
	s, err := Parse(context.Background(), spec, Options{Backend: backendOptionsForTest()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Score(context.Background(), []Sample{{ID: "s1", Prompt: prompt, Response: "x"}}); err == nil ||
		!strings.Contains(err.Error(), "reward term "+spec+": sample \"s1\"") {
		t.Errorf("unreachable judge: %v", err)
	}
}

// backendOptionsForTest gives up on a dead server at once.
func backendOptionsForTest() pipeline.OpenOptions {
	return pipeline.OpenOptions{MaxAttempts: 1, MaxBackoff: time.Millisecond}
}

// fakeJudge is an OpenAI-compatible judge that gives every response the
// same verdict and reports 10 input and 5 output tokens per call; after
// failAfter calls (0: never) it answers without JSON (invalid output).
type fakeJudge struct {
	srv       *httptest.Server
	mu        sync.Mutex
	calls     int
	failAfter int
}

func newFakeJudge(t *testing.T) *fakeJudge {
	f := &fakeJudge{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls++
		fail := f.failAfter > 0 && f.calls > f.failAfter
		f.mu.Unlock()
		content := `{"winner":"tie","scores":{"A":{"tone":4,"accuracy":4,"helpfulness":4,"safety":4},"B":{"tone":4,"accuracy":4,"helpfulness":4,"safety":4}},"reasoning":"same","objective":"tone"}`
		if fail {
			content = "I cannot judge this."
		}
		out, _ := json.Marshal(map[string]any{"model": "fake", "choices": []any{map[string]any{
			"message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}},
			"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": 5}})
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeJudge) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// A paid judge under Spending: every call is in the ledger, the ceiling
// stops the run before the total could cross it (and only then: parallel
// workers' reservations do not stop it early), and a later scorer over the
// same ledger counts what was spent before.
func TestJudgeSpending(t *testing.T) {
	f := newFakeJudge(t)
	spec := "openai:" + f.srv.URL + "/v1#fake"
	// $1 per 1,000 output tokens: a call's worst case is its 1,024-token
	// ceiling ($1.024); each call spends 5 tokens ($0.005)
	prices := cost.DefaultPrices()
	prices.Models["fake"] = cost.Price{OutputPer1K: 1}
	ledger := filepath.Join(t.TempDir(), "ledger.jsonl")
	var ss []Sample
	for i := 0; i < 20; i++ {
		ss = append(ss, Sample{ID: fmt.Sprint("s", i), Prompt: []Message{{Role: "user", Content: "Hi"}}, Response: "hello"})
	}
	max := 1.1 // room for one worst case and $0.076 spent: 16 calls
	s, err := Parse(context.Background(), spec, Options{Spending: &Spending{MaxUSD: &max, Ledger: ledger, Prices: prices}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ledger); err == nil {
		t.Error("Parse created the ledger before any call")
	}
	for i := 0; i < 2; i++ {
		if _, err := s.Score(context.Background(), ss[8*i:8*i+8]); err != nil {
			t.Fatalf("batch %d under the ceiling: %v", i, err)
		}
	}
	_, err = s.Score(context.Background(), ss[16:])
	if !cost.IsBudget(err) {
		t.Fatalf("third batch: %v, want a budget error", err)
	}
	if f.count() != 16 {
		t.Errorf("%d calls sent, want 16 (the 17th would have crossed $1.10)", f.count())
	}
	tot, err := Spent(s)
	if err != nil || tot.Calls != 16 || math.Abs(tot.USD-0.08) > 1e-9 {
		t.Errorf("Spent: %+v, %v; want 16 calls, $0.08", tot, err)
	}
	s.Close()
	// the ledger file holds the 16 calls, labelled with their samples
	b, _ := os.ReadFile(ledger)
	if n := strings.Count(string(b), "\n"); n != 16 || !strings.Contains(string(b), `"label":"reward:s0"`) {
		t.Errorf("ledger holds %d lines:\n%s", n, b)
	}
	// a new run over the same ledger: $0.08 spent before counts
	max = 1.024 + 0.08 + 0.0001
	s, err = Parse(context.Background(), spec, Options{Spending: &Spending{MaxUSD: &max, Ledger: ledger, Prices: prices}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Score(context.Background(), ss[16:17]); err != nil {
		t.Fatalf("one call with room for it: %v", err)
	}
	if _, err := s.Score(context.Background(), ss[17:18]); !cost.IsBudget(err) {
		t.Errorf("after $0.085: %v, want a budget error", err)
	}
	// 0: free calls only, and nothing is sent
	zero := 0.0
	s0, err := Parse(context.Background(), spec, Options{Spending: &Spending{MaxUSD: &zero, Prices: prices}})
	if err != nil {
		t.Fatal(err)
	}
	defer s0.Close()
	before := f.count()
	if _, err := s0.Score(context.Background(), ss[:3]); !cost.IsBudget(err) || f.count() != before {
		t.Errorf("--max-usd 0: %v, %d calls sent", err, f.count()-before)
	}
	// a ledger file that is not a ledger is refused before anything runs
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte(`{"id":"x"}`+"\n"), 0o644)
	if _, err := Parse(context.Background(), spec, Options{Spending: &Spending{Ledger: bad}}); err == nil || !strings.Contains(err.Error(), "bad.jsonl:1") {
		t.Errorf("a ledger that is not one: %v", err)
	}
}
