package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/bedrock"
	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/jsonl"
)

// BatchConfig runs rank or screen through Bedrock batch inference
// (CreateModelInvocationJob) instead of one call per record: records go to
// S3 as JSONL, the job runs, outputs are joined on recordId. The ids of
// submitted jobs are kept in Jobs, so a rerun polls the jobs it submitted
// instead of submitting again. Records that fail in a job (or whose output
// is invalid) go to the dead-letter file; --retry-failed submits them again.
// Batch judges must be Anthropic Claude models (tool-forced JSON).
type BatchConfig struct {
	Client *bedrock.Batch
	Jobs   string // job-ids file; "" derives it from the output (OUT.batch.jsonl)
}

// batchJobRecord is one line of the job-ids file.
type batchJobRecord struct {
	ID    string   `json:"id"` // the job name
	ARN   string   `json:"arn"`
	Model string   `json:"model"`
	Items []string `json:"items"` // item ids (records are item id + "." + suffix)
}

// batchItem is one input record and the batch records it needs.
type batchItem struct {
	j    job
	recs []bedrock.BatchRecord
}

// runBatch submits (or finds) the jobs for items, waits for them and
// hands each item its outputs. handle returns the item's writes; emit
// writes them.
func runBatch(ctx context.Context, bc *BatchConfig, retried map[string]bool, out, stage, model string, items []batchItem, meter *cost.Meter,
	handle func(it batchItem, outs map[string]json.RawMessage, fails map[string]bedrock.BatchFailure) []write, emit func([]write) error) error {
	if !strings.Contains(model, "anthropic.claude") {
		return fmt.Errorf("%s --batch: judge %q is not an Anthropic Claude model", stage, model)
	}
	jobsPath := bc.Jobs
	if jobsPath == "" {
		jobsPath = StagePath(stage, out, "batch")
	}
	if err := checkOutput(jobsPath, "--out (its batch job file)", kindBatchJob); err != nil {
		return err
	}
	app, _, err := jsonl.OpenAppend(jobsPath, nil)
	if err != nil {
		return err
	}
	defer app.Close()
	var saved []batchJobRecord
	if rc, err := jsonl.Open(jobsPath); err == nil {
		jr := jsonl.NewReader(rc, jobsPath)
		for {
			var r batchJobRecord
			if _, err := jr.Next(&r); err != nil {
				break
			}
			saved = append(saved, r)
		}
		rc.Close()
	}
	pending := map[string]batchItem{}
	for _, it := range items {
		pending[it.j.id] = it
	}
	finish := func(job bedrock.BatchJob, ids []string, reserved map[string]func(int, int)) error {
		job, err := bc.Client.Wait(ctx, job.ARN)
		if err != nil {
			return err
		}
		var want []string
		for _, id := range ids {
			if it, ok := pending[id]; ok {
				for _, r := range it.recs {
					want = append(want, r.RecordID)
				}
			}
		}
		res, err := bc.Client.Results(ctx, job, want)
		if err != nil {
			return err
		}
		fails := map[string]bedrock.BatchFailure{}
		for _, f := range res.Failed {
			fails[f.RecordID] = f
		}
		for _, id := range ids {
			it, ok := pending[id]
			if !ok {
				continue
			}
			delete(pending, id)
			for _, r := range it.recs {
				settle := reserved[r.RecordID]
				if settle == nil {
					s, err := meter.Reserve(ctx, model, 0, 0)
					if err != nil {
						settle = func(int, int) {}
					} else {
						settle = s
					}
				}
				var u struct {
					Usage struct {
						In  int `json:"input_tokens"`
						Out int `json:"output_tokens"`
					} `json:"usage"`
				}
				if body, ok := res.Outputs[r.RecordID]; ok {
					json.Unmarshal(body, &u)
				}
				settle(u.Usage.In, u.Usage.Out)
			}
			if err := emit(handle(it, res.Outputs, fails)); err != nil {
				return err
			}
		}
		return nil
	}
	// Jobs submitted by an earlier run: poll them.
	for _, s := range saved {
		var ids []string
		for _, id := range s.Items {
			if _, ok := pending[id]; ok && !retried[id] {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			continue
		}
		if err := finish(bedrock.BatchJob{ARN: s.ARN, Name: s.ID, Model: s.Model}, ids, nil); err != nil {
			return err
		}
	}
	if len(pending) == 0 {
		return nil
	}
	// The rest: one new job, reserving each record's worst case first.
	var ids []string
	for id := range pending {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	reserved := map[string]func(int, int){}
	var recs []bedrock.BatchRecord
	var submit []string
	var budgetErr error
	for _, id := range ids {
		it := pending[id]
		var rs []func(int, int)
		for _, r := range it.recs {
			var b struct {
				Max int `json:"max_tokens"`
			}
			json.Unmarshal(r.ModelInput, &b)
			settle, err := meter.Reserve(ctx, model, backend.EstimateTokens(string(r.ModelInput)), b.Max)
			if err != nil {
				budgetErr = err
				break
			}
			rs = append(rs, settle)
		}
		if budgetErr != nil {
			for _, s := range rs {
				s(0, 0)
			}
			break
		}
		for k, r := range it.recs {
			reserved[r.RecordID] = rs[k]
			recs = append(recs, r)
		}
		submit = append(submit, id)
	}
	if len(submit) > 0 {
		name := "align-" + stage + "-" + jsonl.RecordID(append([]string{stage, model}, submit...)...)[:20]
		job, found, err := bc.Client.Find(ctx, name)
		if err != nil {
			return err
		}
		if !found {
			if job, err = bc.Client.Submit(ctx, name, model, recs); err != nil {
				return err
			}
		}
		if err := app.Write(batchJobRecord{ID: name, ARN: job.ARN, Model: model, Items: submit}); err != nil {
			return err
		}
		if err := app.Sync(); err != nil {
			return err
		}
		if err := finish(job, submit, reserved); err != nil {
			return err
		}
	}
	return budgetErr
}

// batchOutput reads one record's structured output: the tool input of a
// Claude response, or an invalid-output or failure error.
func batchOutput(model, tool, recordID string, outs map[string]json.RawMessage, fails map[string]bedrock.BatchFailure) (json.RawMessage, string, error) {
	if f, ok := fails[recordID]; ok {
		return nil, "", &backend.CallError{Op: "batch", Model: model, Status: f.Code, Err: errors.New("record failed: " + f.Message)}
	}
	body, ok := outs[recordID]
	if !ok {
		return nil, "", &backend.CallError{Op: "batch", Model: model, Err: errors.New("record missing from the output")}
	}
	text, input, u, err := bedrock.ParseAnthropicOutput(body, tool)
	if err != nil {
		return nil, string(body), &backend.InvalidOutputError{Model: model, Reason: "unreadable model output", Raw: string(body), Err: err}
	}
	if input == nil {
		return nil, text, &backend.InvalidOutputError{Model: model, Reason: "missing tool call", Raw: text, Usage: u}
	}
	return input, string(input), nil
}

// rankBatch ranks the comparisons produce sends through batch jobs.
func rankBatch(ctx context.Context, c *RankConfig, produce func(context.Context, func(job) bool) error, rc *rankCounters,
	out, ties, dead *sink, meter *cost.Meter, tally func([]write)) error {
	var items []batchItem
	err := produce(ctx, func(j job) bool {
		cmp := j.v.(comparison)
		orders := [][2]int{{cmp.i, cmp.j}}
		if !c.SingleOrder {
			orders = append(orders, [2]int{cmp.j, cmp.i})
		}
		it := batchItem{j: j}
		for k, o := range orders {
			sys, msgs := backend.JudgeMessages(c.request(cmp, o[0], o[1]))
			zero := 0.0
			body := bedrock.AnthropicInput(backend.StructuredRequest{System: sys, Messages: msgs, Schema: backend.VerdictSchema, Temperature: &zero}, c.MaxTokens)
			it.recs = append(it.recs, bedrock.BatchRecord{RecordID: j.id + "." + []string{"ab", "ba"}[k], ModelInput: body})
		}
		items = append(items, it)
		return true
	})
	if err != nil || len(items) == 0 {
		return err
	}
	handle := func(it batchItem, outs map[string]json.RawMessage, fails map[string]bedrock.BatchFailure) []write {
		cmp := it.j.v.(comparison)
		var vs []VerdictRecord
		for k, r := range it.recs {
			first, second := cmp.i, cmp.j
			if k == 1 {
				first, second = cmp.j, cmp.i
			}
			input, raw, err := batchOutput(c.Judge.Model, backend.VerdictSchema.Name, r.RecordID, outs, fails)
			var v backend.Verdict
			if err == nil {
				v, err = backend.ParseVerdict(input)
			}
			if err != nil {
				kind := "batch_failed"
				if backend.IsInvalidOutput(err) {
					kind = "invalid_output"
				}
				d := deadLetter("rank", c.Judge.Model, it.j, kind, fmt.Errorf("order %d: %w", k+1, err), 1)
				if d.Raw == "" {
					d.Raw = raw
				}
				return []write{{dead, d}}
			}
			rc.verdict(v)
			vs = append(vs, VerdictRecord{Order: []string{"ab", "ba"}[k], Chosen: chosenOf(v.Winner, first, second), Verdict: v})
		}
		return c.writes(it.j.id, cmp, vs, rc, out, ties)
	}
	emit := func(ws []write) error {
		for _, w := range ws {
			if err := w.s.write(w.v); err != nil {
				return err
			}
		}
		tally(ws)
		return nil
	}
	return runBatch(ctx, c.Batch, c.retried, c.Out, "rank", c.Judge.Model, items, meter, handle, emit)
}
