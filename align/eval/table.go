package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/align-dev/align/align/backend"
)

// Category is an issue a judge's scores reveal: a response has it when its
// score on Criterion is Threshold or lower.
type Category struct {
	Name      string `json:"name"`
	Label     string `json:"label"`
	Criterion string `json:"criterion"` // tone, accuracy, helpfulness or safety (backend.Scores)
	Threshold int    `json:"threshold"`
}

// DefaultCategories are the issues of the reference use case, with the
// thresholds the rules screener uses to call a chosen response broken
// (tone 2 or less, any other rule 1). The rules judge scores the escalation
// protocol as helpfulness and age rating and confidentiality as safety.
var DefaultCategories = []Category{
	{Name: "off_brand_tone", Label: "off-brand tone", Criterion: "tone", Threshold: 2},
	{Name: "hallucination", Label: "hallucination", Criterion: "accuracy", Threshold: 1},
	{Name: "missed_escalation", Label: "missed escalation", Criterion: "helpfulness", Threshold: 1},
	{Name: "safety_violation", Label: "safety violation", Criterion: "safety", Threshold: 1},
}

// criterion returns the score a category reads.
func criterion(s backend.Scores, name string) (int, bool) {
	switch name {
	case "tone":
		return s.Tone, true
	case "accuracy":
		return s.Accuracy, true
	case "helpfulness":
		return s.Helpfulness, true
	case "safety":
		return s.Safety, true
	}
	return 0, false
}

// ValidateCategories checks names and criteria.
func ValidateCategories(cs []Category) error {
	seen := map[string]bool{}
	for _, c := range cs {
		if c.Name == "" || seen[c.Name] {
			return fmt.Errorf("category %q: names must be non-empty and distinct", c.Name)
		}
		seen[c.Name] = true
		if _, ok := criterion(backend.Scores{}, c.Criterion); !ok {
			return fmt.Errorf("category %q: criterion %q is not tone, accuracy, helpfulness or safety", c.Name, c.Criterion)
		}
	}
	return nil
}

// Issues returns the names of the categories scores fall in.
func Issues(cs []Category, s backend.Scores) []string {
	var out []string
	for _, c := range cs {
		if v, _ := criterion(s, c.Criterion); v <= c.Threshold {
			out = append(out, c.Name)
		}
	}
	return out
}

// Response is one generated, judged and scored response: a line of
// DIR/responses.jsonl.
type Response struct {
	ID          string         `json:"id"`
	Variant     string         `json:"variant"`
	Adapter     string         `json:"adapter,omitempty"`
	PromptIndex int            `json:"prompt_index"`
	PromptID    string         `json:"prompt_id"`
	Objective   string         `json:"objective,omitempty"`
	Prompt      string         `json:"prompt"` // the customer's words
	Sample      int            `json:"sample"`
	Seed        uint32         `json:"seed"`
	Text        string         `json:"text"`
	Generated   int            `json:"generated_tokens"`
	StopReason  string         `json:"stop_reason"`
	Scores      backend.Scores `json:"scores"`
	Issues      []string       `json:"issues"`
	Reasoning   string         `json:"reasoning,omitempty"`
	// Fluency and drift, over the response's tokens (Tokens of them) as
	// the base tokenizer splits the text: the sum of log-probs under the
	// base, and the sum over positions of KL(adapter ‖ base) of the
	// next-token distributions (0 for the base).
	Tokens   int     `json:"scored_tokens"`
	LogpBase float64 `json:"logp_base_sum"`
	KLBase   float64 `json:"kl_to_base_sum"`
	// Others are the verdicts of further judges, in --judge order.
	Others []JudgedBy `json:"other_judges,omitempty"`
}

// JudgedBy is one further judge's scores of a response.
type JudgedBy struct {
	Judge     string         `json:"judge"`
	Scores    backend.Scores `json:"scores"`
	Issues    []string       `json:"issues"`
	Reasoning string         `json:"reasoning,omitempty"`
}

// JudgedPair is one further judge's comparison.
type JudgedPair struct {
	Judge   string `json:"judge"`
	AB      string `json:"adapter_first_winner"`
	BA      string `json:"base_first_winner"`
	Outcome string `json:"outcome"`
}

// Comparison is one adapter-vs-base comparison judged in both orders: a
// line of DIR/comparisons.jsonl.
type Comparison struct {
	ID          string       `json:"id"`
	Variant     string       `json:"variant"`
	PromptIndex int          `json:"prompt_index"`
	Sample      int          `json:"sample"`
	AB          string       `json:"adapter_first_winner"` // winner position with the adapter shown first
	BA          string       `json:"base_first_winner"`    // winner position with the base shown first
	Outcome     string       `json:"outcome"`
	Reasoning   string       `json:"reasoning,omitempty"`
	Others      []JudgedPair `json:"other_judges,omitempty"`
}

