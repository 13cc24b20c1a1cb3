package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
)

// RankConfig configures Rank.
type RankConfig struct {
	Common
	Judge       *Backend
	SingleOrder bool   // judge only the order A, B (position bias uncontrolled)
	System      string // judge system prompt; "" uses backend.DefaultJudgeSystem
	Rubric      string // "" uses backend.DefaultRubric
	MaxTokens   int    // judge output ceiling; default 1024
	Ties        string // ties file; "" derives it from Out (OUT.ties.jsonl)
	Batch       *BatchConfig
}

// RankReport is what Rank did. Rates count this run's comparisons.
type RankReport struct {
	Comparisons  int64 `json:"comparisons"` // judged this run (pairs + ties + dead)
	Pairs        int64 `json:"pairs"`
	Ties         int64 `json:"ties"`         // both orders said tie (or one order did, single-order)
	Inconsistent int64 `json:"inconsistent"` // the orders disagreed: recorded with the ties, not trained on
	Dead         int64 `json:"dead"`
	Skipped      int64 `json:"skipped"`
	Duplicates   int64 `json:"duplicates"`
	Repairs      int64 `json:"repairs"` // repair attempts made

	Verdicts   int64 `json:"verdicts"`     // valid verdicts received
	FirstWins  int64 `json:"first_wins"`   // verdicts for the response shown first
	TieVerdict int64 `json:"tie_verdicts"` // verdicts of "tie"

	ConsistencyRate      float64 `json:"consistency_rate"`        // both-order comparisons whose orders agree
	FirstPositionWinRate float64 `json:"first_position_win_rate"` // of verdicts that name a winner
	TieRate              float64 `json:"tie_rate"`                // comparisons ending in the ties file

	SpentUSD  float64        `json:"spent_usd"`
	PerSecond float64        `json:"per_second"`
	Estimate  *cost.Estimate `json:"estimate,omitempty"`
	TiesPath  string         `json:"ties_file"`
	DeadPath  string         `json:"dead_letter"`
}

// comparison is one pair of responses of a candidate record.
type comparison struct {
	cand Candidate
	i, j int
}

// VerdictRecord is one order's verdict as kept in ties and pairs files.
type VerdictRecord struct {
	Order  string `json:"order"`  // "ab": response i shown first; "ba": response j first
	Chosen int    `json:"chosen"` // index of the response the verdict prefers, -1 for a tie
	backend.Verdict
}

// TieRecord is one line of the ties file: a comparison that yields no
// training pair, with its verdicts.
type TieRecord struct {
	ID           string            `json:"id"`
	Kind         string            `json:"kind"` // "tie" or "inconsistent"
	CandidatesID string            `json:"candidates_id"`
	PromptID     string            `json:"prompt_id"`
	System       string            `json:"system,omitempty"`
	Prompt       string            `json:"prompt,omitempty"`
	Messages     []backend.Message `json:"messages,omitempty"`
	Objective    string            `json:"objective,omitempty"`
	Responses    [2]string         `json:"responses"`
	Indexes      [2]int            `json:"indexes"`
	Judge        string            `json:"judge"`
	Verdicts     []VerdictRecord   `json:"verdicts"`
}

func (c *RankConfig) defaults() {
	c.Common.defaults()
	if c.MaxTokens <= 0 {
		c.MaxTokens = 1024
	}
	if c.Ties == "" {
		c.Ties = StagePath("rank", c.Out, "ties")
	}
	if c.DeadLetter == "" {
		c.DeadLetter = StagePath("rank", c.Out, "dead")
	}
}

func (c *RankConfig) orders() string {
	if c.SingleOrder {
		return "ab"
	}
	return "ab+ba"
}

func (c *RankConfig) pairID(cand Candidate, i, j int) string {
	return jsonl.RecordID("rank", c.Judge.Model, cand.ID, strconv.Itoa(i), strconv.Itoa(j), c.orders(), c.System, c.Rubric)
}

func (c *RankConfig) parse(raw []byte) ([]job, error) {
	cand, err := ParseCandidate(raw)
	if err != nil {
		return nil, err
	}
	var js []job
	for i := 0; i < len(cand.Responses); i++ {
		for j := i + 1; j < len(cand.Responses); j++ {
			js = append(js, job{id: c.pairID(cand, i, j), v: comparison{cand, i, j}})
		}
	}
	return js, nil
}

func (c *RankConfig) request(cmp comparison, first, second int) backend.JudgeRequest {
	p := cmp.cand.AsPrompt()
	conv := p.Conversation()
	if p.System != "" {
		// The judge sees the assistant's instructions as part of the context.
		conv = append([]backend.Message{{Role: backend.RoleUser, Content: "[assistant instructions]\n" + p.System}}, conv...)
	}
	return backend.JudgeRequest{System: c.System, Prompt: conv, A: cmp.cand.Responses[first].Text, B: cmp.cand.Responses[second].Text, Rubric: c.Rubric, MaxTokens: c.MaxTokens}
}

