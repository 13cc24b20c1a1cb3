package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/bedrock"
	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/pairs"
)

// ScreenConfig configures Screen.
type ScreenConfig struct {
	Common
	Screener     *Backend
	Constitution []string // rules numbered from 1; nil: backend.DefaultConstitution
	System       string   // "" uses backend.DefaultScreenSystem
	MaxTokens    int      // default 1024
	Removed      string   // removed pairs; "" derives it from Out (OUT.removed.jsonl)
	Batch        *BatchConfig
}

// ScreenReport is what Screen did.
type ScreenReport struct {
	Approved    int64          `json:"approved"`
	Revised     int64          `json:"revised"`
	Removed     int64          `json:"removed"`
	Dead        int64          `json:"dead"`
	Skipped     int64          `json:"skipped"`
	Duplicates  int64          `json:"duplicates"`
	Repairs     int64          `json:"repairs"`
	ByRule      map[int]int64  `json:"by_rule"` // revisions and removals per rule number
	SpentUSD    float64        `json:"spent_usd"`
	PerSecond   float64        `json:"per_second"`
	Estimate    *cost.Estimate `json:"estimate,omitempty"`
	RemovedPath string         `json:"removed_file"`
	DeadPath    string         `json:"dead_letter"`
}

// ScreenRecord is the "screen" field screen adds to each pair.
type ScreenRecord struct {
	backend.ScreenDecision
	Screener string `json:"screener"`
}

var ruleNumber = regexp.MustCompile(`^\s*(?:\d+[.)]|[-*])\s*`)

// LoadConstitution reads a constitution: a JSON list of strings, or text
// with one rule per non-blank line (a leading "1." or "-" is dropped;
// lines starting with '#' are comments).
func LoadConstitution(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rules []string
	if t := strings.TrimSpace(string(data)); strings.HasPrefix(t, "[") {
		if err := json.Unmarshal(data, &rules); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	} else {
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			rules = append(rules, ruleNumber.ReplaceAllString(line, ""))
		}
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s: no rules", path)
	}
	return rules, nil
}

func (c *ScreenConfig) defaults() {
	c.Common.defaults()
	if c.MaxTokens <= 0 {
		c.MaxTokens = 1024
	}
	if c.Removed == "" {
		c.Removed = StagePath("screen", c.Out, "removed")
	}
	if c.DeadLetter == "" {
		c.DeadLetter = StagePath("screen", c.Out, "dead")
	}
}

func parsePairJob(raw []byte) ([]job, error) {
	p, err := pairs.ParseLine(raw)
	if err != nil {
		return nil, err
	}
	return []job{{id: p.ID, v: p}}, nil
}

func (c *ScreenConfig) request(p pairs.Pair) backend.ScreenRequest {
	pm, _, _ := p.Messages()
	var conv []backend.Message
	for _, m := range pm {
		conv = append(conv, backend.Message{Role: backend.Role(m.Role), Content: m.Content})
	}
	_, ch, rj := p.Text()
	return backend.ScreenRequest{System: c.System, Prompt: conv, Chosen: ch, Rejected: rj, Constitution: c.Constitution, MaxTokens: c.MaxTokens}
}

// apply adds the decision to the pair (revising its chosen response).
func (c *ScreenConfig) apply(p pairs.Pair, d backend.ScreenDecision) pairs.Pair {
	if p.Extra == nil {
		p.Extra = map[string]json.RawMessage{}
	} else {
		extra := make(map[string]json.RawMessage, len(p.Extra)+2)
		for k, v := range p.Extra {
			extra[k] = v
		}
		p.Extra = extra
	}
	if d.Decision == backend.DecisionRevise {
		_, orig, _ := p.Text()
		b, _ := json.Marshal(orig)
		p.Extra["original_chosen"] = b
		if p.Conversational() && len(p.ChosenMessages) > 0 {
			cm := append([]pairs.Message(nil), p.ChosenMessages...)
			cm[len(cm)-1].Content = d.RevisedChosen
			p.ChosenMessages = cm
		} else {
			p.Chosen = d.RevisedChosen
		}
	}
	b, _ := json.Marshal(ScreenRecord{ScreenDecision: d, Screener: c.Screener.Model})
	p.Extra["screen"] = b
	return p
}

