package annotate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
)

// StatsConfig configures Stats.
type StatsConfig struct {
	Bootstrap int    // resamples for the intervals; default 1000, <0: none
	Seed      uint64 // resampling seed
	Judged    *Judged
	// ActiveGap is the longest pause between two labels that still counts
	// as working time for the speed figures; default 5 minutes.
	ActiveGap time.Duration
}

// AnnotatorStats is one annotator's work.
type AnnotatorStats struct {
	Name          string  `json:"name"`
	Labels        int     `json:"labels"` // standing labels, skips included
	First         int     `json:"first"`
	Second        int     `json:"second"`
	Ties          int     `json:"ties"`
	Skips         int     `json:"skips"`
	Undone        int     `json:"undone"`
	MedianSeconds Num     `json:"median_seconds"`  // on an item, from being handed out to the label
	ActiveMinutes float64 `json:"active_minutes"`  // time between labels, pauses over ActiveGap left out
	PerHour       Num     `json:"labels_per_hour"` // labels over active time
}

// PairAgreement is Cohen's κ of two annotators over the items both labelled
// (skips left out).
type PairAgreement struct {
	A         string   `json:"a"`
	B         string   `json:"b"`
	Items     int      `json:"items"`
	Agreement Num      `json:"agreement"` // share of items with the same choice
	Kappa     Estimate `json:"kappa"`
}

// AlphaStats is Krippendorff's α (nominal) over all annotators.
type AlphaStats struct {
	Units  int      `json:"units"`  // items with two or more labels (skips left out)
	Values int      `json:"values"` // labels in those items
	Alpha  Estimate `json:"alpha"`
}

// JudgeStats is the judge's agreement with the human majority.
type JudgeStats struct {
	Judges []string `json:"judges"` // judge names found in the judged files
	// Compared: items with a human majority and a judge verdict. Agree:
	// those where the judge's verdict (first, second or tie) is the
	// majority's.
	Compared int      `json:"compared"`
	Agree    int      `json:"agree"`
	Rate     Estimate `json:"rate"` // Agree / Compared, Wilson 95% interval
	// Decisive: items where both the majority and the judge prefer a
	// response.
	Decisive      int      `json:"decisive"`
	DecisiveAgree int      `json:"decisive_agree"`
	DecisiveRate  Estimate `json:"decisive_rate"`
	// Table[h][j]: rows human majority first, second, tie, no majority;
	// columns judge first, second, tie.
	Table        [4][3]int `json:"table"`
	NotJudged    int       `json:"not_judged"`   // labelled items the judged files have no verdict for
	Inconsistent int       `json:"inconsistent"` // verdicts whose two orders disagreed (counted as tie)
}

// Report is what Stats computes.
type Report struct {
	Lines      int              `json:"lines"`    // records in the labels file
	Standing   int              `json:"standing"` // labels that stand (undos applied), skips included
	Undone     int              `json:"undone"`
	Items      int              `json:"items"` // items with a standing label that is not a skip
	Annotators []AnnotatorStats `json:"annotators"`
	Pairs      []PairAgreement  `json:"pairs"`
	Alpha      AlphaStats       `json:"alpha"`
	Majority   [4]int           `json:"majority"` // items whose majority is first, second, tie, none
	Bootstrap  int              `json:"bootstrap"`
	Judge      *JudgeStats      `json:"judge,omitempty"`
}

// itemVotes is the standing, non-skip labels of one item.
type itemVotes struct {
	first *Label              // a label of the item, for its text and ids
	by    map[string]category // annotator -> category
	count [nCat]int
}

func collect(g *Ledger) (map[string]*itemVotes, []string) {
	items := map[string]*itemVotes{}
	var order []string
	for _, l := range g.standing() {
		c := l.category()
		v := items[l.ItemID]
		if v == nil {
			v = &itemVotes{first: l, by: map[string]category{}}
			items[l.ItemID] = v
			order = append(order, l.ItemID)
		}
		if c == catNone {
			continue
		}
		v.by[l.Annotator] = c
		v.count[c]++
	}
	return items, order
}

// majority is the category with more than half of the item's labels
// (skips left out), or catNone when no category has.
func (v *itemVotes) majority() category {
	n := v.count[0] + v.count[1] + v.count[2]
	for c := 0; c < nCat; c++ {
		if 2*v.count[c] > n {
			return category(c)
		}
	}
	return catNone
}

