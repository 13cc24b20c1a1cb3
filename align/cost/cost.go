// Package cost prices model calls, records every call in an append-only
// ledger, estimates the cost of a plan before it runs, and enforces a
// spending ceiling (--max-usd) by refusing a call before it could cross it.
package cost

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Price is the on-demand price of a model in USD per 1,000 tokens.
type Price struct {
	InputPer1K  float64 `json:"input_per_1k"`
	OutputPer1K float64 `json:"output_per_1k"`
}

// Prices is a price table. BatchFactor multiplies the on-demand price of
// calls made through batch inference.
type Prices struct {
	Models      map[string]Price `json:"models"`
	BatchFactor float64          `json:"batch_factor"`
}

// DefaultBatchFactor is Bedrock batch inference's discount: half the
// on-demand price.
const DefaultBatchFactor = 0.5

// DefaultPrices returns the built-in table: public Amazon Bedrock on-demand
// prices (us-east-1) for the models the reference plan uses. Prices change;
// override them with LoadPrices.
func DefaultPrices() *Prices {
	return &Prices{
		BatchFactor: DefaultBatchFactor,
		Models: map[string]Price{
			"meta.llama3-70b-instruct-v1:0":             {InputPer1K: 0.00265, OutputPer1K: 0.0035},
			"meta.llama3-8b-instruct-v1:0":              {InputPer1K: 0.0003, OutputPer1K: 0.0006},
			"anthropic.claude-3-5-sonnet-20240620-v1:0": {InputPer1K: 0.003, OutputPer1K: 0.015},
			"anthropic.claude-3-5-sonnet-20241022-v2:0": {InputPer1K: 0.003, OutputPer1K: 0.015},
			"anthropic.claude-3-sonnet-20240229-v1:0":   {InputPer1K: 0.003, OutputPer1K: 0.015},
			"anthropic.claude-3-haiku-20240307-v1:0":    {InputPer1K: 0.00025, OutputPer1K: 0.00125},
		},
	}
}

// LoadPrices returns the default table overlaid with the JSON file at path:
// {"batch_factor": 0.5, "models": {"<model-id>": {"input_per_1k": 0.003,
// "output_per_1k": 0.015}}}. Models in the file replace or add to the
// defaults; an omitted batch_factor keeps the default.
func LoadPrices(path string) (*Prices, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Models      map[string]Price `json:"models"`
		BatchFactor *float64         `json:"batch_factor"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p := DefaultPrices()
	for id, pr := range f.Models {
		if pr.InputPer1K < 0 || pr.OutputPer1K < 0 {
			return nil, fmt.Errorf("%s: model %q: negative price", path, id)
		}
		p.Models[id] = pr
	}
	if f.BatchFactor != nil {
		if *f.BatchFactor <= 0 || *f.BatchFactor > 1 {
			return nil, fmt.Errorf("%s: batch_factor %v not in (0, 1]", path, *f.BatchFactor)
		}
		p.BatchFactor = *f.BatchFactor
	}
	return p, nil
}

// Lookup returns the price of model. It also finds a model named through a
// cross-region inference profile ("us.anthropic...") or a foundation-model
// ARN.
func (p *Prices) Lookup(model string) (Price, bool) {
	if p == nil {
		return Price{}, false
	}
	if pr, ok := p.Models[model]; ok {
		return pr, true
	}
	id := model
	if i := strings.LastIndex(id, "/"); i >= 0 && strings.HasPrefix(id, "arn:") {
		id = id[i+1:]
	}
	for _, prefix := range []string{"us.", "eu.", "apac.", "us-gov.", "global."} {
		id = strings.TrimPrefix(id, prefix)
	}
	pr, ok := p.Models[id]
	return pr, ok
}

// Cost returns the USD price of a call, and false when model is not in the
// table.
func (p *Prices) Cost(model string, inputTokens, outputTokens int, batch bool) (float64, bool) {
	pr, ok := p.Lookup(model)
	if !ok {
		return 0, false
	}
	usd := float64(inputTokens)/1000*pr.InputPer1K + float64(outputTokens)/1000*pr.OutputPer1K
	if batch {
		usd *= p.BatchFactor
	}
	return usd, true
}

// Step is one stage of a plan: Calls calls to Model with the given average
// token counts per call.
type Step struct {
	Name         string `json:"name"`
	Model        string `json:"model"`
	Calls        int    `json:"calls"`
	InputTokens  int    `json:"input_tokens"`  // per call
	OutputTokens int    `json:"output_tokens"` // per call
	Batch        bool   `json:"batch"`
}

// Plan is the work a run will do.
type Plan struct {
	Steps []Step `json:"steps"`
}

// Line is one priced step.
type Line struct {
	Step
	USD    float64 `json:"usd"`
	Priced bool    `json:"priced"`
}

// Estimate is a plan's predicted cost. Unpriced lists models missing from
// the table; their steps count as zero.
type Estimate struct {
	Lines    []Line   `json:"lines"`
	TotalUSD float64  `json:"total_usd"`
	Unpriced []string `json:"unpriced,omitempty"`
}

// Estimate prices plan without calling anything (for --dry-run).
func (p *Prices) Estimate(plan Plan) Estimate {
	var e Estimate
	seen := map[string]bool{}
	for _, s := range plan.Steps {
		usd, ok := p.Cost(s.Model, s.Calls*s.InputTokens, s.Calls*s.OutputTokens, s.Batch)
		e.Lines = append(e.Lines, Line{Step: s, USD: usd, Priced: ok})
		e.TotalUSD += usd
		if !ok && !seen[s.Model] {
			seen[s.Model] = true
			e.Unpriced = append(e.Unpriced, s.Model)
		}
	}
	sort.Strings(e.Unpriced)
	return e
}

// Token sizes ReferencePlan assumes per call: a customer-support prompt and
// reply, and a judge prompt holding the conversation, both replies and the
// rubric, answered by a verdict.
const (
	RefPromptTokens   = 150
	RefResponseTokens = 300
	RefJudgeInput     = 1000
	RefJudgeOutput    = 250
)

// ReferencePlan is the plan of a collect + rank run for pairs prompts: two
// generations per prompt, and one judge call per pair (two when bothOrders,
// as rank does by default to control position bias).
func ReferencePlan(pairs int, generator, judge string, bothOrders, batchJudge bool) Plan {
	judgeCalls := pairs
	if bothOrders {
		judgeCalls *= 2
	}
	return Plan{Steps: []Step{
		{Name: "collect", Model: generator, Calls: 2 * pairs, InputTokens: RefPromptTokens, OutputTokens: RefResponseTokens},
		{Name: "rank", Model: judge, Calls: judgeCalls, InputTokens: RefJudgeInput, OutputTokens: RefJudgeOutput, Batch: batchJudge},
	}}
}
