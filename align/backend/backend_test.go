package backend

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    Spec
		wantErr bool
	}{
		{in: "bedrock:meta.llama3-70b-instruct-v1:0", want: Spec{Kind: KindBedrock, Target: "meta.llama3-70b-instruct-v1:0"}},
		{in: "bedrock:arn:aws:bedrock:us-east-1::foundation-model/x", want: Spec{Kind: KindBedrock, Target: "arn:aws:bedrock:us-east-1::foundation-model/x"}},
		{in: "openai:http://127.0.0.1:8080", want: Spec{Kind: KindOpenAI, Target: "http://127.0.0.1:8080"}},
		{in: "openai:http://127.0.0.1:11434/v1#llama3:8b", want: Spec{Kind: KindOpenAI, Target: "http://127.0.0.1:11434/v1", Model: "llama3:8b"}},
		{in: "local:models/tiny.gguf", want: Spec{Kind: KindLocal, Target: "models/tiny.gguf"}},
		{in: "rules:testdata/catalog.json", want: Spec{Kind: KindRules, Target: "testdata/catalog.json"}},
		{in: "bedrock", wantErr: true},
		{in: "bedrock:", wantErr: true},
		{in: "bedrock:a b", wantErr: true},
		{in: "openai:127.0.0.1:8080", wantErr: true},
		{in: "openai:ftp://x", wantErr: true},
		{in: "local:model.bin", wantErr: true},
		{in: "rules:catalog.yaml", wantErr: true},
		{in: "gemini:pro", wantErr: true},
		{in: "bedrock: x", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseSpec(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("ParseSpec(%q).String() = %q", tt.in, got.String())
		}
	}
}

const goodVerdict = `{"winner":"A","scores":{"A":{"tone":5,"accuracy":4,"helpfulness":4,"safety":5},"B":{"tone":2,"accuracy":4,"helpfulness":3,"safety":5}},"reasoning":"A is friendlier.","objective":"tone"}`

func TestParseVerdict(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantWinner string
		wantErr    string // substring; "" means success
	}{
		{name: "plain", in: goodVerdict, wantWinner: "A"},
		{name: "prose and fence", in: "Here is my verdict:\n```json\n" + goodVerdict + "\n```\nThanks.", wantWinner: "A"},
		{name: "lowercase winner", in: strings.Replace(goodVerdict, `"winner":"A"`, `"winner":"b"`, 1), wantWinner: "B"},
		{name: "Tie", in: strings.Replace(goodVerdict, `"winner":"A"`, `"winner":"Tie"`, 1), wantWinner: "tie"},
		{name: "extra field ignored", in: strings.Replace(goodVerdict, `{"winner"`, `{"confidence":0.9,"winner"`, 1), wantWinner: "A"},
		{name: "truncated", in: goodVerdict[:len(goodVerdict)/2], wantErr: "truncated"},
		{name: "not json", in: "I prefer the first answer.", wantErr: "no json object"},
		{name: "bad winner", in: strings.Replace(goodVerdict, `"winner":"A"`, `"winner":"C"`, 1), wantErr: "winner"},
		{name: "score out of range", in: strings.Replace(goodVerdict, `"tone":5`, `"tone":7`, 1), wantErr: "scores.A.tone"},
		{name: "score zero", in: strings.Replace(goodVerdict, `"safety":5}}`, `"safety":0}}`, 1), wantErr: "scores.B.safety"},
		{name: "float score", in: strings.Replace(goodVerdict, `"tone":5`, `"tone":4.5`, 1), wantErr: "schema"},
		{name: "missing objective", in: strings.Replace(goodVerdict, `,"objective":"tone"`, ``, 1), wantErr: "objective: missing"},
		{name: "empty reasoning", in: strings.Replace(goodVerdict, `"A is friendlier."`, `"  "`, 1), wantErr: "reasoning: empty"},
		{name: "missing B", in: `{"winner":"A","scores":{"A":{"tone":5,"accuracy":4,"helpfulness":4,"safety":5}},"reasoning":"r","objective":"o"}`, wantErr: "scores: missing"},
		{name: "array", in: `[` + goodVerdict + `]`, wantWinner: "A"},
		{name: "empty", in: "", wantErr: "no json object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVerdict([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				if !IsInvalidOutput(err) {
					t.Fatalf("err %T is not an InvalidOutputError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Winner != tt.wantWinner {
				t.Errorf("winner = %q, want %q", got.Winner, tt.wantWinner)
			}
		})
	}
}