// Stats computes per-annotator figures, agreement between annotators and,
// with cfg.Judged, the judge's agreement with the human majority.
func Stats(g *Ledger, cfg StatsConfig) Report {
	if cfg.Bootstrap == 0 {
		cfg.Bootstrap = 1000
	}
	if cfg.Bootstrap < 0 {
		cfg.Bootstrap = 0
	}
	if cfg.ActiveGap <= 0 {
		cfg.ActiveGap = 5 * time.Minute
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x616e6e6f74617465))
	rep := Report{Lines: g.Lines, Undone: g.Undone, Bootstrap: cfg.Bootstrap}
	standing := g.standing()
	rep.Standing = len(standing)

	// Per annotator.
	per := map[string]*AnnotatorStats{}
	secs := map[string][]float64{}
	times := map[string][]time.Time{}
	for _, l := range standing {
		a := per[l.Annotator]
		if a == nil {
			a = &AnnotatorStats{Name: l.Annotator}
			per[l.Annotator] = a
		}
		a.Labels++
		switch l.category() {
		case catFirst:
			a.First++
		case catSecond:
			a.Second++
		case catTie:
			a.Ties++
		default:
			a.Skips++
		}
		if l.Seconds > 0 {
			secs[l.Annotator] = append(secs[l.Annotator], l.Seconds)
		}
		if t, err := time.Parse(time.RFC3339Nano, l.Time); err == nil {
			times[l.Annotator] = append(times[l.Annotator], t)
		}
	}
	for name, n := range g.undoneBy {
		if a := per[name]; a != nil {
			a.Undone = n
		} else {
			per[name] = &AnnotatorStats{Name: name, Undone: n}
		}
	}
	names := make([]string, 0, len(per))
	for n := range per {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := per[n]
		a.MedianSeconds = nan()
		if s := secs[n]; len(s) > 0 {
			sort.Float64s(s)
			m := s[len(s)/2]
			if len(s)%2 == 0 {
				m = (s[len(s)/2-1] + s[len(s)/2]) / 2
			}
			a.MedianSeconds = Num(m)
		}
		ts := times[n]
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		active := 0.0
		for i := 1; i < len(ts); i++ {
			if d := ts[i].Sub(ts[i-1]); d <= cfg.ActiveGap {
				active += d.Seconds()
			}
		}
		a.ActiveMinutes = math.Round(active/60*100) / 100
		a.PerHour = nan()
		if active > 0 {
			a.PerHour = Num(float64(len(ts)-1) / active * 3600)
		}
		rep.Annotators = append(rep.Annotators, *a)
	}

	items, order := collect(g)
	var units [][nCat]int
	for _, id := range order {
		v := items[id]
		if v.count[0]+v.count[1]+v.count[2] > 0 {
			rep.Items++
			m := v.majority()
			if m == catNone {
				rep.Majority[3]++
			} else {
				rep.Majority[m]++
			}
		}
		units = append(units, v.count)
	}

	// Cohen's κ for each pair of annotators.
	for x := 0; x < len(names); x++ {
		for y := x + 1; y < len(names); y++ {
			a, b := names[x], names[y]
			var both [][2]category
			for _, id := range order {
				v := items[id]
				ca, okA := v.by[a]
				cb, okB := v.by[b]
				if okA && okB {
					both = append(both, [2]category{ca, cb})
				}
			}
			if len(both) == 0 {
				continue
			}
			table := func(idx []int) (t [nCat][nCat]int) {
				if idx == nil {
					for _, p := range both {
						t[p[0]][p[1]]++
					}
					return t
				}
				for _, i := range idx {
					t[both[i][0]][both[i][1]]++
				}
				return t
			}
			t := table(nil)
			agree := t[0][0] + t[1][1] + t[2][2]
			pa := PairAgreement{A: a, B: b, Items: len(both), Agreement: Num(float64(agree) / float64(len(both)))}
			pa.Kappa.Value = Num(CohenKappa(t))
			lo, hi := bootstrap(len(both), cfg.Bootstrap, rng, func(idx []int) float64 { return CohenKappa(table(idx)) })
			pa.Kappa.Lo, pa.Kappa.Hi = Num(lo), Num(hi)
			rep.Pairs = append(rep.Pairs, pa)
		}
	}

	// Krippendorff's α over all.
	var pairable [][nCat]int
	for _, u := range units {
		if m := u[0] + u[1] + u[2]; m >= 2 {
			pairable = append(pairable, u)
			rep.Alpha.Values += m
		}
	}
	rep.Alpha.Units = len(pairable)
	rep.Alpha.Alpha.Value = Num(KrippendorffAlpha(pairable))
	sample := make([][nCat]int, len(pairable))
	lo, hi := bootstrap(len(pairable), cfg.Bootstrap, rng, func(idx []int) float64 {
		for k, i := range idx {
			sample[k] = pairable[i]
		}
		return KrippendorffAlpha(sample)
	})
	rep.Alpha.Alpha.Lo, rep.Alpha.Alpha.Hi = Num(lo), Num(hi)

	if cfg.Judged != nil {
		rep.Judge = judgeStats(items, order, cfg.Judged)
	}
	if rep.Annotators == nil {
		rep.Annotators = []AnnotatorStats{}
	}
	if rep.Pairs == nil {
		rep.Pairs = []PairAgreement{}
	}
	return rep
}

