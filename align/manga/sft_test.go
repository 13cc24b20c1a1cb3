package manga

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/align-dev/align/align/pairs"
)

var (
	volumesRe = regexp.MustCompile(`\b(\d+) volumes?\b`)
	ratedRe   = regexp.MustCompile(`\b(?:rated|as|carries an?) (all-ages|older-teen|teen|mature)\b`)
)

// TestSFTStatesOnlyCatalogFacts checks every chosen answer against the
// catalog without the rule judge: each volume count is the count of the
// series it follows, each rating the rating of the series named before
// it, fact answers name their series and state its fact, and picks for a
// stated limit are within it.
func TestSFTStatesOnlyCatalogFacts(t *testing.T) {
	c := loadCatalog(t)
	exs, err := generateSFT(c, 7*len(c.Series)*6, 1)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]map[string]bool{}
	for _, ex := range exs {
		p := ex.pair
		if err := p.Validate(Objectives); err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		if p.Source != SourceSFT || p.Objective != sftObjective[ex.kind] {
			t.Fatalf("%s: source %q objective %q for kind %s", p.ID, p.Source, p.Objective, ex.kind)
		}
		if n := len(strings.Fields(p.Chosen)); n > 40 {
			t.Errorf("%s: %d words: %q", p.ID, n, p.Chosen)
		}
		m := findMentions(c, p.Chosen)
		before := func(off int) *Series { // the last title named before off
			var s *Series
			for _, ti := range m.titles {
				if ti.start < off {
					s = ti.series
				}
			}
			return s
		}
		for _, g := range volumesRe.FindAllStringSubmatchIndex(m.text, -1) {
			n, _ := strconv.Atoi(m.text[g[2]:g[3]])
			if s := before(g[0]); s == nil || s.Volumes != n {
				t.Errorf("%s: %q: %d volumes of %v", ex.kind, p.Chosen, n, s)
			}
		}
		for _, g := range ratedRe.FindAllStringSubmatchIndex(m.text, -1) {
			if s := before(g[0]); s == nil || s.Rating.String() != m.text[g[2]:g[3]] {
				t.Errorf("%s: %q: rating %s of %v", ex.kind, p.Chosen, m.text[g[2]:g[3]], s)
			}
		}
		s := ex.series
		switch ex.kind {
		case kindCount, kindAuthor, kindStatus, kindRating, kindSimilar:
			if !strings.Contains(p.Chosen, s.Title) {
				t.Errorf("%s: %q does not name %s", ex.kind, p.Chosen, s.Title)
			}
			if covered[ex.kind] == nil {
				covered[ex.kind] = map[string]bool{}
			}
			covered[ex.kind][s.Title] = true
		}
		switch ex.kind {
		case kindCount:
			if !strings.Contains(p.Chosen, strconv.Itoa(s.Volumes)+" volumes") {
				t.Errorf("count: %q lacks %d volumes", p.Chosen, s.Volumes)
			}
		case kindAuthor:
			if !strings.Contains(p.Chosen, joinAnd(s.Authors)) {
				t.Errorf("author: %q lacks %s", p.Chosen, joinAnd(s.Authors))
			}
		case kindStatus:
			if ongoing := strings.Contains(p.Chosen, "so far"); ongoing == s.Complete {
				t.Errorf("status: %q for complete=%v", p.Chosen, s.Complete)
			}
		case kindRating:
			if !strings.Contains(p.Chosen, "rated "+s.Rating.String()) && !strings.Contains(p.Chosen, "as "+s.Rating.String()) &&
				!strings.Contains(p.Chosen, "a "+s.Rating.String()+" rating") {
				t.Errorf("rating: %q lacks %s", p.Chosen, s.Rating)
			}
		case kindRecommend:
			limit, _, ok := CustomerLimit(p.Prompt)
			if !ok || s.Rating > limit || s.Rating > Teen {
				t.Errorf("recommend: %q (limit %v, stated %v): pick %s is %s", p.Prompt, limit, ok, s.Title, s.Rating)
			}
		}
		// The rejected answer is the wrong one the judge can tell (where it
		// can: a wrong status or rating has no rule).
		switch ex.kind {
		case kindCount, kindAuthor:
			if v := CheckAccuracy(c, p.Prompt, p.Rejected); v.Score != 1 {
				t.Errorf("%s: rejected %q: accuracy %d (%s)", ex.kind, p.Rejected, v.Score, v.Reason)
			}
		case kindRecommend:
			if v := CheckAgeRating(c, p.Prompt, p.Rejected); v.Score != 1 {
				t.Errorf("recommend: rejected %q for %q: safety %d (%s)", p.Rejected, p.Prompt, v.Score, v.Reason)
			}
		case kindEscalate:
			if v := CheckEscalation(p.Prompt, p.Rejected); v.Score != 1 {
				t.Errorf("escalate: rejected %q for %q: %d (%s)", p.Rejected, p.Prompt, v.Score, v.Reason)
			}
		}
	}
	for _, k := range []string{kindCount, kindAuthor, kindStatus, kindRating} {
		if len(covered[k]) != len(c.Series) {
			t.Errorf("%s: %d of %d series covered", k, len(covered[k]), len(c.Series))
		}
	}
}

func TestSFTDeterministic(t *testing.T) {
	c := loadCatalog(t)
	a, err := GenerateSFT(c, 700, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateSFT(c, 700, 7)
	d, _ := GenerateSFT(c, 700, 8)
	var ba, bb, bd bytes.Buffer
	pairs.Write(&ba, a)
	pairs.Write(&bb, b)
	pairs.Write(&bd, d)
	if ba.String() != bb.String() {
		t.Fatal("same seed, different examples")
	}
	if ba.String() == bd.String() {
		t.Fatal("different seeds, same examples")
	}
	if _, dropped := pairs.Dedupe(a); dropped != 0 {
		t.Errorf("%d duplicate examples", dropped)
	}
	// Phrasing variety: many prompts per fact, not one string.
	prompts, chosen := map[string]bool{}, map[string]bool{}
	for _, p := range a {
		prompts[p.Prompt], chosen[p.Chosen] = true, true
	}
	if len(prompts) < 500 || len(chosen) < 450 {
		t.Errorf("%d distinct prompts and %d distinct answers in 700 examples", len(prompts), len(chosen))
	}
	tr, ev, err := SynthSFT(c, 700, 0.2, 7)
	if err != nil || len(tr)+len(ev) != 700 || len(ev) < 100 || len(ev) > 180 {
		t.Errorf("split: %d train, %d eval, %v", len(tr), len(ev), err)
	}
}

func TestSFTNeedsRatings(t *testing.T) {
	c := &Catalog{Series: []Series{{Title: "X", Authors: []string{"A"}, Volumes: 3, Rating: Teen, Genres: []string{"g"}}}}
	if _, err := GenerateSFT(c, 10, 1); err == nil || !strings.Contains(err.Error(), "all-ages") {
		t.Fatalf("got %v, want an error naming the missing ratings", err)
	}
}
