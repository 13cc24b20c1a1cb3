package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/jsonl"
)

// Sampling is one response's sampling settings.
type Sampling struct {
	Temperature float64 `json:"temperature"`
	TopP        float64 `json:"top_p"`
}

// DefaultSamplings are collect's defaults: response A at T=0.7 top_p=0.9,
// response B at T=1.0 top_p=0.95.
var DefaultSamplings = []Sampling{{0.7, 0.9}, {1.0, 0.95}}

// CollectConfig configures Collect.
type CollectConfig struct {
	Common
	Generator *Backend   // must have a Generator (not rules:)
	N         int        // responses per prompt; default 2
	Samplings []Sampling // response i uses Samplings[i % len]; default DefaultSamplings
	System    string     // system prompt for prompts without one
	MaxTokens int        // output ceiling per response; default 512
	Seed      int64      // response i is sampled with seed Seed+i where the backend takes seeds

	// Dry-run estimate only: the judge that will rank the candidates (""
	// leaves rank out), whether it judges both orders, and the expected
	// output tokens per response (0: cost.RefResponseTokens).
	JudgeModel    string
	BothOrders    bool
	EstOutputToks int
}

// CollectReport is what Collect did.
type CollectReport struct {
	Prompts    int64          `json:"prompts"`    // read this run, duplicates excluded
	Written    int64          `json:"written"`    // candidate records written this run
	Skipped    int64          `json:"skipped"`    // done by earlier runs
	Dead       int64          `json:"dead"`       // sent to the dead-letter file
	Duplicates int64          `json:"duplicates"` // input lines repeating an earlier prompt
	SpentUSD   float64        `json:"spent_usd"`  // ledger total, earlier runs included
	PerSecond  float64        `json:"per_second"`
	Estimate   *cost.Estimate `json:"estimate,omitempty"` // dry run
	DeadPath   string         `json:"dead_letter"`
}

func (c *CollectConfig) defaults() {
	c.Common.defaults()
	if c.N <= 0 {
		c.N = 2
	}
	if len(c.Samplings) == 0 {
		c.Samplings = DefaultSamplings
	}
	if c.MaxTokens <= 0 {
		c.MaxTokens = 512
	}
	if c.EstOutputToks <= 0 {
		c.EstOutputToks = cost.RefResponseTokens
	}
	if c.DeadLetter == "" {
		c.DeadLetter = StagePath("collect", c.Out, "dead")
	}
}

func (c *CollectConfig) settings() string {
	b, _ := json.Marshal(struct {
		N      int        `json:"n"`
		S      []Sampling `json:"s"`
		Sys    string     `json:"sys"`
		Max    int        `json:"max"`
		Seed   int64      `json:"seed"`
		Stages string     `json:"v"`
	}{c.N, c.Samplings, c.System, c.MaxTokens, c.Seed, "1"})
	return string(b)
}

// candidateID is the record id of a collect record.
func (c *CollectConfig) candidateID(p Prompt) string {
	return jsonl.RecordID("collect", c.Generator.Model, p.ID, p.Key(), c.settings())
}