func judgeStats(items map[string]*itemVotes, order []string, jd *Judged) *JudgeStats {
	js := &JudgeStats{Judges: jd.judges}
	if js.Judges == nil {
		js.Judges = []string{}
	}
	for _, id := range order {
		v := items[id]
		if v.count[0]+v.count[1]+v.count[2] == 0 {
			continue
		}
		jc, incons, ok := jd.verdict(v.first)
		if !ok {
			js.NotJudged++
			continue
		}
		if incons {
			js.Inconsistent++
		}
		m := v.majority()
		row := int(m)
		if m == catNone {
			row = 3
		}
		js.Table[row][jc]++
		if m == catNone {
			continue
		}
		js.Compared++
		if m == jc {
			js.Agree++
		}
		if m != catTie && jc != catTie {
			js.Decisive++
			if m == jc {
				js.DecisiveAgree++
			}
		}
	}
	rate := func(k, n int) Estimate {
		if n == 0 {
			return Estimate{nan(), nan(), nan()}
		}
		lo, hi := Wilson(k, n)
		return Estimate{Num(float64(k) / float64(n)), Num(lo), Num(hi)}
	}
	js.Rate = rate(js.Agree, js.Compared)
	js.DecisiveRate = rate(js.DecisiveAgree, js.Decisive)
	return js
}

// Judged holds judge verdicts from rank outputs (pairs files and ties
// files), indexed to meet labels: by (candidates_id, the two response
// indexes) for items from collect candidates, and by pair id for items
// from a pairs file.
type Judged struct {
	byCand map[string]verdict
	byID   map[string]verdict
	judges []string
	Lines  int
}

type verdict struct {
	chosen     int    // candidates: index of the preferred response, -1 for a tie
	chosenText string // pairs: the chosen response's text ("" for a tie)
	tie        bool
	incons     bool
}

func candKey(cid string, i, j int) string {
	if i > j {
		i, j = j, i
	}
	return cid + "\x00" + strconv.Itoa(i) + "\x00" + strconv.Itoa(j)
}

