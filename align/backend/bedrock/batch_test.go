package bedrock

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/bedrock/standin"
)

func TestBatchRoundTrip(t *testing.T) {
	// A judge that fails record r3 and answers the others with a verdict.
	s := startStandin(t, func(r standin.Request) standin.Response {
		if r.Route != "batch" {
			return standin.Response{Err: &standin.APIError{Status: 400, Type: "ValidationException", Message: "batch only"}}
		}
		if r.RecordID == "r3" {
			return standin.Response{Err: &standin.APIError{Status: 400, Type: "ValidationException", Message: "input is too long"}}
		}
		return standin.Response{ToolInput: verdictJSON("B"), InputTokens: 900, OutputTokens: 120}
	})
	o := testOptions(s)
	b, err := NewBatch(context.Background(), BatchOptions{
		Options:      o,
		S3Endpoint:   s.S3URL(),
		S3PathStyle:  true,
		RoleARN:      "arn:aws:iam::123456789012:role/align-batch",
		Bucket:       "align-test",
		Prefix:       "runs/1",
		PollInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var recs []BatchRecord
	var ids []string
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("r%d", i)
		system, msgs := backend.JudgeMessages(backend.JudgeRequest{Prompt: userMsg("q" + id), A: "a", B: "b"})
		recs = append(recs, BatchRecord{RecordID: id, ModelInput: AnthropicInput(backend.StructuredRequest{System: system, Messages: msgs, Schema: backend.VerdictSchema}, 1024)})
		ids = append(ids, id)
	}
	ids = append(ids, "r6") // never submitted: must be reported missing

	if _, found, err := b.Find(ctx, "rank-1"); err != nil || found {
		t.Fatalf("Find before submit: found=%v err=%v", found, err)
	}
	job, err := b.Submit(ctx, "rank-1", claude, recs)
	if err != nil {
		t.Fatal(err)
	}
	// A rerun finds the job instead of resubmitting.
	again, found, err := b.Find(ctx, "rank-1")
	if err != nil || !found || again.ARN != job.ARN {
		t.Fatalf("Find after submit: %+v found=%v err=%v", again, found, err)
	}
	if _, err := b.Results(ctx, again, ids); err == nil {
		t.Error("results of an unfinished job")
	}
	done, err := b.Wait(ctx, job.ARN)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != "PartiallyCompleted" {
		t.Fatalf("status %s (%s)", done.Status, done.Message)
	}
	res, err := b.Results(ctx, done, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 4 {
		t.Errorf("%d outputs, want 4", len(res.Outputs))
	}
	for id, out := range res.Outputs {
		_, input, u, err := ParseAnthropicOutput(out, backend.VerdictSchema.Name)
		if err != nil || input == nil {
			t.Fatalf("%s: tool input %s, err %v", id, input, err)
		}
		v, err := backend.ParseVerdict(input)
		if err != nil || v.Winner != "B" || u.InputTokens != 900 {
			t.Errorf("%s: verdict %+v usage %+v err %v", id, v, u, err)
		}
	}
	want := []BatchFailure{{RecordID: "r3", Code: 400, Message: "input is too long"}, {RecordID: "r6", Message: "missing from the job's output"}}
	if fmt.Sprint(res.Failed) != fmt.Sprint(want) {
		t.Errorf("failed = %+v, want %+v", res.Failed, want)
	}
	if n, _ := res.Manifest["errorRecordCount"].(float64); n != 1 {
		t.Errorf("manifest %v", res.Manifest)
	}
	// The input the job read is the JSONL we uploaded.
	in, ok := s.Object("align-test", "runs/1/rank-1/input.jsonl")
	if !ok || strings.Count(string(in), "\n") != 5 || !json.Valid([]byte(strings.SplitN(string(in), "\n", 2)[0])) {
		t.Errorf("input object: %q", in)
	}
	c := s.Counts()
	t.Logf("batch: requests %v, bad signatures %d", c.Requests, c.BadSignatures)
	if c.BadSignatures != 0 || c.Requests["s3:PutObject"] != 1 || c.Requests["CreateModelInvocationJob"] != 1 || c.Requests["GetModelInvocationJob"] < 2 {
		t.Errorf("counts %+v", c)
	}
}

func TestLlamaInput(t *testing.T) {
	temp := 0.7
	b := LlamaInput(backend.GenerateRequest{System: "Be kind.", Messages: userMsg("hi"), Temperature: &temp}, 300)
	var got struct {
		Prompt    string  `json:"prompt"`
		MaxGenLen int     `json:"max_gen_len"`
		Temp      float64 `json:"temperature"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe kind.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
	if got.Prompt != want || got.MaxGenLen != 300 || got.Temp != 0.7 {
		t.Errorf("got %+v", got)
	}
	text, u, err := ParseLlamaOutput(json.RawMessage(`{"generation":"hello","prompt_token_count":7,"generation_token_count":2}`))
	if err != nil || text != "hello" || u.OutputTokens != 2 {
		t.Errorf("ParseLlamaOutput = %q %+v %v", text, u, err)
	}
}

func TestInvokeModelBodies(t *testing.T) {
	s := startStandin(t, func(r standin.Request) standin.Response {
		if r.Route != "invoke" || r.ToolName != backend.VerdictSchema.Name || len(r.Messages) != 1 {
			return standin.Response{Text: "unexpected request"}
		}
		return standin.Response{ToolInput: verdictJSON("A")}
	})
	c := newClient(t, claude, testOptions(s))
	system, msgs := backend.JudgeMessages(backend.JudgeRequest{Prompt: userMsg("q"), A: "a", B: "b"})
	out, err := c.Runtime().InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(claude), ContentType: aws.String("application/json"),
		Body: AnthropicInput(backend.StructuredRequest{System: system, Messages: msgs, Schema: backend.VerdictSchema}, 512),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, input, u, err := ParseAnthropicOutput(out.Body, backend.VerdictSchema.Name)
	if err != nil || input == nil || u.OutputTokens == 0 {
		t.Fatalf("input %s usage %+v err %v", input, u, err)
	}
	if v, err := backend.ParseVerdict(input); err != nil || v.Winner != "A" {
		t.Errorf("verdict %+v, %v", v, err)
	}
	if n := s.Counts().Requests["invoke"]; n != 1 {
		t.Errorf("invoke requests %d", n)
	}
}
