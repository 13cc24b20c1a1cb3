package rl

// Online and iterative DPO on the run harness: each step samples
// --samples completions of --rollout-batch prompts from the live policy
// (one batched generation, as GRPO's rollouts), ranks each prompt's
// completions (a pairwise --judge in both orders, as align rank does, or a
// scalar --reward), and takes one DPO step on best vs worst against the
// reference. The reference is the initial policy (the --ref-adapter, or a
// copy of the policy at step 0: the --init-adapter or B = 0); with
// --rounds N it moves to the policy at the start of each of N rounds of
// equal steps (iterative DPO). It is a frozen adapter set on the same
// trainer, saved in every checkpoint.
//
// What a judge said is never paid for twice: every step's samples and each
// judgment (a comparison's verdicts, a chunk of rewards) are appended to
// OUT/judged.jsonl and synced as they arrive, before the step trains; a
// resumed run reads the samples and judgments of the step it continues and
// asks only for the rest. An interruption (Ctrl-C) lets the calls in flight
// finish and records them; only a kill loses those in flight. The step's
// pairs go to OUT/pairs.jsonl (the DPO pairs format, with the verdicts or
// rewards, so `align train --method dpo --data OUT/pairs.jsonl` can use
// them) before its update.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/pipeline"
	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/align/run"
)

// Files of an online DPO run besides the harness's.
const (
	// LedgerFile records every paid judge call of a PPO, GRPO or online
	// DPO run (cost.Ledger); --force keeps it, so --max-usd counts what
	// earlier runs in the folder spent.
	LedgerFile = "ledger.jsonl"
	PairsFile  = "pairs.jsonl"
	JudgedFile = "judged.jsonl"
)

// onlineJudgeWorkers is how many comparisons are judged at once.
var onlineJudgeWorkers = 4

// judgeOutputTokens is the output ceiling of a pairwise verdict (rank's).
const judgeOutputTokens = 1024

// absJudge is a judge spec with a rules: or local: path made absolute.
func absJudge(spec string) (string, error) {
	t, err := judgeTerm(spec)
	if err != nil {
		return "", &run.ConfigError{Flag: "judge", Msg: err.Error()}
	}
	if t.Kind == reward.KindRules || t.Kind == reward.KindLocal {
		if t.Target, err = filepath.Abs(t.Target); err != nil {
			return "", err
		}
	}
	return t.Kind + ":" + t.Target, nil
}

// judgeTerm parses a pairwise judge spec: one term of kind rules, local,
// openai or bedrock, without a weight.
func judgeTerm(spec string) (reward.Term, error) {
	ts, err := reward.ParseSpec(spec)
	if err != nil {
		return reward.Term{}, err
	}
	if len(ts) != 1 || ts[0].Weight != 1 {
		return reward.Term{}, fmt.Errorf("%q: want one pairwise judge, rules:CATALOG.json, local:FILE.gguf, openai:URL[#model] or bedrock:MODEL", spec)
	}
	switch ts[0].Kind {
	case reward.KindRules, reward.KindLocal, reward.KindOpenAI, reward.KindBedrock:
		return ts[0], nil
	}
	return reward.Term{}, fmt.Errorf("%q: %s: is not a pairwise judge (rules:, local:, openai:, bedrock:); a scalar reward is --reward", spec, ts[0].Kind)
}

