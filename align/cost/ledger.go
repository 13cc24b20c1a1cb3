package cost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Entry is one call in the ledger.
type Entry struct {
	Time         time.Time `json:"time"`
	Model        string    `json:"model"`
	Label        string    `json:"label,omitempty"` // from WithLabel, e.g. "rank:<record-id>"
	InputTokens  int       `json:"input_tokens"`
	OutputTokens int       `json:"output_tokens"`
	USD          float64   `json:"usd"`
	Priced       bool      `json:"priced"` // false when the model had no price (USD is 0)
	Batch        bool      `json:"batch,omitempty"`
}

// Totals sums ledger entries.
type Totals struct {
	Calls        int     `json:"calls"`
	InputTokens  int     `json:"input_tokens"`
	OutputTokens int     `json:"output_tokens"`
	USD          float64 `json:"usd"`
}

func (t *Totals) add(e Entry) {
	t.Calls++
	t.InputTokens += e.InputTokens
	t.OutputTokens += e.OutputTokens
	t.USD += e.USD
}

// Ledger records every call. Entries are appended to its file (if any) as
// JSON lines, one write per entry, so a crash loses at most the entry being
// written and a rerun that opens the same file continues the totals. Safe
// for concurrent use.
type Ledger struct {
	mu      sync.Mutex
	f       *os.File
	total   Totals
	byModel map[string]Totals
	err     error // first write error
}

// NewLedger returns a ledger kept in memory only.
func NewLedger() *Ledger { return &Ledger{byModel: map[string]Totals{}} }

// OpenLedger opens (creating if needed) the ledger file at path, reads the
// totals so far, drops a torn last line left by a crash, and appends from
// there. A malformed line elsewhere is an error naming the line.
func OpenLedger(path string) (*Ledger, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	l := NewLedger()
	good, err := l.load(f, path)
	if err == nil {
		err = f.Truncate(good)
	}
	if err == nil {
		_, err = f.Seek(good, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	l.f = f
	return l, nil
}

var errNotEntry = errors.New("not a cost ledger entry (no \"time\" and \"model\"): refusing to add to this file (name another --ledger)")

// CheckLedger reads the ledger file at path without changing it and
// returns the error OpenLedger would: a line that is not an entry, before
// a torn last one, names path and line.
func CheckLedger(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = NewLedger().load(f, path)
	return err
}

// SumLedger returns the totals of the ledger file at path without changing
// it (a torn last line is left out); a missing file sums to zero. Errors
// are CheckLedger's.
func SumLedger(path string) (Totals, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Totals{}, nil
	}
	if err != nil {
		return Totals{}, err
	}
	defer f.Close()
	l := NewLedger()
	if _, err := l.load(f, path); err != nil {
		return Totals{}, err
	}
	return l.total, nil
}

// load reads entries and returns the offset after the last complete one.
func (l *Ledger) load(f *os.File, path string) (int64, error) {
	r := bufio.NewReader(f)
	var off int64
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return off, nil // a line without '\n' is torn: dropped
		}
		if err != nil {
			return 0, err
		}
		if len(bytes.TrimSpace(b)) > 0 {
			var e Entry
			err := json.Unmarshal(b, &e)
			if err == nil && (e.Model == "" || e.Time.IsZero()) {
				return 0, fmt.Errorf("%s:%d: %w", path, line, errNotEntry) // whole, but not ours: never torn
			}
			if err != nil {
				if _, perr := r.Peek(1); errors.Is(perr, io.EOF) {
					return off, nil // a garbled last line is torn too
				}
				return 0, fmt.Errorf("%s:%d: %w", path, line, err)
			}
			l.account(e)
		}
		off += int64(len(b))
	}
}

func (l *Ledger) account(e Entry) {
	l.total.add(e)
	t := l.byModel[e.Model]
	t.add(e)
	l.byModel[e.Model] = t
}

// Record adds e to the totals and appends it to the file.
func (l *Ledger) Record(e Entry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.account(e)
	if l.f == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err = l.f.Write(append(b, '\n')); err != nil && l.err == nil {
		l.err = err
	}
	return err
}

// Err returns the first error writing to the file, or nil.
func (l *Ledger) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Total returns the sums over every entry, including those read at open.
func (l *Ledger) Total() Totals {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// ByModel returns the sums per model.
func (l *Ledger) ByModel() map[string]Totals {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Totals, len(l.byModel))
	for k, v := range l.byModel {
		out[k] = v
	}
	return out
}

// Close syncs and closes the file. It is idempotent and nil-safe.
func (l *Ledger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

type labelKey struct{}

// WithLabel returns a context whose calls are recorded with label.
func WithLabel(ctx context.Context, label string) context.Context {
	return context.WithValue(ctx, labelKey{}, label)
}

// Label returns the label WithLabel set, or "".
func Label(ctx context.Context) string {
	s, _ := ctx.Value(labelKey{}).(string)
	return s
}
