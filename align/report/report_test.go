package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/align-dev/align/align/eval"
)

var (
	seriesRe = regexp.MustCompile(`(?s)<g class="series" data-key="([^"]*)" data-split="([^"]*)">(.*?)</g>`)
	pointRe  = regexp.MustCompile(`<circle cx="([-0-9.]+)" cy="([-0-9.]+)"[^>]*data-x="([^"]*)" data-y="([^"]*)"`)
	chartRe  = regexp.MustCompile(`(?s)<svg class="chart" id="chart-([^"]*)".*?</svg>`)
)

// drawn maps chart id → "split key" → the points drawn, from the page.
func drawn(t *testing.T, page string) map[string]map[string][][4]float64 {
	t.Helper()
	out := map[string]map[string][][4]float64{}
	for _, cm := range chartRe.FindAllStringSubmatch(page, -1) {
		ser := map[string][][4]float64{}
		for _, sm := range seriesRe.FindAllStringSubmatch(cm[0], -1) {
			var pts [][4]float64
			for _, pm := range pointRe.FindAllStringSubmatch(sm[3], -1) {
				var p [4]float64
				for i := range p {
					v, err := strconv.ParseFloat(pm[i+1], 64)
					if err != nil {
						t.Fatal(err)
					}
					p[i] = v
				}
				pts = append(pts, p)
			}
			ser[sm[2]+" "+sm[1]] = pts
		}
		out[cm[1]] = ser
	}
	return out
}

// fileSeries reads metrics.jsonl independently of the package.
func fileSeries(t *testing.T, path, split, key string) [][2]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var row map[string]any
		if json.Unmarshal(sc.Bytes(), &row) != nil || row["split"] != split {
			continue
		}
		if v, ok := row[key].(float64); ok {
			out = append(out, [2]float64{row["step"].(float64), v})
		}
	}
	return out
}

func TestChartPointsMatchMetrics(t *testing.T) {
	p, err := LoadRun("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Render(&buf, p); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	charts := drawn(t, page)
	checks := []struct{ chart, split, key string }{
		{"loss", "train", "loss"}, {"loss", "eval", "loss"},
		{"margins", "train", "rewards/margins"}, {"margins", "eval", "rewards/margins"},
		{"accuracies", "eval", "rewards/accuracies"},
		{"objective-accuracies", "eval", "objective/tone/rewards/accuracies"},
		{"objective-accuracies", "eval", "objective/safety/rewards/accuracies"},
		{"lr", "train", "learning_rate"}, {"grad-norm", "train", "grad_norm"},
		{"throughput", "train_epoch", "tokens_per_s"},
	}
	for _, c := range checks {
		want := fileSeries(t, "testdata/metrics.jsonl", c.split, c.key)
		got := charts[c.chart][c.split+" "+c.key]
		if len(want) == 0 || len(got) != len(want) {
			t.Errorf("chart %s, %s %s: %d points drawn, metrics.jsonl has %d", c.chart, c.split, c.key, len(got), len(want))
			continue
		}
		for i := range want {
			if got[i][2] != want[i][0] || got[i][3] != want[i][1] {
				t.Errorf("chart %s %s point %d: (%g, %g), want (%g, %g)", c.chart, c.key, i, got[i][2], got[i][3], want[i][0], want[i][1])
			}
		}
		// the drawing follows the data: a later step is further right, a
		// larger value higher (smaller cy)
		for i := 1; i < len(got); i++ {
			if (got[i][2] > got[i-1][2]) != (got[i][0] > got[i-1][0]) {
				t.Errorf("chart %s %s: x order of points %d, %d does not follow step", c.chart, c.key, i-1, i)
			}
			if got[i][3] != got[i-1][3] && (got[i][3] > got[i-1][3]) != (got[i][1] < got[i-1][1]) {
				t.Errorf("chart %s %s: y of points %d, %d does not follow value", c.chart, c.key, i-1, i)
			}
		}
	}
	for _, bad := range []string{"http:", "https:", "<script", "<link", "@import", "url(", "src="} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q: it must open offline", bad)
		}
	}
}