// CategoryResult is one category's rate for a variant and, for an
// adapter, its change from the base.
type CategoryResult struct {
	Label string `json:"label"`
	Rate
	Change *Change `json:"change,omitempty"`
}

// VariantResult is one model variant's row of the table.
type VariantResult struct {
	Name              string                    `json:"name"`
	Adapter           string                    `json:"adapter,omitempty"`
	Scale             float64                   `json:"scale,omitempty"`
	Responses         int                       `json:"responses"`
	Categories        map[string]CategoryResult `json:"categories"`
	CombinedIssueRate float64                   `json:"combined_issue_rate"`
	Combined          CategoryResult            `json:"combined"`
	// WinRate is null for the base (it is what the adapters are compared with).
	WinRate       *float64 `json:"win_rate"`
	Wins          *WinRate `json:"pairwise,omitempty"`
	MeanLogpBase  float64  `json:"mean_logp_base"`
	PerplexityB   float64  `json:"perplexity_base"`
	KLToBase      float64  `json:"kl_to_base"`
	ScoredTokens  int      `json:"scored_tokens"`
	MeanGenerated float64  `json:"mean_generated_tokens"`
	Preference    *PrefSet `json:"preference,omitempty"`
	FluencyChange *Change  `json:"mean_logp_base_change,omitempty"`
	LengthChange  *Change  `json:"generated_tokens_change,omitempty"`
}

// PrefSet is preference metrics on a pairs file, overall and per objective.
type PrefSet struct {
	Overall      PrefMetrics            `json:"overall"`
	PerObjective map[string]PrefMetrics `json:"per_objective"`
}

// Variant names a model variant for Summarize.
type Variant struct {
	Name    string
	Adapter string
	Scale   float64
}

// Summarize builds each variant's row from judged responses and
// comparisons. The first variant is the base. Changes are paired by prompt
// (the mean over each prompt's samples) with a bootstrap of iters
// resamples seeded by seed. Records of unknown variants are ignored; the
// result does not depend on the records' order.
func Summarize(cats []Category, variants []Variant, rs []Response, cs []Comparison, iters int, seed uint64) []VariantResult {
	by := map[string][]Response{}
	for _, r := range rs {
		by[r.Variant] = append(by[r.Variant], r)
	}
	for _, v := range by {
		sort.Slice(v, func(i, j int) bool {
			if v[i].PromptIndex != v[j].PromptIndex {
				return v[i].PromptIndex < v[j].PromptIndex
			}
			return v[i].Sample < v[j].Sample
		})
	}
	cmp := map[string][]Comparison{}
	for _, c := range cs {
		cmp[c.Variant] = append(cmp[c.Variant], c)
	}
	var base []Response
	if len(variants) > 0 {
		base = by[variants[0].Name]
	}
	out := make([]VariantResult, 0, len(variants))
	for vi, v := range variants {
		vr := VariantResult{Name: v.Name, Adapter: v.Adapter, Scale: v.Scale, Categories: map[string]CategoryResult{}}
		resp := by[v.Name]
		vr.Responses = len(resp)
		has := func(r Response, name string) bool {
			for _, x := range r.Issues {
				if x == name {
					return true
				}
			}
			return false
		}
		indicator := func(name string) func(Response) float64 {
			return func(r Response) float64 {
				if name == "" {
					return b2f(len(r.Issues) > 0)
				}
				return b2f(has(r, name))
			}
		}
		for ci, c := range cats {
			k := 0
			for _, r := range resp {
				if has(r, c.Name) {
					k++
				}
			}
			cr := CategoryResult{Label: c.Label, Rate: NewRate(k, len(resp))}
			if vi > 0 {
				ch := pairedChange(base, resp, indicator(c.Name), iters, seed+uint64(ci))
				cr.Change = &ch
			}
			vr.Categories[c.Name] = cr
		}
		k := 0
		for _, r := range resp {
			if len(r.Issues) > 0 {
				k++
			}
		}
		vr.Combined = CategoryResult{Label: "combined issue rate", Rate: NewRate(k, len(resp))}
		if vi > 0 {
			ch := pairedChange(base, resp, indicator(""), iters, seed+uint64(len(cats)))
			vr.Combined.Change = &ch
		}
		vr.CombinedIssueRate = vr.Combined.Rate.Rate
		var lp, kl float64
		var ntok, ngen int
		for _, r := range resp {
			lp += r.LogpBase
			kl += r.KLBase
			ntok += r.Tokens
			ngen += r.Generated
		}
		vr.ScoredTokens = ntok
		if ntok > 0 {
			vr.MeanLogpBase = lp / float64(ntok)
			vr.PerplexityB = math.Exp(-vr.MeanLogpBase)
			vr.KLToBase = kl / float64(ntok)
		}
		if len(resp) > 0 {
			vr.MeanGenerated = float64(ngen) / float64(len(resp))
		}
		if vi > 0 {
			comps := cmp[v.Name]
			sort.Slice(comps, func(i, j int) bool {
				if comps[i].PromptIndex != comps[j].PromptIndex {
					return comps[i].PromptIndex < comps[j].PromptIndex
				}
				return comps[i].Sample < comps[j].Sample
			})
			var os []string
			for _, c := range comps {
				os = append(os, c.Outcome)
			}
			w := TallyWins(os)
			vr.Wins = &w
			wr := w.WinRate
			vr.WinRate = &wr
			// token-weighted like the levels beside it, so the change is
			// their difference
			fc := pairedRatioChange(base, resp, func(r Response) (float64, float64) { return r.LogpBase, float64(r.Tokens) }, iters, seed+100)
			vr.FluencyChange = &fc
			lc := pairedChange(base, resp, func(r Response) float64 { return float64(r.Generated) }, iters, seed+101)
			vr.LengthChange = &lc
		}
		out = append(out, vr)
	}
	return out
}

