package report

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// palette is colour-blind-friendly (Okabe–Ito).
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"}

const (
	chartW, chartH = 640, 300
	padL, padR     = 64, 16
	padT, padB     = 40, 40
)

func num(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// fmtTick prints an axis value compactly.
func fmtTick(x float64) string {
	if x == 0 {
		return "0"
	}
	a := math.Abs(x)
	if a >= 1e4 || a < 1e-3 {
		return strconv.FormatFloat(x, 'e', 1, 64)
	}
	return strconv.FormatFloat(x, 'g', 4, 64)
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		d := math.Max(math.Abs(lo)*0.1, 1e-9)
		lo, hi = lo-d, hi+d
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	first := math.Floor(lo / step)
	for i := 0.0; ; i++ {
		// each tick from its index (a running sum would drift: 8.7e-19
		// where 0 belongs), and a tick within rounding of 0 is 0
		v := (first + i) * step
		if v > hi+step*1e-9 {
			break
		}
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		out = append(out, v)
		if len(out) > 50 {
			break
		}
	}
	if out[len(out)-1] < hi {
		out = append(out, out[len(out)-1]+step)
	}
	return out
}

// LineChart draws a chart's series against step. Every point is a circle
// carrying its exact step and value (data-x, data-y) so the drawing can be
// checked against metrics.jsonl.
func LineChart(c Chart) string {
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			xmin, xmax = math.Min(xmin, p.X), math.Max(xmax, p.X)
			ymin, ymax = math.Min(ymin, p.Y), math.Max(ymax, p.Y)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="chart-%s" data-chart="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		html.EscapeString(c.ID), html.EscapeString(c.ID), chartW, chartH, chartW, chartH, html.EscapeString(c.Title))
	fmt.Fprintf(&b, `<text x="%d" y="16" class="title">%s</text>`, padL, html.EscapeString(c.Title))
	if math.IsInf(xmin, 1) {
		b.WriteString(`<text x="320" y="150" class="empty">no data</text></svg>`)
		return b.String()
	}
	// legend entries flow into rows; the plot starts below them
	type entry struct{ x, y float64 }
	legend := make([]entry, len(c.Series))
	lx, ly := float64(padL), 28.0
	for i, s := range c.Series {
		w := 30 + 6.5*float64(len(s.Key)+len(s.Split)+3)
		if lx+w > chartW-padR && lx > padL {
			lx, ly = padL, ly+14
		}
		legend[i] = entry{lx, ly}
		lx += w
	}
	top := int(ly) + 12
	xt := niceTicks(xmin, xmax, 6)
	yt := niceTicks(ymin, ymax, 5)
	x0, x1 := xt[0], xt[len(xt)-1]
	y0, y1 := yt[0], yt[len(yt)-1]
	pw, ph := float64(chartW-padL-padR), float64(chartH-top-padB)
	sx := func(x float64) float64 { return float64(padL) + (x-x0)/(x1-x0)*pw }
	sy := func(y float64) float64 { return float64(top) + (1-(y-y0)/(y1-y0))*ph }
	b.WriteString(`<g class="axes">`)
	for _, t := range yt {
		y := sy(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>`,
			padL, chartW-padR, y, y, padL-4, y+4, fmtTick(t))
	}
	for _, t := range xt {
		x := sx(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/><text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>`,
			x, x, top, chartH-padB, x, chartH-padB+14, fmtTick(t))
	}
	fmt.Fprintf(&b, `<rect class="frame" x="%d" y="%d" width="%.0f" height="%.0f"/>`, padL, top, pw, ph)
	fmt.Fprintf(&b, `<text class="label" x="%.0f" y="%d" text-anchor="middle">step</text>`, float64(padL)+pw/2, chartH-6)
	fmt.Fprintf(&b, `<text class="label" transform="translate(12 %.0f) rotate(-90)" text-anchor="middle">%s</text>`, float64(top)+ph/2, html.EscapeString(c.YLabel))
	b.WriteString(`</g>`)
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		dash := ""
		if s.Split == "eval" {
			dash = ` stroke-dasharray="5 3"`
		}
		name := s.Key + " (" + s.Split + ")"
		fmt.Fprintf(&b, `<g class="series" data-key="%s" data-split="%s">`, html.EscapeString(s.Key), html.EscapeString(s.Split))
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(p.X), sy(p.Y)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5"%s points="%s"/>`, col, dash, strings.Join(pts, " "))
		r := 2.5
		if len(s.Points) > 60 {
			r = 1.2
		}
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s" data-x="%s" data-y="%s"><title>%s step %s: %s</title></circle>`,
				sx(p.X), sy(p.Y), r, col, num(p.X), num(p.Y), html.EscapeString(name), num(p.X), fmtTick(p.Y))
		}
		b.WriteString(`</g>`)
		// legend
		e := legend[i]
		fmt.Fprintf(&b, `<g class="legend"><line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="2"%s/><text x="%.0f" y="%.0f">%s</text></g>`,
			e.x, e.x+18, e.y, e.y, col, dash, e.x+22, e.y+4, html.EscapeString(name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// Bar is one variant's rate in one group, with its interval.
type Bar struct {
	Variant string
	Rate    float64
	Lo, Hi  float64
	K, N    int
}

// BarGroup is one category's bars.
type BarGroup struct {
	Label string
	Bars  []Bar
}

// BarChart draws grouped bars in percent with 95 % interval whiskers;
// each bar carries data-rate, data-lo and data-hi.
func BarChart(id, title string, groups []BarGroup, variants []string) string {
	w := max(chartW, 120*len(groups)+padL+padR)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="chart-%s" data-chart="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		id, id, w, chartH, w, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="16" class="title">%s</text>`, padL, html.EscapeString(title))
	top := 0.0
	for _, g := range groups {
		for _, r := range g.Bars {
			top = math.Max(top, math.Max(r.Hi, r.Rate))
		}
	}
	yt := niceTicks(0, math.Max(top, 0.05), 5)
	y1 := yt[len(yt)-1]
	pw, ph := float64(w-padL-padR), float64(chartH-padT-padB)
	sy := func(y float64) float64 { return float64(padT) + (1-y/y1)*ph }
	for _, t := range yt {
		y := sy(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text class="tick" x="%d" y="%.1f" text-anchor="end">%s%%</text>`,
			padL, w-padR, y, y, padL-4, y+4, fmtTick(100*t))
	}
	fmt.Fprintf(&b, `<rect class="frame" x="%d" y="%d" width="%.0f" height="%.0f"/>`, padL, padT, pw, ph)
	gw := pw / float64(max(len(groups), 1))
	nv := max(len(variants), 1)
	bw := math.Min(40, (gw-20)/float64(nv))
	for gi, g := range groups {
		gx := float64(padL) + gw*float64(gi)
		fmt.Fprintf(&b, `<g class="group" data-group="%s">`, html.EscapeString(g.Label))
		for vi, r := range g.Bars {
			col := palette[vi%len(palette)]
			x := gx + (gw-bw*float64(nv))/2 + bw*float64(vi)
			fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" data-variant="%s" data-rate="%s" data-lo="%s" data-hi="%s"><title>%s %s: %.1f%% [%.1f, %.1f] (%d/%d)</title></rect>`,
				x+2, sy(r.Rate), bw-4, math.Max(sy(0)-sy(r.Rate), 0.5), col, html.EscapeString(r.Variant), num(r.Rate), num(r.Lo), num(r.Hi),
				html.EscapeString(g.Label), html.EscapeString(r.Variant), 100*r.Rate, 100*r.Lo, 100*r.Hi, r.K, r.N)
			cx := x + bw/2
			fmt.Fprintf(&b, `<line class="whisker" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/><line class="whisker" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/><line class="whisker" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/>`,
				cx, cx, sy(r.Lo), sy(r.Hi), cx-4, cx+4, sy(r.Lo), sy(r.Lo), cx-4, cx+4, sy(r.Hi), sy(r.Hi))
			fmt.Fprintf(&b, `<text class="value" x="%.1f" y="%.1f" text-anchor="middle">%.0f%%</text>`, cx, sy(r.Hi)-4, 100*r.Rate)
		}
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text></g>`, gx+gw/2, chartH-padB+14, html.EscapeString(g.Label))
	}
	lx := float64(padL)
	for vi, v := range variants {
		fmt.Fprintf(&b, `<g class="legend"><rect x="%.0f" y="22" width="12" height="10" fill="%s"/><text x="%.0f" y="32">%s</text></g>`,
			lx, palette[vi%len(palette)], lx+16, html.EscapeString(v))
		lx += 30 + 6.5*float64(len(v))
	}
	b.WriteString(`</svg>`)
	return b.String()
}
