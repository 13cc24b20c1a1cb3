package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/align-dev/align/align/eval"
	"github.com/align-dev/align/align/jsonl"
)

// Eval is one evaluation shown in the report: its eval.json and, when the
// file is beside it, its responses.
type Eval struct {
	Path      string
	Result    eval.Result
	Responses []eval.Response
}

// LoadEval reads an eval.json and the responses.jsonl in its directory
// (absent responses are no error: the page then has no sample table).
func LoadEval(path string) (Eval, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Eval{}, err
	}
	var e Eval
	e.Path = path
	if err := json.Unmarshal(b, &e.Result); err != nil {
		return Eval{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(e.Result.Variants) == 0 {
		return Eval{}, fmt.Errorf("%s: no variants (is this an align eval result?)", path)
	}
	rp := eval.ResponsesPath(filepath.Dir(path))
	f, err := jsonl.Open(rp)
	if errors.Is(err, os.ErrNotExist) {
		return e, nil
	}
	if err != nil {
		return Eval{}, err
	}
	defer f.Close()
	r := jsonl.NewReader(f, rp)
	for {
		var x eval.Response
		_, err := r.Next(&x)
		if err == io.EOF {
			break
		}
		var le *jsonl.LineError
		if errors.As(err, &le) {
			continue // a torn line of a running evaluation
		}
		if err != nil {
			return Eval{}, err
		}
		e.Responses = append(e.Responses, x)
	}
	return e, nil
}

// Page is what Render draws.
type Page struct {
	RunDir  string
	Metrics Metrics
	Config  map[string]any // RUN_DIR/config.json when present
	Evals   []Eval
	Samples int // sample responses shown per evaluation (0: 12)
}

// LoadRun reads RUN_DIR/metrics.jsonl (required) and config.json (optional).
func LoadRun(dir string) (Page, error) {
	m, err := LoadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		return Page{}, err
	}
	p := Page{RunDir: dir, Metrics: m}
	if b, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil {
		json.Unmarshal(b, &p.Config)
	}
	return p, nil
}

const css = `body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1340px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;border:1px solid #e3e3e3;border-radius:4px}
svg .title{font-weight:600;font-size:13px}svg .tick,svg .legend text,svg .label,svg .value{font-size:11px;fill:#444}
svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#bbb}svg .whisker{stroke:#222;stroke-width:1.2}
svg .empty{fill:#999}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.resp{max-width:460px;white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.issue{color:#b00}.ok{color:#070}.muted{color:#777}pre{background:#f6f6f6;padding:8px;overflow:auto}`

