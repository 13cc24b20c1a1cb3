package cost

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCost(t *testing.T) {
	p := DefaultPrices()
	tests := []struct {
		model   string
		in, out int
		batch   bool
		want    float64
		ok      bool
	}{
		{"meta.llama3-70b-instruct-v1:0", 1000, 1000, false, 0.00265 + 0.0035, true},
		{"anthropic.claude-3-5-sonnet-20240620-v1:0", 2000, 1000, false, 0.006 + 0.015, true},
		{"anthropic.claude-3-5-sonnet-20241022-v2:0", 2000, 1000, true, (0.006 + 0.015) / 2, true},
		{"us.anthropic.claude-3-5-sonnet-20241022-v2:0", 1000, 0, false, 0.003, true},
		{"arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-70b-instruct-v1:0", 0, 1000, false, 0.0035, true},
		{"llama3:8b", 1000, 1000, false, 0, false},
	}
	for _, tt := range tests {
		got, ok := p.Cost(tt.model, tt.in, tt.out, tt.batch)
		if ok != tt.ok || !near(got, tt.want) {
			t.Errorf("Cost(%s, %d, %d, %v) = %v, %v; want %v, %v", tt.model, tt.in, tt.out, tt.batch, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLoadPrices(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prices.json")
	os.WriteFile(path, []byte(`{"batch_factor":0.4,"models":{"meta.llama3-70b-instruct-v1:0":{"input_per_1k":0.001,"output_per_1k":0.002},"my-model":{"input_per_1k":1,"output_per_1k":2}}}`), 0o644)
	p, err := LoadPrices(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := p.Cost("meta.llama3-70b-instruct-v1:0", 1000, 1000, true); !near(got, 0.003*0.4) {
		t.Errorf("overridden price: %v", got)
	}
	if got, _ := p.Cost("anthropic.claude-3-5-sonnet-20240620-v1:0", 1000, 0, false); !near(got, 0.003) {
		t.Errorf("default kept: %v", got)
	}
	if _, ok := p.Lookup("my-model"); !ok {
		t.Error("added model missing")
	}
	for _, bad := range []string{`{"modles":{}}`, `{"batch_factor":2}`, `{"models":{"x":{"input_per_1k":-1}}}`, `{`} {
		os.WriteFile(path, []byte(bad), 0o644)
		if _, err := LoadPrices(path); err == nil {
			t.Errorf("LoadPrices(%s): no error", bad)
		}
	}
}

func TestEstimateReferencePlan(t *testing.T) {
	p := DefaultPrices()
	e := p.Estimate(ReferencePlan(3000, "meta.llama3-70b-instruct-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0", true, false))
	// collect: 6000 calls * (150 in, 300 out) = 900K in, 1.8M out on Llama 3 70B
	wantCollect := 900*0.00265 + 1800*0.0035
	// rank: 6000 calls * (1000 in, 250 out) = 6M in, 1.5M out on Claude 3.5 Sonnet
	wantRank := 6000*0.003 + 1500*0.015
	if !near(e.Lines[0].USD, wantCollect) || !near(e.Lines[1].USD, wantRank) || !near(e.TotalUSD, wantCollect+wantRank) {
		t.Errorf("estimate %+v, want collect %v rank %v", e, wantCollect, wantRank)
	}
	t.Logf("reference plan (3000 pairs, both orders): collect $%.2f + rank $%.2f = $%.2f", e.Lines[0].USD, e.Lines[1].USD, e.TotalUSD)
	eb := p.Estimate(ReferencePlan(3000, "meta.llama3-70b-instruct-v1:0", "anthropic.claude-3-5-sonnet-20240620-v1:0", true, true))
	if !near(eb.Lines[1].USD, wantRank/2) {
		t.Errorf("batch rank %v, want %v", eb.Lines[1].USD, wantRank/2)
	}
	eu := p.Estimate(Plan{Steps: []Step{{Model: "x", Calls: 1, InputTokens: 1}}})
	if len(eu.Unpriced) != 1 || eu.Unpriced[0] != "x" {
		t.Errorf("unpriced = %v", eu.Unpriced)
	}
}

func TestLedgerPersistsAndContinues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Record(Entry{Model: fmt.Sprintf("m%d", i%2), InputTokens: 10, OutputTokens: 1, USD: 0.01, Priced: true}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash mid-write leaves a torn last line.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"model":"m0","input_tok`)
	f.Close()

	// SumLedger reads the totals and leaves the torn line to OpenLedger
	before, _ := os.ReadFile(path)
	if sum, err := SumLedger(path); err != nil || sum.Calls != 50 || !near(sum.USD, 0.5) {
		t.Errorf("SumLedger: %+v, %v; want 50 calls, $0.50", sum, err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("SumLedger changed the file")
	}
	if sum, err := SumLedger(filepath.Join(t.TempDir(), "none.jsonl")); err != nil || sum.Calls != 0 {
		t.Errorf("SumLedger of a missing file: %+v, %v", sum, err)
	}

	l2, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	got := l2.Total()
	if got.Calls != 50 || got.InputTokens != 500 || !near(got.USD, 0.5) {
		t.Errorf("reopened totals %+v, want 50 calls, 500 tokens, $0.50", got)
	}
	if bm := l2.ByModel(); bm["m0"].Calls != 25 || bm["m1"].Calls != 25 {
		t.Errorf("by model %+v", bm)
	}
	l2.Record(Entry{Model: "m0", USD: 0.5})
	l2.Close()
	l2.Close() // idempotent
	l3, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if got := l3.Total(); got.Calls != 51 || !near(got.USD, 1.0) {
		t.Errorf("after rerun totals %+v, want 51 calls, $1.00", got)
	}

	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte("{\"time\":\"2026-12-01T00:00:00Z\",\"model\":\"a\"}\nnot json\n{\"time\":\"2026-12-01T00:00:00Z\",\"model\":\"b\"}\n"), 0o644)
	if _, err := OpenLedger(bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:2") {
		t.Errorf("malformed middle line: err = %v, want file:line", err)
	}
	// a file of other records is no ledger: refused, and left as it was
	pairs := filepath.Join(t.TempDir(), "pairs.jsonl")
	body := []byte(`{"id":"p1","prompt":"q","chosen":"a","rejected":"b"}` + "\n")
	os.WriteFile(pairs, body, 0o644)
	if _, err := OpenLedger(pairs); err == nil || !strings.Contains(err.Error(), "pairs.jsonl:1") {
		t.Errorf("pairs as a ledger: err = %v, want pairs.jsonl:1", err)
	}
	if got, _ := os.ReadFile(pairs); string(got) != string(body) {
		t.Errorf("pairs file changed to %q", got)
	}
}

func TestBudgetRefusesBeforeCrossing(t *testing.T) {
	// Claude 3.5 Sonnet: 1000 in + 1000 max out = $0.018 worst case; actual
	// 1000 in + 200 out = $0.006.
	const model = "anthropic.claude-3-5-sonnet-20240620-v1:0"
	m := NewMeter(DefaultPrices(), NewLedger(), 0.05)
	ctx := WithLabel(context.Background(), "rank:1")
	var settles []func(int, int)
	for i := range 2 {
		s, err := m.Reserve(ctx, model, 1000, 1000)
		if err != nil {
			t.Fatalf("reserve %d: %v", i, err)
		}
		settles = append(settles, s)
	}
	// Two in flight hold $0.036; a third worst case ($0.018) would reach $0.054.
	_, err := m.Reserve(ctx, model, 1000, 1000)
	var be *BudgetError
	if !errors.As(err, &be) || !IsBudget(fmt.Errorf("wrapped: %w", err)) {
		t.Fatalf("third reserve: err = %v, want BudgetError", err)
	}
	if be.ReservedUSD < 0.035 || be.NeedUSD < 0.017 {
		t.Errorf("budget error %+v", be)
	}
	for _, s := range settles {
		s(1000, 200)
		s(1000, 200) // settles once
	}
	if got := m.Budget.Spent(); !near(got, 0.012) {
		t.Errorf("spent %v, want 0.012", got)
	}
	// $0.012 spent: two more worst cases fit ($0.048), a third does not.
	n := 0
	for {
		s, err := m.Reserve(ctx, model, 1000, 1000)
		if err != nil {
			break
		}
		s(1000, 1000) // the worst case happens
		n++
	}
	if n != 2 {
		t.Errorf("%d more calls admitted, want 2", n)
	}
	if spent := m.Budget.Spent(); spent > 0.05 {
		t.Errorf("spent $%v crossed the ceiling", spent)
	}
	tot := m.Ledger.Total()
	if tot.Calls != 4 || !near(tot.USD, m.Budget.Spent()) {
		t.Errorf("ledger %+v vs spent %v", tot, m.Budget.Spent())
	}

	// A rerun with the same ledger starts from what was spent.
	m2 := NewMeter(DefaultPrices(), m.Ledger, 0.05)
	if _, err := m2.Reserve(ctx, model, 1000, 1000); !IsBudget(err) {
		t.Errorf("rerun reserve: err = %v, want BudgetError", err)
	}
	// Unpriced models cannot be bounded under a ceiling.
	if _, err := m2.Reserve(ctx, "unknown", 1, 1); err == nil || IsBudget(err) {
		t.Errorf("unpriced: err = %v", err)
	}
	free := NewMeter(DefaultPrices(), nil, NoLimit)
	s, err := free.Reserve(ctx, "unknown", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	s(5, 5)
	if tot := free.Ledger.Total(); tot.Calls != 1 || tot.USD != 0 {
		t.Errorf("free ledger %+v", tot)
	}
}

// A ceiling of 0 spends nothing (it is not "no limit"), and a NaN or
// negative ceiling that slipped past the flag checks admits nothing.
func TestZeroCeilingSpendsNothing(t *testing.T) {
	const model = "anthropic.claude-3-5-sonnet-20240620-v1:0"
	for _, max := range []float64{0, math.NaN(), -1} {
		m := NewMeter(DefaultPrices(), nil, max)
		if _, err := m.Reserve(context.Background(), model, 10, 10); !IsBudget(err) {
			t.Errorf("ceiling %v: err = %v, want a budget error", max, err)
		}
		if !m.Budget.Limited() {
			t.Errorf("ceiling %v reads as no limit", max)
		}
	}
	m := NewMeter(DefaultPrices(), nil, NoLimit)
	if _, err := m.Reserve(context.Background(), model, 10, 10); err != nil || m.Budget.Limited() {
		t.Errorf("no limit: err = %v, limited %v", err, m.Budget.Limited())
	}
}