// validateOnline is Validate for online DPO.
func (c *Config) validateOnline() error {
	switch {
	case c.Prompts == "" && !c.Resume:
		return bad("prompts", "is required (a JSON Lines file of {\"prompt\": ...})")
	case c.Prompts == "-" || c.EvalPrompts == "-":
		return bad("prompts", "cannot be standard input (a resumed run reads it again)")
	case c.Judge == "" && c.Reward == "" && c.Scorer == nil:
		return bad("judge", "or --reward is required for online-dpo: a pairwise judge (rules:, local:, openai:, bedrock:) or a scalar reward spec ranks the samples")
	case c.Judge != "" && (c.Reward != "" || c.Scorer != nil):
		return bad("judge", "and --reward both rank the samples: give one")
	}
	if c.Judge != "" {
		if _, err := judgeTerm(c.Judge); err != nil {
			return bad("judge", "%v", err)
		}
	}
	if err := c.Common.Validate(); err != nil {
		return err
	}
	switch {
	case c.BatchPrompts < 1:
		return bad("rollout-batch", "must be at least 1 (got %d)", c.BatchPrompts)
	case c.Samples < 2 || c.Samples > MaxGroup:
		return bad("samples", "must be in [2, %d] (got %d)", MaxGroup, c.Samples)
	case c.BatchPrompts*c.Samples > MaxGroup:
		return bad("rollout-batch", "times --samples is at most %d completions per step, what one batched generation decodes (got %d × %d)", MaxGroup, c.BatchPrompts, c.Samples)
	case c.Rounds < 1:
		return bad("rounds", "must be at least 1 (got %d)", c.Rounds)
	case c.MaxNewTokens < 1:
		return bad("max-new-tokens", "must be at least 1 (got %d)", c.MaxNewTokens)
	case c.MaxLength < c.MaxNewTokens+2:
		return bad("max-length", "must exceed --max-new-tokens by at least 2 (got %d with %d)", c.MaxLength, c.MaxNewTokens)
	case !(c.Temperature > 0) || !finite(c.Temperature):
		return bad("temperature", "must be positive for sampling (got %g)", c.Temperature)
	case !(c.TopP > 0 && c.TopP <= 1):
		return bad("top-p", "must be in (0, 1] (got %g)", c.TopP)
	case c.TopK < 0:
		return bad("top-k", "must not be negative (got %d)", c.TopK)
	case !(c.MinP >= 0 && c.MinP < 1):
		return bad("min-p", "must be in [0, 1) (got %g)", c.MinP)
	case !(c.Beta > 0) || !finite(c.Beta):
		return bad("beta", "must be a positive number, DPO's β (got %g)", c.Beta)
	case c.EvalSamples < 1:
		return bad("eval-samples", "must be at least 1 (got %d)", c.EvalSamples)
	case c.Patience > 0 && c.EvalPrompts == "" && c.EvalSplit == 0:
		return bad("patience", "needs held-out prompts (--eval-prompts or --eval-split; got %d with neither)", c.Patience)
	case c.MaxUSD != nil && !(*c.MaxUSD >= 0 && finite(*c.MaxUSD)):
		return bad("max-usd", "must be a finite amount, 0 or more (got %g)", *c.MaxUSD)
	}
	return nil
}