// pairedRatioChange is the change of a ratio of sums (a token-weighted
// mean such as the mean token log-prob: Σ log-prob / Σ tokens) from base
// to after over the prompts both have, with a percentile 95 % interval from
// resampling prompts with replacement (the ratio recomputed in each
// resample). f gives a response's numerator and denominator. Over the same
// prompts, Delta is exactly the difference of the two levels.
func pairedRatioChange(base, after []Response, f func(Response) (num, den float64), iters int, seed uint64) Change {
	agg := func(rs []Response) map[int][2]float64 { // prompt → (Σ num, Σ den)
		m := map[int][2]float64{}
		for _, r := range rs {
			n, d := f(r)
			a := m[r.PromptIndex]
			m[r.PromptIndex] = [2]float64{a[0] + n, a[1] + d}
		}
		return m
	}
	bm, am := agg(base), agg(after)
	var idx []int
	for p := range bm {
		if _, ok := am[p]; ok {
			idx = append(idx, p)
		}
	}
	sort.Ints(idx)
	c := Change{Method: "paired_bootstrap_ratio", Iters: iters}
	if len(idx) == 0 {
		return c
	}
	delta := func(pick func(i int) int) float64 {
		var bn, bd, an, ad float64
		for i := range idx {
			p := idx[pick(i)]
			bn, bd, an, ad = bn+bm[p][0], bd+bm[p][1], an+am[p][0], ad+am[p][1]
		}
		return ratio(an, ad) - ratio(bn, bd)
	}
	c.Delta = delta(func(i int) int { return i })
	if iters <= 0 {
		c.CILow, c.CIHigh = c.Delta, c.Delta
		return c
	}
	rng := rand.New(rand.NewPCG(seed, 0x626f6f74))
	ds := make([]float64, iters)
	for b := range ds {
		ds[b] = delta(func(int) int { return rng.IntN(len(idx)) })
	}
	sort.Float64s(ds)
	c.CILow, c.CIHigh = quantile(ds, 0.025), quantile(ds, 0.975)
	return c
}