// Screen checks the chosen response of every pair in c.In against the
// constitution: approved and revised pairs go to c.Out, removed ones (with
// the rule number) to c.Removed, failures to the dead-letter file. A
// summary table goes to c.Stderr.
func Screen(ctx context.Context, c ScreenConfig) (ScreenReport, error) {
	c.defaults()
	if c.Screener == nil || c.Screener.Screener == nil {
		return ScreenReport{}, fmt.Errorf("screen: the backend cannot screen")
	}
	rep := ScreenReport{ByRule: map[int]int64{}, RemovedPath: c.Removed, DeadPath: c.DeadLetter}
	done := map[string]bool{}
	if c.DryRun {
		return rep, screenDryRun(ctx, &c, &rep, done)
	}
	st, err := openStage(&c.Common, "screen", c.Screener, c.Removed, stageKinds{out: kindScreened, side: kindScreened, sideFlag: "--removed"}, c.Batch != nil, done)
	if err != nil {
		return rep, err
	}
	defer st.close()
	out, removed, dead, prog := st.out, st.side, st.dead, st.prog
	nRules := len(c.Constitution)
	if nRules == 0 {
		nRules = len(backend.DefaultConstitution)
	}
	var repairs atomic.Int64
	var skipped, dups int64
	decided := func(j job, d backend.ScreenDecision) []write {
		p := c.apply(j.v.(pairs.Pair), d)
		if d.Decision == backend.DecisionRemove {
			return []write{{removed, p}}
		}
		return []write{{out, p}}
	}
	do := func(ictx context.Context, j job) ([]write, error) {
		lctx := cost.WithLabel(ictx, "screen:"+j.id)
		req := c.request(j.v.(pairs.Pair))
		resp, err := c.Screener.Screener.Screen(lctx, req)
		attempts := 1
		if err != nil && backend.IsInvalidOutput(err) {
			repairs.Add(1)
			attempts++
			req.Repair = repairOf(err)
			resp, err = c.Screener.Screener.Screen(lctx, req)
		}
		if err != nil {
			kind, fatal := st.failKind(ctx, ictx, err)
			if fatal != nil {
				return nil, fatal
			}
			return []write{{dead, deadLetter("screen", c.Screener.Model, j, kind, err, attempts)}}, nil
		}
		return decided(j, resp.Decision), nil
	}
	tally := func(ws []write) {
		st.seen(ws)
		prog.Done.Add(1)
		switch ws[0].s {
		case dead:
			prog.Failed.Add(1)
			return
		}
		p := ws[0].v.(pairs.Pair)
		var sr ScreenRecord
		json.Unmarshal(p.Extra["screen"], &sr)
		switch sr.Decision {
		case backend.DecisionApprove:
			rep.Approved++
		case backend.DecisionRevise:
			rep.Revised++
			rep.ByRule[sr.Rule]++
		case backend.DecisionRemove:
			rep.Removed++
			rep.ByRule[sr.Rule]++
		}
	}
	produce := readJobs(&c.Common, parsePairJob, done, &skipped, &dups)
	if c.Batch != nil {
		err = screenBatch(ctx, &c, produce, nRules, decided, dead, st.meter, tally)
	} else {
		err = pool(ctx, &c.Common, produce, do, tally)
	}
	rep.Dead, rep.Skipped, rep.Duplicates, rep.Repairs = int64(dead.n), skipped, dups, repairs.Load()
	rep.SpentUSD, rep.PerSecond = st.finish(skipped, fmt.Sprintf("%d approved, %d revised, %d removed (in %s)", rep.Approved, rep.Revised, rep.Removed, removed.path))
	if c.Stderr != nil {
		fmt.Fprint(c.Stderr, rep.Table(c.Constitution))
	}
	return rep, stopError("screen", err)
}