// removeOnline removes what an online DPO run wrote besides the harness's
// files (a replaced run, --force); the ledger stays.
func removeOnline(out string) error {
	for _, f := range []string{JudgedFile, PairsFile} {
		if err := os.Remove(filepath.Join(out, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// judgedRecord is one line of judged.jsonl.
type judgedRecord struct {
	Kind string `json:"kind"` // "samples", "rewards" or "verdict"
	Step int    `json:"step"`
	// samples: the step's completions, --samples per prompt in order
	Prompts   []int     `json:"prompts,omitempty"` // indexes into the run's training prompts
	PromptIDs []string  `json:"prompt_ids,omitempty"`
	Tokens    [][]int32 `json:"tokens,omitempty"` // sampled tokens, end of generation included
	Texts     []string  `json:"texts,omitempty"`
	// rewards: Rewards[i] is sample From+i's reward
	From    int       `json:"from,omitempty"`
	Rewards []float64 `json:"rewards,omitempty"`
	// verdict: samples A and B (A < B) judged in one order ("ab": A shown
	// first, "ba": B first); Invalid: the judge's output was invalid after
	// the repair attempt
	A       int                     `json:"a,omitempty"`
	B       int                     `json:"b,omitempty"`
	Order   string                  `json:"order,omitempty"`
	Verdict *pipeline.VerdictRecord `json:"verdict,omitempty"`
	Invalid bool                    `json:"invalid,omitempty"`
	Calls   int                     `json:"calls,omitempty"` // judge calls it took (a repair included)
}

// orders are the two orders of a comparison.
var orders = []string{"ab", "ba"}

// Comparison outcomes that are not a winner.
const (
	outTie          = "tie"
	outInconsistent = "inconsistent"
	outInvalid      = "invalid"
	outIdentical    = "identical"
)

// stepJudged is what judged.jsonl holds of one step.
type stepJudged struct {
	samples  *judgedRecord
	rewards  map[int]float64
	verdicts map[verdictKey]*judgedRecord
}

// verdictKey is a comparison's samples and order.
type verdictKey struct {
	a, b  int
	order string
}

// judgedLog is judged.jsonl: read when the run opens, appended and synced
// as judgments arrive. Safe for concurrent use.
type judgedLog struct {
	mu    sync.Mutex
	app   *jsonl.Appender
	steps map[int]*stepJudged
	n     int // judgments recorded by this process
	hook  func(n int)
}

func (l *judgedLog) step(s int) *stepJudged {
	st := l.steps[s]
	if st == nil {
		st = &stepJudged{rewards: map[int]float64{}, verdicts: map[verdictKey]*judgedRecord{}}
		l.steps[s] = st
	}
	return st
}

// add files r in the log's maps (the caller holds mu, or is the reader).
func (l *judgedLog) add(r *judgedRecord) error {
	st := l.step(r.Step)
	switch r.Kind {
	case "samples":
		st.samples = r
	case "rewards":
		for i, v := range r.Rewards {
			st.rewards[r.From+i] = v
		}
	case "verdict":
		if r.Verdict == nil && !r.Invalid {
			return fmt.Errorf("step %d: verdict of samples %d and %d without a verdict", r.Step, r.A, r.B)
		}
		st.verdicts[verdictKey{r.A, r.B, r.Order}] = r
	default:
		return fmt.Errorf("unknown record kind %q", r.Kind)
	}
	return nil
}

// write appends r, syncs the file and files r.
func (l *judgedLog) write(r *judgedRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.app.Write(r); err != nil {
		return err
	}
	if err := l.app.Sync(); err != nil {
		return err
	}
	if err := l.add(r); err != nil {
		return err
	}
	if r.Kind != "samples" {
		l.n++
		if l.hook != nil {
			l.hook(l.n)
		}
	}
	return nil
}

// onlinePair is one prompt's best and worst sample of a step.
type onlinePair struct {
	slot, chosen, rejected int // the batch slot; sample indexes of the step
}

// onlineStepper is online DPO as the harness steps it.
type onlineStepper struct {
	s        *stepper // cfg, worker, prompts and the --reward scorer
	cfg      Config
	meter    *reward.SpendMeter
	judge    *pipeline.Backend // --judge
	refCopy  run.Trainer       // the reference set the rounds refresh
	stageRef run.Trainer       // --ref-adapter's set: round 1's reference; nil none
	log      *judgedLog
	pairsApp *jsonl.Appender
	pairIDs  map[string]bool
	// this process's totals
	pairs, skipped int
	calls          int64
	callsMu        sync.Mutex
}

// newOnline sets up online DPO on s: the reference set (a copy of the
// initial policy) and the judge.
func newOnline(ctx context.Context, h host, s *stepper, meter *reward.SpendMeter) (*onlineStepper, error) {
	o := &onlineStepper{s: s, cfg: s.cfg, meter: meter}
	var err error
	if o.refCopy, err = h.AddCopy("reference", o.cfg.Seed); err != nil {
		return nil, err
	}
	if err := o.copyPolicy(); err != nil {
		return nil, err
	}
	if o.cfg.RefAdapter != "" && o.cfg.InitAdapter != "" {
		o.stageRef = s.w.ref
	}
	if o.cfg.Judge != "" {
		b, err := pipeline.Open(ctx, o.cfg.Judge, pipeline.OpenOptions{Meter: meter})
		if err != nil {
			return nil, &run.ConfigError{Flag: "judge", Msg: err.Error()}
		}
		if b.Judge == nil {
			b.Close()
			return nil, bad("judge", "%s cannot judge", o.cfg.Judge)
		}
		o.judge = b
	}
	return o, nil
}

// planRounds fixes the steps of a round when a run starts: the run's
// steps (its epochs, or --max-steps) in --rounds equal parts.
func (o *onlineStepper) planRounds() {
	total := 0
	for e := 0; e < o.cfg.Epochs; e++ {
		total += o.EpochSteps(e)
	}
	if o.cfg.MaxSteps > 0 && o.cfg.MaxSteps < total {
		total = o.cfg.MaxSteps
	}
	o.cfg.RoundSteps = max(1, (total+o.cfg.Rounds-1)/o.cfg.Rounds)
	o.s.cfg.RoundSteps = o.cfg.RoundSteps
}

// open reads the run's judged.jsonl and pairs.jsonl (dropping a torn last
// line) and opens both for appending.
func (o *onlineStepper) open() error {
	l := &judgedLog{steps: map[int]*stepJudged{}, hook: o.cfg.OnJudged}
	path := filepath.Join(o.cfg.Out, JudgedFile)
	app, _, err := jsonl.OpenAppend(path, func(raw json.RawMessage) (string, error) {
		var r judgedRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			return "", err
		}
		return "", l.add(&r)
	})
	if err != nil {
		return err
	}
	l.app = app
	o.log = l
	pa, ids, err := jsonl.OpenAppend(filepath.Join(o.cfg.Out, PairsFile), func(raw json.RawMessage) (string, error) {
		var p struct{ ID string }
		if err := json.Unmarshal(raw, &p); err != nil || p.ID == "" {
			return "", fmt.Errorf("not a pair of this run (no id)")
		}
		return p.ID, nil
	})
	if err != nil {
		return err
	}
	o.pairsApp, o.pairIDs = pa, ids
	return nil
}

func (o *onlineStepper) close() {
	if o.log != nil {
		o.log.app.Close()
	}
	o.pairsApp.Close()
	if o.judge != nil {
		o.judge.Close()
	}
}

// result adds the run's online DPO totals to res.
func (o *onlineStepper) result(res *Result) {
	res.Pairs, res.Skipped, res.JudgeCalls = o.pairs, o.skipped, int(o.calls)
	res.PairsFile = filepath.Join(o.cfg.Out, PairsFile)
}

// copyPolicy makes the reference set the policy's current adapters.
func (o *onlineStepper) copyPolicy() error {
	st, err := o.s.w.policy.GetState()
	if err != nil {
		return err
	}
	return o.refCopy.SetState(st.Params, nil, nil, 0)
}

// round is the round of step (0-based).
func (o *onlineStepper) round(step int) int { return step / max(1, o.cfg.RoundSteps) }

// refSet is the reference of step.
func (o *onlineStepper) refSet(step int) run.Trainer {
	if o.round(step) == 0 && o.stageRef != nil {
		return o.stageRef
	}
	return o.refCopy
}

func (o *onlineStepper) EpochSteps(e int) int { return o.s.EpochSteps(e) }

func (o *onlineStepper) Score(em map[string]float64) float64 { return em["reward"] }

// Sets are the policy and the reference (its state moves with the rounds).
func (o *onlineStepper) Sets() []run.Set {
	return []run.Set{o.s.w.policy, o.refCopy}
}

func (o *onlineStepper) Line(row map[string]float64) string {
	out := fmt.Sprintf("pairs %.0f skipped %.0f", row["pairs"], row["skipped"])
	if _, ok := row["loss"]; ok {
		out += fmt.Sprintf(" loss %.4f margin %.3f acc %.2f", row["loss"], row["rewards/margins"], row["rewards/accuracies"])
	}
	if v, ok := row["reward"]; ok {
		out += fmt.Sprintf(" reward %.4f", v)
	}
	return out + fmt.Sprintf(" round %.0f", row["round"])
}

// conversation is a prompt as the judges see it (rank's form: the system
// message as a first user turn of instructions).
func conversation(ms []reward.Message) []backend.Message {
	var out []backend.Message
	for _, m := range ms {
		switch m.Role {
		case "system":
			out = append(out, backend.Message{Role: backend.RoleUser, Content: "[assistant instructions]\n" + m.Content})
		case "user", "assistant":
			out = append(out, backend.Message{Role: backend.Role(m.Role), Content: m.Content})
		}
	}
	return out
}

// countCalls adds n judge calls to this process's total.
func (o *onlineStepper) countCalls(n int) {
	o.callsMu.Lock()
	o.calls += int64(n)
	o.callsMu.Unlock()
}

// judgeOnce asks for one verdict, and once more with the problem stated
// when the output was invalid (as align rank does). It returns the calls
// made; invalid is set when the repair was invalid too.
func (o *onlineStepper) judgeOnce(ctx context.Context, req backend.JudgeRequest) (resp backend.JudgeResponse, calls int, invalid bool, err error) {
	resp, err = o.judge.Judge.Judge(ctx, req)
	calls = 1
	if err != nil && backend.IsInvalidOutput(err) {
		var ie *backend.InvalidOutputError
		if errors.As(err, &ie) {
			req.Repair = &backend.Repair{Previous: ie.Raw, Problem: ie.Error()}
		}
		resp, err = o.judge.Judge.Judge(ctx, req)
		calls = 2
		if err != nil && backend.IsInvalidOutput(err) {
			return resp, calls, true, nil
		}
	}
	return resp, calls, false, err
}

// verdict judges samples a and b (a < b) of a prompt in one order.
func (o *onlineStepper) verdict(ctx context.Context, step int, conv []backend.Message, a, b int, order, ta, tb string) (*judgedRecord, error) {
	r := &judgedRecord{Kind: "verdict", Step: step, A: a, B: b, Order: order}
	first, second := a, b
	if order == "ba" {
		first, second, ta, tb = b, a, tb, ta
	}
	lctx := cost.WithLabel(ctx, fmt.Sprintf("online-dpo:step-%d:%d-%d:%s", step+1, a, b, order))
	resp, calls, invalid, err := o.judgeOnce(lctx, backend.JudgeRequest{Prompt: conv, A: ta, B: tb, MaxTokens: judgeOutputTokens})
	r.Calls = calls
	o.countCalls(calls)
	if err != nil {
		return nil, err
	}
	if invalid {
		r.Invalid = true
		return r, nil
	}
	c := -1
	switch resp.Verdict.Winner {
	case backend.WinnerA:
		c = first
	case backend.WinnerB:
		c = second
	}
	r.Verdict = &pipeline.VerdictRecord{Order: order, Chosen: c, Verdict: resp.Verdict}
	return r, nil
}

// outcome is what the verdicts of samples a and b say: "a" or "b" when
// both orders name it, else tie, inconsistent, invalid, or identical
// (the same text: nothing judged).
func outcome(st *stepJudged, a, b int, ta, tb string) string {
	if ta == tb {
		return outIdentical
	}
	var chosen []int
	for _, ord := range orders {
		r := st.verdicts[verdictKey{a, b, ord}]
		if r.Invalid {
			return outInvalid
		}
		chosen = append(chosen, r.Verdict.Chosen)
	}
	switch {
	case chosen[0] != chosen[1]:
		return outInconsistent
	case chosen[0] < 0:
		return outTie
	case chosen[0] == a:
		return "a"
	}
	return "b"
}

// samplesOf is the step's samples: recorded, or sampled from the live
// policy and recorded.
func (o *onlineStepper) samplesOf(ctx context.Context, step int, all []int) ([]*Seq, error) {
	st := o.log.step(step)
	if st.samples == nil {
		seqs, err := o.s.w.generate(ctx, o.s.train, all, sampler(&o.cfg, seedOf(o.cfg.Seed, step)))
		if err != nil {
			return nil, fmt.Errorf("sampling: %w", err)
		}
		r := &judgedRecord{Kind: "samples", Step: step, Prompts: all}
		for _, q := range seqs {
			// the text as judged.jsonl keeps it (bytes a token cut in the
			// middle of a character become U+FFFD), so a judgment and a
			// resumed run see the same text
			q.Text = strings.ToValidUTF8(q.Text, "\uFFFD")
			r.PromptIDs = append(r.PromptIDs, o.s.train[q.Prompt].ID)
			r.Tokens = append(r.Tokens, q.Resp)
			r.Texts = append(r.Texts, q.Text)
		}
		if err := o.log.write(r); err != nil {
			return nil, err
		}
	}
	r := st.samples
	if len(r.Prompts) != len(all) || len(r.Tokens) != len(all) || len(r.Texts) != len(all) {
		return nil, fmt.Errorf("%s: step %d: %d samples recorded, the run samples %d: not this run's record", JudgedFile, step, len(r.Prompts), len(all))
	}
	seqs := make([]*Seq, len(all))
	for i, k := range all {
		if r.Prompts[i] != k || r.PromptIDs[i] != o.s.train[k].ID {
			return nil, fmt.Errorf("%s: step %d: sample %d answers prompt %q, the run's order has %q: not this run's record", JudgedFile, step, i, r.PromptIDs[i], o.s.train[k].ID)
		}
		seqs[i] = o.s.w.seq(o.s.train, k, r.Tokens[i], r.Texts[i])
	}
	return seqs, nil
}

// rewards scores the step's samples not yet scored with --reward, a chunk
// at a time, recording each chunk.
func (o *onlineStepper) rewards(ctx context.Context, step int, seqs []*Seq) error {
	st := o.log.step(step)
	chunk := len(seqs)
	for _, t := range mustTerms(o.cfg.Reward) {
		if t.Kind == reward.KindLocal || t.Kind == reward.KindOpenAI || t.Kind == reward.KindBedrock {
			chunk = 2 * o.cfg.Samples // paid per call: an interruption waits for at most this
		}
	}
	for lo := 0; lo < len(seqs); lo += chunk {
		hi := min(len(seqs), lo+chunk)
		done := true
		for i := lo; i < hi; i++ {
			if _, ok := st.rewards[i]; !ok {
				done = false
			}
		}
		if done {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		samples := make([]reward.Sample, hi-lo)
		for i := lo; i < hi; i++ {
			p := &o.s.train[seqs[i].Prompt]
			samples[i-lo] = seqs[i].sample(fmt.Sprintf("%s#step-%d-%d", p.ID, step, i), p)
		}
		// the calls of a chunk finish even when interrupted: they are paid
		rs, err := o.s.scorer.Score(context.WithoutCancel(ctx), samples)
		if err != nil {
			return fmt.Errorf("reward: %w", err)
		}
		if len(rs) != len(samples) {
			return fmt.Errorf("reward: %d scores for %d samples", len(rs), len(samples))
		}
		for i, v := range rs {
			if !finite(v) {
				return fmt.Errorf("reward: sample %s scored %g", samples[i].ID, v)
			}
		}
		if err := o.log.write(&judgedRecord{Kind: "rewards", Step: step, From: lo, Rewards: rs}); err != nil {
			return err
		}
	}
	return nil
}

func mustTerms(spec string) []reward.Term {
	ts, _ := reward.ParseSpec(spec)
	return ts
}

// comparisons judges every pair of samples of each prompt not yet judged,
// onlineJudgeWorkers at a time, recording each as it arrives. When ctx
// ends no new comparison starts; those in flight finish and are recorded.
func (o *onlineStepper) comparisons(ctx context.Context, step int, seqs []*Seq) error {
	st := o.log.step(step)
	type job struct {
		a, b  int
		order string
	}
	var jobs []job
	k := o.cfg.Samples
	for lo := 0; lo < len(seqs); lo += k {
		for a := lo; a < lo+k; a++ {
			for b := a + 1; b < lo+k; b++ {
				if seqs[a].Text == seqs[b].Text {
					continue // identical: nothing to judge
				}
				for _, ord := range orders {
					if st.verdicts[verdictKey{a, b, ord}] == nil {
						jobs = append(jobs, job{a, b, ord})
					}
				}
			}
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	calls := context.WithoutCancel(ctx)
	next := make(chan job)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	for w := 0; w < min(onlineJudgeWorkers, len(jobs)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				if ctx.Err() != nil || failed() {
					continue // no new comparison starts
				}
				p := o.s.train[seqs[j.a].Prompt]
				r, err := o.verdict(calls, step, conversation(p.Messages), j.a, j.b, j.order, seqs[j.a].Text, seqs[j.b].Text)
				if err == nil {
					err = o.log.write(r)
				}
				if err != nil {
					fail(fmt.Errorf("judge: prompt %q, samples %d and %d (order %s): %w", p.ID, j.a, j.b, j.order, err))
				}
			}
		}()
	}
	for _, j := range jobs {
		if ctx.Err() != nil || failed() {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// choose picks each prompt's best and worst sample; a prompt whose samples
// the judgments do not separate is skipped, counted by reason.
func (o *onlineStepper) choose(step int, seqs []*Seq) ([]onlinePair, map[string]int) {
	n := len(seqs)
	st := o.log.step(step)
	k := o.cfg.Samples
	var out []onlinePair
	skipped := map[string]int{}
	for lo, slot := 0, 0; lo < n; lo, slot = lo+k, slot+1 {
		score := make([]float64, k)
		reason := outTie
		if o.judge != nil {
			// wins minus losses over the consistent comparisons
			for a := lo; a < lo+k; a++ {
				for b := a + 1; b < lo+k; b++ {
					switch oc := outcome(st, a, b, seqs[a].Text, seqs[b].Text); oc {
					case "a":
						score[a-lo]++
						score[b-lo]--
					case "b":
						score[b-lo]++
						score[a-lo]--
					default:
						reason = oc
					}
				}
			}
			if k > 2 {
				reason = outTie
			}
		} else {
			for i := range score {
				score[i] = st.rewards[lo+i]
			}
		}
		best, worst := 0, 0
		for i := range score {
			if score[i] > score[best] {
				best = i
			}
			if score[i] < score[worst] {
				worst = i
			}
		}
		if !(score[best] > score[worst]) {
			skipped[reason]++
			continue
		}
		out = append(out, onlinePair{slot: slot, chosen: lo + best, rejected: lo + worst})
	}
	return out, skipped
}

// pairID is the id of a step's pair in pairs.jsonl.
func pairID(step, slot int) string { return fmt.Sprintf("online-%d-%d", step+1, slot) }

// writePairs appends the step's pairs not yet in pairs.jsonl and syncs.
func (o *onlineStepper) writePairs(step int, seqs []*Seq, ps []onlinePair) error {
	st := o.log.step(step)
	wrote := false
	for _, p := range ps {
		id := pairID(step, p.slot)
		if o.pairIDs[id] {
			continue
		}
		pr := o.s.train[seqs[p.chosen].Prompt]
		rec := pairs.Pair{ID: id, Source: OnlineDPO, Chosen: seqs[p.chosen].Text, Rejected: seqs[p.rejected].Text}
		if len(pr.Messages) == 1 && pr.Messages[0].Role == "user" {
			rec.Prompt = pr.Messages[0].Content
		} else {
			rec.PromptMessages = slices.Clone(pr.Messages)
			rec.ChosenMessages = []pairs.Message{{Role: "assistant", Content: rec.Chosen}}
			rec.RejectedMessages = []pairs.Message{{Role: "assistant", Content: rec.Rejected}}
			rec.Chosen, rec.Rejected = "", ""
		}
		extra := map[string]any{"prompt_id": pr.ID, "step": step + 1, "round": o.round(step) + 1, "indexes": [2]int{p.chosen, p.rejected}}
		if o.judge != nil {
			extra["judge"] = o.cfg.Judge
			var vs []any
			lo := p.slot * o.cfg.Samples
			for a := lo; a < lo+o.cfg.Samples; a++ {
				for b := a + 1; b < lo+o.cfg.Samples; b++ {
					var verdicts []*pipeline.VerdictRecord
					for _, ord := range orders {
						if r := st.verdicts[verdictKey{a, b, ord}]; r != nil {
							verdicts = append(verdicts, r.Verdict)
						}
					}
					vs = append(vs, map[string]any{"a": a, "b": b, "outcome": outcome(st, a, b, seqs[a].Text, seqs[b].Text), "verdicts": verdicts})
				}
			}
			extra["comparisons"] = vs
		} else {
			extra["reward"] = o.cfg.Reward
			extra["scores"] = map[string]float64{"chosen": st.rewards[p.chosen], "rejected": st.rewards[p.rejected]}
		}
		rec.Extra = map[string]json.RawMessage{}
		for k, v := range extra {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			rec.Extra[k] = b
		}
		if err := o.pairsApp.Write(rec); err != nil {
			return err
		}
		o.pairIDs[id] = true
		wrote = true
	}
	if wrote {
		return o.pairsApp.Sync()
	}
	return nil
}

// Step samples, judges and takes one DPO step.
func (o *onlineStepper) Step(ctx context.Context, cur run.Cursor, lr float64) (run.Row, error) {
	cfg := &o.cfg
	if cur.Step > 0 && cur.Step%cfg.RoundSteps == 0 {
		// a new round: the reference moves to the policy (again, the same,
		// when a resumed run restarts this step)
		if err := o.copyPolicy(); err != nil {
			return run.Row{}, err
		}
	}
	order := run.EpochOrder(len(o.s.train), cfg.Seed, cur.Epoch)
	lo := cur.EpochStep * cfg.BatchPrompts
	idx := order[lo:min(len(order), lo+cfg.BatchPrompts)]
	var all []int
	for _, k := range idx {
		for g := 0; g < cfg.Samples; g++ {
			all = append(all, k)
		}
	}
	t0 := time.Now()
	seqs, err := o.samplesOf(ctx, cur.Step, all)
	if err != nil {
		return run.Row{}, err
	}
	tSample := time.Since(t0)
	t0 = time.Now()
	callsBefore := o.calls
	if o.judge != nil {
		err = o.comparisons(ctx, cur.Step, seqs)
	} else {
		err = o.rewards(ctx, cur.Step, seqs)
	}
	if err != nil {
		return run.Row{}, err
	}
	tJudge := time.Since(t0)
	ps, skipped := o.choose(cur.Step, seqs)
	if err := o.writePairs(cur.Step, seqs, ps); err != nil {
		return run.Row{}, err
	}
	row := map[string]float64{"pairs": float64(len(ps)), "round": float64(o.round(cur.Step) + 1), "judge_calls": float64(o.calls - callsBefore)}
	nSkipped := 0
	for reason, n := range skipped {
		row["skipped/"+reason] = float64(n)
		nSkipped += n
	}
	row["skipped"] = float64(nSkipped)
	length := 0.0
	for _, q := range seqs {
		length += float64(len(q.Resp))
	}
	row["completions/mean_length"] = length / float64(len(seqs))
	if o.judge == nil {
		scores := make([]float64, len(seqs))
		st := o.log.step(cur.Step)
		for i := range seqs {
			scores[i] = st.rewards[i]
		}
		row["reward"], row["reward_std"] = MeanStd(scores, true)
	}
	t0 = time.Now()
	var tokens int64
	if len(ps) > 0 {
		m, gn, n, err := o.update(seqs, ps, lr, o.refSet(cur.Step))
		if err != nil {
			return run.Row{}, err
		}
		for k, v := range m.Map() {
			row[k] = v
		}
		row["grad_norm"] = gn
		tokens = n
	}
	o.pairs += len(ps)
	o.skipped += nSkipped
	row["time/sample_s"] = tSample.Seconds()
	row["time/judge_s"] = tJudge.Seconds()
	row["time/update_s"] = time.Since(t0).Seconds()
	return run.Row{Metrics: row, Tokens: tokens}, nil
}

// update is one DPO step on ps against the reference set ref: the mean
// over the pairs of −log σ(β·((π_w − ρ_w) − (π_l − ρ_l))) with summed
// response log-probs. Its metrics are those of the forward before the step.
func (o *onlineStepper) update(seqs []*Seq, ps []onlinePair, lr float64, ref run.Trainer) (objective.Metrics, float64, int64, error) {
	w := o.s.w
	per := max(1, w.chunk/2) // pairs per forward: chosen and rejected together
	chunk := func(c int) []*Seq {
		var out []*Seq
		for _, p := range ps[c:min(len(ps), c+per)] {
			out = append(out, seqs[p.chosen], seqs[p.rejected])
		}
		return out
	}
	refSums := make([]float64, 0, 2*len(ps))
	var tokens int64
	for c := 0; c < len(ps); c += per {
		b := batch(chunk(c), false)
		out, err := ref.Forward(b, 1)
		if err != nil {
			return objective.Metrics{}, 0, 0, err
		}
		refSums = append(refSums, out.Sums...)
		tokens += int64(b.NSeq * b.NTok)
	}
	if len(refSums) != 2*len(ps) {
		return objective.Metrics{}, 0, 0, fmt.Errorf("online-dpo: reference forward gave %d sums for %d sequences", len(refSums), 2*len(ps))
	}
	var m objective.Metrics
	n := float64(len(ps))
	policy := w.policy
	gn, err := run.Optimiser{WeightDecay: o.cfg.WeightDecay, MaxGradNorm: o.cfg.MaxGradNorm}.Step(policy, lr, func() error {
		for c := 0; c < len(ps); c += per {
			part := chunk(c)
			out, err := policy.ForwardGrad(batch(part, false))
			if err != nil {
				return err
			}
			if len(out.Sums) != len(part) {
				return fmt.Errorf("online-dpo: forward gave %d sums for %d sequences", len(out.Sums), len(part))
			}
			cot := make([]float32, 0, len(out.Logps))
			for i := 0; i < len(part); i += 2 {
				pw, pl := part[i], part[i+1]
				lp := objective.PairLogps{PiW: out.Sums[i], PiL: out.Sums[i+1], RefW: refSums[2*c+i], RefL: refSums[2*c+i+1], NW: len(pw.Resp), NL: len(pl.Resp)}
				l, err := objective.PreferenceLoss(objective.DPO, o.cfg.Beta, 0, lp)
				if err != nil {
					return err
				}
				m.Add(l, lp)
				for range pw.Resp {
					cot = append(cot, float32(l.DPiW/n))
				}
				for range pl.Resp {
					cot = append(cot, float32(l.DPiL/n))
				}
			}
			if len(cot) != len(out.Logps) {
				return fmt.Errorf("online-dpo: %d cotangents for %d scored tokens", len(cot), len(out.Logps))
			}
			if err := policy.Backward(cot, nil); err != nil {
				return err
			}
		}
		return nil
	})
	return m, gn, tokens, err
}

// Evaluate samples --eval-samples completions of every held-out prompt
// with a fixed seed and reports their mean reward (--reward, or the
// judge's mean criterion score of the response against itself, 1 to 5)
// and KL(π ‖ base), the mean per-completion sum of log π − log π_base
// over the sampled tokens.
func (o *onlineStepper) Evaluate(ctx context.Context, done func(n, total int)) (map[string]float64, error) {
	cfg := &o.cfg
	var all []int
	for k := range o.s.eval {
		for g := 0; g < cfg.EvalSamples; g++ {
			all = append(all, k)
		}
	}
	var seqs []*Seq
	const chunk = 64
	for i := 0; i < len(all); i += chunk {
		part, err := o.s.w.generate(ctx, o.s.eval, all[i:min(len(all), i+chunk)], sampler(cfg, evalSeed(cfg.Seed)+uint32(i)))
		if err != nil {
			return nil, fmt.Errorf("held-out sampling: %w", err)
		}
		seqs = append(seqs, part...)
		if done != nil {
			done(min(len(all), i+chunk), len(all))
		}
	}
	if o.judge != nil {
		if err := o.judgeScores(ctx, seqs); err != nil {
			return nil, err
		}
	} else if err := score(ctx, o.s.scorer, o.s.eval, seqs); err != nil {
		return nil, err
	}
	ev := *o.s.w
	ev.value, ev.ref, ev.refScale = nil, ev.base, 0 // KL to the base
	return heldOutRow(ev, seqs)
}

// judgeScores scores held-out samples with the pairwise judge as align
// score does: the response against itself, the mean of the verdict's
// criterion scores.
func (o *onlineStepper) judgeScores(ctx context.Context, seqs []*Seq) error {
	for i, q := range seqs {
		p := o.s.eval[q.Prompt]
		lctx := cost.WithLabel(ctx, fmt.Sprintf("online-dpo:eval:%s#%d", p.ID, i))
		resp, calls, invalid, err := o.judgeOnce(lctx, backend.JudgeRequest{Prompt: conversation(p.Messages), A: q.Text, B: q.Text, MaxTokens: judgeOutputTokens})
		o.countCalls(calls)
		if err != nil {
			return fmt.Errorf("held-out judge: prompt %q: %w", p.ID, err)
		}
		if invalid {
			return fmt.Errorf("held-out judge: prompt %q: the judge's verdict was invalid twice", p.ID)
		}
		v := resp.Verdict.Scores
		q.Score = float64(v.A.Tone+v.A.Accuracy+v.A.Helpfulness+v.A.Safety+v.B.Tone+v.B.Accuracy+v.B.Helpfulness+v.B.Safety) / 8
	}
	return nil
}
