package bedrock

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	bedrockcp "github.com/aws/aws-sdk-go-v2/service/bedrock"
	cptypes "github.com/aws/aws-sdk-go-v2/service/bedrock/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/align-dev/align/align/backend"
)

// BatchOptions configures batch inference. Bucket and RoleARN are required.
type BatchOptions struct {
	Options                    // AWS config, region, credentials, retries, as for New (Endpoint is the control plane's)
	S3Endpoint   string        // S3 base endpoint override
	S3PathStyle  bool          // path-style S3 addressing (stand-ins, MinIO)
	RoleARN      string        // service role Bedrock assumes to read and write the bucket
	Bucket       string        // S3 bucket for input and output
	Prefix       string        // key prefix, e.g. "align/batch"
	PollInterval time.Duration // between GetModelInvocationJob calls; default 30s
	TimeoutHours int32         // job timeout; 0 leaves Bedrock's default
}

// Batch submits and collects Bedrock batch-inference jobs
// (CreateModelInvocationJob) with JSONL records in and out through S3.
// Safe for concurrent use.
type Batch struct {
	cp   *bedrockcp.Client
	s3   *s3.Client
	opts BatchOptions
}

// BatchRecord is one line of a job's input: Bedrock's {"recordId",
// "modelInput"} where modelInput is an InvokeModel body.
type BatchRecord struct {
	RecordID   string          `json:"recordId"`
	ModelInput json.RawMessage `json:"modelInput"`
}

// BatchJob is a job's state.
type BatchJob struct {
	ARN, Name, Model string
	Status           string // Submitted, InProgress, Completed, PartiallyCompleted, Failed, Stopped, Expired, ...
	Message          string
	InputURI         string
	OutputURI        string
}

// Done reports whether the job reached a terminal status.
func (j BatchJob) Done() bool {
	switch cptypes.ModelInvocationJobStatus(j.Status) {
	case cptypes.ModelInvocationJobStatusCompleted, cptypes.ModelInvocationJobStatusPartiallyCompleted,
		cptypes.ModelInvocationJobStatusFailed, cptypes.ModelInvocationJobStatusStopped, cptypes.ModelInvocationJobStatusExpired:
		return true
	}
	return false
}

// ID is the job id: the last part of its ARN.
func (j BatchJob) ID() string { return j.ARN[strings.LastIndexByte(j.ARN, '/')+1:] }

// BatchFailure is a record that produced no output. Bedrock does not retry
// failed records; resubmit them in a new job if wanted.
type BatchFailure struct {
	RecordID string
	Code     int
	Message  string
}

// BatchResults are a job's outputs joined on recordId.
type BatchResults struct {
	Outputs  map[string]json.RawMessage // recordId → InvokeModel response body
	Failed   []BatchFailure             // in input order when the input is known
	Manifest map[string]any             // manifest.json.out, when present
}

// NewBatch returns batch helpers for opts.
func NewBatch(ctx context.Context, opts BatchOptions) (*Batch, error) {
	if opts.Bucket == "" || opts.RoleARN == "" {
		return nil, errors.New("bedrock batch: bucket and role arn are required")
	}
	cfg, err := LoadConfig(ctx, opts.Options)
	if err != nil {
		return nil, err
	}
	opts.retryDefaults()
	if opts.PollInterval <= 0 {
		opts.PollInterval = 30 * time.Second
	}
	b := &Batch{opts: opts}
	b.cp = bedrockcp.NewFromConfig(cfg, func(o *bedrockcp.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.Retryer = NewRetryer(opts.MaxAttempts, opts.MaxBackoff)
	})
	b.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.S3Endpoint)
		}
		o.UsePathStyle = opts.S3PathStyle
		o.Retryer = NewRetryer(opts.MaxAttempts, opts.MaxBackoff)
	})
	return b, nil
}

func (b *Batch) key(parts ...string) string {
	return path.Join(append([]string{b.opts.Prefix}, parts...)...)
}

