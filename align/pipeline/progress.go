package pipeline

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Progress reports a stage's progress on stderr: on a terminal, a line
// every tick with counts, rate, ETA and spend (from atomic counters, so
// workers never wait for it); elsewhere nothing until the final summary
// line.
type Progress struct {
	w     io.Writer
	stage string
	tty   bool
	every time.Duration
	spend func() float64
	start time.Time
	width func() int // terminal columns; 0: unknown

	maxUSD float64 // the spending ceiling shown beside the spend; 0 with hasMax false: none
	hasMax bool

	Total   atomic.Int64 // items expected this run (0: unknown)
	Done    atomic.Int64 // items finished this run
	Skipped atomic.Int64 // items finished by earlier runs
	Failed  atomic.Int64 // items sent to the dead-letter file

	stop chan struct{}
	wg   sync.WaitGroup
}

// isTerminal reports whether w is a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newProgress(c *Common, stage string, spend func() float64) *Progress {
	p := &Progress{w: c.Stderr, stage: stage, every: c.ProgressEvery, spend: spend, start: time.Now(), stop: make(chan struct{})}
	if p.w == nil {
		p.w = io.Discard
	}
	p.tty = isTerminal(p.w)
	p.width = func() int { return terminalWidth(p.w) }
	if c.Columns > 0 {
		p.width = func() int { return c.Columns }
	}
	if c.Interactive != nil {
		p.tty = *c.Interactive
	}
	if p.tty {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			t := time.NewTicker(p.every)
			defer t.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-t.C:
					fmt.Fprintf(p.w, "\r\x1b[K%s", clip(p.line(), p.width()))
				}
			}
		}()
	}
	return p
}

// Rate is items finished per second this run.
func (p *Progress) Rate() float64 {
	el := time.Since(p.start).Seconds()
	if el <= 0 {
		return 0
	}
	return float64(p.Done.Load()) / el
}

func (p *Progress) line() string {
	done, total := p.Done.Load(), p.Total.Load()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d", p.stage, done)
	if total > 0 {
		fmt.Fprintf(&b, "/%d (%.0f%%)", total, 100*float64(done)/float64(total))
	}
	rate := p.Rate()
	fmt.Fprintf(&b, " %.1f/s", rate)
	if total > 0 && rate > 0 && done < total {
		eta := time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(&b, " ETA %s", eta)
	}
	if p.spend != nil {
		fmt.Fprintf(&b, " $%.4f", p.spend())
		if p.hasMax {
			fmt.Fprintf(&b, " of $%.2f", p.maxUSD)
		}
	}
	if f := p.Failed.Load(); f > 0 {
		fmt.Fprintf(&b, " dead %d", f)
	}
	return b.String()
}

// finish stops the ticker and prints the summary line: counts, rate,
// elapsed time, spend and extra.
func (p *Progress) finish(extra string) {
	close(p.stop)
	p.wg.Wait()
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	el := time.Since(p.start)
	line := fmt.Sprintf("%s: %d done, %d skipped (done before), %d dead in %s (%.1f/s)",
		p.stage, p.Done.Load(), p.Skipped.Load(), p.Failed.Load(), el.Round(time.Millisecond), p.Rate())
	if p.spend != nil {
		line += fmt.Sprintf(", spent $%.4f", p.spend())
		if p.hasMax {
			line += fmt.Sprintf(" of --max-usd $%.2f", p.maxUSD)
		}
	}
	if extra != "" {
		line += "; " + extra
	}
	fmt.Fprintln(p.w, line)
}

// setMax shows usd as the spending ceiling.
func (p *Progress) setMax(usd float64) { p.maxUSD, p.hasMax = usd, true }

// clip cuts a redrawn line to fit width columns (one left free, so the
// cursor never wraps); width <= 0 leaves it whole. Progress lines are
// ASCII apart from the stage name, so runes stand for columns.
func clip(line string, width int) string {
	if width <= 1 {
		return line
	}
	r := []rune(line)
	if len(r) < width {
		return line
	}
	return string(r[:width-1])
}

// terminalWidth is the column count of w when it is a terminal, else
// $COLUMNS, else 0 (unknown).
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if n := fdColumns(f.Fd()); n > 0 {
			return n
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 0
}