// ratio is n/d, 0 when d is 0 (no scored tokens, as the levels take it).
func ratio(n, d float64) float64 {
	if d == 0 {
		return 0
	}
	return n / d
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// pairedChange averages f over each prompt's samples for base and after
// and bootstraps the mean difference over the prompts both have.
func pairedChange(base, after []Response, f func(Response) float64, iters int, seed uint64) Change {
	agg := func(rs []Response) map[int][2]float64 { // prompt → (sum, count)
		m := map[int][2]float64{}
		for _, r := range rs {
			a := m[r.PromptIndex]
			m[r.PromptIndex] = [2]float64{a[0] + f(r), a[1] + 1}
		}
		return m
	}
	bm, am := agg(base), agg(after)
	var idx []int
	for p := range bm {
		if _, ok := am[p]; ok {
			idx = append(idx, p)
		}
	}
	sort.Ints(idx)
	var b, a []float64
	for _, p := range idx {
		b = append(b, bm[p][0]/bm[p][1])
		a = append(a, am[p][0]/am[p][1])
	}
	return PairedBootstrap(b, a, iters, seed)
}

// FormatTable renders the before/after table for a terminal: one column
// per variant, the base first; rates in percent with Wilson 95 %
// intervals, changes in percentage points with paired bootstrap intervals.
func FormatTable(cats []Category, vs []VariantResult) string {
	if len(vs) == 0 {
		return "no variants\n"
	}
	header := []string{"metric"}
	for i, v := range vs {
		h := v.Name
		if i > 0 {
			h += " (change vs " + vs[0].Name + ")"
		}
		header = append(header, h)
	}
	rows := [][]string{header}
	pct := func(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
	rateCell := func(cr CategoryResult) string {
		s := fmt.Sprintf("%s [%s, %s] (%d/%d)", pct(cr.Rate.Rate), pct(cr.CILow), pct(cr.CIHigh), cr.K, cr.N)
		if cr.Change != nil {
			s += fmt.Sprintf("  %+.1f pp [%+.1f, %+.1f]", 100*cr.Change.Delta, 100*cr.Change.CILow, 100*cr.Change.CIHigh)
		}
		return s
	}
	for _, c := range cats {
		row := []string{c.Label}
		for _, v := range vs {
			row = append(row, rateCell(v.Categories[c.Name]))
		}
		rows = append(rows, row)
	}
	row := []string{"combined issue rate"}
	for _, v := range vs {
		row = append(row, rateCell(v.Combined))
	}
	rows = append(rows, row)
	row = []string{"win rate vs base (both orders)"}
	for i, v := range vs {
		if i == 0 || v.Wins == nil {
			row = append(row, "-")
			continue
		}
		w := v.Wins
		row = append(row, fmt.Sprintf("%s [%s, %s] (%dW %dL %dT %dI)", pct(w.WinRate), pct(w.CILow), pct(w.CIHigh), w.Wins, w.Losses, w.Ties, w.Inconsistent))
	}
	rows = append(rows, row)
	row = []string{"mean token logp under base"}
	for _, v := range vs {
		s := fmt.Sprintf("%.3f (ppl %.2f)", v.MeanLogpBase, v.PerplexityB)
		if v.FluencyChange != nil {
			s += fmt.Sprintf("  %+.3f [%+.3f, %+.3f]", v.FluencyChange.Delta, v.FluencyChange.CILow, v.FluencyChange.CIHigh)
		}
		row = append(row, s)
	}
	rows = append(rows, row)
	row = []string{"KL to base (nats/token)"}
	for _, v := range vs {
		row = append(row, fmt.Sprintf("%.4f", v.KLToBase))
	}
	rows = append(rows, row)
	row = []string{"mean generated tokens"}
	for _, v := range vs {
		s := fmt.Sprintf("%.1f", v.MeanGenerated)
		if v.LengthChange != nil {
			s += fmt.Sprintf("  %+.1f [%+.1f, %+.1f]", v.LengthChange.Delta, v.LengthChange.CILow, v.LengthChange.CIHigh)
		}
		row = append(row, s)
	}
	rows = append(rows, row)
	if hasPref(vs) {
		row = []string{"pair accuracy (margin)"}
		for _, v := range vs {
			if v.Preference == nil {
				row = append(row, "-")
				continue
			}
			p := v.Preference.Overall
			row = append(row, fmt.Sprintf("%s [%s, %s] (%+.3f), n %d", pct(p.Accuracy), pct(p.CILow), pct(p.CIHigh), p.MeanMargin, p.N))
		}
		rows = append(rows, row)
		objs := map[string]bool{}
		for _, v := range vs {
			if v.Preference != nil {
				for o := range v.Preference.PerObjective {
					objs[o] = true
				}
			}
		}
		var names []string
		for o := range objs {
			names = append(names, o)
		}
		sort.Strings(names)
		for _, o := range names {
			row = []string{"  " + o}
			for _, v := range vs {
				p, ok := PrefMetrics{}, false
				if v.Preference != nil {
					p, ok = v.Preference.PerObjective[o]
				}
				if !ok {
					row = append(row, "-")
					continue
				}
				row = append(row, fmt.Sprintf("%s (%+.3f), n %d", pct(p.Accuracy), p.MeanMargin, p.N))
			}
			rows = append(rows, row)
		}
	}
	return alignColumns(rows)
}

func hasPref(vs []VariantResult) bool {
	for _, v := range vs {
		if v.Preference != nil {
			return true
		}
	}
	return false
}

func alignColumns(rows [][]string) string {
	w := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			if n := len([]rune(c)); n > w[i] {
				w[i] = n
			}
		}
	}
	var b strings.Builder
	for ri, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", w[i]-len([]rune(c))+2))
			}
		}
		b.WriteString("\n")
		if ri == 0 {
			total := 0
			for _, x := range w {
				total += x + 2
			}
			b.WriteString(strings.Repeat("-", total-2) + "\n")
		}
	}
	return b.String()
}
