package reward

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/pipeline"
)

// judgeWorkers is how many samples a judge term scores at once (judges
// are safe for concurrent use; remote ones are paced by their clients).
const judgeWorkers = 8

// judge is a pairwise judge turned into a per-response score: the response
// is judged against itself (as A and as B) and its reward is the mean of
// the verdict's eight criterion scores, 1 to 5. For the rules judge, whose
// scores depend on the response alone, this is exactly the mean of its four
// criterion scores.
type judge struct {
	b *pipeline.Backend
}

func openJudge(ctx context.Context, spec string, o Options) (scorer, error) {
	b, err := pipeline.Open(ctx, spec, o.Backend)
	if err != nil {
		return nil, err
	}
	if b.Judge == nil {
		b.Close()
		return nil, errors.New("this backend cannot judge")
	}
	return judge{b}, nil
}

// conversation is s's prompt as the judges take it (user and assistant
// turns; system messages are left out).
func conversation(s Sample) []backend.Message {
	var out []backend.Message
	for _, m := range s.Prompt {
		switch backend.Role(m.Role) {
		case backend.RoleUser, backend.RoleAssistant:
			out = append(out, backend.Message{Role: backend.Role(m.Role), Content: m.Content})
		}
	}
	return out
}

// criteriaMean is the mean of a verdict's eight criterion scores.
func criteriaMean(v backend.VerdictScores) float64 {
	t := v.A.Tone + v.A.Accuracy + v.A.Helpfulness + v.A.Safety + v.B.Tone + v.B.Accuracy + v.B.Helpfulness + v.B.Safety
	return float64(t) / 8
}

func (j judge) one(ctx context.Context, s Sample) (float64, error) {
	if cost.Label(ctx) == "" && s.ID != "" {
		ctx = cost.WithLabel(ctx, "reward:"+s.ID) // the ledger names the sample
	}
	req := backend.JudgeRequest{Prompt: conversation(s), A: s.Response, B: s.Response}
	resp, err := j.b.Judge.Judge(ctx, req)
	if err != nil && backend.IsInvalidOutput(err) {
		// one repair attempt, as align rank makes
		var ie *backend.InvalidOutputError
		if errors.As(err, &ie) {
			req.Repair = &backend.Repair{Previous: ie.Raw, Problem: ie.Error()}
		}
		resp, err = j.b.Judge.Judge(ctx, req)
	}
	if err != nil {
		return 0, err
	}
	return criteriaMean(resp.Verdict.Scores), nil
}

func (j judge) score(ctx context.Context, samples []Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	errs := make([]error, len(samples))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(judgeWorkers, len(samples)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = j.one(ctx, samples[i])
			}
		}()
	}
	for i := range samples {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("sample %s: %w", sampleName(samples, i), err)
		}
	}
	return out, nil
}

func (j judge) close() error { return j.b.Close() }

// sampleName is sample i's id, or its index.
func sampleName(samples []Sample, i int) string {
	if id := samples[i].ID; id != "" {
		return fmt.Sprintf("%q", id)
	}
	return fmt.Sprint(i)
}

// withID names the sample of a RewardModel error.
func withID(err error, samples []Sample) error {
	var re *ResponseError
	if errors.As(err, &re) && re.Index >= 0 && re.Index < len(samples) {
		return fmt.Errorf("sample %s: %w", sampleName(samples, re.Index), re.Err)
	}
	return err
}

// Spending caps what the paid judge terms of a spec (openai:, bedrock:)
// spend and records every call, as --max-usd and the ledger of align
// collect and rank do: a call whose worst case (its input plus the output
// ceiling, at Prices) would take the total past MaxUSD is refused before
// it is sent, and Score returns an error that wraps a *cost.BudgetError
// (cost.IsBudget). With a ceiling, a judge model without a price is
// refused (its cost cannot be bounded): add it with Prices.
type Spending struct {
	// MaxUSD is the ceiling over every call, the earlier runs recorded in
	// Ledger included; nil: none (calls are still recorded); 0: free calls
	// only.
	MaxUSD *float64
	// Ledger is the ledger file (cost.OpenLedger: JSON lines, appended;
	// a torn last line dropped). It is opened at the first paid call, so a
	// spec without one creates no file, and its directory must exist by
	// then. "": kept in memory.
	Ledger string
	// Prices is the price table; nil: cost.DefaultPrices().
	Prices *cost.Prices
}

// spendMeter is a Spending as the backends' Meter: the ledger and the
// ceiling are opened at the first call. Safe for concurrent use.
type spendMeter struct {
	sp     Spending
	mu     sync.Mutex
	ledger *cost.Ledger
	meter  *cost.Meter
	err    error
	// settled is closed (and replaced) whenever a call settles: Reserve
	// waits on it when only calls in flight stand in the way.
	settled chan struct{}
}

