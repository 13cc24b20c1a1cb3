package manga

import (
	"regexp"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// span is a match of something in a text, [start, end) in bytes.
type span struct {
	start, end int
	series     *Series // title mentions
	name       string  // author mentions: the name as written
	known      bool    // author mentions: a catalog author
}

// index holds a catalog's compiled name patterns.
type index struct {
	titles  []namePattern
	authors []namePattern
}

type namePattern struct {
	re     *regexp.Regexp
	series *Series
	name   string
}

var (
	indexMu    sync.Mutex
	indexCache = map[*Catalog]*index{}
)

// indexOf compiles (once per catalog) the patterns for its names. One-word
// names (Naruto, Monster, ONE, CLAMP) match case-sensitively, so the common
// words among them are not mistaken for titles or authors; longer names
// match in any case.
func indexOf(c *Catalog) *index {
	indexMu.Lock()
	defer indexMu.Unlock()
	if ix, ok := indexCache[c]; ok {
		return ix
	}
	ix := &index{}
	pat := func(name string) *regexp.Regexp {
		q := regexp.QuoteMeta(name)
		q = strings.ReplaceAll(q, `\ `, `\s+`)
		q = strings.ReplaceAll(q, " ", `\s+`)
		if strings.ContainsAny(strings.TrimSpace(name), " ") {
			q = "(?i)" + q
		}
		return regexp.MustCompile(q)
	}
	for i := range c.Series {
		s := &c.Series[i]
		for _, n := range s.Names() {
			ix.titles = append(ix.titles, namePattern{re: pat(normQuotes(n)), series: s, name: n})
		}
	}
	for _, a := range c.Authors() {
		ix.authors = append(ix.authors, namePattern{re: pat(normQuotes(a)), name: a})
	}
	indexCache[c] = ix
	return ix
}

func normQuotes(s string) string {
	return strings.NewReplacer("’", "'", "‘", "'", "“", `"`, "”", `"`).Replace(s)
}

// boundary reports whether text[start:end] is not part of a longer word.
func boundary(text string, start, end int) bool {
	if start > 0 {
		r, _ := utf8.DecodeLastRuneInString(text[:start])
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return false
		}
	}
	if end < len(text) {
		r, _ := utf8.DecodeRuneInString(text[end:])
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// findAll returns the non-overlapping matches of the patterns, longest
// first at equal starts, in text order.
func findAll(text string, pats []namePattern, mk func(namePattern, int, int) span) []span {
	var all []span
	for _, p := range pats {
		for _, m := range p.re.FindAllStringIndex(text, -1) {
			if boundary(text, m[0], m[1]) {
				all = append(all, mk(p, m[0], m[1]))
			}
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].start != all[j].start {
			return all[i].start < all[j].start
		}
		return all[i].end > all[j].end
	})
	var out []span
	for _, s := range all {
		if len(out) > 0 && s.start < out[len(out)-1].end {
			continue
		}
		out = append(out, s)
	}
	return out
}

func overlaps(s span, others []span) bool {
	for _, o := range others {
		if s.start < o.end && o.start < s.end {
			return true
		}
	}
	return false
}

// byName catches author claims for names the catalog does not know:
// "by Hiroshi Tanaka", "written by Kenji Sato".
var byName = regexp.MustCompile(`\b(?:[Bb]y|[Aa]uthor is|[Cc]reator is|[Mm]angaka is)\s+([A-Z][\p{L}'’-]+(?:\s+[A-Z][\p{L}'’.-]*){0,3})`)

// mentions finds series titles and author names in text. Titles inside an
// author's name (Akira in "Akira Toriyama") are not titles.
type mentions struct {
	text    string
	titles  []span
	authors []span
	ends    []int // sentence end offsets, ascending
}

func findMentions(c *Catalog, text string) *mentions {
	text = normQuotes(text)
	ix := indexOf(c)
	m := &mentions{text: text}
	m.authors = findAll(text, ix.authors, func(p namePattern, a, b int) span {
		return span{start: a, end: b, name: p.name, known: true}
	})
	titles := findAll(text, ix.titles, func(p namePattern, a, b int) span {
		return span{start: a, end: b, series: p.series, name: p.name}
	})
	for _, t := range titles {
		if !overlaps(t, m.authors) {
			m.titles = append(m.titles, t)
		}
	}
	for _, g := range byName.FindAllStringSubmatchIndex(text, -1) {
		s := span{start: g[2], end: g[3], name: strings.TrimRight(text[g[2]:g[3]], ".")}
		s.end = s.start + len(s.name)
		if overlaps(s, m.authors) || overlaps(s, m.titles) {
			continue
		}
		m.authors = append(m.authors, s)
	}
	sort.Slice(m.authors, func(i, j int) bool { return m.authors[i].start < m.authors[j].start })
	// Sentence ends: . ! ? or a newline, not inside a name ("Dr. Stone").
	names := append(append([]span(nil), m.titles...), m.authors...)
	for i := 0; i < len(text); i++ {
		ch := text[i]
		if ch != '.' && ch != '!' && ch != '?' && ch != '\n' {
			continue
		}
		if overlaps(span{start: i, end: i + 1}, names) {
			continue
		}
		if ch != '\n' && i+1 < len(text) && text[i+1] != ' ' && text[i+1] != '\n' && text[i+1] != '!' && text[i+1] != '?' {
			continue // 1.5, "e.g.x"
		}
		m.ends = append(m.ends, i+1)
	}
	return m
}

// sentence is the index of the sentence holding offset off.
func (m *mentions) sentence(off int) int {
	return sort.SearchInts(m.ends, off+1)
}

// sentenceText is the sentence holding offset off.
func (m *mentions) sentenceText(off int) (int, int) {
	i := m.sentence(off)
	start := 0
	if i > 0 {
		start = m.ends[i-1]
	}
	end := len(m.text)
	if i < len(m.ends) {
		end = m.ends[i]
	}
	return start, end
}

// subject is the series a claim at offset off is about: the nearest title
// before it in the same sentence, else the nearest after it in the same
// sentence, else the last title before it, else fallback.
func (m *mentions) subject(off int, fallback *Series) *Series {
	sent := m.sentence(off)
	var before, after, earlier *Series
	for _, t := range m.titles {
		switch {
		case t.start < off && m.sentence(t.start) == sent:
			before = t.series
		case t.start >= off && m.sentence(t.start) == sent && after == nil:
			after = t.series
		case t.start < off:
			earlier = t.series
		}
	}
	for _, s := range []*Series{before, after, earlier} {
		if s != nil {
			return s
		}
	}
	return fallback
}

// soleSeries is the one series text mentions, or nil when it mentions none
// or several.
func soleSeries(c *Catalog, text string) *Series {
	var s *Series
	for _, t := range findMentions(c, text).titles {
		if s != nil && t.series != s {
			return nil
		}
		s = t.series
	}
	return s
}