func TestLoadMetricsTornAndBadLines(t *testing.T) {
	dir := t.TempDir()
	good, _ := os.ReadFile("testdata/metrics.jsonl")
	torn := filepath.Join(dir, "torn.jsonl")
	os.WriteFile(torn, append(append([]byte(nil), good...), []byte(`{"split":"train","st`)...), 0o644)
	m, err := LoadMetrics(torn)
	if err != nil || len(m.Rows) != 7 || !strings.Contains(m.Dropped, "torn.jsonl:8:") {
		t.Errorf("torn last line: %d rows, dropped %q, err %v", len(m.Rows), m.Dropped, err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	lines := strings.SplitAfter(string(good), "\n")
	os.WriteFile(bad, []byte(lines[0]+"{\"step\":1}\n"+strings.Join(lines[1:], "")), 0o644)
	if _, err := LoadMetrics(bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:2:") {
		t.Errorf("bad middle line: err %v, want one naming bad.jsonl:2", err)
	}
}

func TestEvalBarsAndSamples(t *testing.T) {
	dir := t.TempDir()
	res := eval.Result{Model: "m.gguf", Judge: "rules", NPrompts: 1, Samples: 1, Categories: eval.DefaultCategories[:1]}
	rs := []eval.Response{
		{Variant: "base", PromptIndex: 0, Prompt: "Is <Berserk> done?", Text: "Your inquiry has been noted.", Issues: []string{"off_brand_tone"}},
		{Variant: "a", PromptIndex: 0, Prompt: "Is <Berserk> done?", Text: "Happy to help!"},
	}
	res.Variants = eval.Summarize(res.Categories, []eval.Variant{{Name: "base"}, {Name: "a"}}, rs, []eval.Comparison{{Variant: "a", Outcome: eval.Win}}, 10, 1)
	b, _ := json.Marshal(res)
	os.WriteFile(filepath.Join(dir, "eval.json"), b, 0o644)
	f, _ := os.Create(eval.ResponsesPath(dir))
	for _, r := range rs {
		json.NewEncoder(f).Encode(r)
	}
	f.Close()
	e, err := LoadEval(filepath.Join(dir, "eval.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadRun("testdata")
	if err != nil {
		t.Fatal(err)
	}
	p.Evals = []Eval{e}
	var buf bytes.Buffer
	Render(&buf, p)
	page := buf.String()
	barRe := regexp.MustCompile(`data-variant="([^"]*)" data-rate="([^"]*)" data-lo="([^"]*)" data-hi="([^"]*)"`)
	bars := barRe.FindAllStringSubmatch(page, -1)
	// off-brand tone and combined, for base and a
	if len(bars) != 4 {
		t.Fatalf("%d bars, want 4", len(bars))
	}
	lo, hi := eval.Wilson(1, 1, eval.Z95)
	if bars[0][1] != "base" || bars[0][2] != "1" || bars[0][3] != strconv.FormatFloat(lo, 'g', -1, 64) || bars[0][4] != strconv.FormatFloat(hi, 'g', -1, 64) {
		t.Errorf("base bar %v, want rate 1 [%g, %g]", bars[0][1:], lo, hi)
	}
	if bars[1][1] != "a" || bars[1][2] != "0" {
		t.Errorf("adapter bar %v", bars[1][1:])
	}
	if !strings.Contains(page, "Is &lt;Berserk&gt; done?") || strings.Contains(page, "<Berserk>") {
		t.Error("prompt text not escaped in the sample table")
	}
	if !strings.Contains(page, "Happy to help!") || !strings.Contains(page, "Your inquiry has been noted.") {
		t.Error("sample responses missing")
	}
	if s := Summary(p); !strings.Contains(s, "off-brand tone") || !strings.Contains(s, "step 1 → 4") {
		t.Errorf("summary:\n%s", s)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"objective/*/rewards/accuracies", "objective/tone/rewards/accuracies", true},
		{"objective/*/rewards/accuracies", "objective/tone/rewards/margins", false},
		{"*kl*", "mean_kl_to_ref", true},
		{"*kl*", "loss", false},
		{"loss", "loss", true},
		{"reward/*", "rewards/margins", false},
	}
	for _, tt := range tests {
		if got := match(tt.pat, tt.s); got != tt.want {
			t.Errorf("match(%q, %q) = %v", tt.pat, tt.s, got)
		}
	}
}

// FuzzParseRow: any line either parses into a row with a split and finite
// values or is an error; it never panics.
func FuzzParseRow(f *testing.F) {
	for _, s := range []string{`{"split":"train","step":1,"loss":0.5}`, `{"split":"eval","step":2,"x":"y"}`, `{}`, `[1]`, `{"split":1,"step":"a"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRow(b)
		if err != nil {
			return
		}
		if r.Split == "" {
			t.Fatalf("row without split from %q", b)
		}
		for k, v := range r.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) || k == "step" {
				t.Fatalf("bad value %s=%g from %q", k, v, b)
			}
		}
	})
}

// Each method is summarised by its own metrics: reward, KL and length for
// PPO and GRPO, loss and log-prob for SFT, margin and accuracy for DPO; no
// line shows a metric the method does not log (as zeros) or no metric at
// all, and a torn last line is said on the terminal too.
func TestSummaryPerMethod(t *testing.T) {
	row := func(split string, step float64, kv ...any) Row {
		r := Row{Split: split, Step: step, Values: map[string]float64{}}
		for i := 0; i < len(kv); i += 2 {
			r.Values[kv[i].(string)] = kv[i+1].(float64)
		}
		return r
	}
	rl := Page{RunDir: "grpo", Config: map[string]any{"Method": "grpo"}, Metrics: Metrics{Rows: []Row{
		row("eval", 0, "reward", 0.25, "kl", 0.0, "completions/mean_length", 12.0),
		row("train", 1, "reward", 0.25, "kl", 0.001, "completions/mean_length", 12.0, "loss", 0.02, "grad_norm", 0.5, "learning_rate", 1e-5),
		row("train", 12, "reward", 0.75, "kl", 0.02, "completions/mean_length", 9.5, "loss", 0.01, "grad_norm", 0.4, "learning_rate", 1e-5),
		row("eval", 12, "reward", 0.5, "kl", 0.03, "completions/mean_length", 10.0),
	}, Dropped: "metrics.jsonl:5: torn"}}
	sft := Page{RunDir: "sft", Config: map[string]any{"Method": "sft"}, Metrics: Metrics{Rows: []Row{
		row("eval", 0, "loss", 2.5, "logps/chosen", -60.0),
		row("train", 1, "loss", 2.4, "logps/chosen", -58.0, "grad_norm", 3.0, "learning_rate", 1e-4),
		row("train", 4, "loss", 2.0, "logps/chosen", -50.0, "grad_norm", 2.0, "learning_rate", 1e-4),
		row("eval", 4, "loss", 2.1, "logps/chosen", -52.0),
	}}}
	dpo, err := LoadRun("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		p       Page
		want    []string
		notWant []string
	}{
		{"grpo", rl, []string{"last held-out (step 12): reward 0.5, kl 0.03, length 10.0 tokens", "eval  step 0 → 12:  reward 0.25 → 0.5",
			"train step 1 → 12:  reward 0.25 → 0.75  kl", "length 12.0 tokens → 9.5 tokens", "grad_norm", "note: left out a torn last line: metrics.jsonl:5"},
			[]string{"margin", "accuracy", "0.0%"}},
		{"grpo without config", Page{RunDir: "x", Metrics: rl.Metrics}, []string{"reward 0.5, kl 0.03"}, []string{"margin", "accuracy"}},
		{"sft", sft, []string{"last held-out (step 4): loss 2.1, logps -52", "train step 1 → 4:  loss 2.4 → 2", "logps -58 → -50"}, []string{"margin", "accuracy"}},
		{"dpo", dpo, []string{"margin", "accuracy", "loss"}, []string{"reward ", "length"}},
	} {
		s := Summary(c.p)
		for _, w := range c.want {
			if !strings.Contains(s, w) {
				t.Errorf("%s: summary lacks %q:\n%s", c.name, w, s)
			}
		}
		for _, w := range c.notWant {
			if strings.Contains(s, w) {
				t.Errorf("%s: summary shows %q:\n%s", c.name, w, s)
			}
		}
		for _, line := range strings.Split(s, "\n") {
			if strings.HasSuffix(strings.TrimSpace(line), ":") && strings.Contains(line, "step") {
				t.Errorf("%s: a line with no metric: %q", c.name, line)
			}
		}
	}
}

// Ticks land on round values: 0 is 0, not the 5.6e-17 a running sum of
// steps gives.
func TestTicksHitZero(t *testing.T) {
	for _, c := range [][2]float64{{-0.3, 0.4}, {-0.7, 0.2}, {-1.1e-3, 4e-3}, {-0.06, 0.03}, {-3, 7}} {
		ticks := niceTicks(c[0], c[1], 5)
		zero := false
		for _, v := range ticks {
			if v == 0 {
				zero = true
			}
			if s := fmtTick(v); v != 0 && math.Abs(v) < 1e-12 {
				t.Errorf("range %v: tick %s (%g) where 0 belongs", c, s, v)
			}
		}
		if !zero {
			t.Errorf("range %v: ticks %v miss 0", c, ticks)
		}
	}
}

// A metrics line that is JSON but not an object says what it is.
func TestMetricsLineNotAnObject(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	os.WriteFile(path, []byte(`{"split":"train","step":1,"loss":1}`+"\n[1,2]\n"+`{"split":"train","step":2,"loss":1}`+"\n"), 0o644)
	_, err := LoadMetrics(path)
	if err == nil || !strings.Contains(err.Error(), "metrics.jsonl:2: a JSON array, not a metrics row") || strings.Contains(err.Error(), "Go value") {
		t.Errorf("array line: %v", err)
	}
}
