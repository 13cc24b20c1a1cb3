// Package report renders a training run (RUN_DIR/metrics.jsonl) and
// evaluations (eval.json) as one self-contained HTML page with inline SVG
// charts, and as a terminal summary. The page loads nothing: no scripts,
// fonts, styles or images from anywhere.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/align-dev/align/align/jsonl"
)

// Row is one line of metrics.jsonl: its split ("train", "eval",
// "train_epoch"), step and numeric values by key.
type Row struct {
	Line   int
	Split  string
	Step   float64
	Values map[string]float64
}

// Metrics are a run's rows and the torn last line dropped, if any.
type Metrics struct {
	Path    string
	Rows    []Row
	Dropped string // why a last line was left out ("" when none was)
}

// LoadMetrics reads metrics.jsonl. A bad line is an error naming
// file:line, except a bad last line, which a running or killed trainer
// may have torn: it is left out and reported in Dropped.
func LoadMetrics(path string) (Metrics, error) {
	f, err := os.Open(path)
	if err != nil {
		return Metrics{}, err
	}
	defer f.Close()
	m := Metrics{Path: path}
	r := jsonl.NewReader(f, path)
	var pending error
	for {
		raw, line, err := r.NextRaw()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, err
		}
		if pending != nil {
			return m, pending // a bad line that was not the last
		}
		row, perr := parseRow(raw)
		if perr != nil {
			pending = fmt.Errorf("%s:%d: %w", path, line, perr)
			continue
		}
		row.Line = line
		m.Rows = append(m.Rows, row)
	}
	if pending != nil {
		m.Dropped = pending.Error()
	}
	return m, nil
}

func parseRow(raw []byte) (Row, error) {
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Row{}, fmt.Errorf("a JSON %s, not a metrics row (a JSON object)", te.Value)
		}
		return Row{}, err
	}
	split, _ := obj["split"].(string)
	if split == "" {
		return Row{}, errors.New(`missing "split"`)
	}
	step, ok := obj["step"].(float64)
	if !ok {
		return Row{}, errors.New(`missing numeric "step"`)
	}
	row := Row{Split: split, Step: step, Values: map[string]float64{}}
	for k, v := range obj {
		if x, ok := v.(float64); ok && k != "step" && !math.IsNaN(x) && !math.IsInf(x, 0) {
			row.Values[k] = x
		}
	}
	return row, nil
}

// Point is one (step, value) of a series.
type Point struct{ X, Y float64 }

// Series is one key of one split against step, in file order.
type Series struct {
	Key    string
	Split  string
	Points []Point
}

// SeriesOf returns key's points for split.
func (m Metrics) SeriesOf(split, key string) Series {
	s := Series{Key: key, Split: split}
	for _, r := range m.Rows {
		if r.Split != split {
			continue
		}
		if v, ok := r.Values[key]; ok {
			s.Points = append(s.Points, Point{r.Step, v})
		}
	}
	return s
}

// Keys lists the numeric keys of split's rows, sorted.
func (m Metrics) Keys(split string) []string {
	seen := map[string]bool{}
	for _, r := range m.Rows {
		if r.Split == split {
			for k := range r.Values {
				seen[k] = true
			}
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Chart is a titled set of series.
type Chart struct {
	ID     string
	Title  string
	YLabel string
	Series []Series
}

// chartSpec groups keys into one chart; keys ending in "/" match prefixes.
type chartSpec struct {
	id, title, ylabel string
	keys              []string
	splits            []string
}

var chartSpecs = []chartSpec{
	{"loss", "Loss", "loss", []string{"loss", "nll_loss"}, []string{"train", "eval"}},
	{"margins", "Implicit reward margin", "β·Δlog-ratio", []string{"rewards/margins"}, []string{"train", "eval"}},
	{"accuracies", "Pair accuracy", "share", []string{"rewards/accuracies"}, []string{"train", "eval"}},
	{"objective-accuracies", "Pair accuracy per objective", "share", []string{"objective/*/rewards/accuracies"}, []string{"train", "eval"}},
	{"objective-margins", "Reward margin per objective", "β·Δlog-ratio", []string{"objective/*/rewards/margins"}, []string{"train", "eval"}},
	{"rewards", "Implicit rewards", "β·log-ratio", []string{"rewards/chosen", "rewards/rejected"}, []string{"train", "eval"}},
	{"logps", "Response log-probs", "log-prob", []string{"logps/chosen", "logps/rejected"}, []string{"train", "eval"}},
	{"lr", "Learning rate", "lr", []string{"learning_rate"}, []string{"train"}},
	{"grad-norm", "Gradient norm (before clipping)", "‖g‖", []string{"grad_norm"}, []string{"train"}},
	{"kl", "KL", "nats", []string{"kl", "*kl*"}, []string{"train", "eval"}},
	{"entropy", "Entropy", "nats", []string{"entropy", "*entropy*"}, []string{"train", "eval"}},
	{"reward", "Reward", "reward", []string{"reward", "reward/*"}, []string{"train", "eval"}},
	{"throughput", "Throughput", "tokens/s", []string{"tokens_per_s"}, []string{"train", "train_epoch"}},
}

// match is a small glob: "*" matches any run of characters.
func match(pat, s string) bool {
	if !strings.Contains(pat, "*") {
		return pat == s
	}
	parts := strings.Split(pat, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i, p := range parts[1:] {
		j := strings.Index(s, p)
		if j < 0 || (i == len(parts)-2 && !strings.HasSuffix(s, p)) {
			return false
		}
		s = s[j+len(p):]
	}
	return true
}

// Charts groups the run's series into charts; keys no chart names get
// one chart each (epoch excluded), so nothing in the file goes unshown.
func (m Metrics) Charts() []Chart {
	used := map[string]bool{"epoch": true}
	var out []Chart
	for _, cs := range chartSpecs {
		c := Chart{ID: cs.id, Title: cs.title, YLabel: cs.ylabel}
		for _, split := range cs.splits {
			for _, k := range m.Keys(split) {
				if used[split+"\x00"+k] {
					continue
				}
				for _, p := range cs.keys {
					if match(p, k) {
						if s := m.SeriesOf(split, k); len(s.Points) > 0 {
							c.Series = append(c.Series, s)
							used[split+"\x00"+k] = true
						}
						break
					}
				}
			}
		}
		if len(c.Series) > 0 {
			out = append(out, c)
		}
	}
	for _, split := range []string{"train", "eval", "train_epoch"} {
		for _, k := range m.Keys(split) {
			if used[k] || used[split+"\x00"+k] {
				continue
			}
			s := m.SeriesOf(split, k)
			out = append(out, Chart{ID: "other-" + split + "-" + slug(k), Title: k + " (" + split + ")", YLabel: k, Series: []Series{s}})
		}
	}
	return out
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, s)
}
