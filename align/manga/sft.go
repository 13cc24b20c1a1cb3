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

// SourceSFT is the source of the examples GenerateSFT makes.
const SourceSFT = "sft"

// The kinds of SFT example, in the order GenerateSFT cycles through them.
// Fact kinds state one fact of one series; the others answer a customer.
const (
	kindCount     = "count"     // volume count (accuracy)
	kindAuthor    = "author"    // authors (accuracy)
	kindStatus    = "status"    // complete or not, with the count (accuracy)
	kindRating    = "rating"    // age rating of a series (safety)
	kindRecommend = "recommend" // a pick within a stated age or content limit (safety)
	kindEscalate  = "escalate"  // repeated frustration: offer a human (escalation)
	kindSimilar   = "similar"   // "something like X": a series of the same genre (tone)
)

var sftKinds = []string{kindCount, kindAuthor, kindStatus, kindRating, kindRecommend, kindEscalate, kindSimilar}

var sftObjective = map[string]string{
	kindCount: Accuracy, kindAuthor: Accuracy, kindStatus: Accuracy, kindRating: Safety,
	kindRecommend: Safety, kindEscalate: Escalation, kindSimilar: Tone,
}

// sftExample is one generated example and what it is about (for tests).
type sftExample struct {
	kind   string
	series *Series // the series whose facts the answer states (nil: none)
	pair   pairs.Pair
}

// GenerateSFT makes n supervised examples from the catalog: the first stage
// of the design document's pipeline (SFT, where a model's knowledge comes
// from; DPO against the SFT model comes after). The kinds cycle: a series'
// volume count, its authors, whether it is complete (with the count), its
// age rating, an age-appropriate pick for a stated age or content limit, an
// offer of a human teammate after repeated frustration, and a series like
// one the customer names; the fact kinds walk the series in turn, so every
// series gets the same share. Each kind has many question phrasings
// (aliases and lower case included) and several answer phrasings; every
// answer states only catalog facts, in a friendly tone.
//
// The examples are preference pairs so that align train --method sft (which
// trains on the chosen response) and the DPO family both read them: chosen
// is the catalog-true answer, rejected the same answer with the fact wrong
// (another count, author, status or rating, a pick above the limit, a
// deflection, a cold tone). Objectives follow the judge's categories
// (accuracy, safety, escalation, tone), source is "sft". The same catalog,
// n and seed give the same examples.
func GenerateSFT(c *Catalog, n int, seed uint64) ([]pairs.Pair, error) {
	exs, err := generateSFT(c, n, seed)
	if err != nil {
		return nil, err
	}
	out := make([]pairs.Pair, len(exs))
	for i := range exs {
		out[i] = exs[i].pair
	}
	return out, nil
}

// SynthSFT generates n SFT examples and splits them into train and eval by
// id hash with the same seed, as Synth does for pairs.
func SynthSFT(c *Catalog, n int, evalFraction float64, seed uint64) (train, eval []pairs.Pair, err error) {
	ps, err := GenerateSFT(c, n, seed)
	if err != nil {
		return nil, nil, err
	}
	return pairs.Split(ps, evalFraction, seed)
}

func generateSFT(c *Catalog, n int, seed uint64) ([]sftExample, error) {
	if n < 0 {
		return nil, fmt.Errorf("example count %d is negative", n)
	}
	byRating := map[Rating][]*Series{}
	for i := range c.Series {
		s := &c.Series[i]
		byRating[s.Rating] = append(byRating[s.Rating], s)
	}
	if len(byRating[AllAges]) == 0 || len(byRating[Teen]) == 0 || len(byRating[Mature]) == 0 {
		return nil, errors.New("catalog needs all-ages and teen series (age-appropriate picks) and mature ones (picks above a limit)")
	}
	g := &sftGen{gen: gen{c: c, r: rand.New(rand.NewPCG(seed, 0x736674)), byRating: byRating}}
	makers := map[string]func(*Series) sftExample{
		kindCount: g.count, kindAuthor: g.author, kindStatus: g.status, kindRating: g.rating,
		kindRecommend: g.recommend, kindEscalate: g.escalate, kindSimilar: g.similar,
	}
	seen := map[string]bool{}
	out := make([]sftExample, 0, n)
	for i := 0; i < n; i++ {
		kind := sftKinds[i%len(sftKinds)]
		s := &c.Series[(i/len(sftKinds))%len(c.Series)]
		var ex sftExample
		for try := 0; ; try++ {
			if try == 200 {
				return nil, fmt.Errorf("example %d (%s, %s): no new phrasing after %d tries; lower n", i, kind, s.Title, try)
			}
			ex = makers[kind](s)
			p := &ex.pair
			p.Objective, p.Source = sftObjective[kind], SourceSFT
			p.ID = jsonl.RecordID(SourceSFT, p.Objective, p.Prompt, p.Chosen, p.Rejected)
			if !seen[p.ID] {
				seen[p.ID] = true
				break
			}
		}
		ex.kind = kind
		out = append(out, ex)
	}
	return out, nil
}

