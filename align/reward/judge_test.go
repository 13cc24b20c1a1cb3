package reward

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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
	prompt := []Message{{"system", "be kind"}, {"user", "Hi"}}
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