var _ backend.Meter = (*spendMeter)(nil)

// newSpendMeter checks sp (an existing ledger file must hold ledger
// entries) without creating anything.
func newSpendMeter(sp Spending) (*spendMeter, error) {
	if sp.MaxUSD != nil && !(*sp.MaxUSD >= 0) {
		return nil, fmt.Errorf("spending ceiling %g: want 0 or more", *sp.MaxUSD)
	}
	if sp.Ledger != "" {
		if _, err := os.Stat(sp.Ledger); err == nil {
			if err := cost.CheckLedger(sp.Ledger); err != nil {
				return nil, err
			}
		}
	}
	if sp.Prices == nil {
		sp.Prices = cost.DefaultPrices()
	}
	return &spendMeter{sp: sp}, nil
}

// open opens the ledger and the meter once; the caller holds mu.
func (m *spendMeter) open() {
	if m.meter != nil || m.err != nil {
		return
	}
	l := cost.NewLedger()
	if m.sp.Ledger != "" {
		var err error
		if l, err = cost.OpenLedger(m.sp.Ledger); err != nil {
			m.err = fmt.Errorf("cost ledger: %w", err)
			return
		}
	}
	max := cost.NoLimit
	if m.sp.MaxUSD != nil {
		max = *m.sp.MaxUSD
	}
	m.ledger, m.meter = l, cost.NewMeter(m.sp.Prices, l, max)
}

// Reserve charges the call's worst case. A refusal that only calls in
// flight cause (their worst cases reserved, most of which they will not
// spend) waits for one of them to settle and tries again, so parallel
// judge workers do not stop a run that has money left; a call that would
// cross the ceiling on its own is refused.
func (m *spendMeter) Reserve(ctx context.Context, model string, in, maxOut int) (func(int, int), error) {
	for {
		m.mu.Lock()
		m.open()
		meter, err := m.meter, m.err
		if m.settled == nil {
			m.settled = make(chan struct{})
		}
		settled := m.settled // taken before trying, so no settle is missed
		m.mu.Unlock()
		if err != nil {
			return nil, err
		}
		settle, err := meter.Reserve(ctx, model, in, maxOut)
		if err == nil {
			return func(in, out int) {
				settle(in, out)
				m.mu.Lock()
				if m.settled != nil {
					close(m.settled)
					m.settled = nil
				}
				m.mu.Unlock()
			}, nil
		}
		var be *cost.BudgetError
		if !errors.As(err, &be) || be.ReservedUSD <= 0 {
			return nil, err
		}
		select {
		case <-settled:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// totals is what the ledger holds (earlier runs included); zero before the
// first paid call of this run when the ledger file does not exist yet.
func (m *spendMeter) totals() (cost.Totals, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ledger != nil {
		return m.ledger.Total(), m.ledger.Err()
	}
	return cost.SumLedger(m.sp.Ledger) // "" or missing: zero
}

func (m *spendMeter) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ledger == nil {
		return nil
	}
	err := m.ledger.Close()
	m.ledger = nil
	return err
}

// Spent is what the paid judge terms of sc have spent by Options.Spending's
// ledger (earlier runs included): calls, tokens and USD. It is zero for a
// scorer opened without Spending, and for one with no paid call yet and no
// ledger file.
func Spent(sc Scorer) (cost.Totals, error) {
	s, ok := sc.(*sum)
	if !ok || s.spend == nil {
		return cost.Totals{}, nil
	}
	return s.spend.totals()
}

// SpendMeter is a Spending as a backend.Meter for judges a command opens
// itself (align train --method online-dpo opens a pairwise judge and a
// held-out reward on one ledger and one ceiling): pass it as
// pipeline.OpenOptions.Meter, or as Options.Backend.Meter without
// Options.Spending. Safe for concurrent use.
type SpendMeter struct{ m *spendMeter }

var _ backend.Meter = (*SpendMeter)(nil)

// NewSpendMeter checks sp as Parse does (an existing ledger must hold
// ledger entries) without creating anything.
func NewSpendMeter(sp Spending) (*SpendMeter, error) {
	m, err := newSpendMeter(sp)
	if err != nil {
		return nil, err
	}
	return &SpendMeter{m}, nil
}

// Reserve charges a call's worst case (see Spending).
func (s *SpendMeter) Reserve(ctx context.Context, model string, in, maxOut int) (func(int, int), error) {
	return s.m.Reserve(ctx, model, in, maxOut)
}

// Spent is what the ledger holds, earlier runs included.
func (s *SpendMeter) Spent() (cost.Totals, error) { return s.m.totals() }

// Close closes the ledger. Idempotent.
func (s *SpendMeter) Close() error { return s.m.close() }