// Render writes the page.
func Render(w io.Writer, p Page) error {
	var b strings.Builder
	title := "align report: " + p.RunDir
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title><style>%s</style></head><body>\n", html.EscapeString(title), css)
	fmt.Fprintf(&b, "<h1>%s</h1>\n", html.EscapeString(title))
	if len(p.Metrics.Rows) > 0 {
		fmt.Fprintf(&b, "<p>%s</p>\n", html.EscapeString(runLine(p)))
	}
	if p.Metrics.Dropped != "" {
		fmt.Fprintf(&b, "<p class=\"muted\">left out a torn last line: %s</p>\n", html.EscapeString(p.Metrics.Dropped))
	}
	for _, e := range p.Evals {
		writeEval(&b, e, p.Samples)
	}
	b.WriteString("<h2>Training</h2>\n")
	charts := p.Metrics.Charts()
	if len(charts) == 0 {
		b.WriteString("<p class=\"muted\">metrics.jsonl has no rows.</p>\n")
	}
	b.WriteString("<div class=\"charts\">\n")
	for _, c := range charts {
		b.WriteString(LineChart(c))
		b.WriteString("\n")
	}
	b.WriteString("</div>\n")
	if len(p.Config) > 0 {
		cb, _ := json.MarshalIndent(p.Config, "", "  ")
		fmt.Fprintf(&b, "<h2>Configuration</h2>\n<pre>%s</pre>\n", html.EscapeString(string(cb)))
	}
	b.WriteString("<p class=\"muted\">Written by align report; self-contained (no scripts, fonts or network).</p>\n</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// summaryKeys are the metrics a run's summary lines give, by its method:
// reward, KL and length for PPO, GRPO and online DPO; loss and the response's log-prob
// for SFT; loss, margin and accuracy for the preference methods (DPO
// family, KTO, ORPO/SimPO) and the reward model. The optimiser's lines
// follow on the training split.
func summaryKeys(p Page) []string {
	switch p.method() {
	case "ppo", "grpo", "online-dpo":
		return []string{"reward", "kl", "completions/mean_length"}
	case "sft":
		return []string{"loss", "logps/chosen"}
	}
	return []string{"loss", "rewards/margins", "rewards/accuracies"}
}

// method is the run's --method (config.json), or what its metrics show when
// the config cannot be read: RL rows log a reward and no loss; SFT rows a
// loss and no margin.
func (p Page) method() string {
	if m, ok := p.Config["Method"].(string); ok && m != "" {
		return strings.ToLower(m)
	}
	has := func(k string) bool {
		for _, r := range p.Metrics.Rows {
			if _, ok := r.Values[k]; ok {
				return true
			}
		}
		return false
	}
	switch {
	case has("reward") && !has("rewards/margins"):
		return "ppo"
	case has("loss") && !has("rewards/margins"):
		return "sft"
	}
	return "dpo"
}

// fmtMetric formats one summary value: shares as percentages, the rest
// as numbers.
func fmtMetric(k string, v float64) string {
	switch k {
	case "rewards/accuracies":
		return pct(v)
	case "completions/mean_length":
		return fmt.Sprintf("%.1f tokens", v)
	}
	return fmtTick(v)
}

// metricName is how the summary names a metric.
func metricName(k string) string {
	switch k {
	case "rewards/margins":
		return "margin"
	case "rewards/accuracies":
		return "accuracy"
	case "logps/chosen":
		return "logps"
	case "completions/mean_length":
		return "length"
	}
	return k
}

func runLine(p Page) string {
	var train, ev int
	last := map[string]Row{}
	for _, r := range p.Metrics.Rows {
		switch r.Split {
		case "train":
			train++
		case "eval":
			ev++
		}
		last[r.Split] = r
	}
	s := fmt.Sprintf("%d training steps logged, %d held-out evaluations", train, ev)
	if r, ok := last["eval"]; ok {
		var parts []string
		for _, k := range summaryKeys(p) {
			if v, ok := r.Values[k]; ok {
				parts = append(parts, metricName(k)+" "+fmtMetric(k, v))
			}
		}
		if len(parts) > 0 {
			s += fmt.Sprintf("; last held-out (step %s): %s", num(r.Step), strings.Join(parts, ", "))
		}
	}
	return s
}

func pct(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }

func writeEval(b *strings.Builder, e Eval, nsamples int) {
	r := e.Result
	fmt.Fprintf(b, "<h2>Before / after: %s</h2>\n", html.EscapeString(e.Path))
	fmt.Fprintf(b, "<p>%s; %d prompts × %d samples; judge %s; seed %d.</p>\n", html.EscapeString(r.Model), r.NPrompts, r.Samples, html.EscapeString(r.Judge), r.Seed)
	var names []string
	for _, v := range r.Variants {
		names = append(names, v.Name)
	}
	var groups []BarGroup
	for _, c := range r.Categories {
		g := BarGroup{Label: c.Label}
		for _, v := range r.Variants {
			cr := v.Categories[c.Name]
			g.Bars = append(g.Bars, Bar{Variant: v.Name, Rate: cr.Rate.Rate, Lo: cr.CILow, Hi: cr.CIHigh, K: cr.K, N: cr.N})
		}
		groups = append(groups, g)
	}
	g := BarGroup{Label: "combined"}
	for _, v := range r.Variants {
		g.Bars = append(g.Bars, Bar{Variant: v.Name, Rate: v.Combined.Rate.Rate, Lo: v.Combined.CILow, Hi: v.Combined.CIHigh, K: v.Combined.K, N: v.Combined.N})
	}
	groups = append(groups, g)
	b.WriteString("<div class=\"charts\">")
	b.WriteString(BarChart("eval-issues", "Issue rates with Wilson 95% intervals", groups, names))
	b.WriteString("</div>\n")

	writeTable(b, r.Categories, r.Variants)
	for _, o := range r.OtherJudges {
		fmt.Fprintf(b, "<h3>Judge %s (same responses)</h3>\n", html.EscapeString(o.Judge))
		writeTable(b, r.Categories, o.Variants)
	}
	writeSamples(b, e, nsamples)
}

// writeTable writes the before/after table of one judge.
func writeTable(b *strings.Builder, cats []eval.Category, vs []eval.VariantResult) {
	r := struct {
		Categories []eval.Category
		Variants   []eval.VariantResult
	}{cats, vs}
	b.WriteString("<table><tr><th>metric</th>")
	for i, v := range r.Variants {
		h := v.Name
		if i > 0 {
			h += " (change vs " + r.Variants[0].Name + ", 95% CI)"
		}
		fmt.Fprintf(b, "<th>%s</th>", html.EscapeString(h))
	}
	b.WriteString("</tr>\n")
	cell := func(cr eval.CategoryResult) string {
		s := fmt.Sprintf("%s [%s, %s] (%d/%d)", pct(cr.Rate.Rate), pct(cr.CILow), pct(cr.CIHigh), cr.K, cr.N)
		if cr.Change != nil {
			cls := "muted"
			if cr.Change.CIHigh < 0 {
				cls = "ok"
			} else if cr.Change.CILow > 0 {
				cls = "issue"
			}
			s += fmt.Sprintf(` <span class="%s">%+.1f pp [%+.1f, %+.1f]</span>`, cls, 100*cr.Change.Delta, 100*cr.Change.CILow, 100*cr.Change.CIHigh)
		}
		return s
	}
	for _, c := range r.Categories {
		fmt.Fprintf(b, "<tr><td>%s</td>", html.EscapeString(c.Label))
		for _, v := range r.Variants {
			fmt.Fprintf(b, "<td class=\"num\">%s</td>", cell(v.Categories[c.Name]))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("<tr><td><b>combined issue rate</b></td>")
	for _, v := range r.Variants {
		fmt.Fprintf(b, "<td class=\"num\"><b>%s</b></td>", cell(v.Combined))
	}
	b.WriteString("</tr>\n<tr><td>win rate vs base (both orders)</td>")
	for _, v := range r.Variants {
		if v.Wins == nil {
			b.WriteString("<td class=\"num muted\">–</td>")
			continue
		}
		w := v.Wins
		fmt.Fprintf(b, "<td class=\"num\">%s [%s, %s]: %d won, %d lost, %d tied, %d inconsistent</td>", pct(w.WinRate), pct(w.CILow), pct(w.CIHigh), w.Wins, w.Losses, w.Ties, w.Inconsistent)
	}
	b.WriteString("</tr>\n<tr><td>mean token log-prob under base (perplexity)</td>")
	for _, v := range r.Variants {
		s := fmt.Sprintf("%.3f (%.2f)", v.MeanLogpBase, v.PerplexityB)
		if v.FluencyChange != nil {
			s += fmt.Sprintf(" %+.3f [%+.3f, %+.3f]", v.FluencyChange.Delta, v.FluencyChange.CILow, v.FluencyChange.CIHigh)
		}
		fmt.Fprintf(b, "<td class=\"num\">%s</td>", s)
	}
	b.WriteString("</tr>\n<tr><td>KL to base (nats/token)</td>")
	for _, v := range r.Variants {
		fmt.Fprintf(b, "<td class=\"num\">%.4f</td>", v.KLToBase)
	}
	b.WriteString("</tr>\n<tr><td>mean generated tokens</td>")
	for _, v := range r.Variants {
		fmt.Fprintf(b, "<td class=\"num\">%.1f</td>", v.MeanGenerated)
	}
	b.WriteString("</tr>\n")
	for _, v := range r.Variants {
		if v.Preference == nil {
			continue
		}
		fmt.Fprintf(b, "<tr><td>pair accuracy, margin: %s</td><td colspan=\"%d\">overall %s (margin %+.3f, n %d)", html.EscapeString(v.Name), len(r.Variants),
			pct(v.Preference.Overall.Accuracy), v.Preference.Overall.MeanMargin, v.Preference.Overall.N)
		var objs []string
		for o := range v.Preference.PerObjective {
			objs = append(objs, o)
		}
		sort.Strings(objs)
		for _, o := range objs {
			m := v.Preference.PerObjective[o]
			fmt.Fprintf(b, "; %s %s (%+.3f, n %d)", html.EscapeString(o), pct(m.Accuracy), m.MeanMargin, m.N)
		}
		b.WriteString("</td></tr>\n")
	}
	b.WriteString("</table>\n")
}

// writeSamples shows sample 0 of the first prompts for every variant.
func writeSamples(b *strings.Builder, e Eval, n int) {
	if len(e.Responses) == 0 {
		return
	}
	if n <= 0 {
		n = 12
	}
	type key struct {
		p int
		v string
	}
	by := map[key]eval.Response{}
	prompts := map[int]string{}
	for _, r := range e.Responses {
		if r.Sample != 0 {
			continue
		}
		by[key{r.PromptIndex, r.Variant}] = r
		prompts[r.PromptIndex] = r.Prompt
	}
	var idx []int
	for p := range prompts {
		idx = append(idx, p)
	}
	sort.Ints(idx)
	if len(idx) > n {
		idx = idx[:n]
	}
	b.WriteString("<h3>Sample responses (sample 0 of each prompt)</h3>\n<table><tr><th>prompt</th>")
	for _, v := range e.Result.Variants {
		fmt.Fprintf(b, "<th>%s</th>", html.EscapeString(v.Name))
	}
	b.WriteString("</tr>\n")
	for _, p := range idx {
		fmt.Fprintf(b, "<tr><td>%s</td>", html.EscapeString(prompts[p]))
		for _, v := range e.Result.Variants {
			r, ok := by[key{p, v.Name}]
			if !ok {
				b.WriteString("<td class=\"muted\">–</td>")
				continue
			}
			iss := `<span class="ok">no issues</span>`
			if len(r.Issues) > 0 {
				iss = `<span class="issue">` + html.EscapeString(strings.Join(r.Issues, ", ")) + `</span>`
			}
			fmt.Fprintf(b, "<td class=\"resp\">%s\n<small>%s; seed %d</small></td>", html.EscapeString(strings.ToValidUTF8(r.Text, "\uFFFD")), iss, r.Seed)
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>\n")
}

// Summary is the terminal version: the run's last rows and each
// evaluation's table.
func Summary(p Page) string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s: %s\n", p.RunDir, runLine(p))
	first, last := map[string]Row{}, map[string]Row{}
	for _, r := range p.Metrics.Rows {
		if _, ok := first[r.Split]; !ok {
			first[r.Split] = r
		}
		last[r.Split] = r
	}
	for _, split := range []string{"train", "eval"} {
		f, ok := first[split]
		if !ok {
			continue
		}
		l := last[split]
		keys := summaryKeys(p)
		if split == "train" {
			keys = append(keys, "grad_norm", "learning_rate")
		}
		var parts []string
		for _, k := range keys {
			fv, ok1 := f.Values[k]
			lv, ok2 := l.Values[k]
			if ok1 && ok2 {
				parts = append(parts, fmt.Sprintf("%s %s → %s", metricName(k), fmtMetric(k, fv), fmtMetric(k, lv)))
			}
		}
		if len(parts) == 0 {
			continue // nothing this method logs on this split
		}
		fmt.Fprintf(&b, "  %-5s step %s → %s:  %s\n", split, num(f.Step), num(l.Step), strings.Join(parts, "  "))
	}
	if p.Metrics.Dropped != "" {
		fmt.Fprintf(&b, "  note: left out a torn last line: %s\n", p.Metrics.Dropped)
	}
	for _, e := range p.Evals {
		fmt.Fprintf(&b, "\n%s:\n", e.Path)
		b.WriteString(eval.FormatTable(e.Result.Categories, e.Result.Variants))
		for _, v := range e.Result.Variants[1:] {
			// a drop of over one nat per token is e-fold less likely text
			if v.FluencyChange != nil && v.FluencyChange.CIHigh < -1 {
				fmt.Fprintf(&b, "note: %s's text is much less likely under the base (mean log-prob %+.3f per token [%+.3f, %+.3f], KL %.3f): read its responses for degeneration\n",
					v.Name, v.FluencyChange.Delta, v.FluencyChange.CILow, v.FluencyChange.CIHigh, v.KLToBase)
			}
		}
	}
	return b.String()
}
