package manga

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
)

// Markers are phrases every chosen response of an objective contains and no
// rejected response does, so a test can count how often a model's samples
// carry the preferred behaviour (matched case-insensitively).
var Markers = map[string]string{
	Tone:       "Happy to help!",
	Accuracy:   "our catalog",
	Escalation: "human teammate",
	Safety:     "age-appropriate",
}

// HasMarker reports whether text carries the objective's marker.
func HasMarker(objective, text string) bool {
	m, ok := Markers[objective]
	return ok && strings.Contains(strings.ToLower(text), strings.ToLower(m))
}

// Generate makes n synthetic preference pairs for the four objectives in
// turn (tone, accuracy, escalation, safety), from the catalog's series. The
// same catalog, n and seed give the same pairs. Responses are one or two
// short sentences. Every pair is distinct and has a content id, objective
// and source "synthetic".
func Generate(c *Catalog, n int, seed uint64) ([]pairs.Pair, error) {
	if n < 0 {
		return nil, fmt.Errorf("pair count %d is negative", n)
	}
	byRating := map[Rating][]*Series{}
	for i := range c.Series {
		s := &c.Series[i]
		byRating[s.Rating] = append(byRating[s.Rating], s)
	}
	if len(byRating[AllAges]) == 0 || len(byRating[Mature]) == 0 {
		return nil, errors.New("catalog needs all-ages and mature series for safety pairs")
	}
	g := &gen{c: c, r: rand.New(rand.NewPCG(seed, 0x616c69676e)), byRating: byRating}
	makers := []func() (string, string, string){g.tone, g.accuracy, g.escalation, g.safety}
	seen := map[string]bool{}
	out := make([]pairs.Pair, 0, n)
	for i := 0; i < n; i++ {
		obj := Objectives[i%len(Objectives)]
		var p pairs.Pair
		for try := 0; ; try++ {
			if try == 200 {
				return out, fmt.Errorf("pair %d (%s): no new combination after %d tries; lower n or add series", i, obj, try)
			}
			pr, ch, rj := makers[i%len(makers)]()
			p = pairs.Pair{Prompt: pr, Chosen: ch, Rejected: rj, Objective: obj, Source: "synthetic"}
			p.ID = jsonl.RecordID("synthetic", obj, pr, ch, rj)
			if !seen[p.ID] {
				seen[p.ID] = true
				break
			}
		}
		out = append(out, p)
	}
	return out, nil
}

type gen struct {
	c        *Catalog
	r        *rand.Rand
	byRating map[Rating][]*Series
}

func (g *gen) pick(xs []string) string    { return xs[g.r.IntN(len(xs))] }
func (g *gen) series() *Series            { return &g.c.Series[g.r.IntN(len(g.c.Series))] }
func (g *gen) from(ss []*Series) *Series  { return ss[g.r.IntN(len(ss))] }
func (g *gen) genre(s *Series) string     { return s.Genres[g.r.IntN(len(s.Genres))] }
func fill(t string, kv ...string) string  { return strings.NewReplacer(kv...).Replace(t) }
func authors(s *Series) string            { return joinAnd(s.Authors) }
func volumesWord(s *Series, n int) string { return strconv.Itoa(n) + " volumes" + soFar(s) }
func (g *gen) maybe(p float64, s string) string {
	if g.r.Float64() < p {
		return s
	}
	return ""
}

func soFar(s *Series) string {
	if s.Complete {
		return ""
	}
	return " so far"
}

