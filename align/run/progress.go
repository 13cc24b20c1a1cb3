package run

import (
	"fmt"
	"time"
)

// Event is one progress update, for a human on stderr.
type Event struct {
	// Phase is "reference" (reference log-probs), "train" or "eval"
	// (held-out evaluation); "" for a note.
	Phase string
	Done  int // micro-batches (reference, eval) or steps (train) done
	Total int
	ETA   time.Duration // 0: unknown, or nothing left
	Stats string        // train: the method's progress line (Stepper.Line)
	Note  string        // a message for a line of its own (Phase "")
}

// Progress receives updates; nil: silent.
type Progress func(Event)

// Note sends a note.
func (p Progress) Note(format string, a ...any) {
	if p != nil {
		p(Event{Note: fmt.Sprintf(format, a...)})
	}
}

// Send sends ev.
func (p Progress) Send(ev Event) {
	if p != nil {
		p(ev)
	}
}

// ETA is the time left at done of total after elapsed (0 when unknown or
// nothing is left).
func ETA(elapsed time.Duration, done, total int) time.Duration {
	if done <= 0 || done >= total {
		return 0
	}
	return time.Duration(float64(elapsed) / float64(done) * float64(total-done))
}

// Plural is "1 step", "2 steps".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
