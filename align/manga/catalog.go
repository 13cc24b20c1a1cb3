// Package manga is the domain of align's reference use case, a manga
// bookstore assistant: a catalog of series, rule checks that a deterministic
// judge can use (tone, escalation, accuracy against the catalog, age
// rating), and a seeded generator of synthetic preference pairs for the four
// objectives. Everything is data-driven from the catalog file; nothing here
// knows a particular series.
package manga

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Rating is an age rating, ordered from least to most restricted.
type Rating int

// Ratings, in order. The minimum ages follow North American publishers'
// labels (teen 13+, older teen 16+, mature 18+).
const (
	AllAges Rating = iota
	Teen
	OlderTeen
	Mature
)

var ratingNames = []string{"all-ages", "teen", "older-teen", "mature"}

// String is the rating's catalog name.
func (r Rating) String() string {
	if r < 0 || int(r) >= len(ratingNames) {
		return fmt.Sprintf("Rating(%d)", int(r))
	}
	return ratingNames[r]
}

// MinAge is the youngest reader the rating suits.
func (r Rating) MinAge() int { return [...]int{0, 13, 16, 18}[r] }

// RatingForAge is the most restricted rating a reader of this age may read.
func RatingForAge(age int) Rating {
	switch {
	case age >= 18:
		return Mature
	case age >= 16:
		return OlderTeen
	case age >= 13:
		return Teen
	}
	return AllAges
}

// ParseRating reads a catalog rating name.
func ParseRating(s string) (Rating, error) {
	for i, n := range ratingNames {
		if s == n {
			return Rating(i), nil
		}
	}
	return 0, fmt.Errorf("unknown age rating %q (want one of %s)", s, strings.Join(ratingNames, ", "))
}

// MarshalJSON writes the rating's name.
func (r Rating) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

// UnmarshalJSON reads a rating name.
func (r *Rating) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("want a string")
	}
	v, err := ParseRating(s)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Series is one manga series.
type Series struct {
	Title    string   `json:"title"`
	Aliases  []string `json:"aliases,omitempty"` // other names customers use
	Authors  []string `json:"authors"`           // first is the main creator
	Volumes  int      `json:"volumes"`           // published volumes as of Catalog.AsOf
	Complete bool     `json:"complete"`          // false: ongoing or on hiatus
	Rating   Rating   `json:"age_rating"`
	Genres   []string `json:"genres"`
}

// Names is the title followed by the aliases.
func (s *Series) Names() []string { return append([]string{s.Title}, s.Aliases...) }

// Catalog is a set of series.
type Catalog struct {
	AsOf   string   `json:"as_of"`          // date the volume counts hold for
	Note   string   `json:"note,omitempty"` // provenance, for people
	Series []Series `json:"series"`
}

// defaultCatalog is testdata/catalog.json at the repository root, built
// in so that data synth works from any directory. TestDefaultCatalog keeps
// the two identical.
//
//go:embed catalog.json
var defaultCatalog []byte

// DefaultCatalog returns the built-in catalog (the repository's
// testdata/catalog.json), the one the shipped pairs were made from.
func DefaultCatalog() *Catalog {
	c, err := ParseCatalog(defaultCatalog, "built-in catalog")
	if err != nil {
		panic(err) // a build with a broken catalog fails its tests
	}
	return c
}

// LoadCatalog reads and validates a catalog file.
func LoadCatalog(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCatalog(b, path)
}

// ParseCatalog reads and validates a catalog; name prefixes errors. Unknown
// fields are errors (a typo would otherwise silently drop data).
func ParseCatalog(data []byte, name string) (*Catalog, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Catalog
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the catalog object", name)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

// Validate checks every series; errors name the series and the field, e.g.
// `series[3] ("Naruto"): "volumes" must be positive`.
func (c *Catalog) Validate() error {
	if len(c.Series) == 0 {
		return errors.New(`"series" is empty`)
	}
	names := map[string]int{}
	for i := range c.Series {
		s := &c.Series[i]
		where := fmt.Sprintf("series[%d] (%q)", i, s.Title)
		if strings.TrimSpace(s.Title) == "" {
			return fmt.Errorf("series[%d]: missing \"title\"", i)
		}
		if len(s.Authors) == 0 {
			return fmt.Errorf("%s: missing \"authors\"", where)
		}
		for j, a := range s.Authors {
			if strings.TrimSpace(a) == "" {
				return fmt.Errorf("%s: \"authors\"[%d] is empty", where, j)
			}
		}
		if s.Volumes <= 0 {
			return fmt.Errorf("%s: \"volumes\" must be positive (got %d)", where, s.Volumes)
		}
		if len(s.Genres) == 0 {
			return fmt.Errorf("%s: missing \"genres\"", where)
		}
		for j, n := range s.Names() {
			if strings.TrimSpace(n) == "" {
				return fmt.Errorf("%s: \"aliases\"[%d] is empty", where, j-1)
			}
			k := foldName(n)
			if prev, dup := names[k]; dup {
				return fmt.Errorf("%s: name %q already used by series[%d]", where, n, prev)
			}
			names[k] = i
		}
	}
	return nil
}

// Lookup finds a series by title or alias, ignoring case.
func (c *Catalog) Lookup(name string) (*Series, bool) {
	k := foldName(name)
	for i := range c.Series {
		for _, n := range c.Series[i].Names() {
			if foldName(n) == k {
				return &c.Series[i], true
			}
		}
	}
	return nil, false
}

// Authors is every author name in the catalog, without repeats.
func (c *Catalog) Authors() []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range c.Series {
		for _, a := range s.Authors {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

func foldName(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(s, "’", "'")), " "))
}
