package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/jsonl"
)

// Common configures what every stage shares.
type Common struct {
	In  string // input file; "-" reads Stdin
	Out string // output file; "-" writes Stdout (resume is then the caller's)

	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer // progress and summary; nil: none

	DeadLetter string // dead-letter file; "" derives it from Out (OUT.dead.jsonl, or dead.jsonl for "-")
	Ledger     string // cost ledger; "" derives it from Out (OUT.ledger.jsonl, or in memory for "-")

	Workers     int           // items in flight; default 8
	ItemTimeout time.Duration // per-item context budget, repairs included; 0: none
	RetryFailed bool          // process the dead letters of earlier runs again

	Prices *cost.Prices // nil: cost.DefaultPrices()
	MaxUSD float64      // spending ceiling including earlier runs' ledger; <= 0: none
	DryRun bool         // estimate and return without calling anything

	ProgressEvery time.Duration // ticker period on a terminal; default 1s
	Interactive   *bool         // force progress lines on or off; nil: on when Stderr is a terminal

	retried map[string]bool // ids taken back from the dead-letter file
}

func (c *Common) defaults() {
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.Stdin == nil {
		c.Stdin = os.Stdin
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Prices == nil {
		c.Prices = cost.DefaultPrices()
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
}

// SidePath is the path of a file kept next to out: OUT with its .jsonl (and
// .zst) suffix replaced by "."+suffix+".jsonl"; for "-", suffix+".jsonl" in
// the current directory.
func SidePath(out, suffix string) string {
	if out == "-" || out == "" {
		return suffix + ".jsonl"
	}
	base := out
	for _, ext := range []string{".zst", ".jsonl", ".json"} {
		if len(base) > len(ext) && base[len(base)-len(ext):] == ext {
			base = base[:len(base)-len(ext)]
		}
	}
	return base + "." + suffix + ".jsonl"
}

// OpenLedger opens the ledger for c (a file next to the output unless
// c.Ledger says otherwise; in memory for "-") and a meter with c's ceiling.
func (c *Common) OpenLedger() (*cost.Ledger, *cost.Meter, error) {
	path := c.Ledger
	if path == "" && c.Out != "-" {
		path = SidePath(c.Out, "ledger")
	}
	var l *cost.Ledger
	if path == "" || c.DryRun {
		l = cost.NewLedger()
	} else {
		var err error
		if l, err = cost.OpenLedger(path); err != nil {
			return nil, nil, err
		}
	}
	return l, cost.NewMeter(c.Prices, l, c.MaxUSD), nil
}

// sink is one output: an append-only file or a stream.
type sink struct {
	path string
	app  *jsonl.Appender
	w    io.Writer
	n    int // records written this run
}

// openSink opens path for appending and adds the ids it holds to done.
// "-" writes w.
func openSink(path string, w io.Writer, done map[string]bool) (*sink, error) {
	if path == "-" {
		return &sink{path: "-", w: w}, nil
	}
	app, ids, err := jsonl.OpenAppend(path, idOf)
	if err != nil {
		return nil, err
	}
	for id := range ids {
		done[id] = true
	}
	return &sink{path: path, app: app}, nil
}

func (s *sink) write(v any) error {
	if s == nil {
		return errors.New("write to a missing output")
	}
	s.n++
	if s.app != nil {
		return s.app.Write(v)
	}
	return jsonl.Encode(s.w, v)
}

func (s *sink) close() error {
	if s == nil || s.app == nil {
		return nil
	}
	return s.app.Close()
}

// retryDead removes the dead letters of c.DeadLetter (rewriting it
// atomically) so their ids count as not done, and remembers their ids.
func (c *Common) retryDead() error {
	if !c.RetryFailed {
		return nil
	}
	path := c.DeadLetter
	if path == "" {
		path = SidePath(c.Out, "dead")
	}
	n, ids, err := scanIDs(path)
	if err != nil || n == 0 {
		return nil // nothing to retry
	}
	c.retried = ids
	return jsonl.WriteFileAtomic(path, func(io.Writer) error { return nil })
}

// stage is what a running stage writes to and charges: its output, an
// optional side output (rank's ties, screen's removed pairs), the
// dead-letter file, the cost ledger with its meter, and progress.
type stage struct {
	out, side, dead *sink // side is nil where the stage has none
	ledger          *cost.Ledger
	meter           *cost.Meter
	prog            *Progress
}

// openStage takes back the dead letters to retry, opens c.Out, side (none
// for "") and c.DeadLetter, adding the ids they hold to done, opens the
// ledger, points b's calls at its meter (priced at the batch discount
// where batch) and starts progress under name. The caller owns the stage:
// close it when done; on error nothing is left open.
func openStage(c *Common, name string, b *Backend, side string, batch bool, done map[string]bool) (*stage, error) {
	if err := c.retryDead(); err != nil {
		return nil, err
	}
	s := &stage{}
	var err error
	if s.out, err = openSink(c.Out, c.Stdout, done); err != nil {
		return nil, err
	}
	if side != "" {
		if s.side, err = openSink(side, c.Stdout, done); err != nil {
			s.close()
			return nil, err
		}
	}
	if s.dead, err = openSink(c.DeadLetter, c.Stdout, done); err != nil {
		s.close()
		return nil, err
	}
	if s.ledger, s.meter, err = c.OpenLedger(); err != nil {
		s.close()
		return nil, err
	}
	b.SetMeter(s.meter)
	if batch {
		s.meter.Batch = true
	}
	s.prog = newProgress(c, name, func() float64 { return s.ledger.Total().USD })
	return s, nil
}

// finish records the items done by earlier runs, prints the summary line
// with extra, and returns the ledger's total (earlier runs included) and
// this run's rate.
func (s *stage) finish(skipped int64, extra string) (spentUSD, perSecond float64) {
	spentUSD, perSecond = s.ledger.Total().USD, s.prog.Rate()
	s.prog.Skipped.Store(skipped)
	s.prog.finish(extra)
	return spentUSD, perSecond
}

// close closes the ledger and the sinks, last opened first, skipping any
// that were not opened.
func (s *stage) close() {
	if s.ledger != nil {
		s.ledger.Close()
	}
	s.dead.close()
	s.side.close()
	s.out.close()
}

// job is one input record to process.
type job struct {
	id   string
	line int
	raw  json.RawMessage
	v    any // the parsed record
}

// write is one record for one sink.
type write struct {
	s *sink
	v any
}

// errStop wraps errors that end a stage early but cleanly: the budget, or
// the caller's context.
func fatal(parent context.Context, err error) bool {
	return parent.Err() != nil || cost.IsBudget(err)
}

// failKind classifies a per-item error for a dead letter, or reports that
// it is fatal to the stage.
func failKind(parent, item context.Context, err error) (kind string, isFatal bool) {
	switch {
	case fatal(parent, err):
		return "", true
	case backend.IsInvalidOutput(err):
		return "invalid_output", false
	case backend.IsCallFailed(err):
		return "call_failed", false
	case item.Err() != nil:
		return "timeout", false
	}
	return "", true
}

// pool runs do over the jobs produce sends, workers at a time, and writes
// their records from one goroutine, calling tally for each job's writes.
// A fatal error from do stops feeding; jobs in flight finish and are
// written. pool returns the first fatal or write error.
func pool(ctx context.Context, c *Common, produce func(ctx context.Context, send func(job) bool) error,
	do func(ctx context.Context, j job) ([]write, error), tally func([]write)) error {
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	jobs := make(chan job)
	results := make(chan []write, c.Workers)
	var (
		mu       sync.Mutex
		firstErr error
	)
	setErr := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		stopFeed()
	}
	go func() {
		defer close(jobs)
		err := produce(feedCtx, func(j job) bool {
			select {
			case jobs <- j:
				return true
			case <-feedCtx.Done():
				return false
			}
		})
		if err != nil {
			setErr(err)
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < c.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if feedCtx.Err() != nil {
					continue // stopping: leave the rest for a rerun
				}
				ictx, cancel := ctx, context.CancelFunc(func() {})
				if c.ItemTimeout > 0 {
					ictx, cancel = context.WithTimeout(ctx, c.ItemTimeout)
				}
				ws, err := do(ictx, j)
				cancel()
				if err != nil {
					setErr(err)
					continue
				}
				results <- ws
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()
	for ws := range results {
		for _, w := range ws {
			if err := w.s.write(w.v); err != nil {
				setErr(fmt.Errorf("%s: %w", w.s.path, err))
			}
		}
		if tally != nil {
			tally(ws)
		}
	}
	return firstErr
}

// readJobs streams the records of c.In, parses each with parse, and sends
// those whose id is not done (nor seen earlier in the input). A line that
// does not parse is an error naming file and line.
func readJobs(c *Common, parse func([]byte) ([]job, error), done map[string]bool, skipped, dups *int64) func(ctx context.Context, send func(job) bool) error {
	return func(ctx context.Context, send func(job) bool) error {
		rc, err := jsonl.Open(c.In)
		if err != nil {
			return err
		}
		defer rc.Close()
		var r io.Reader = rc
		name := c.In
		if c.In == "-" {
			r, name = c.Stdin, "stdin"
		}
		jr := jsonl.NewReader(r, name)
		seen := map[string]bool{}
		for {
			raw, line, err := jr.NextRaw()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			js, err := parse(raw)
			if err != nil {
				return fmt.Errorf("%s:%d: %w", name, line, err)
			}
			keep := append(json.RawMessage(nil), raw...)
			for _, j := range js {
				if seen[j.id] {
					*dups++
					continue
				}
				seen[j.id] = true
				if done[j.id] {
					*skipped++
					continue
				}
				j.line, j.raw = line, keep
				if !send(j) {
					return nil
				}
			}
		}
	}
}

// countLines counts the non-blank lines of a regular file (for progress
// totals); 0 when unknown.
func countLines(path string) int64 {
	if path == "-" {
		return 0
	}
	rc, err := jsonl.Open(path)
	if err != nil {
		return 0
	}
	defer rc.Close()
	jr := jsonl.NewReader(rc, path)
	var n int64
	for {
		if _, _, err := jr.NextRaw(); err != nil {
			return n
		}
		n++
	}
}

// deadLetter builds a dead letter for job j.
func deadLetter(stage, model string, j job, kind string, err error, attempts int) DeadLetter {
	d := DeadLetter{ID: j.id, Stage: stage, Model: model, Error: err.Error(), Kind: kind, Attempts: attempts, Input: j.raw}
	var ie *backend.InvalidOutputError
	if errors.As(err, &ie) {
		d.Raw = ie.Raw
	}
	return d
}

// repairOf turns an invalid-output error into a repair request.
func repairOf(err error) *backend.Repair {
	var ie *backend.InvalidOutputError
	if !errors.As(err, &ie) {
		return nil
	}
	problem := ie.Reason
	if ie.Err != nil {
		problem += ": " + ie.Err.Error()
	}
	return &backend.Repair{Previous: ie.Raw, Problem: problem}
}

// stopError wraps the error that ended a stage early.
func stopError(stage string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s stopped: %w", stage, err)
}
