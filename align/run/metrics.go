package run

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Metrics is a run's metrics.jsonl: one JSON object per (split, step).
type Metrics struct {
	f    *os.File
	rows map[string]map[string]any // "split/step" → row
}

func rowKey(split any, step any) string { return fmt.Sprintf("%v/%v", split, step) }

// OpenMetrics opens path for appending. keepUpTo < 0 starts it empty;
// otherwise rows after step keepUpTo, torn lines and repeats of a
// (split, step) are dropped first (a resumed run).
func OpenMetrics(path string, keepUpTo int) (*Metrics, error) {
	l := &Metrics{rows: map[string]map[string]any{}}
	var keep []byte
	if keepUpTo >= 0 {
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			var row map[string]any
			if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &row) != nil {
				continue
			}
			step, ok := row["step"].(float64)
			if !ok || step > float64(keepUpTo) {
				continue
			}
			key := rowKey(row["split"], int(step))
			if _, dup := l.rows[key]; dup {
				continue
			}
			l.rows[key] = row
			keep = append(append(keep, line...), '\n')
		}
	}
	if err := os.WriteFile(path, keep, 0o644); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

// Has returns the logged row of (split, step), if any.
func (l *Metrics) Has(split string, step int) (map[string]any, bool) {
	r, ok := l.rows[rowKey(split, step)]
	return r, ok
}

// Write appends row (it holds "split" and "step") unless its (split, step)
// is already logged.
func (l *Metrics) Write(row map[string]any) error {
	key := rowKey(row["split"], row["step"])
	if _, dup := l.rows[key]; dup {
		return nil
	}
	b, err := json.Marshal(row)
	if err != nil {
		return err
	}
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		return err
	}
	l.rows[key] = row
	return nil
}

// Close closes the file.
func (l *Metrics) Close() error { return l.f.Close() }

// Values are the metric values of a logged row (numbers other than step
// and epoch).
func Values(row map[string]any) map[string]float64 {
	out := map[string]float64{}
	for k, v := range row {
		if f, ok := v.(float64); ok && k != "step" && k != "epoch" {
			out[k] = f
		}
	}
	return out
}