func splitS3URI(uri string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(uri, "s3://")
	if !ok {
		return "", "", fmt.Errorf("not an s3 uri: %q", uri)
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return bucket, key, nil
}

// Submit uploads records as <prefix>/<name>/input.jsonl and creates a job
// named name (also its idempotency token) that writes under
// <prefix>/<name>/output/. Names must be unique per account and region; use
// Find before Submit so a rerun polls the existing job instead.
func (b *Batch) Submit(ctx context.Context, name, model string, records []BatchRecord) (BatchJob, error) {
	if len(records) == 0 {
		return BatchJob{}, errors.New("bedrock batch: no records")
	}
	var buf bytes.Buffer
	seen := make(map[string]bool, len(records))
	for i, r := range records {
		if r.RecordID == "" || seen[r.RecordID] {
			return BatchJob{}, fmt.Errorf("bedrock batch: record %d: empty or duplicate recordId %q", i, r.RecordID)
		}
		seen[r.RecordID] = true
		line, err := json.Marshal(r)
		if err != nil {
			return BatchJob{}, fmt.Errorf("bedrock batch: record %q: %w", r.RecordID, err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	inKey := b.key(name, "input.jsonl")
	if _, err := b.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.opts.Bucket), Key: aws.String(inKey), Body: bytes.NewReader(buf.Bytes())}); err != nil {
		return BatchJob{}, fmt.Errorf("bedrock batch: upload %s: %w", inKey, err)
	}
	job := BatchJob{Name: name, Model: model,
		InputURI:  "s3://" + b.opts.Bucket + "/" + inKey,
		OutputURI: "s3://" + b.opts.Bucket + "/" + b.key(name, "output") + "/"}
	in := &bedrockcp.CreateModelInvocationJobInput{
		JobName:            aws.String(name),
		ModelId:            aws.String(model),
		RoleArn:            aws.String(b.opts.RoleARN),
		ClientRequestToken: aws.String(name),
		InputDataConfig: &cptypes.ModelInvocationJobInputDataConfigMemberS3InputDataConfig{Value: cptypes.ModelInvocationJobS3InputDataConfig{
			S3Uri: aws.String(job.InputURI), S3InputFormat: cptypes.S3InputFormatJsonl}},
		OutputDataConfig: &cptypes.ModelInvocationJobOutputDataConfigMemberS3OutputDataConfig{Value: cptypes.ModelInvocationJobS3OutputDataConfig{
			S3Uri: aws.String(job.OutputURI)}},
	}
	if b.opts.TimeoutHours > 0 {
		in.TimeoutDurationInHours = aws.Int32(b.opts.TimeoutHours)
	}
	out, err := b.cp.CreateModelInvocationJob(ctx, in)
	if err != nil {
		return BatchJob{}, fmt.Errorf("bedrock batch: create job %s: %w", name, err)
	}
	job.ARN = aws.ToString(out.JobArn)
	job.Status = string(cptypes.ModelInvocationJobStatusSubmitted)
	return job, nil
}

func jobOf(arn, name, model *string, status cptypes.ModelInvocationJobStatus, msg *string, in cptypes.ModelInvocationJobInputDataConfig, out cptypes.ModelInvocationJobOutputDataConfig) BatchJob {
	j := BatchJob{ARN: aws.ToString(arn), Name: aws.ToString(name), Model: aws.ToString(model), Status: string(status), Message: aws.ToString(msg)}
	if v, ok := in.(*cptypes.ModelInvocationJobInputDataConfigMemberS3InputDataConfig); ok {
		j.InputURI = aws.ToString(v.Value.S3Uri)
	}
	if v, ok := out.(*cptypes.ModelInvocationJobOutputDataConfigMemberS3OutputDataConfig); ok {
		j.OutputURI = aws.ToString(v.Value.S3Uri)
	}
	return j
}

// Get returns a job's current state.
func (b *Batch) Get(ctx context.Context, jobARN string) (BatchJob, error) {
	out, err := b.cp.GetModelInvocationJob(ctx, &bedrockcp.GetModelInvocationJobInput{JobIdentifier: aws.String(jobARN)})
	if err != nil {
		return BatchJob{}, fmt.Errorf("bedrock batch: get job %s: %w", jobARN, err)
	}
	return jobOf(out.JobArn, out.JobName, out.ModelId, out.Status, out.Message, out.InputDataConfig, out.OutputDataConfig), nil
}

// Find returns the job named exactly name, if one exists, so a rerun can
// poll it instead of submitting again.
func (b *Batch) Find(ctx context.Context, name string) (BatchJob, bool, error) {
	p := bedrockcp.NewListModelInvocationJobsPaginator(b.cp, &bedrockcp.ListModelInvocationJobsInput{NameContains: aws.String(name)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return BatchJob{}, false, fmt.Errorf("bedrock batch: list jobs: %w", err)
		}
		for _, s := range page.InvocationJobSummaries {
			if aws.ToString(s.JobName) == name {
				return jobOf(s.JobArn, s.JobName, s.ModelId, s.Status, s.Message, s.InputDataConfig, s.OutputDataConfig), true, nil
			}
		}
	}
	return BatchJob{}, false, nil
}

// Wait polls the job every PollInterval until it reaches a terminal status
// or ctx ends.
func (b *Batch) Wait(ctx context.Context, jobARN string) (BatchJob, error) {
	for {
		j, err := b.Get(ctx, jobARN)
		if err != nil || j.Done() {
			return j, err
		}
		t := time.NewTimer(b.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return j, ctx.Err()
		case <-t.C:
		}
	}
}

// Results reads the job's <file>.jsonl.out objects (and manifest) from
// <output-uri>/<job-id>/ and joins them on recordId; output order is not
// input order. Records that failed, and records of wantIDs missing from the
// output, are returned in Failed. A job that did not complete (Failed,
// Stopped, Expired) is an error.
func (b *Batch) Results(ctx context.Context, job BatchJob, wantIDs []string) (BatchResults, error) {
	switch cptypes.ModelInvocationJobStatus(job.Status) {
	case cptypes.ModelInvocationJobStatusCompleted, cptypes.ModelInvocationJobStatusPartiallyCompleted:
	default:
		return BatchResults{}, fmt.Errorf("bedrock batch: job %s is %s: %s", job.Name, job.Status, job.Message)
	}
	bucket, prefix, err := splitS3URI(job.OutputURI)
	if err != nil {
		return BatchResults{}, err
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	prefix += job.ID() + "/"
	res := BatchResults{Outputs: map[string]json.RawMessage{}}
	failed := map[string]BatchFailure{}
	p := s3.NewListObjectsV2Paginator(b.s3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return BatchResults{}, fmt.Errorf("bedrock batch: list %s: %w", prefix, err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			if !strings.HasSuffix(key, ".out") {
				continue
			}
			data, err := b.get(ctx, bucket, key)
			if err != nil {
				return BatchResults{}, err
			}
			if strings.HasSuffix(key, "manifest.json.out") {
				if err := json.Unmarshal(data, &res.Manifest); err != nil {
					return BatchResults{}, fmt.Errorf("bedrock batch: %s: %w", key, err)
				}
				continue
			}
			if err := readOutput(key, data, res.Outputs, failed); err != nil {
				return BatchResults{}, err
			}
		}
	}
	if wantIDs == nil {
		for _, f := range failed {
			res.Failed = append(res.Failed, f)
		}
		return res, nil
	}
	for _, id := range wantIDs {
		if _, ok := res.Outputs[id]; ok {
			continue
		}
		f, ok := failed[id]
		if !ok {
			f = BatchFailure{RecordID: id, Message: "missing from the job's output"}
		}
		res.Failed = append(res.Failed, f)
	}
	return res, nil
}

func (b *Batch) get(ctx context.Context, bucket, key string) ([]byte, error) {
	out, err := b.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("bedrock batch: get s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("bedrock batch: read s3://%s/%s: %w", bucket, key, err)
	}
	return data, nil
}

func readOutput(name string, data []byte, outputs map[string]json.RawMessage, failed map[string]BatchFailure) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var rec struct {
			RecordID    string          `json:"recordId"`
			ModelOutput json.RawMessage `json:"modelOutput"`
			Error       *struct {
				Code    int    `json:"errorCode"`
				Message string `json:"errorMessage"`
			} `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("bedrock batch: %s:%d: %w", name, line, err)
		}
		switch {
		case rec.Error != nil:
			failed[rec.RecordID] = BatchFailure{RecordID: rec.RecordID, Code: rec.Error.Code, Message: rec.Error.Message}
		case rec.ModelOutput == nil:
			failed[rec.RecordID] = BatchFailure{RecordID: rec.RecordID, Message: "no modelOutput"}
		default:
			outputs[rec.RecordID] = rec.ModelOutput
		}
	}
	return sc.Err()
}

// AnthropicInput is the InvokeModel (and batch modelInput) body for a
// Claude model answering req, with the schema forced through a single tool
// as StructuredCall does over Converse.
func AnthropicInput(req backend.StructuredRequest, maxTokens int) json.RawMessage {
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	body := map[string]any{
		"anthropic_version": "bedrock-2023-05-31",
		"max_tokens":        maxTokens,
	}
	if req.System != "" {
		body["system"] = req.System
	}
	if req.Temperature != nil {
		body["temperature"] = *req.Temperature
	}
	var msgs []msg
	for _, m := range req.Messages {
		msgs = append(msgs, msg{Role: string(m.Role), Content: m.Content})
	}
	body["messages"] = msgs
	if req.Schema.Name != "" {
		body["tools"] = []any{map[string]any{"name": req.Schema.Name, "description": req.Schema.Description, "input_schema": req.Schema.JSON}}
		body["tool_choice"] = map[string]any{"type": "tool", "name": req.Schema.Name}
	}
	b, _ := json.Marshal(body)
	return b
}

// ParseAnthropicOutput reads an InvokeModel response body of a Claude
// model: its text, the input of the tool call named tool (nil when there is
// none), and usage.
func ParseAnthropicOutput(body json.RawMessage, tool string) (text string, toolInput json.RawMessage, u backend.Usage, err error) {
	var out struct {
		Content []struct {
			Type  string          `json:"type"`
			Text  string          `json:"text"`
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		} `json:"content"`
		Usage struct {
			In  int `json:"input_tokens"`
			Out int `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", nil, u, fmt.Errorf("anthropic output: %w", err)
	}
	for _, c := range out.Content {
		switch c.Type {
		case "text":
			text += c.Text
		case "tool_use":
			if c.Name == tool && toolInput == nil {
				toolInput = c.Input
			}
		}
	}
	return text, toolInput, backend.Usage{InputTokens: out.Usage.In, OutputTokens: out.Usage.Out}, nil
}

// LlamaInput is the InvokeModel (and batch modelInput) body for a Meta
// Llama 3 model answering req, with the Llama 3 chat template applied.
func LlamaInput(req backend.GenerateRequest, maxTokens int) json.RawMessage {
	var p strings.Builder
	p.WriteString("<|begin_of_text|>")
	if req.System != "" {
		p.WriteString("<|start_header_id|>system<|end_header_id|>\n\n" + req.System + "<|eot_id|>")
	}
	for _, m := range req.Messages {
		p.WriteString("<|start_header_id|>" + string(m.Role) + "<|end_header_id|>\n\n" + m.Content + "<|eot_id|>")
	}
	p.WriteString("<|start_header_id|>assistant<|end_header_id|>\n\n")
	body := map[string]any{"prompt": p.String(), "max_gen_len": maxTokens}
	if req.Temperature != nil {
		body["temperature"] = *req.Temperature
	}
	if req.TopP != nil {
		body["top_p"] = *req.TopP
	}
	b, _ := json.Marshal(body)
	return b
}

// ParseLlamaOutput reads an InvokeModel response body of a Llama model.
func ParseLlamaOutput(body json.RawMessage) (text string, u backend.Usage, err error) {
	var out struct {
		Generation string `json:"generation"`
		In         int    `json:"prompt_token_count"`
		Out        int    `json:"generation_token_count"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return "", u, fmt.Errorf("llama output: %w", err)
	}
	return out.Generation, backend.Usage{InputTokens: out.In, OutputTokens: out.Out}, nil
}