// chosenOf maps a verdict's winner (a position) to a response index.
func chosenOf(winner string, first, second int) int {
	switch winner {
	case backend.WinnerA:
		return first
	case backend.WinnerB:
		return second
	}
	return -1
}

// rankCounters are updated by workers.
type rankCounters struct {
	verdicts, firstWins, tieVerdicts, repairs, bothOrders, consistent atomic.Int64
}

func (rc *rankCounters) verdict(v backend.Verdict) {
	rc.verdicts.Add(1)
	switch v.Winner {
	case backend.WinnerA:
		rc.firstWins.Add(1)
	case backend.WinnerTie:
		rc.tieVerdicts.Add(1)
	}
}

// judgeRepair asks once, and once more with the problem stated when the
// output was invalid.
func judgeRepair(ctx context.Context, j backend.Judge, req backend.JudgeRequest, rc *rankCounters) (backend.JudgeResponse, int, error) {
	resp, err := j.Judge(ctx, req)
	if err == nil || !backend.IsInvalidOutput(err) {
		return resp, 1, err
	}
	rc.repairs.Add(1)
	req.Repair = repairOf(err)
	resp, err = j.Judge(ctx, req)
	return resp, 2, err
}

// outcome turns the verdicts of one comparison into a pair or a tie.
func (c *RankConfig) outcome(id string, cmp comparison, vs []VerdictRecord, rc *rankCounters) (pair *pairs.Pair, tie *TieRecord) {
	chosen, kind := vs[0].Chosen, ""
	if len(vs) == 2 {
		rc.bothOrders.Add(1)
		if vs[0].Chosen == vs[1].Chosen {
			rc.consistent.Add(1)
		} else {
			chosen, kind = -1, "inconsistent"
		}
	}
	cand := cmp.cand
	if chosen < 0 {
		if kind == "" {
			kind = "tie"
		}
		return nil, &TieRecord{ID: id, Kind: kind, CandidatesID: cand.ID, PromptID: cand.PromptID, System: cand.System, Prompt: cand.Prompt,
			Messages: cand.Messages, Objective: cand.Objective, Responses: [2]string{cand.Responses[cmp.i].Text, cand.Responses[cmp.j].Text},
			Indexes: [2]int{cmp.i, cmp.j}, Judge: c.Judge.Model, Verdicts: vs}
	}
	rejected := cmp.i + cmp.j - chosen
	v := vs[0].Verdict
	cs, rs := v.Scores.A, v.Scores.B
	if chosen != cmp.i { // order "ab": A is response i
		cs, rs = rs, cs
	}
	obj := cand.Objective
	if obj == "" {
		obj = v.Objective
	}
	p := &pairs.Pair{ID: id, Objective: obj, Source: "rank", Chosen: cand.Responses[chosen].Text, Rejected: cand.Responses[rejected].Text}
	if cand.Messages != nil {
		p.PromptMessages = slices.Clone(cand.Messages)
		p.ChosenMessages = []pairs.Message{{Role: "assistant", Content: p.Chosen}}
		p.RejectedMessages = []pairs.Message{{Role: "assistant", Content: p.Rejected}}
		p.Chosen, p.Rejected = "", ""
	} else {
		p.Prompt = cand.Prompt
	}
	extra := map[string]any{
		"prompt_id": cand.PromptID, "candidates_id": cand.ID, "generator": cand.Generator, "judge": c.Judge.Model,
		"scores":    map[string]backend.Scores{"chosen": cs, "rejected": rs},
		"reasoning": v.Reasoning, "judge_objective": v.Objective, "verdicts": vs,
		"indexes": [2]int{chosen, rejected},
	}
	if cand.System != "" {
		extra["system"] = cand.System
	}
	p.Extra = map[string]json.RawMessage{}
	for k, x := range extra {
		b, _ := json.Marshal(x)
		p.Extra[k] = b
	}
	return p, nil
}