type sftGen struct{ gen }

// name is how a customer names the series: its title or an alias, now and
// then in lower case.
func (g *sftGen) name(s *Series) string {
	n := s.Title
	if len(s.Aliases) > 0 && g.r.IntN(3) == 0 {
		n = g.pick(s.Aliases)
	}
	if g.r.IntN(6) == 0 {
		n = strings.ToLower(n)
	}
	return n
}

// ask fills a question template with the customer's name for the series.
func (g *sftGen) ask(tmpl string, s *Series) string {
	return sentenceCase(fill(tmpl, "{T}", g.name(s)))
}

var (
	sftOpeners = []string{"Happy to help! ", "Great question! ", "Sure thing! ", "Good question! ",
		"Of course! ", "Glad you asked! ", ""}

	sftCountPrompts = []string{
		"How many volumes does {T} have?", "How many volumes of {T} are there?", "How long is {T}?",
		"How many books is {T}?", "I'd like to collect {T}. How many volumes is that?",
		"What's the volume count for {T}?", "How many {T} volumes are out?", "Do you have {T} in stock?",
		"Is {T} a long series?", "{T}: how many volumes?", "How many volumes would I need for all of {T}?",
		"Tell me how long {T} is.",
	}
	// {V}: "72 volumes" or "42 volumes so far"; {W}: the same with a wrong count.
	sftCountAnswers = []string{
		"{T} has {V}.", "{T} runs {V}.", "{T} is {N} volumes long{SF}.", "We carry {T}: it has {V}.",
		"{T} comes to {V}.", "All of {T} is {V}.",
	}
	sftAuthorPrompts = []string{
		"Who wrote {T}?", "Who is the author of {T}?", "Who created {T}?", "Who drew {T}?",
		"Which mangaka made {T}?", "Who's behind {T}?", "Who made {T}? Just curious.", "{T} is by who?",
		"Do you know who wrote {T}?",
	}
	sftAuthorAnswers = []string{"{T} is by {A}.", "{T} was created by {A}.", "{T} was written by {A}.",
		"{T} was made by {A}."}
	sftStatusPrompts = []string{
		"Is {T} finished?", "Is {T} complete?", "Has {T} ended?", "Is {T} still coming out?",
		"Is {T} done or still going?", "Did {T} finish?", "Is {T} over yet?", "Is the {T} series complete?",
	}
	sftCompleteAnswers = []string{"Yes! {T} is complete, with {N} volumes in all.",
		"{T} is finished: it ended at {N} volumes.", "Yes, {T} is complete. It has {N} volumes."}
	sftOngoingAnswers = []string{"Not yet! {T} isn't complete, and it has {N} volumes so far.",
		"{T} is still going: {N} volumes so far.", "{T} isn't finished yet. It has {N} volumes so far."}
	sftRatingPrompts = []string{
		"What age is {T} for?", "What's the age rating of {T}?", "Is {T} for adults?",
		"Who is {T} meant for, age-wise?", "What rating does {T} have?", "Is {T} a mature series?",
	}
	ratingDesc = map[Rating]string{
		AllAges: "fine for every age", Teen: "for readers 13 and up", OlderTeen: "for readers 16 and up",
		Mature: "for adult readers, 18 and up",
	}
	sftRatingAnswers = []string{"{T} is rated {R}: {D}.", "Our shelves have {T} as {R}, {D}.",
		"{T} carries a {R} rating, {D}."}
	// {age} years old: a stated limit the answer must respect.
	sftAgeCheckPrompts = []string{
		"Is {T} okay for my {age}-year-old?", "Can my {age}-year-old read {T}?",
		"Is {T} suitable for a {age} year old?", "My {rel} is {age}. Is {T} appropriate?",
		"Would {T} be alright for {a} {age}-year-old {rel}?",
	}
	sftAgeOK = []string{"Yes! {T} is rated {R}, so it's age-appropriate for a {age}-year-old.",
		"Good news: {T} is rated {R}, an age-appropriate read at {age}."}
	sftAgeNo = []string{"{T} is rated {R} ({min}+), so I'd hold off at {age}. {P} is an age-appropriate pick instead.",
		"{T} is too mature for a {age}-year-old: it's rated {R}. {P} is an age-appropriate choice, rated {PR}."}
	sftAgeWrong = []string{"Yes! {T} is a great read at {age}.", "Sure, {T} is fine for a {age}-year-old."}

	sftRecommendPrompts = []string{
		"Can you recommend a manga for my {age}-year-old?", "I'm {age}. What should I read?",
		"What manga would suit {a} {age} year old?", "My {rel} is {age}, any manga ideas?",
		"Looking for a gift for my {age}-year-old {rel}.", "Any manga for {a} {age}-year-old {rel} who likes {G}?",
		"Suggest something for my {rel}, who is {age}.",
	}
	sftKidPrompts = []string{"Something kid-friendly please, what do you suggest?", "Any manga for kids?",
		"I need a manga for children, nothing scary.", "What's good for young children?"}
	sftNoMaturePrompts = []string{"Nothing mature please. Any recommendations?", "Something with no gore, please. Ideas?",
		"I want {aG} series, but nothing too violent.", "Recommend me something, nothing graphic please."}
	sftRecommendAnswers = []string{
		"For a {age}-year-old, try {P}: it's rated {PR} and age-appropriate.",
		"{P} is a great age-appropriate pick for {age}, rated {PR}.",
		"I'd suggest {P}, {aG} series rated {PR}. It's age-appropriate at {age}.",
	}
	sftLimitAnswers = []string{
		"Try {P}: it's rated {PR} and age-appropriate.", "{P} is a great age-appropriate pick, rated {PR}.",
		"I'd suggest {P}, {aG} series rated {PR}.",
	}

	sftEscalatePrompts = []string{
		"This is the third time I'm asking about my {T} order. Still nothing!",
		"I already asked twice where my {T} preorder is. Nobody answers. So frustrating.",
		"Ugh, my {T} box set still hasn't shipped and your chat keeps giving me the same useless answer.",
		"My {T} books arrived damaged AGAIN. I'm fed up.",
		"How many times do I have to explain? You sent the wrong {T} book twice now!",
		"Still waiting on my {T} refund. I've written three times already. This is a waste of time.",
		"Come on, my {T} order was charged twice and nobody has fixed it!!",
		"Seriously, this is ridiculous. Second time my {T} order got lost.",
		"I'm sick of this. My {T} order is late again and no one replies.",
	}
	sftSorry   = []string{"I'm so sorry about this! ", "I'm really sorry for the trouble! ", "Oh no, I'm so sorry! "}
	sftHandoff = []string{"I can connect you with a human teammate right away", "Let me connect you with a human teammate now",
		"I'll get a human teammate on this right away"}
	sftHandoffEnd = []string{" to sort out your {T} order.", " so they can fix this for you.", ".",
		" and stay with you until it's fixed."}

	sftSimilarPrompts = []string{
		"I loved {T}. What should I read next?", "Anything like {T}?", "Recommend something similar to {T}.",
		"I just finished {T}, what now?", "If I liked {T}, what else would I like?",
	}
	sftSimilarAnswers = []string{"If you loved {T}, try {U}: it's {aG} series too!",
		"{U} is a great next read after {T}, another {G} favourite!", "Fans of {T} often love {U}. It's {aG} series too!"}
)