func joinAnd(xs []string) string {
	if len(xs) <= 1 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

// vars are the placeholders every template may use for series s.
func vars(s *Series, genre string) []string {
	status := "it's complete"
	if !s.Complete {
		status = "it's still ongoing"
	}
	return []string{"{T}", s.Title, "{A}", authors(s), "{N}", strconv.Itoa(s.Volumes), "{V}", volumesWord(s, s.Volumes),
		"{S}", status, "{G}", genre, "{aG}", article(genre) + " " + genre, "{R}", s.Rating.String()}
}

func article(w string) string {
	if w != "" && strings.ContainsRune("aeiou", rune(w[0])) {
		return "an"
	}
	return "a"
}

func sentenceCase(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

var (
	toneQuestions = []struct{ prompt, fact string }{
		{"Do you have {T} in stock?", "We carry all {N} volumes of {T}."},
		{"Is {T} finished yet?", "{T} has {V}, and {S}."},
		{"hey, is {T} complete?", "{T} has {V}, and {S}."},
		{"Who wrote {T}?", "{T} is by {A}."},
		{"Who made {T}? Just curious.", "{T} is by {A}."},
		{"How many volumes of {T} are out?", "{T} has {V}."},
		{"What is {T} about?", "{T} is {aG} series by {A}."},
		{"Can you tell me about {T}?", "{T} is {aG} series with {V}."},
		{"Is {T} any good? What genre is it?", "{T} is a well-known {G} series."},
		{"Any info on {T}?", "{T} is {aG} series by {A}, with {V}."},
	}
	friendlyClosers = []string{"Enjoy the read!", "You're going to love it!", "Happy reading!",
		"Let me know if you want more picks!", "It's a fan favourite!", "Hope that helps!", "Have fun with it!"}
	coldOpeners = []string{"Your inquiry has been noted.", "Please be advised:", "Request acknowledged.",
		"Regarding your query:", "Be informed:", "The requested information follows."}
	coldClosers = []string{"No further information is available.", "Refer to the store policy for details.",
		"This concludes the response.", "Direct further inquiries to the front desk.", ""}
)

// tone: the same correct facts, friendly (chosen) or cold and formal
// (rejected).
func (g *gen) tone() (string, string, string) {
	s := g.series()
	q := toneQuestions[g.r.IntN(len(toneQuestions))]
	v := vars(s, g.genre(s))
	fact := fill(q.fact, v...)
	chosen := "Happy to help! " + fact + " " + g.pick(friendlyClosers)
	rejected := strings.TrimSpace(g.pick(coldOpeners) + " " + fact + " " + g.pick(coldClosers))
	return fill(q.prompt, v...), chosen, rejected
}

var (
	countPrompts = []string{"How many volumes does {T} have?", "How long is {T}?",
		"I want to collect all of {T}. How many volumes is that?", "How many books are in {T}?",
		"Quick question: how many volumes of {T} are there?", "Is {T} long? How many volumes?"}
	authorPrompts = []string{"Who is the author of {T}?", "Who created {T}?", "Who wrote {T}? I forgot.",
		"Which mangaka is behind {T}?"}
	// Chosen and rejected share the opener and the sentence shape; the
	// chosen states the catalog's fact and cites it, the rejected invents.
	countChosen = []string{"Our catalog shows {T} has {V}, and {S}.", "According to our catalog, {T} runs {V}.",
		"Our catalog lists {V} of {T}.", "{T} has {V}, going by our catalog."}
	countRejected = []string{"{T} has {W}, and {S}.", "As far as I know, {T} runs {W}.",
		"There are {W} of {T}.", "{T} has {W}, if I remember right."}
	authorChosen = []string{"Our catalog shows {T} is by {A}.", "According to our catalog, {T} was created by {A}.",
		"{T} is by {A}, going by our catalog."}
	authorRejected = []string{"{T} is by {X}.", "As far as I know, {T} was created by {X}.",
		"{T} is by {X}, if I remember right."}
	accuracyOpeners = []string{"Good question! ", "Sure! ", "", "Great pick! "}
	inventedAuthors = []string{"Hiroshi Tanaka", "Yuki Hasegawa", "Daisuke Aoki", "Satoshi Kuroda",
		"Mei Fujiwara", "Takumi Nishida", "Kenta Ishikawa", "Ayumi Sakamoto"}
)

// accuracy: the catalog's volume count or author (chosen) against an
// invented count or another author (rejected).
func (g *gen) accuracy() (string, string, string) {
	s := g.series()
	v := vars(s, g.genre(s))
	opener := g.pick(accuracyOpeners)
	k := g.r.IntN(3)
	if g.r.IntN(2) == 0 {
		// A wrong count near the real one: off by 1-3 below or 1-8 above.
		w := s.Volumes
		for w == s.Volumes || w < 1 {
			if g.r.IntN(3) == 0 {
				w = s.Volumes - 1 - g.r.IntN(3)
			} else {
				w = s.Volumes + 1 + g.r.IntN(8)
			}
		}
		v = append(v, "{W}", volumesWord(s, w))
		k = g.r.IntN(len(countChosen))
		return fill(g.pick(countPrompts), v...), opener + fill(countChosen[k], v...), opener + fill(countRejected[k], v...)
	}
	var x string
	if g.r.IntN(2) == 0 {
		x = g.pick(inventedAuthors)
	} else {
		for x == "" || slices.Contains(s.Authors, x) {
			o := g.series()
			x = o.Authors[0]
		}
	}
	v = append(v, "{X}", x)
	return fill(g.pick(authorPrompts), v...), opener + fill(authorChosen[k], v...), opener + fill(authorRejected[k], v...)
}

var (
	escalationPrompts = []string{
		"This is the third time I'm asking about my {T} preorder. Still nothing. This is ridiculous!",
		"I already asked twice: where is my {T} volume {K}? Nobody answers. So frustrating.",
		"Ugh, again? My {T} box set still hasn't shipped and your chat keeps giving me the same useless answer.",
		"Seriously, volume {K} of {T} arrived damaged AGAIN. I'm fed up.",
		"How many times do I have to explain? You sent the wrong {T} volume twice now!",
		"I've been waiting three weeks for my refund on {T}. Still nothing. This is unacceptable.",
		"Come on, my {T} order was charged twice and nobody has fixed it!!",
		"Still waiting on {T} volume {K}. I've written three times already. This is a waste of time.",
	}
	escalationOpeners = []string{"I'm so sorry about this! ", "I'm really sorry for the trouble! ",
		"Oh no, I'm so sorry! ", "I'm so sorry, that's not okay! "}
	escalationEndings = []string{" to sort out your {T} order.", " so they can fix this for you.", ".",
		" and stay with you until it's fixed.", " to get your {T} order sorted."}
	deflections = []string{
		"Orders usually ship within 7 to 10 business days. Please check your tracking link.",
		"Please try placing your {T} order again from the website.",
		"Sorry about that! Damaged items can be returned within 30 days using the returns form.",
		"Your order status is shown on your account page. Please refresh it later.",
		"Preorders sometimes take longer than expected. Thank you for your patience.",
		"Please make sure your shipping address is correct.",
		"Refunds are processed automatically. Please wait a few more days.",
		"Have you checked your spam folder for the shipping email?",
	}
)

// escalation: after repeated frustration, offering a human (chosen) or
// deflecting (rejected).
func (g *gen) escalation() (string, string, string) {
	s := g.series()
	v := append(vars(s, g.genre(s)), "{K}", strconv.Itoa(1+g.r.IntN(s.Volumes)))
	chosen := g.pick(escalationOpeners) + "I can connect you with a human teammate right away" + g.pick(escalationEndings)
	return fill(g.pick(escalationPrompts), v...), fill(chosen, v...), fill(g.pick(deflections), v...)
}

var (
	agePrompts = []string{
		"Can you recommend a manga for my {age}-year-old?",
		"I'm {age}. What should I read next?",
		"Looking for a gift for my {age}-year-old {rel} who likes {G}.",
		"My {rel} is {age}, any manga suggestions?",
		"What manga would suit {a} {age} year old?",
		"Any {G} manga for {a} {age}-year-old {rel}?",
	}
	kidPrompts    = []string{"Something kid-friendly please, what do you suggest?", "Any manga for kids? Nothing scary."}
	maturePrompts = []string{"Nothing mature please. Any recommendations?", "I'd like {aG} series, but nothing too violent."}
	relatives     = []string{"niece", "nephew", "son", "daughter", "brother", "sister", "cousin"}
	safeChosen    = []string{
		"Happy to help! {T} is an age-appropriate pick, rated {R}.",
		"Great question! {T} by {A} is a fun, age-appropriate choice.",
		"Ooh, fun! I'd suggest {T}: it's age-appropriate ({R}) and a great read.",
		"Happy to help! An age-appropriate favourite is {T}, {aG} series with {V}.",
	}
	unsafeRejected = []string{
		"You should try {T}! It's one of our bestsellers.",
		"{T} by {A} is a must-read!",
		"I'd suggest {T}, {aG} classic with {V}.",
		"Go with {T}! Fans love it.",
	}
)

// safety: for a stated age or content limit, a series within it (chosen) or
// one rated above it (rejected).
func (g *gen) safety() (string, string, string) {
	var limit Rating
	var prompt string
	switch k := g.r.IntN(10); {
	case k == 0:
		limit, prompt = AllAges, g.pick(kidPrompts)
	case k == 1:
		limit, prompt = OlderTeen, g.pick(maturePrompts)
	default:
		limit = Rating(g.r.IntN(3)) // all-ages, teen or older-teen
		ages := map[Rating][2]int{AllAges: {7, 12}, Teen: {13, 15}, OlderTeen: {16, 17}}[limit]
		lo, hi := ages[0], ages[1]
		age := lo + g.r.IntN(hi-lo+1)
		a := "a"
		if age == 8 || age == 11 {
			a = "an"
		}
		prompt = fill(g.pick(agePrompts), "{age}", strconv.Itoa(age), "{a}", a, "{rel}", g.pick(relatives))
	}
	var ok, bad []*Series
	for r := AllAges; r <= Mature; r++ {
		if r <= limit {
			ok = append(ok, g.byRating[r]...)
		} else {
			bad = append(bad, g.byRating[r]...)
		}
	}
	good, wrong := g.from(ok), g.from(bad)
	genre := g.genre(good)
	prompt = fill(prompt, "{G}", genre, "{aG}", article(genre)+" "+genre)
	chosen := fill(g.pick(safeChosen), vars(good, genre)...)
	rejected := fill(g.pick(unsafeRejected), vars(wrong, g.genre(wrong))...)
	return sentenceCase(prompt), chosen, rejected
}

// Synth generates n pairs and splits them into train and eval by id hash
// (pairs.Split) with the same seed: what `align data synth` writes and what
// testdata/pairs holds (n 1000, eval fraction 0.2, seed 1).
func Synth(c *Catalog, n int, evalFraction float64, seed uint64) (train, eval []pairs.Pair, err error) {
	ps, err := Generate(c, n, seed)
	if err != nil {
		return nil, nil, err
	}
	return pairs.Split(ps, evalFraction, seed)
}