// LoadJudged reads rank outputs: pairs files ("candidates_id" and
// "indexes" [chosen, rejected] when they come from rank; any pair by its
// id) and ties files (records with "kind" "tie" or "inconsistent").
func LoadJudged(paths ...string) (*Judged, error) {
	jd := &Judged{byCand: map[string]verdict{}, byID: map[string]verdict{}}
	seenJudge := map[string]bool{}
	for _, path := range paths {
		rc, err := jsonl.Open(path)
		if err != nil {
			return nil, err
		}
		err = jd.read(rc, path, seenJudge)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(jd.judges)
	return jd, nil
}

func (jd *Judged) read(r io.Reader, name string, seenJudge map[string]bool) error {
	jr := jsonl.NewReader(r, name)
	for {
		raw, line, err := jr.NextRaw()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var h struct {
			ID           string `json:"id"`
			Kind         string `json:"kind"`
			CandidatesID string `json:"candidates_id"`
			Indexes      []int  `json:"indexes"`
			Judge        string `json:"judge"`
		}
		if err := json.Unmarshal(raw, &h); err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		jd.Lines++
		if h.Judge != "" && !seenJudge[h.Judge] {
			seenJudge[h.Judge] = true
			jd.judges = append(jd.judges, h.Judge)
		}
		if h.Kind != "" {
			// a ties-file record: no preference
			if h.Kind != "tie" && h.Kind != "inconsistent" {
				return fmt.Errorf("%s:%d: kind %q: want a rank pair or a ties record (kind tie or inconsistent)", name, line, h.Kind)
			}
			if h.CandidatesID == "" || len(h.Indexes) != 2 {
				return fmt.Errorf("%s:%d: ties record without candidates_id and two indexes", name, line)
			}
			jd.byCand[candKey(h.CandidatesID, h.Indexes[0], h.Indexes[1])] = verdict{chosen: -1, tie: true, incons: h.Kind == "inconsistent"}
			continue
		}
		p, err := pairs.ParseLine(raw)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		_, ch, _ := p.Text()
		if h.CandidatesID != "" && len(h.Indexes) == 2 {
			jd.byCand[candKey(h.CandidatesID, h.Indexes[0], h.Indexes[1])] = verdict{chosen: h.Indexes[0], chosenText: ch}
		}
		jd.byID[p.ID] = verdict{chosenText: ch}
	}
}

// verdict finds the judge's category for the item a label belongs to.
func (jd *Judged) verdict(l *Label) (c category, incons, ok bool) {
	if l.CandidatesID != "" && len(l.Indexes) == 2 {
		v, found := jd.byCand[candKey(l.CandidatesID, l.Indexes[0], l.Indexes[1])]
		if found {
			switch {
			case v.tie:
				return catTie, v.incons, true
			case v.chosen == l.Indexes[0]:
				return catFirst, false, true
			case v.chosen == l.Indexes[1]:
				return catSecond, false, true
			}
		}
	}
	if l.PairID != "" && len(l.Responses) == 2 {
		if v, found := jd.byID[l.PairID]; found {
			switch {
			case v.tie:
				return catTie, v.incons, true
			case v.chosenText == l.Responses[0]:
				return catFirst, false, true
			case v.chosenText == l.Responses[1]:
				return catSecond, false, true
			}
		}
	}
	return catNone, false, false
}

var errNoLabels = errors.New("no labels")

// WriteText writes the report for people.
func (r Report) WriteText(w io.Writer) error {
	if r.Lines == 0 {
		return errNoLabels
	}
	fmt.Fprintf(w, "%d labels standing (%d undone) from %d annotators over %d items\n", r.Standing, r.Undone, len(r.Annotators), r.Items)
	fmt.Fprintf(w, "first/second: the item's two responses in input order (for a pairs input: chosen, rejected)\n\n")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "annotator\tlabels\tfirst\tsecond\ttie\tskip\tundone\tmedian s/item\tactive min\tlabels/hour\t")
	for _, a := range r.Annotators {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%.1f\t%s\t\n", a.Name, a.Labels, a.First, a.Second, a.Ties, a.Skips, a.Undone,
			fmtNum(a.MedianSeconds, 1), a.ActiveMinutes, fmtNum(a.PerHour, 0))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nhuman majority per item: %d first, %d second, %d tie, %d without a majority\n", r.Majority[0], r.Majority[1], r.Majority[2], r.Majority[3])
	fmt.Fprintf(w, "\nagreement between annotators (95%% intervals: %d bootstrap resamples of items)\n", r.Bootstrap)
	fmt.Fprintf(w, "  Krippendorff's alpha (nominal): %s [%s, %s] over %d items with 2+ labels (%d labels)\n",
		r.Alpha.Alpha.Value, r.Alpha.Alpha.Lo, r.Alpha.Alpha.Hi, r.Alpha.Units, r.Alpha.Values)
	if len(r.Pairs) > 0 {
		fmt.Fprintln(w, "  Cohen's kappa per pair of annotators:")
		tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "    a\tb\titems\tagree\tkappa\t95% interval\t")
		for _, p := range r.Pairs {
			fmt.Fprintf(tw, "    %s\t%s\t%d\t%s\t%s\t[%s, %s]\t\n", p.A, p.B, p.Items, p.Agreement, p.Kappa.Value, p.Kappa.Lo, p.Kappa.Hi)
		}
		tw.Flush()
	} else {
		fmt.Fprintln(w, "  Cohen's kappa: no two annotators labelled the same item")
	}
	if j := r.Judge; j != nil {
		name := strings.Join(j.Judges, ", ")
		if name == "" {
			name = "judge"
		}
		fmt.Fprintf(w, "\njudge (%s) vs human majority\n", name)
		fmt.Fprintf(w, "  agreement %s [%s, %s] (Wilson 95%%): %d of %d items with a majority and a verdict\n", j.Rate.Value, j.Rate.Lo, j.Rate.Hi, j.Agree, j.Compared)
		fmt.Fprintf(w, "  decisive  %s [%s, %s]: %d of %d items where both prefer a response\n", j.DecisiveRate.Value, j.DecisiveRate.Lo, j.DecisiveRate.Hi, j.DecisiveAgree, j.Decisive)
		tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  human \\ judge\tfirst\tsecond\ttie\t")
		for i, row := range []string{"first", "second", "tie", "no majority"} {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t\n", row, j.Table[i][0], j.Table[i][1], j.Table[i][2])
		}
		tw.Flush()
		if j.Inconsistent > 0 {
			fmt.Fprintf(w, "  (judge tie includes %d verdicts whose two orders disagreed)\n", j.Inconsistent)
		}
		if j.NotJudged > 0 {
			fmt.Fprintf(w, "  %d labelled items have no verdict in the judged files\n", j.NotJudged)
		}
	}
	return nil
}

func fmtNum(n Num, prec int) string {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(f, 'f', prec, 64)
}
