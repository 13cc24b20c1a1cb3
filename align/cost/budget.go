package cost

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
)

// NoLimit is the ceiling of a budget without one.
var NoLimit = math.Inf(1)

// BudgetError says a call was refused because its worst-case cost would
// have crossed the spending ceiling. Nothing was sent. The CLI maps it to
// exit code 3 (cli.ExitBudget); a rerun with a higher ceiling continues.
type BudgetError struct {
	MaxUSD      float64 // the ceiling
	SpentUSD    float64 // settled so far, including earlier runs in the ledger
	ReservedUSD float64 // held by calls in flight
	NeedUSD     float64 // worst case of the refused call
	Model       string
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("budget reached: a call to %s could cost $%.4f, and $%.4f spent + $%.4f in flight would cross --max-usd $%.4f",
		e.Model, e.NeedUSD, e.SpentUSD, e.ReservedUSD, e.MaxUSD)
}

// IsBudget reports whether err is (or wraps) a *BudgetError.
func IsBudget(err error) bool {
	var e *BudgetError
	return errors.As(err, &e)
}

// Budget is a spending ceiling. Calls reserve their worst case before they
// start and settle the actual cost after, so concurrent calls can never
// together cross the ceiling. Safe for concurrent use.
type Budget struct {
	mu       sync.Mutex
	max      float64
	spent    float64
	reserved float64
}

// NewBudget returns a ceiling of maxUSD with spentUSD already spent (the
// ledger's total on a rerun). NoLimit (+Inf) means no ceiling; 0 admits
// free calls only. A NaN or negative ceiling admits nothing.
func NewBudget(maxUSD, spentUSD float64) *Budget {
	if math.IsNaN(maxUSD) || maxUSD < 0 {
		maxUSD = 0 // never "no limit" by accident
	}
	return &Budget{max: maxUSD, spent: spentUSD}
}

// Limited reports whether the budget has a ceiling.
func (b *Budget) Limited() bool { return b != nil && !math.IsInf(b.max, 1) }

// Max returns the ceiling (NoLimit when there is none).
func (b *Budget) Max() float64 {
	if b == nil {
		return NoLimit
	}
	return b.max
}

// Reserve holds usd for a call about to start, or returns a *BudgetError
// (model names the call in the message) if that could cross the ceiling.
func (b *Budget) Reserve(model string, usd float64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Limited() && b.spent+b.reserved+usd > b.max {
		return &BudgetError{MaxUSD: b.max, SpentUSD: b.spent, ReservedUSD: b.reserved, NeedUSD: usd, Model: model}
	}
	b.reserved += usd
	return nil
}

// Settle releases a reservation and adds the actual cost.
func (b *Budget) Settle(reservedUSD, actualUSD float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reserved -= reservedUSD
	if b.reserved < 0 {
		b.reserved = 0
	}
	b.spent += actualUSD
}

// Spent returns the settled spend.
func (b *Budget) Spent() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.spent
}

// Meter ties prices, a ledger and a budget together for backends: it
// implements backend.Meter.
type Meter struct {
	Prices *Prices
	Ledger *Ledger
	Budget *Budget // nil: no ceiling
	Batch  bool    // price calls at the batch discount
}

// NewMeter returns a meter with a ceiling of maxUSD (NoLimit: none; 0:
// free calls only) that counts what ledger already holds as spent.
func NewMeter(prices *Prices, ledger *Ledger, maxUSD float64) *Meter {
	if ledger == nil {
		ledger = NewLedger()
	}
	return &Meter{Prices: prices, Ledger: ledger, Budget: NewBudget(maxUSD, ledger.Total().USD)}
}

// Reserve implements backend.Meter: it charges the worst case (input plus
// maximum output tokens) against the budget and returns the function that
// settles the call and records it in the ledger. A model without a price is
// refused when there is a ceiling (its cost cannot be bounded) and recorded
// at $0 otherwise.
func (m *Meter) Reserve(ctx context.Context, model string, inputTokens, maxOutputTokens int) (func(inputTokens, outputTokens int), error) {
	worst, priced := m.Prices.Cost(model, inputTokens, maxOutputTokens, m.Batch)
	if !priced && m.Budget.Limited() {
		return nil, fmt.Errorf("no price for model %q: add it to the price table to use --max-usd", model)
	}
	if m.Budget != nil {
		if err := m.Budget.Reserve(model, worst); err != nil {
			return nil, err
		}
	}
	label := Label(ctx)
	var once sync.Once
	return func(in, out int) {
		once.Do(func() {
			usd, _ := m.Prices.Cost(model, in, out, m.Batch)
			if m.Budget != nil {
				m.Budget.Settle(worst, usd)
			}
			if in == 0 && out == 0 {
				return // nothing billed: no entry
			}
			// A failed write loses one ledger line, not the call's result;
			// the in-memory totals stay right and Ledger.Err reports it.
			_ = m.Ledger.Record(Entry{Model: model, Label: label, InputTokens: in, OutputTokens: out, USD: usd, Priced: priced, Batch: m.Batch})
		})
	}, nil
}
