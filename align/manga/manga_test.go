package manga

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/pairs"
)

var update = flag.Bool("update", false, "rewrite testdata/pairs from the generator")

const catalogPath = "../../testdata/catalog.json"

func loadCatalog(t testing.TB) *Catalog {
	t.Helper()
	c, err := LoadCatalog(catalogPath)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCatalogFacts(t *testing.T) {
	c := loadCatalog(t)
	if n := len(c.Series); n < 30 {
		t.Errorf("catalog has %d series, want at least 30", n)
	}
	// Spot checks of well-known facts (as of 2024).
	tests := []struct {
		title    string
		author   string
		volumes  int
		complete bool
		rating   Rating
	}{
		{"Naruto", "Masashi Kishimoto", 72, true, Teen},
		{"Fullmetal Alchemist", "Hiromu Arakawa", 27, true, Teen},
		{"Death Note", "Takeshi Obata", 12, true, OlderTeen},
		{"Berserk", "Kentaro Miura", 42, false, Mature},
		{"shingeki no kyojin", "Hajime Isayama", 34, true, OlderTeen},
		{"Chi’s Sweet Home", "Konami Kanata", 12, true, AllAges},
	}
	for _, tt := range tests {
		s, ok := c.Lookup(tt.title)
		if !ok {
			t.Errorf("%s: not in catalog", tt.title)
			continue
		}
		if !authorOf(s, tt.author) || s.Volumes != tt.volumes || s.Complete != tt.complete || s.Rating != tt.rating {
			t.Errorf("%s: got %+v", tt.title, *s)
		}
	}
}

func TestParseCatalogErrors(t *testing.T) {
	const ok = `"title":"X","authors":["A B"],"volumes":3,"complete":true,"age_rating":"teen","genres":["g"]`
	tests := []struct {
		name, in, want string
	}{
		{"unknown rating", `{"series":[{"title":"X","authors":["A"],"volumes":3,"complete":true,"age_rating":"kids","genres":["g"]}]}`,
			`c.json: unknown age rating "kids" (want one of all-ages, teen, older-teen, mature)`},
		{"zero volumes", `{"series":[{"title":"X","authors":["A"],"volumes":0,"age_rating":"teen","genres":["g"]}]}`,
			`c.json: series[0] ("X"): "volumes" must be positive (got 0)`},
		{"no authors", `{"series":[{` + ok + `},{"title":"Y","volumes":1,"age_rating":"teen","genres":["g"]}]}`,
			`c.json: series[1] ("Y"): missing "authors"`},
		{"no title", `{"series":[{"authors":["A"],"volumes":1,"age_rating":"teen","genres":["g"]}]}`,
			`c.json: series[0]: missing "title"`},
		{"duplicate alias", `{"series":[{` + ok + `},{"title":"Z","aliases":["x"],"authors":["A"],"volumes":1,"age_rating":"teen","genres":["g"]}]}`,
			`c.json: series[1] ("Z"): name "x" already used by series[0]`},
		{"typo field", `{"series":[{` + ok + `,"volumnes":3}]}`, `c.json: json: unknown field "volumnes"`},
		{"empty", `{"series":[]}`, `c.json: "series" is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCatalog([]byte(tt.in), "c.json")
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCheckTone(t *testing.T) {
	c := loadCatalog(t)
	tests := []struct {
		in   string
		want int
	}{
		{"Happy to help! Naruto has 72 volumes. Enjoy!", 5},
		{"Naruto has 72 volumes.", 3},
		{"Great question! Let me check.", 5},
		{"Your inquiry has been noted. Naruto has 72 volumes.", 1},
		{"Request acknowledged. Naruto has 72 volumes.", 2},
		{"Please be advised: your inquiry has been noted. No further information is available.", 1},
		{"Kaguya-sama: Love Is War has 28 volumes.", 3}, // "Love" in a title is not a cue
		{"Haikyu!! has 45 volumes.", 3},                 // nor is the title's "!!"
	}
	for _, tt := range tests {
		if got := CheckTone(c, tt.in); got.Score != tt.want {
			t.Errorf("CheckTone(%q) = %d (%s), want %d", tt.in, got.Score, got.Reason, tt.want)
		}
	}
}

func TestCheckEscalation(t *testing.T) {
	tests := []struct {
		customer, response string
		want               int
		applies            bool
	}{
		{"Where is my order?", "It ships tomorrow.", 3, false},
		{"This is the third time I'm asking. Ridiculous!", "I can connect you with a human teammate right away.", 5, true},
		{"This is the third time I'm asking. Ridiculous!", "Please check your tracking link.", 1, true},
		{"Ugh, still not here and nobody answers.", "Let me transfer you to a support agent.", 5, true},
		{"I already asked twice, so frustrating.", "Sorry, I can't connect you to a human.", 1, true},
		{"My order is late, a bit annoying.", "Sorry! It ships tomorrow.", 3, true},
	}
	for _, tt := range tests {
		got := CheckEscalation(tt.customer, tt.response)
		if got.Score != tt.want || got.Applies != tt.applies {
			t.Errorf("CheckEscalation(%q, %q) = %d/%v (%s), want %d/%v", tt.customer, tt.response, got.Score, got.Applies, got.Reason, tt.want, tt.applies)
		}
	}
}

func TestCheckAccuracy(t *testing.T) {
	c := loadCatalog(t)
	tests := []struct {
		prompt, response string
		want             int
	}{
		{"", "Naruto has 72 volumes and is complete.", 5},
		{"", "Naruto has 70 volumes.", 1},
		{"", "Berserk has 45 volumes.", 1}, // the origin document's example
		{"", "Berserk has 42 volumes so far.", 5},
		{"", "Death Note is by Tsugumi Ohba and Takeshi Obata, twelve volumes.", 5},
		{"", "Death Note is by Masashi Kishimoto.", 1},
		{"", "Fullmetal Alchemist was created by Hiroshi Tanaka.", 1}, // invented name
		{"", "Dragon Ball by Akira Toriyama runs 42 volumes.", 5},     // "Akira" inside a name is not the series
		{"Who wrote Monster?", "It's by Naoki Urasawa.", 5},           // subject from the prompt
		{"Who wrote Monster?", "It's by Naoki Kishimoto.", 1},
		{"", "Start with the first 3 volumes of Naruto.", 3}, // a part, not the total
		{"", "Naruto volume 80 is out now.", 1},
		{"", "Naruto volume 7 is in stock.", 5},
		{"", "Dr. Stone has 26 volumes. Haikyu!! has 45 volumes.", 5},
		{"", "Dr. Stone has 26 volumes. Haikyu!! has 40 volumes.", 1},
		{"", "We have lots of great manga.", 3},
		{"", "Mob Psycho 100 is by ONE and has 16 volumes.", 5},
	}
	for _, tt := range tests {
		if got := CheckAccuracy(c, tt.prompt, tt.response); got.Score != tt.want {
			t.Errorf("CheckAccuracy(%q, %q) = %d (%s), want %d", tt.prompt, tt.response, got.Score, got.Reason, tt.want)
		}
	}
}

func TestCustomerLimit(t *testing.T) {
	tests := []struct {
		in   string
		want Rating
		ok   bool
	}{
		{"Something for my 9-year-old?", AllAges, true},
		{"I'm 14, what should I read?", Teen, true},
		{"My daughter is 16, any ideas?", OlderTeen, true},
		{"I am 30 and love horror.", Mature, false},
		{"Anything kid-friendly?", AllAges, true},
		{"Nothing mature please.", OlderTeen, true},
		{"I'm 5 volumes into Naruto, what next?", Mature, false},
		{"Gifts for my 15 year old and my 8 year old", AllAges, true},
	}
	for _, tt := range tests {
		got, why, ok := CustomerLimit(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("CustomerLimit(%q) = %v, %v (%s), want %v, %v", tt.in, got, ok, why, tt.want, tt.ok)
		}
	}
}

func TestCheckAgeRating(t *testing.T) {
	c := loadCatalog(t)
	tests := []struct {
		customer, response string
		want               int
	}{
		{"For my 10-year-old?", "Try Doraemon, it's rated all-ages!", 5},
		{"For my 10-year-old?", "Try Berserk!", 1},
		{"For my 10-year-old?", "Berserk is too mature for a 10-year-old, but try Doraemon.", 5},
		{"For my 10-year-old?", "Try Chi's Sweet Home instead of Gantz.", 5},
		{"For my 10-year-old?", "I wouldn't recommend Hellsing.", 3},
		{"For my 10-year-old?", "Gantz is rated mature, so it's not for a 10-year-old.", 3},
		{"I'm 14.", "Naruto is a great pick!", 5},
		{"I'm 14.", "Naruto and Death Note are great picks!", 1},
		{"I'm 17.", "Death Note is a great pick!", 5},
		{"I love action.", "Berserk is a great pick!", 3},
		{"Something kid-friendly?", "Hikaru no Go by Yumi Hotta and Takeshi Obata.", 5},
	}
	for _, tt := range tests {
		if got := CheckAgeRating(c, tt.customer, tt.response); got.Score != tt.want {
			t.Errorf("CheckAgeRating(%q, %q) = %d (%s), want %d", tt.customer, tt.response, got.Score, got.Reason, tt.want)
		}
	}
}

func TestCheckUnknownObjective(t *testing.T) {
	if _, err := Check(loadCatalog(t), "vibes", "", ""); err == nil {
		t.Fatal("unknown objective accepted")
	}
}

// The generator and the rules must agree: every chosen response wins on
// its pair's objective (5 against at most 2), carries the objective's
// marker while the rejected does not, and neither response violates any
// other objective, so each pair teaches one thing.
func TestGenerateAgreesWithRules(t *testing.T) {
	c := loadCatalog(t)
	for _, seed := range []uint64{1, 2} {
		ps, err := Generate(c, 1000, seed)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		words := 0
		for _, p := range ps {
			count[p.Objective]++
			if err := p.Validate(Objectives); err != nil {
				t.Fatalf("%s: %v", p.ID, err)
			}
			if p.Source != "synthetic" {
				t.Fatalf("%s: source %q", p.ID, p.Source)
			}
			if !HasMarker(p.Objective, p.Chosen) || HasMarker(p.Objective, p.Rejected) {
				t.Errorf("%s (%s): marker %q: chosen %q rejected %q", p.ID, p.Objective, Markers[p.Objective], p.Chosen, p.Rejected)
			}
			for _, r := range []string{p.Chosen, p.Rejected} {
				n := len(strings.Fields(r))
				words = max(words, n)
				if n >= 40 {
					t.Errorf("%s: %d words: %q", p.ID, n, r)
				}
			}
			for _, o := range Objectives {
				a, _ := Check(c, o, p.Prompt, p.Chosen)
				b, _ := Check(c, o, p.Prompt, p.Rejected)
				if o == p.Objective && (a.Score != 5 || b.Score > 2) || o != p.Objective && (a.Score < 3 || b.Score < 3) {
					t.Errorf("%s pair on %s: prompt %q\n chosen %q: %d %s\n rejected %q: %d %s",
						p.Objective, o, p.Prompt, p.Chosen, a.Score, a.Reason, p.Rejected, b.Score, b.Reason)
				}
			}
		}
		for _, o := range Objectives {
			if count[o] != 250 {
				t.Errorf("seed %d: %d %s pairs, want 250", seed, count[o], o)
			}
		}
		if _, dropped := pairs.Dedupe(ps); dropped != 0 {
			t.Errorf("seed %d: %d duplicate pairs", seed, dropped)
		}
		t.Logf("seed %d: longest response %d words", seed, words)
	}
}

func TestGenerateDeterministic(t *testing.T) {
	c := loadCatalog(t)
	a, _ := Generate(c, 200, 7)
	b, _ := Generate(c, 200, 7)
	d, _ := Generate(c, 200, 8)
	var ba, bb, bd bytes.Buffer
	pairs.Write(&ba, a)
	pairs.Write(&bb, b)
	pairs.Write(&bd, d)
	if ba.String() != bb.String() {
		t.Fatal("same seed, different pairs")
	}
	if ba.String() == bd.String() {
		t.Fatal("different seeds, same pairs")
	}
	// Variety: a model must learn the pattern, not one string.
	distinct := map[string]bool{}
	for _, p := range a {
		distinct[p.Chosen] = true
	}
	if len(distinct) < 150 {
		t.Fatalf("only %d distinct chosen responses in 200 pairs", len(distinct))
	}
}

// The shipped sample data is exactly what the generator makes; run with
// -update to rewrite it after changing the generator or the catalog.
func TestShippedPairs(t *testing.T) {
	c := loadCatalog(t)
	train, eval, err := Synth(c, 1000, 0.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "testdata", "pairs")
	total := 0
	for _, f := range []struct {
		name string
		ps   []pairs.Pair
	}{{"train.jsonl", train}, {"eval.jsonl", eval}} {
		var want bytes.Buffer
		if err := pairs.Write(&want, f.ps); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, f.name)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := pairs.Save(path, f.ps); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestShippedPairs -update)", err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s differs from the generator's output; run go test ./align/manga -run TestShippedPairs -update", path)
		}
		total += len(got)
		loaded, st, err := pairs.Load(path, pairs.LoadOptions{Objectives: Objectives})
		if err != nil || len(loaded) != len(f.ps) {
			t.Fatalf("%s: %d pairs, %v", path, len(loaded), err)
		}
		t.Logf("%s: %s", f.name, strings.ReplaceAll(st.Summary(), "\n", " "))
	}
	if len(eval) < 150 || len(eval) > 250 {
		t.Errorf("eval holds %d pairs, want about 200", len(eval))
	}
	if total > 400<<10 {
		t.Errorf("shipped pairs take %d bytes, want < 400 KiB", total)
	}
}

// The built-in catalog is the repository's testdata/catalog.json, byte for
// byte: data synth without --catalog makes the shipped pairs.
func TestDefaultCatalog(t *testing.T) {
	want, err := os.ReadFile("../../testdata/catalog.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(defaultCatalog, want) {
		t.Fatal("align/manga/catalog.json differs from testdata/catalog.json: copy it again")
	}
	if c := DefaultCatalog(); len(c.Series) == 0 {
		t.Fatal("empty built-in catalog")
	}
}