// Collect samples N responses per prompt of c.In and appends candidate
// records to c.Out. See the package comment for resume and accounting.
func Collect(ctx context.Context, c CollectConfig) (CollectReport, error) {
	c.defaults()
	if c.Generator == nil || c.Generator.Generator == nil {
		return CollectReport{}, fmt.Errorf("collect: the generator backend cannot generate text")
	}
	rep := CollectReport{DeadPath: c.DeadLetter}
	parse := func(raw []byte) ([]job, error) {
		p, err := ParsePrompt(raw)
		if err != nil {
			return nil, err
		}
		if p.System == "" {
			p.System = c.System
		}
		return []job{{id: c.candidateID(p), v: p}}, nil
	}
	done := map[string]bool{}
	if c.DryRun {
		return rep, collectDryRun(ctx, &c, &rep, parse, done)
	}
	st, err := openStage(&c.Common, "collect", c.Generator, "", stageKinds{out: kindCandidate}, false, done)
	if err != nil {
		return rep, err
	}
	defer st.close()
	out, dead, prog := st.out, st.dead, st.prog
	prog.Total.Store(max(countLines(c.In)-int64(len(done)), 0))
	var skipped, dups int64
	do := func(ictx context.Context, j job) ([]write, error) {
		p := j.v.(Prompt)
		cand := Candidate{ID: j.id, PromptID: p.ID, System: p.System, Prompt: p.Prompt, Messages: p.Messages, Objective: p.Objective, Generator: c.Generator.Model}
		lctx := cost.WithLabel(ictx, "collect:"+j.id)
		for i := 0; i < c.N; i++ {
			s := c.Samplings[i%len(c.Samplings)]
			seed := c.Seed + int64(i)
			req := backend.GenerateRequest{System: p.System, Messages: p.Conversation(), Temperature: &s.Temperature, TopP: &s.TopP, MaxTokens: c.MaxTokens, Seed: &seed}
			var resp backend.GenerateResponse
			var err error
			attempts := 0
			for attempts < 2 {
				attempts++
				if attempts == 2 {
					seed += 7919 // a fresh draw, where the backend takes seeds
				}
				resp, err = c.Generator.Generator.Generate(lctx, req)
				if err == nil && strings.TrimSpace(resp.Text) == "" {
					err = &backend.InvalidOutputError{Model: c.Generator.Model, Reason: "empty response", Usage: resp.Usage}
				}
				if err == nil || !backend.IsInvalidOutput(err) {
					break
				}
			}
			if err != nil {
				kind, fatal := st.failKind(ctx, ictx, err)
				if fatal != nil {
					return nil, fatal
				}
				return []write{{dead, deadLetter("collect", c.Generator.Model, j, kind, fmt.Errorf("response %d: %w", i, err), attempts)}}, nil
			}
			cand.Responses = append(cand.Responses, Response{Text: resp.Text, Temperature: s.Temperature, TopP: s.TopP, StopReason: resp.StopReason})
		}
		return []write{{out, cand}}, nil
	}
	tally := func(ws []write) {
		st.seen(ws)
		prog.Done.Add(1)
		if ws[0].s == dead {
			prog.Failed.Add(1)
		}
	}
	err = pool(ctx, &c.Common, readJobs(&c.Common, parse, done, &skipped, &dups), do, tally)
	rep.Written, rep.Dead, rep.Skipped, rep.Duplicates = int64(out.n), int64(dead.n), skipped, dups
	rep.Prompts = rep.Written + rep.Dead + rep.Skipped
	extra := fmt.Sprintf("%d candidates to %s", rep.Written, out.path)
	if rep.Dead > 0 {
		extra += fmt.Sprintf(", %d dead letters in %s", rep.Dead, dead.path)
	}
	rep.SpentUSD, rep.PerSecond = st.finish(skipped, extra)
	return rep, stopError("collect", err)
}

func collectDryRun(ctx context.Context, c *CollectConfig, rep *CollectReport, parse func([]byte) ([]job, error), done map[string]bool) error {
	if c.Out != "-" {
		if _, ids, err := scanIDs(c.Out); err == nil {
			for id := range ids {
				done[id] = true
			}
		}
	}
	var inTok, n int64
	var skipped, dups int64
	err := readJobs(&c.Common, parse, done, &skipped, &dups)(ctx, func(j job) bool {
		p := j.v.(Prompt)
		inTok += int64(backend.EstimateRequestTokens(p.System, p.Conversation()))
		n++
		return true
	})
	if err != nil {
		return err
	}
	rep.Prompts, rep.Skipped, rep.Duplicates = n+skipped, skipped, dups
	avgIn := 0
	if n > 0 {
		avgIn = int((inTok + n - 1) / n)
	}
	plan := cost.Plan{Steps: []cost.Step{{Name: "collect", Model: c.Generator.Model, Calls: int(n) * c.N, InputTokens: avgIn, OutputTokens: c.EstOutputToks}}}
	if c.JudgeModel != "" {
		per := c.N * (c.N - 1) / 2
		if c.BothOrders {
			per *= 2
		}
		plan.Steps = append(plan.Steps, cost.Step{Name: "rank", Model: c.JudgeModel, Calls: int(n) * per,
			InputTokens: avgIn + 2*c.EstOutputToks + judgeOverhead(), OutputTokens: cost.RefJudgeOutput})
	}
	e := c.Prices.Estimate(plan)
	rep.Estimate = &e
	return nil
}

// judgeOverhead estimates the tokens a judge prompt adds around the
// conversation and the two responses: system prompt, rubric, instructions.
func judgeOverhead() int {
	sys, msgs := backend.JudgeMessages(backend.JudgeRequest{})
	return backend.EstimateRequestTokens(sys, msgs) + backend.EstimateTokens(string(backend.VerdictSchema.JSON))
}

// scanIDs reads the ids of an existing output without changing it.
func scanIDs(path string) (int, map[string]bool, error) {
	rc, err := jsonl.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer rc.Close()
	jr := jsonl.NewReader(rc, path)
	ids := map[string]bool{}
	n := 0
	for {
		raw, _, err := jr.NextRaw()
		if err != nil {
			return n, ids, nil
		}
		if id, err := idOf(raw); err == nil {
			ids[id] = true
			n++
		}
	}
}
