package train

// Small exported wrappers over this package's run-directory helpers for
// align/rl (PPO, GRPO), which keeps its own driver but the same metrics
// log, atomic writes and hashing as the other methods.

// MetricsLog is a run's metrics.jsonl (one row per split and step).
type MetricsLog struct{ l *metricsLog }

// OpenMetrics opens path for appending; keepUpTo < 0 starts it empty,
// otherwise rows after step keepUpTo, torn lines and repeated (split, step)
// rows are dropped first (a resumed run).
func OpenMetrics(path string, keepUpTo int) (*MetricsLog, error) {
	l, err := openMetrics(path, keepUpTo)
	if err != nil {
		return nil, err
	}
	return &MetricsLog{l}, nil
}

// Has returns the logged row of (split, step), if any.
func (m *MetricsLog) Has(split string, step int) (map[string]any, bool) { return m.l.has(split, step) }

// Write appends row (it must hold "split" and "step") unless its (split,
// step) is already logged.
func (m *MetricsLog) Write(row map[string]any) error { return m.l.write(row) }

// Close closes the file.
func (m *MetricsLog) Close() error { return m.l.Close() }

// WriteJSON writes v as indented JSON through a temporary file and a rename.
func WriteJSON(path string, v any) error { return writeJSON(path, v) }

// ReadJSON reads a JSON file into v.
func ReadJSON(path string, v any) error { return readJSON(path, v) }

// WriteSynced writes b to path and fsyncs it.
func WriteSynced(path string, b []byte) error { return writeSynced(path, b) }

// HashFile is the hex SHA-256 of a file's bytes.
func HashFile(path string) (string, error) { return hashFile(path) }

// TargetBits parses LoRA target names (q, k, v, o, gate, up, down).
func TargetBits(ts []string) (uint32, error) { return targetBits(ts) }