// Table formats the report as a summary table: decisions, then revisions
// and removals per rule.
func (r ScreenReport) Table(constitution []string) string {
	if len(constitution) == 0 {
		constitution = backend.DefaultConstitution
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %8s\n", "decision", "pairs")
	fmt.Fprintf(&b, "%-10s %8d\n%-10s %8d\n%-10s %8d\n%-10s %8d\n", "approved", r.Approved, "revised", r.Revised, "removed", r.Removed, "dead", r.Dead)
	var rules []int
	for k := range r.ByRule {
		rules = append(rules, k)
	}
	sort.Ints(rules)
	if len(rules) > 0 {
		fmt.Fprintf(&b, "%-6s %8s  %s\n", "rule", "pairs", "text")
		for _, k := range rules {
			text := ""
			if k >= 1 && k <= len(constitution) {
				text = constitution[k-1]
				if len(text) > 60 {
					text = text[:57] + "..."
				}
			}
			fmt.Fprintf(&b, "%-6d %8d  %s\n", k, r.ByRule[k], text)
		}
	}
	return b.String()
}

func screenDryRun(ctx context.Context, c *ScreenConfig, rep *ScreenReport, done map[string]bool) error {
	for _, path := range []string{c.Out, c.Removed, c.DeadLetter} {
		if path == "-" {
			continue
		}
		if _, ids, err := scanIDs(path); err == nil {
			for id := range ids {
				done[id] = true
			}
		}
	}
	var n, inTok int64
	err := readJobs(&c.Common, parsePairJob, done, &rep.Skipped, &rep.Duplicates)(ctx, func(j job) bool {
		sys, msgs := backend.ScreenMessages(c.request(j.v.(pairs.Pair)))
		inTok += int64(backend.EstimateRequestTokens(sys, msgs) + backend.EstimateTokens(string(backend.ScreenSchema.JSON)))
		n++
		return true
	})
	if err != nil {
		return err
	}
	avg := 0
	if n > 0 {
		avg = int((inTok + n - 1) / n)
	}
	e := c.Prices.Estimate(cost.Plan{Steps: []cost.Step{{Name: "screen", Model: c.Screener.Model, Calls: int(n), InputTokens: avg, OutputTokens: 150, Batch: c.Batch != nil}}})
	rep.Estimate = &e
	return nil
}

func screenBatch(ctx context.Context, c *ScreenConfig, produce func(context.Context, func(job) bool) error, nRules int,
	decided func(job, backend.ScreenDecision) []write, dead *sink, meter *cost.Meter, tally func([]write)) error {
	var items []batchItem
	err := produce(ctx, func(j job) bool {
		sys, msgs := backend.ScreenMessages(c.request(j.v.(pairs.Pair)))
		zero := 0.0
		body := bedrock.AnthropicInput(backend.StructuredRequest{System: sys, Messages: msgs, Schema: backend.ScreenSchema, Temperature: &zero}, c.MaxTokens)
		items = append(items, batchItem{j: j, recs: []bedrock.BatchRecord{{RecordID: j.id + ".s", ModelInput: body}}})
		return true
	})
	if err != nil || len(items) == 0 {
		return err
	}
	handle := func(it batchItem, outs map[string]json.RawMessage, fails map[string]bedrock.BatchFailure) []write {
		input, raw, err := batchOutput(c.Screener.Model, backend.ScreenSchema.Name, it.recs[0].RecordID, outs, fails)
		var d backend.ScreenDecision
		if err == nil {
			d, err = backend.ParseScreenDecision(input, nRules)
		}
		if err != nil {
			kind := "batch_failed"
			if backend.IsInvalidOutput(err) {
				kind = "invalid_output"
			}
			dl := deadLetter("screen", c.Screener.Model, it.j, kind, err, 1)
			if dl.Raw == "" {
				dl.Raw = raw
			}
			return []write{{dead, dl}}
		}
		return decided(it.j, d)
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
	return runBatch(ctx, c.Batch, c.retried, c.Out, "screen", c.Screener.Model, items, meter, handle, emit)
}