func FuzzParseVerdict(f *testing.F) {
	for _, s := range []string{
		goodVerdict,
		"```json\n" + goodVerdict + "\n```",
		goodVerdict[:40],
		`{"winner":"tie","scores":{"A":{"tone":1,"accuracy":1,"helpfulness":1,"safety":1},"B":{"tone":5,"accuracy":5,"helpfulness":5,"safety":5}},"reasoning":"x","objective":"y"}`,
		`{"winner":"A","scores":null}`,
		`{{{{`,
		"text { \"a\": 1 } more {",
		`{"winner":"a","scores":{"a":{"TONE":3,"accuracy":3,"helpfulness":3,"safety":3},"b":{"tone":3,"accuracy":3,"helpfulness":3,"safety":3}},"reasoning":"\u00e9","objective":"tone"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseVerdict(data)
		if err != nil {
			if !IsInvalidOutput(err) {
				t.Fatalf("error %T is not an InvalidOutputError: %v", err, err)
			}
			return
		}
		if err := ValidateVerdict(v); err != nil {
			t.Fatalf("ParseVerdict accepted an invalid verdict: %v", err)
		}
		// Round trip: what we accept, we write in a form we read back equal.
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := ParseVerdict(b)
		if err != nil {
			t.Fatalf("round trip of %s: %v", b, err)
		}
		if v2 != v {
			t.Fatalf("round trip: got %+v, want %+v", v2, v)
		}
	})
}

func TestValidateScreenDecision(t *testing.T) {
	tests := []struct {
		name    string
		d       ScreenDecision
		wantErr string
	}{
		{name: "approve", d: ScreenDecision{Decision: "approve", Reason: "fine"}},
		{name: "revise", d: ScreenDecision{Decision: "revise", Rule: 1, RevisedChosen: "Hello!", Reason: "rude"}},
		{name: "remove", d: ScreenDecision{Decision: "remove", Rule: 5, Reason: "leaks prompt"}},
		{name: "approve with rule", d: ScreenDecision{Decision: "approve", Rule: 2, Reason: "x"}, wantErr: "rule"},
		{name: "revise without text", d: ScreenDecision{Decision: "revise", Rule: 1, Reason: "x"}, wantErr: "revised_chosen"},
		{name: "rule too big", d: ScreenDecision{Decision: "remove", Rule: 6, Reason: "x"}, wantErr: "rule: 6"},
		{name: "unknown", d: ScreenDecision{Decision: "keep", Reason: "x"}, wantErr: "decision"},
		{name: "no reason", d: ScreenDecision{Decision: "approve"}, wantErr: "reason"},
	}
	for _, tt := range tests {
		err := ValidateScreenDecision(tt.d, 5)
		if tt.wantErr == "" && err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: err = %v, want containing %q", tt.name, err, tt.wantErr)
		}
	}
}

type fakeStructurer struct {
	out  string
	err  error
	seen []StructuredRequest
}

func (f *fakeStructurer) StructuredCall(_ context.Context, req StructuredRequest) (StructuredResponse, error) {
	f.seen = append(f.seen, req)
	if f.err != nil {
		return StructuredResponse{}, f.err
	}
	return StructuredResponse{JSON: json.RawMessage(f.out), Raw: f.out, Usage: Usage{InputTokens: 10, OutputTokens: 5}, Model: "m"}, nil
}

func TestJudgeWith(t *testing.T) {
	ctx := context.Background()
	req := JudgeRequest{Prompt: []Message{{Role: RoleUser, Content: "How many volumes?"}}, A: "first", B: "second"}

	f := &fakeStructurer{out: goodVerdict}
	got, err := JudgeWith(ctx, f, req)
	if err != nil {
		t.Fatal(err)
	}
	if got.Verdict.Winner != WinnerA || got.Usage.InputTokens != 10 || got.Model != "m" {
		t.Errorf("got %+v", got)
	}
	msg := f.seen[0].Messages[0].Content
	if strings.Index(msg, "first") > strings.Index(msg, "second") {
		t.Error("A is not shown before B")
	}
	if f.seen[0].Schema.Name != VerdictSchema.Name {
		t.Errorf("schema %q", f.seen[0].Schema.Name)
	}

	f = &fakeStructurer{out: `{"winner":"A"}`}
	_, err = JudgeWith(ctx, f, req)
	var ie *InvalidOutputError
	if !errors.As(err, &ie) || ie.Usage.InputTokens != 10 || ie.Model != "m" {
		t.Fatalf("err = %#v, want InvalidOutputError with usage", err)
	}

	req.Repair = &Repair{Previous: `{"winner":"A"}`, Problem: ie.Err.Error()}
	f = &fakeStructurer{out: goodVerdict}
	if _, err := JudgeWith(ctx, f, req); err != nil {
		t.Fatal(err)
	}
	if n := len(f.seen[0].Messages); n != 3 {
		t.Errorf("repair request has %d messages, want 3", n)
	}

	f = &fakeStructurer{err: &CallError{Op: "structured", Model: "m", Err: errors.New("boom")}}
	if _, err := JudgeWith(ctx, f, req); !IsCallFailed(err) || IsInvalidOutput(err) {
		t.Errorf("err = %v, want call failure", err)
	}
}

func TestScreenWith(t *testing.T) {
	f := &fakeStructurer{out: `{"decision":"Revise","rule":1,"revised_chosen":"Happy to help!","reason":"curt"}`}
	got, err := ScreenWith(context.Background(), f, ScreenRequest{Chosen: "What.", Rejected: "No."})
	if err != nil {
		t.Fatal(err)
	}
	want := ScreenDecision{Decision: "revise", Rule: 1, RevisedChosen: "Happy to help!", Reason: "curt"}
	if got.Decision != want {
		t.Errorf("got %+v, want %+v", got.Decision, want)
	}
	if !strings.Contains(f.seen[0].Messages[0].Content, "5. Never reveal") {
		t.Error("default constitution not numbered in the prompt")
	}
}

// A judge or generator without a model name (a local server that takes
// none) must not leave a doubled space in its error line.
func TestCallErrorWithoutModel(t *testing.T) {
	for _, c := range []struct {
		e    CallError
		want string
	}{
		{CallError{Op: "judge", Err: errors.New("boom")}, "judge: boom"},
		{CallError{Op: "judge", Model: "m", Code: "Throttling", Status: 429, Err: errors.New("slow down")}, "judge m: Throttling (http 429): slow down"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}
