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
	"slices"
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

// checkOut refuses an out that a new run may not use: a folder holding
// anything but an align run, or a run without force. It changes nothing.
func checkOut(out string, force bool) error {
	ents, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	if saved, err := loadConfig(out); err != nil || !slices.Contains(Methods, saved.Method) || saved.Model == "" {
		return bad("out", "%s is not empty and holds no align run: choose a new or empty folder", out)
	}
	if !force {
		return bad("out", "%s holds a run: continue it with --resume %s, or replace it with --force", out, out)
	}
	return nil
}

// prepareOut makes out ready for a new run (see checkOut) and reports
// whether it created the directory; a run replaced with force loses only
// the files align wrote, and never one of keep (the new run's inputs).
func prepareOut(out string, force bool, keep ...string) (created bool, err error) {
	if err := checkOut(out, force); err != nil {
		return false, err
	}
	if _, err := os.Stat(out); errors.Is(err, os.ErrNotExist) {
		return true, os.MkdirAll(out, 0o755)
	}
	return false, removeRun(out, keep...)
}

// removeRun deletes the files align writes in out and nothing else: not
// one of keep, and not a data.jsonl the run did not store itself.
func removeRun(out string, keep ...string) error {
	kept := map[string]bool{}
	for _, k := range keep {
		if a, err := filepath.Abs(k); err == nil {
			kept[a] = true
		}
	}
	if saved, err := loadConfig(out); err != nil || saved.Data != mustAbs(filepath.Join(out, storedData)) {
		kept[mustAbs(filepath.Join(out, storedData))] = true
	}
	for _, name := range runFiles {
		p := filepath.Join(out, name)
		if kept[mustAbs(p)] {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
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
	for _, in := range []struct{ key, path string }{{"model", cfg.Model}, {"data", cfg.Data}, {"eval_data", cfg.EvalData},
		{"init_adapter", cfg.InitAdapter}, {"ref_adapter", cfg.RefAdapter}} {
		if in.path == "" {
			continue
		}
		h, err := hashFile(in.path)
		if err != nil && strings.HasSuffix(in.key, "_adapter") {
			return nil, fmt.Errorf("--%s: %w", strings.ReplaceAll(in.key, "_", "-"), err)
		}
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
	paths := map[string]string{"model": cfg.Model, "data": cfg.Data, "eval_data": cfg.EvalData, "init_adapter": cfg.InitAdapter, "ref_adapter": cfg.RefAdapter}
	flags := map[string]string{"model": "--model", "data": "--data", "eval_data": "--eval-data", "init_adapter": "--init-adapter", "ref_adapter": "--ref-adapter"}
	for _, k := range keys {
		if saved[k] != now[k] {
			return fmt.Errorf("%s: cannot resume: %s %s changed since the run started (sha256 %.12s then, %.12s now); start a new run with --out",
				out, flags[k], paths[k], saved[k], now[k])
		}
	}
	return nil
}

func mustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
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