// answer puts a friendly opener before a filled answer, unless it starts
// with one. Answers are short: every token is a step of the SFT run.
func (g *sftGen) answer(body string) string {
	opener := g.pick(sftOpeners)
	for _, o := range []string{"Yes", "Not yet", "Good news"} {
		if strings.HasPrefix(body, o) {
			opener = ""
		}
	}
	return opener + body
}

func (g *sftGen) wrongCount(s *Series) int {
	w := s.Volumes
	for w == s.Volumes || w < 1 {
		if g.r.IntN(3) == 0 {
			w = s.Volumes - 1 - g.r.IntN(3)
		} else {
			w = s.Volumes + 1 + g.r.IntN(8)
		}
	}
	return w
}

// factVars are vars plus {SF} (" so far" for an unfinished series) and
// {D} (what the rating means).
func factVars(s *Series, genre string) []string {
	return append(vars(s, genre), "{SF}", soFar(s), "{D}", ratingDesc[s.Rating], "{min}", strconv.Itoa(s.Rating.MinAge()))
}

func (g *sftGen) count(s *Series) sftExample {
	v := factVars(s, g.genre(s))
	w := g.wrongCount(s)
	tmpl := g.pick(sftOpeners) + g.pick(sftCountAnswers)
	chosen := fill(tmpl, v...)
	rejected := fill(tmpl, append([]string{"{V}", volumesWord(s, w), "{N}", strconv.Itoa(w)}, v...)...)
	return sftExample{series: s, pair: pairs.Pair{Prompt: g.ask(g.pick(sftCountPrompts), s), Chosen: chosen, Rejected: rejected}}
}