// Rank judges each pair of responses of every candidate record in c.In,
// in both orders unless c.SingleOrder, and appends a pair to c.Out when
// the orders agree on a winner, a tie record to c.Ties otherwise, or a dead
// letter when the judge failed (after one repair attempt for invalid
// output).
func Rank(ctx context.Context, c RankConfig) (RankReport, error) {
	c.defaults()
	if c.Judge == nil || c.Judge.Judge == nil {
		return RankReport{}, fmt.Errorf("rank: the judge backend cannot judge")
	}
	rep := RankReport{TiesPath: c.Ties, DeadPath: c.DeadLetter}
	done := map[string]bool{}
	if c.DryRun {
		return rep, rankDryRun(ctx, &c, &rep, done)
	}
	st, err := openStage(&c.Common, "rank", c.Judge, c.Ties, stageKinds{out: kindRankedPair, side: kindTie, sideFlag: "--ties"}, c.Batch != nil, done)
	if err != nil {
		return rep, err
	}
	defer st.close()
	out, ties, dead, prog := st.out, st.side, st.dead, st.prog
	var rc rankCounters
	var skipped, dups, nTies, nIncons int64
	judgeOne := func(ictx context.Context, j job) ([]write, error) {
		cmp := j.v.(comparison)
		lctx := cost.WithLabel(ictx, "rank:"+j.id)
		orders := [][2]int{{cmp.i, cmp.j}}
		if !c.SingleOrder {
			orders = append(orders, [2]int{cmp.j, cmp.i})
		}
		var vs []VerdictRecord
		for k, o := range orders {
			resp, attempts, err := judgeRepair(lctx, c.Judge.Judge, c.request(cmp, o[0], o[1]), &rc)
			if err != nil {
				kind, fatal := st.failKind(ctx, ictx, err)
				if fatal != nil {
					return nil, fatal
				}
				return []write{{dead, deadLetter("rank", c.Judge.Model, j, kind, fmt.Errorf("order %d: %w", k+1, err), attempts)}}, nil
			}
			rc.verdict(resp.Verdict)
			name := "ab"
			if k == 1 {
				name = "ba"
			}
			vs = append(vs, VerdictRecord{Order: name, Chosen: chosenOf(resp.Verdict.Winner, o[0], o[1]), Verdict: resp.Verdict})
		}
		return c.writes(j.id, cmp, vs, &rc, out, ties), nil
	}
	tally := func(ws []write) {
		st.seen(ws)
		prog.Done.Add(1)
		switch ws[0].s {
		case dead:
			prog.Failed.Add(1)
		case ties:
			if ws[0].v.(*TieRecord).Kind == "inconsistent" {
				nIncons++
			} else {
				nTies++
			}
		}
	}
	produce := readJobs(&c.Common, c.parse, done, &skipped, &dups)
	if c.Batch != nil {
		err = rankBatch(ctx, &c, produce, &rc, out, ties, dead, st.meter, tally)
	} else {
		err = pool(ctx, &c.Common, produce, judgeOne, tally)
	}
	rep.Pairs, rep.Dead, rep.Ties, rep.Inconsistent = int64(out.n), int64(dead.n), nTies, nIncons
	rep.Skipped, rep.Duplicates = skipped, dups
	rep.Comparisons = rep.Pairs + rep.Dead + rep.Ties + rep.Inconsistent
	rep.Repairs, rep.Verdicts, rep.FirstWins, rep.TieVerdict = rc.repairs.Load(), rc.verdicts.Load(), rc.firstWins.Load(), rc.tieVerdicts.Load()
	if n := rc.bothOrders.Load(); n > 0 {
		rep.ConsistencyRate = float64(rc.consistent.Load()) / float64(n)
	}
	if n := rep.Verdicts - rep.TieVerdict; n > 0 {
		rep.FirstPositionWinRate = float64(rep.FirstWins) / float64(n)
	}
	if n := rep.Pairs + rep.Ties + rep.Inconsistent; n > 0 {
		rep.TieRate = float64(rep.Ties+rep.Inconsistent) / float64(n)
	}
	rep.SpentUSD, rep.PerSecond = st.finish(skipped, fmt.Sprintf("%d pairs, %d ties, %d inconsistent (in %s), consistency %.1f%%, first-position wins %.1f%%, tie rate %.1f%%, %d repairs",
		rep.Pairs, rep.Ties, rep.Inconsistent, ties.path, 100*rep.ConsistencyRate, 100*rep.FirstPositionWinRate, 100*rep.TieRate, rep.Repairs))
	return rep, stopError("rank", err)
}

// writes is the record a judged comparison produces.
func (c *RankConfig) writes(id string, cmp comparison, vs []VerdictRecord, rc *rankCounters, out, ties *sink) []write {
	p, t := c.outcome(id, cmp, vs, rc)
	if p != nil {
		return []write{{out, p}}
	}
	return []write{{ties, t}}
}

func rankDryRun(ctx context.Context, c *RankConfig, rep *RankReport, done map[string]bool) error {
	for _, path := range []string{c.Out, c.Ties, c.DeadLetter} {
		if path == "-" {
			continue
		}
		if _, ids, err := scanIDs(path); err == nil {
			for id := range ids {
				done[id] = true
			}
		}
	}
	var n, inTok, skipped, dups int64
	err := readJobs(&c.Common, c.parse, done, &skipped, &dups)(ctx, func(j job) bool {
		req := c.request(j.v.(comparison), 0, 1)
		sys, msgs := backend.JudgeMessages(req)
		inTok += int64(backend.EstimateRequestTokens(sys, msgs) + backend.EstimateTokens(string(backend.VerdictSchema.JSON)))
		n++
		return true
	})
	if err != nil {
		return err
	}
	rep.Skipped, rep.Duplicates = skipped, dups
	calls := n
	if !c.SingleOrder {
		calls *= 2
	}
	avg := 0
	if n > 0 {
		avg = int((inTok + n - 1) / n)
	}
	e := c.Prices.Estimate(cost.Plan{Steps: []cost.Step{{Name: "rank", Model: c.Judge.Model, Calls: int(calls), InputTokens: avg, OutputTokens: cost.RefJudgeOutput, Batch: c.Batch != nil}}})
	rep.Estimate = &e
	return nil
}
