package train

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// A run directory holds only what align writes (runFiles and
// checkpoints/step-*); align refuses to start a run in a folder holding
// anything else, and replacing a run (--force) removes only these names.
var runFiles = []string{"config.json", "metrics.jsonl", "adapter.gguf", "summary.json", "reference.json",
	"eval_before.json", "data.jsonl", "config.json.tmp", "summary.json.tmp", "reference.json.tmp"}

// storedData is where a run keeps pairs it read from standard input, so it
// can be resumed.
const storedData = "data.jsonl"

// prepareOut makes out ready for a new run and reports whether it created
// the directory. An empty or missing directory is fine; one holding a run
// is refused unless force (then the run's files go); anything else is
// refused.
func prepareOut(out string, force bool) (created bool, err error) {
	ents, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return false, err
		}
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if len(ents) == 0 {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(out, "config.json")); err != nil {
		return false, bad("out", "%s is not empty and holds no align run: choose a new or empty folder", out)
	}
	if !force {
		return false, bad("out", "%s holds a run: continue it with --resume %s, or replace it with --force", out, out)
	}
	return false, removeRun(out)
}

// removeRun deletes the files align writes in out and nothing else.
func removeRun(out string) error {
	for _, name := range runFiles {
		if err := os.Remove(filepath.Join(out, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	dir := filepath.Join(out, "checkpoints")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() && (strings.HasPrefix(e.Name(), "step-") || strings.HasPrefix(e.Name(), ".tmp-step-")) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	os.Remove(dir) // only if empty: a user's files under it stay
	return nil
}

// hashFile is the hex SHA-256 of a file's bytes.
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20)); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// inputHashes hashes the run's model and data files.
func inputHashes(cfg Config) (map[string]string, error) {
	out := map[string]string{}
	for _, in := range []struct{ key, path string }{{"model", cfg.Model}, {"data", cfg.Data}, {"eval_data", cfg.EvalData}} {
		if in.path == "" {
			continue
		}
		h, err := hashFile(in.path)
		if err != nil {
			return nil, err
		}
		out[in.key] = h
	}
	return out, nil
}

// checkHashes refuses to resume a run whose inputs changed.
func checkHashes(out string, saved, now map[string]string, cfg Config) error {
	if saved == nil {
		return nil // a run from before align recorded hashes
	}
	keys := make([]string, 0, len(now))
	for k := range now {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	paths := map[string]string{"model": cfg.Model, "data": cfg.Data, "eval_data": cfg.EvalData}
	flags := map[string]string{"model": "--model", "data": "--data", "eval_data": "--eval-data"}
	for _, k := range keys {
		if saved[k] != now[k] {
			return fmt.Errorf("%s: cannot resume: %s %s changed since the run started (sha256 %.12s then, %.12s now); start a new run with --out",
				out, flags[k], paths[k], saved[k], now[k])
		}
	}
	return nil
}

// absPath makes a stored path resolve from any working directory.
func absPath(p string) (string, error) {
	if p == "" || p == "-" {
		return p, nil
	}
	return filepath.Abs(p)
}

// metricsLog is metrics.jsonl: one row per (split, step).
type metricsLog struct {
	f    *os.File
	rows map[string]map[string]any // "split/step" → row
}

func rowKey(split any, step any) string { return fmt.Sprintf("%v/%v", split, step) }

// openMetrics opens path for appending. keepUpTo < 0 starts it empty;
// otherwise rows after step keepUpTo, torn lines and repeats of a
// (split, step) are dropped first.
func openMetrics(path string, keepUpTo int) (*metricsLog, error) {
	l := &metricsLog{rows: map[string]map[string]any{}}
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

// has returns the logged row of (split, step), if any.
func (l *metricsLog) has(split string, step int) (map[string]any, bool) {
	r, ok := l.rows[rowKey(split, step)]
	return r, ok
}

// write appends row unless its (split, step) is already logged.
func (l *metricsLog) write(row map[string]any) error {
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

func (l *metricsLog) Close() error { return l.f.Close() }

// evalMetrics are the metric values of a logged eval row.
func evalMetrics(row map[string]any) map[string]float64 {
	out := map[string]float64{}
	for k, v := range row {
		if f, ok := v.(float64); ok && k != "step" && k != "epoch" {
			out[k] = f
		}
	}
	return out
}