func (g *sftGen) author(s *Series) sftExample {
	v := factVars(s, g.genre(s))
	var x string
	for x == "" || slices.Contains(s.Authors, x) {
		if g.r.IntN(2) == 0 {
			x = g.pick(inventedAuthors)
		} else {
			x = g.series().Authors[0]
		}
	}
	tmpl := g.pick(sftAuthorAnswers)
	opener := g.pick(sftOpeners)
	return sftExample{series: s, pair: pairs.Pair{Prompt: g.ask(g.pick(sftAuthorPrompts), s),
		Chosen: opener + fill(tmpl, v...), Rejected: opener + fill(tmpl, append([]string{"{A}", x}, v...)...)}}
}

func (g *sftGen) status(s *Series) sftExample {
	v := factVars(s, g.genre(s))
	right, wrong := sftCompleteAnswers, sftOngoingAnswers
	if !s.Complete {
		right, wrong = wrong, right
	}
	return sftExample{series: s, pair: pairs.Pair{Prompt: g.ask(g.pick(sftStatusPrompts), s),
		Chosen: g.answer(fill(g.pick(right), v...)), Rejected: g.answer(fill(g.pick(wrong), v...))}}
}

// agePhrase picks a reader age for limit and fills the age placeholders.
func (g *sftGen) agePhrase(tmpl string, limit Rating) (string, int) {
	ages := map[Rating][2]int{AllAges: {6, 12}, Teen: {13, 15}, OlderTeen: {16, 17}}[limit]
	age := ages[0] + g.r.IntN(ages[1]-ages[0]+1)
	a := "a"
	if age == 8 || age == 11 || age == 18 {
		a = "an"
	}
	return fill(tmpl, "{age}", strconv.Itoa(age), "{a}", a, "{rel}", g.pick(relatives)), age
}

// safePick is a series within limit for an age-appropriate suggestion: an
// all-ages series below 13, a teen series from 13 on (teen is within every
// limit from 13 up, so a pick never depends on telling 13 from 16).
func (g *sftGen) safePick(limit Rating) *Series {
	if limit == AllAges {
		return g.from(g.byRating[AllAges])
	}
	return g.from(g.byRating[Teen])
}

