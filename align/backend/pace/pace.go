// Package pace paces calls to a rate-limited model service on the client
// side: a requests-per-minute limit applied to every attempt (retries
// included), a tokens-per-minute limit charged before a call with the worst
// case and reconciled after it, a cap on calls in flight, and a back-off gate
// that closes for a while after the service reports throttling.
//
// Pacing below the service's quota keeps throttles at zero, so the SDK's
// shared retry budget never drains under a burst (DESIGN §6).
package pace

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Limits configures a Pacer. Zero values disable the corresponding limit.
type Limits struct {
	RPM           float64       // attempts per minute
	TPM           float64       // tokens (input + output) per minute
	Concurrency   int           // calls in flight
	BurstRequests int           // attempts allowed back to back; 0 means 1
	BurstTokens   int           // token bucket size; 0 means TPM/6 (ten seconds' worth)
	BackoffMin    time.Duration // first back-off after a throttle; 0 means 500ms
	BackoffMax    time.Duration // back-off ceiling; 0 means 30s
}

// Stats counts what a Pacer did.
type Stats struct {
	Calls     int64         // tickets acquired
	Attempts  int64         // attempts admitted
	Throttles int64         // throttles reported
	Waited    time.Duration // total time callers waited in Acquire and Attempt
}

// Pacer enforces Limits. A nil *Pacer paces nothing. Safe for concurrent use.
type Pacer struct {
	lim  Limits
	sem  chan struct{}
	mu   sync.Mutex
	req  *bucket
	tok  *bucket
	gate time.Time     // no attempt starts before this
	back time.Duration // current back-off, 0 when the last attempt was fine
	now  func() time.Time

	calls, attempts, throttles, waited atomic.Int64
}

// New returns a Pacer for l.
func New(l Limits) *Pacer {
	p := &Pacer{lim: l, now: time.Now}
	if l.Concurrency > 0 {
		p.sem = make(chan struct{}, l.Concurrency)
	}
	if l.RPM > 0 {
		burst := float64(max(l.BurstRequests, 1))
		p.req = &bucket{rate: l.RPM / 60, cap: burst, level: burst}
	}
	if l.TPM > 0 {
		burst := float64(l.BurstTokens)
		if burst <= 0 {
			burst = l.TPM / 6
		}
		p.tok = &bucket{rate: l.TPM / 60, cap: burst, level: burst}
	}
	if p.lim.BackoffMin <= 0 {
		p.lim.BackoffMin = 500 * time.Millisecond
	}
	if p.lim.BackoffMax <= 0 {
		p.lim.BackoffMax = 30 * time.Second
	}
	return p
}

// Ticket is one admitted call. Done must be called exactly once.
type Ticket struct {
	p       *Pacer
	charged int
	once    sync.Once
}

// Acquire waits for a concurrency slot and charges tokens (the worst case:
// estimated input plus maximum output) against the tokens-per-minute limit.
// A call larger than the bucket is admitted once the bucket has paid it off,
// so it waits but never deadlocks. It returns ctx.Err() if ctx ends first.
func (p *Pacer) Acquire(ctx context.Context, tokens int) (*Ticket, error) {
	if p == nil {
		return &Ticket{}, nil
	}
	start := p.now()
	defer func() { p.waited.Add(int64(p.now().Sub(start))) }()
	if p.sem != nil {
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	t := &Ticket{p: p, charged: tokens}
	if p.tok != nil && tokens > 0 {
		p.mu.Lock()
		wait := p.tok.take(p.now(), float64(tokens))
		p.mu.Unlock()
		if err := sleep(ctx, wait); err != nil {
			p.mu.Lock()
			p.tok.give(p.now(), float64(tokens))
			p.mu.Unlock()
			p.release()
			return nil, err
		}
	}
	p.calls.Add(1)
	return t, nil
}

// Done releases the ticket's concurrency slot and reconciles the tokens it
// charged with those actually used: unused tokens go back to the bucket,
// overruns are charged.
func (t *Ticket) Done(usedTokens int) {
	if t == nil || t.p == nil {
		return
	}
	t.once.Do(func() {
		p := t.p
		if p.tok != nil && t.charged > 0 {
			p.mu.Lock()
			p.tok.give(p.now(), float64(t.charged-usedTokens))
			p.mu.Unlock()
		}
		p.release()
	})
}

func (p *Pacer) release() {
	if p.sem != nil {
		<-p.sem
	}
}

// Attempt waits until one more attempt may start: after the back-off gate
// and within the requests-per-minute limit. Call it before every attempt,
// retries included.
func (p *Pacer) Attempt(ctx context.Context) error {
	if p == nil {
		return nil
	}
	start := p.now()
	defer func() { p.waited.Add(int64(p.now().Sub(start))) }()
	for {
		p.mu.Lock()
		now := p.now()
		if gw := p.gate.Sub(now); gw > 0 {
			p.mu.Unlock()
			if err := sleep(ctx, gw); err != nil {
				return err
			}
			continue
		}
		var wait time.Duration
		if p.req != nil {
			wait = p.req.take(now, 1)
		}
		p.mu.Unlock()
		if err := sleep(ctx, wait); err != nil {
			p.mu.Lock()
			if p.req != nil {
				p.req.give(p.now(), 1)
			}
			p.mu.Unlock()
			return err
		}
		p.attempts.Add(1)
		return nil
	}
}

// Throttled reports that the service throttled an attempt: the gate closes
// for the current back-off (with jitter), which doubles on each throttle
// that arrives while the gate is open, up to BackoffMax.
func (p *Pacer) Throttled() {
	if p == nil {
		return
	}
	p.throttles.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if now.Before(p.gate) {
		return // already backing off; throttles from calls in flight say nothing new
	}
	if p.back == 0 {
		p.back = p.lim.BackoffMin
	} else {
		p.back = min(2*p.back, p.lim.BackoffMax)
	}
	jitter := time.Duration(rand.Int64N(int64(p.back)/2 + 1))
	p.gate = now.Add(p.back/2 + jitter)
}

// OK reports a successful attempt; the back-off resets.
func (p *Pacer) OK() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.now().After(p.gate) {
		p.back = 0
	}
	p.mu.Unlock()
}

// Stats returns the counters so far.
func (p *Pacer) Stats() Stats {
	if p == nil {
		return Stats{}
	}
	return Stats{Calls: p.calls.Load(), Attempts: p.attempts.Load(), Throttles: p.throttles.Load(), Waited: time.Duration(p.waited.Load())}
}

// bucket is a token bucket that may go into debt: take reserves n at once
// and returns how long the caller must wait for the debt to be paid, so
// waiters are served in order of arrival.
type bucket struct {
	rate  float64 // tokens per second
	cap   float64
	level float64
	last  time.Time
}

func (b *bucket) refill(now time.Time) {
	if !b.last.IsZero() {
		b.level = min(b.cap, b.level+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}

func (b *bucket) take(now time.Time, n float64) time.Duration {
	b.refill(now)
	b.level -= n
	if b.level >= 0 {
		return 0
	}
	return time.Duration(-b.level / b.rate * float64(time.Second))
}

func (b *bucket) give(now time.Time, n float64) {
	b.refill(now)
	b.level = min(b.cap, b.level+n)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
