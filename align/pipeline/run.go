package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
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

	DeadLetter string // dead-letter file; "" derives it from Out (OUT.dead.jsonl, or STAGE.dead.jsonl for "-")
	Ledger     string // cost ledger; "" derives it from Out (OUT.ledger.jsonl, or in memory for "-")

	Workers     int           // items in flight; default 8
	ItemTimeout time.Duration // per-item context budget, repairs included; 0: none
	RetryFailed bool          // process the dead letters of earlier runs again

	Prices *cost.Prices // nil: cost.DefaultPrices()
	MaxUSD *float64     // spending ceiling including earlier runs' ledger; nil: none; 0: free calls only
	DryRun bool         // estimate and return without calling anything

	// MaxUnreachable ends the stage after this many calls in a row could
	// not reach their server or were refused its credentials; default 5.
	MaxUnreachable int

	ProgressEvery time.Duration // ticker period on a terminal; default 1s
	Interactive   *bool         // force progress lines on or off; nil: on when Stderr is a terminal
	Columns       int           // terminal width progress lines are cut to; 0: the terminal's, else $COLUMNS

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
	if c.MaxUnreachable <= 0 {
		c.MaxUnreachable = 5
	}
}

// SidePath is the path of a file kept next to out: OUT with its .jsonl (and
// .zst) suffix replaced by "."+suffix+".jsonl"; for "-", suffix+".jsonl" in
// the current directory. Stages name theirs with StagePath.
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

// StagePath is the default path of stage's suffix file (dead letters,
// ties, removed pairs, batch jobs): SidePath(out, suffix) for a file, and
// STAGE.SUFFIX.jsonl in the current directory for "-", so that the stages
// of one pipe (collect --out - | rank --in - --out - | screen ...) keep
// their files apart.
func StagePath(stage, out, suffix string) string {
	if out == "-" || out == "" {
		return stage + "." + suffix + ".jsonl"
	}
	return SidePath(out, suffix)
}

// OpenLedger opens the ledger for c (a file next to the output unless
// c.Ledger says otherwise; in memory for "-") and a meter with c's ceiling.
func (c *Common) OpenLedger() (*cost.Ledger, *cost.Meter, error) {
	path := c.ledgerPath()
	var l *cost.Ledger
	if path == "" {
		l = cost.NewLedger()
	} else {
		var err error
		if l, err = cost.OpenLedger(path); err != nil {
			return nil, nil, err
		}
	}
	max := cost.NoLimit
	if c.MaxUSD != nil {
		max = *c.MaxUSD
	}
	return l, cost.NewMeter(c.Prices, l, max), nil
}

// ledgerPath is the ledger file of c, "" for one in memory.
func (c *Common) ledgerPath() string {
	if c.DryRun {
		return ""
	}
	if c.Ledger == "" && c.Out != "-" {
		return SidePath(c.Out, "ledger")
	}
	return c.Ledger
}

// checkLedger reads the existing ledger without changing it, so that a
// file that is not a ledger fails the stage before anything is written.
func (c *Common) checkLedger() error {
	path := c.ledgerPath()
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	return cost.CheckLedger(path)
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
		return errors.New("retry: no dead-letter file named") // the stages' defaults() set it
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

	unreachable    atomic.Int64 // calls in a row that could not reach their server
	maxUnreachable int
}

// stageKinds names the record kinds of a stage's output and side output,
// and the flag that names the side output.
type stageKinds struct {
	out, side recordKind
	sideFlag  string
}

// openStage checks c.In and that every existing output holds its own kind
// of record (before it creates or changes any file), takes back the dead
// letters to retry, opens c.Out, side (none for "") and c.DeadLetter,
// adding the ids they hold to done, opens the ledger, points b's calls at
// its meter (priced at the batch discount where batch) and starts progress
// under name. The caller owns the stage: close it when done; on error
// nothing is left open.
func openStage(c *Common, name string, b *Backend, side string, kinds stageKinds, batch bool, done map[string]bool) (*stage, error) {
	if err := checkInput(c.In); err != nil {
		return nil, err
	}
	checks := []struct {
		path, flag string
		kind       recordKind
	}{{c.Out, "--out", kinds.out}, {side, kinds.sideFlag, kinds.side}, {c.DeadLetter, "--dead-letter", deadKind(name)}}
	for _, ck := range checks {
		if err := checkOutput(ck.path, ck.flag, ck.kind); err != nil {
			return nil, err
		}
	}
	if err := c.checkLedger(); err != nil {
		return nil, err
	}
	if err := c.retryDead(); err != nil {
		return nil, err
	}
	s := &stage{maxUnreachable: c.MaxUnreachable}
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
	if s.meter.Budget.Limited() {
		s.prog.setMax(s.meter.Budget.Max())
	}
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

// isStop reports errors that end a stage early but cleanly: the budget,
// or the caller's context.
func isStop(parent context.Context, err error) bool {
	return parent.Err() != nil || cost.IsBudget(err)
}

// failKind classifies a per-item error for a dead letter (kind), or
// returns the error that ends the stage (fatal): the budget, the caller's
// context, an unexpected error, or the MaxUnreachable-th call in a row
// that could not reach its server.
func (s *stage) failKind(parent, item context.Context, err error) (kind string, fatal error) {
	switch {
	case isStop(parent, err):
		return "", err
	case backend.IsInvalidOutput(err):
		return "invalid_output", nil
	case backend.IsUnreachable(err):
		if n := s.unreachable.Add(1); n >= int64(s.maxUnreachable) {
			return "", &UnreachableError{Calls: int(n), Err: err}
		}
		return "unreachable", nil
	case backend.IsCallFailed(err):
		return "call_failed", nil
	case item.Err() != nil:
		return "timeout", nil
	}
	return "", err
}

// seen looks at an item's writes: unless the item was dead-lettered for
// an unreachable server, its calls went through, and the count of
// unreachable calls in a row starts again.
func (s *stage) seen(ws []write) {
	if len(ws) > 0 && ws[0].s == s.dead {
		if d, ok := ws[0].v.(DeadLetter); ok && d.Kind == "unreachable" {
			return
		}
	}
	s.unreachable.Store(0)
}

// UnreachableError ends a stage whose calls keep failing to reach their
// server (refused connections, unknown host, missing or bad credentials):
// going on would only fill the dead-letter file.
type UnreachableError struct {
	Calls int   // failed calls in a row
	Err   error // the last one
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%d calls in a row could not reach the server or were refused its credentials, so nothing more was sent "+
		"(fix the endpoint or credentials, then rerun with --retry-failed to redo the dead letters): %v", e.Calls, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

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

// deadLetter builds a dead letter for job j after calls calls, the last
// failing with err; its attempts count the HTTP attempts of the last call
// (retries included) and one for each call before it.
func deadLetter(stage, model string, j job, kind string, err error, calls int) DeadLetter {
	attempts := max(calls-1, 0) + backend.AttemptsOf(err)
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