// rating: a series' age rating, asked plainly or for a stated age.
func (g *sftGen) rating(s *Series) sftExample {
	v := factVars(s, g.genre(s))
	if g.r.IntN(2) == 0 {
		wrongR := Rating((int(s.Rating) + 1 + g.r.IntN(3)) % 4)
		tmpl := g.pick(sftRatingAnswers)
		rv := append([]string{"{R}", wrongR.String(), "{D}", ratingDesc[wrongR]}, v...)
		return sftExample{series: s, pair: pairs.Pair{Prompt: g.ask(g.pick(sftRatingPrompts), s),
			Chosen: g.answer(fill(tmpl, v...)), Rejected: g.answer(fill(tmpl, rv...))}}
	}
	// A stated age: a limit the series is within or above.
	limit := Rating(g.r.IntN(3))
	prompt, age := g.agePhrase(g.pick(sftAgeCheckPrompts), limit)
	prompt = g.ask(prompt, s)
	av := append([]string{"{age}", strconv.Itoa(age)}, v...)
	if s.Rating <= limit {
		wrongR := Rating(int(s.Rating) + 1 + g.r.IntN(int(Mature-s.Rating)))
		return sftExample{series: s, pair: pairs.Pair{Prompt: prompt, Chosen: g.answer(fill(g.pick(sftAgeOK), av...)),
			Rejected: fill("{T} is rated {R}, so I'd hold off at {age}.", append([]string{"{R}", wrongR.String()}, av...)...)}}
	}
	p := g.safePick(limit)
	pv := append([]string{"{P}", p.Title, "{PR}", p.Rating.String()}, av...)
	return sftExample{series: s, pair: pairs.Pair{Prompt: prompt, Chosen: g.answer(fill(g.pick(sftAgeNo), pv...)),
		Rejected: g.answer(fill(g.pick(sftAgeWrong), av...))}}
}

// recommend: an age-appropriate pick for a stated age or content limit
// (the series argument only turns the cycle; the pick follows the limit).
func (g *sftGen) recommend(*Series) sftExample {
	var limit Rating
	var prompt, tmpl string
	age := 0
	switch k := g.r.IntN(8); {
	case k == 0:
		limit, prompt, tmpl = AllAges, g.pick(sftKidPrompts), g.pick(sftLimitAnswers)
	case k == 1:
		limit, prompt, tmpl = OlderTeen, g.pick(sftNoMaturePrompts), g.pick(sftLimitAnswers)
	default:
		limit = Rating(g.r.IntN(3))
		prompt, age = g.agePhrase(g.pick(sftRecommendPrompts), limit)
		tmpl = g.pick(sftRecommendAnswers)
	}
	p := g.safePick(limit)
	genre := g.genre(p)
	prompt = sentenceCase(fill(prompt, "{G}", genre, "{aG}", article(genre)+" "+genre))
	var bad []*Series
	for r := limit + 1; r <= Mature; r++ {
		bad = append(bad, g.byRating[r]...)
	}
	wrong := g.from(bad)
	pv := []string{"{P}", p.Title, "{PR}", p.Rating.String(), "{age}", strconv.Itoa(age), "{aG}", article(genre) + " " + genre}
	rej := fill(g.pick(unsafeRejected), vars(wrong, g.genre(wrong))...)
	return sftExample{series: p, pair: pairs.Pair{Prompt: prompt, Chosen: g.answer(fill(tmpl, pv...)), Rejected: rej}}
}

func (g *sftGen) escalate(s *Series) sftExample {
	v := factVars(s, g.genre(s))
	chosen := g.pick(sftSorry) + g.pick(sftHandoff) + g.pick(sftHandoffEnd)
	return sftExample{pair: pairs.Pair{Prompt: fill(g.pick(sftEscalatePrompts), v...), Chosen: fill(chosen, v...),
		Rejected: fill(g.pick(deflections), v...)}}
}

// similar: a series sharing a genre with the one the customer liked (no
// age stated, so any rating will do).
func (g *sftGen) similar(s *Series) sftExample {
	var like []*Series
	for i := range g.c.Series {
		o := &g.c.Series[i]
		if o != s && slices.ContainsFunc(o.Genres, func(x string) bool { return slices.Contains(s.Genres, x) }) {
			like = append(like, o)
		}
	}
	if len(like) == 0 {
		for i := range g.c.Series {
			if o := &g.c.Series[i]; o != s {
				like = append(like, o)
			}
		}
	}
	u := g.from(like)
	var genre string
	for _, x := range u.Genres {
		if slices.Contains(s.Genres, x) {
			genre = x
			break
		}
	}
	if genre == "" {
		genre = u.Genres[0]
	}
	v := append([]string{"{U}", u.Title}, factVars(s, genre)...)
	body := fill(g.pick(sftSimilarAnswers), v...)
	rejected := strings.TrimSpace(g.pick(coldOpeners) + " " + strings.TrimSuffix(strings.ReplaceAll(body, "!", "."), ".") + ". " + g.pick(coldClosers))
	return sftExample{series: s, pair: pairs.Pair{Prompt: g.ask(g.pick(sftSimilarPrompts), s),
		Chosen: g.answer(body), Rejected: rejected}}
}
