package pace

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name  string
		b     bucket
		steps []struct {
			at   time.Duration
			n    float64
			want time.Duration
		}
	}{
		{
			name: "one per second, burst 1",
			b:    bucket{rate: 1, cap: 1, level: 1},
			steps: []struct {
				at   time.Duration
				n    float64
				want time.Duration
			}{{0, 1, 0}, {0, 1, time.Second}, {0, 1, 2 * time.Second}, {5 * time.Second, 1, 0}},
		},
		{
			name: "tokens with debt",
			b:    bucket{rate: 10, cap: 100, level: 100},
			steps: []struct {
				at   time.Duration
				n    float64
				want time.Duration
			}{{0, 100, 0}, {0, 50, 5 * time.Second}, {time.Second, 0, 4 * time.Second}},
		},
		{
			name: "larger than the bucket waits, never deadlocks",
			b:    bucket{rate: 10, cap: 10, level: 10},
			steps: []struct {
				at   time.Duration
				n    float64
				want time.Duration
			}{{0, 30, 2 * time.Second}},
		},
	}
	for _, tt := range tests {
		b := tt.b
		for i, s := range tt.steps {
			got := b.take(t0.Add(s.at), s.n)
			if d := got - s.want; d > time.Millisecond || d < -time.Millisecond {
				t.Errorf("%s: step %d: wait %v, want %v", tt.name, i, got, s.want)
			}
		}
	}
}

func TestTicketReconciles(t *testing.T) {
	p := New(Limits{TPM: 600, BurstTokens: 100}) // 10 tokens/s
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	tk, err := p.Acquire(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	tk.Done(20) // 80 unused tokens go back
	tk.Done(20) // idempotent
	if got := p.tok.take(now, 80); got != 0 {
		t.Errorf("after reconcile, 80 tokens wait %v, want 0", got)
	}
	if got := p.tok.take(now, 10); got != time.Second {
		t.Errorf("next 10 tokens wait %v, want 1s", got)
	}
}

func TestThrottleGate(t *testing.T) {
	p := New(Limits{BackoffMin: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond})
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	wantBack := []time.Duration{100, 200, 400, 400}
	for i, wb := range wantBack {
		p.Throttled()
		p.Throttled() // while the gate is closed: no escalation
		wb *= time.Millisecond
		if p.back != wb {
			t.Fatalf("throttle %d: back-off %v, want %v", i, p.back, wb)
		}
		gate := p.gate.Sub(now)
		if gate < wb/2 || gate > wb {
			t.Fatalf("throttle %d: gate %v not in [%v, %v]", i, gate, wb/2, wb)
		}
		now = p.gate.Add(time.Millisecond)
	}
	p.OK()
	if p.back != 0 {
		t.Errorf("back-off %v after OK, want 0", p.back)
	}
	if got := p.Stats().Throttles; got != 8 {
		t.Errorf("throttles = %d, want 8", got)
	}
}

func TestConcurrencyCap(t *testing.T) {
	p := New(Limits{Concurrency: 2})
	ctx := context.Background()
	a, _ := p.Acquire(ctx, 0)
	if _, err := p.Acquire(ctx, 0); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(short, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third acquire: err = %v, want deadline exceeded", err)
	}
	a.Done(0)
	if _, err := p.Acquire(ctx, 0); err != nil {
		t.Fatalf("after Done: %v", err)
	}
}

func TestAttemptCancelRefunds(t *testing.T) {
	p := New(Limits{RPM: 60}) // one a second
	ctx := context.Background()
	if err := p.Attempt(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := p.Attempt(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	p.mu.Lock()
	lvl := p.req.level
	p.mu.Unlock()
	if lvl < -0.1 {
		t.Errorf("cancelled attempt left the bucket at %.2f; its reservation was not refunded", lvl)
	}
	var nilPacer *Pacer
	if err := nilPacer.Attempt(ctx); err != nil {
		t.Error(err)
	}
	tk, _ := nilPacer.Acquire(ctx, 5)
	tk.Done(5)
}
