package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/pipeline"
	"github.com/align-dev/align/align/testgate"
	"github.com/align-dev/align/bindings"
)

// Tests on the real pretrained models of ../shared/models (README there):
// found through ALIGN_SHARED_MODELS, or the first shared/models folder
// walking up from the package directory. A clone without them skips these
// tests and says so.

func sharedModel(t testing.TB, name string) string {
	t.Helper()
	return testgate.SharedModel(t, name)
}

const (
	storiesTrain   = "../../testdata/stories/train.jsonl"
	storiesEval    = "../../testdata/stories/eval.jsonl"
	storiesPrompts = "../../testdata/stories/prompts.txt"
)

var (
	cheerfulWords = regexp.MustCompile(`(?i)\b(happy|happily|smiled?|smiles|smiling|laugh(ed|s|ing)?|fun|joy|glad|lov(e|ed|es)|hugs?|hugged|proud|great|best|danced?|sang)\b`)
	sadWords      = regexp.MustCompile(`(?i)\b(sad|sadly|cr(y|ied|ies|ying)|alone|lonely|hurt|scared|angry|lost|broke|broken|sick|bad)\b`)
)

// storyScore is what sampling from a model says about a DPO run on the
// stories: the share of continuations with a cheerful word and with a sad
// word, and fluency, the base model's mean log-prob per token of the
// continuations (a policy that drifts into misspellings loses it).
type storyScore struct {
	Cheerful, Sad, Fluency float64
	// NonWords is the share of words in the continuations that appear
	// neither in testdata/stories nor in 240 base-model continuations of
	// another seed: misspellings ("Kce") and fragments.
	NonWords float64
	N        int
	Example  string
}

var wordRe = regexp.MustCompile(`[A-Za-z]+`)

// knownWords is every word of testdata/stories and of base samples drawn
// with seed 1000 (lower case).
func knownWords(t testing.TB, model string) map[string]bool {
	known := map[string]bool{}
	for _, f := range []string{storiesTrain, storiesEval, storiesPrompts} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range wordRe.FindAllString(string(b), -1) {
			known[strings.ToLower(w)] = true
		}
	}
	for _, text := range sampleStories(t, model, "", 6, 1000) {
		for _, w := range wordRe.FindAllString(text, -1) {
			known[strings.ToLower(w)] = true
		}
	}
	return known
}

// dataFluency is the base model's mean log-prob per token of the held-out
// chosen continuations: what imitating the pairs' own wording scores.
func dataFluency(t testing.TB, model string) float64 {
	m, err := bindings.LoadModel(model, bindings.ModelOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, _ := os.ReadFile(storiesEval)
	var sum float64
	var n int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var p struct{ Prompt, Chosen string }
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatal(err)
		}
		pt, _ := m.Tokenize(p.Prompt+"\n", true, false)
		ct, _ := m.Tokenize(p.Chosen, false, false)
		lp, err := s.LogProbs(context.Background(), append(pt, ct...))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range lp[len(pt)-1:] {
			sum += float64(v)
			n++
		}
	}
	return sum / float64(n)
}

// sampleStories is continuations (text) of every prompt, perPrompt each.
func sampleStories(t testing.TB, model, adapter string, perPrompt int, seed uint32) []string {
	texts, _, _ := generateStories(t, model, adapter, perPrompt, seed)
	return texts
}

// scoreStories samples perPrompt continuations (48 tokens, T 0.8, top-p
// 0.95) of each prompt in testdata/stories/prompts.txt from model + adapter
// ("" for the base) and scores them.
func scoreStories(t testing.TB, model, adapter string, perPrompt int, known map[string]bool) storyScore {
	t.Helper()
	texts, prompts, conts := generateStories(t, model, adapter, perPrompt, 1)
	m, err := bindings.LoadModel(model, bindings.ModelOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: 256}) // the base: fluency
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var sc storyScore
	var lpSum float64
	var lpN, words, odd int
	for i, text := range texts {
		if i == 0 {
			sc.Example = text
		}
		sc.N++
		if cheerfulWords.MatchString(text) {
			sc.Cheerful++
		}
		if sadWords.MatchString(text) {
			sc.Sad++
		}
		for _, w := range wordRe.FindAllString(text, -1) {
			words++
			if !known[strings.ToLower(w)] {
				odd++
			}
		}
		if len(conts[i]) == 0 {
			continue
		}
		seq := append(append([]int32(nil), prompts[i]...), conts[i]...)
		lp, err := s.LogProbs(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range lp[len(prompts[i])-1:] {
			lpSum += float64(v)
			lpN++
		}
	}
	sc.Cheerful /= float64(sc.N)
	sc.Sad /= float64(sc.N)
	sc.Fluency = lpSum / math.Max(float64(lpN), 1)
	sc.NonWords = float64(odd) / math.Max(float64(words), 1)
	return sc
}

// generateStories samples perPrompt continuations of each prompt and
// returns their text, prompt tokens and continuation tokens (EOS cut).
func generateStories(t testing.TB, model, adapter string, perPrompt int, seed uint32) ([]string, [][]int32, [][]int32) {
	t.Helper()
	b, err := os.ReadFile(storiesPrompts)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bindings.LoadModel(model, bindings.ModelOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var as []bindings.LoRAScale
	if adapter != "" {
		l, err := bindings.LoadLoRA(m, adapter)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		as = []bindings.LoRAScale{{LoRA: l, Scale: 1}}
	}
	var prompts [][]int32
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// the plain format training uses for models without a chat template
		toks, err := m.Tokenize(line+"\n", true, false)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < perPrompt; k++ {
			prompts = append(prompts, toks)
		}
	}
	res, err := bindings.GenerateBatch(context.Background(), m, as, prompts,
		bindings.SamplerParams{Temperature: 0.8, TopP: 0.95, Seed: seed, MaxTokens: 48}, 2)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	var conts [][]int32
	for _, toks := range res.Tokens {
		var cont []int32
		for _, tk := range toks {
			if m.IsEOG(tk) {
				break
			}
			cont = append(cont, tk)
		}
		text, _ := m.Detokenize(cont, false)
		texts, conts = append(texts, text), append(conts, cont)
	}
	return texts, prompts, conts
}

// storySettings is one DPO configuration of the stories runs.
type storySettings struct {
	LR      float64
	Rank    int
	Targets string
	Beta    float64
	Epochs  int
	RPO     float64
}

func (s storySettings) String() string {
	return fmt.Sprintf("lr %.0e r%d %s β%.2g %dep rpo %.2g", s.LR, s.Rank, s.Targets, s.Beta, s.Epochs, s.RPO)
}

func storiesConfig(t testing.TB, model string, s storySettings) Config {
	cfg := DefaultConfig()
	cfg.Method, cfg.Model, cfg.Data, cfg.EvalData, cfg.Out = DPO, model, storiesTrain, storiesEval, t.TempDir()
	cfg.LR, cfg.Rank, cfg.Alpha, cfg.Beta, cfg.Epochs, cfg.RPOAlpha = s.LR, s.Rank, float64(2*s.Rank), s.Beta, s.Epochs, s.RPO
	cfg.Targets = strings.Split(s.Targets, ",")
	cfg.Threads = 2
	return cfg
}

// storiesStart is the documented starting point for DPO on a small real
// model (testdata/stories/README.md; measured by BenchmarkStoriesSweep).
var storiesStart = storySettings{LR: 5e-4, Rank: 16, Targets: "q,k,v,o,gate,up,down", Beta: 0.1, Epochs: 2, RPO: 1}

// DPO on stories260K with cheerful-over-sad pairs raises the cheerful share
// of sampled continuations, and the base model still finds them about as
// likely as its own samples (fluency does not collapse).
func TestStoriesDPO(t *testing.T) {
	testgate.Slow(t, "a real-model DPO run (about 3 minutes on 2 shared cores)")
	model := sharedModel(t, "stories260K.gguf")
	cfg := storiesConfig(t, model, storiesStart)
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	known := knownWords(t, model)
	base := scoreStories(t, model, "", 4, known)
	tuned := scoreStories(t, model, res.Adapter, 4, known)
	data := dataFluency(t, model)
	t.Logf("%s: held-out accuracy %.3f (before %.3f); cheerful %.2f → %.2f, sad %.2f → %.2f, fluency %.3f → %.3f nats/token (chosen data %.3f), non-words %.3f → %.3f",
		storiesStart, res.After["rewards/accuracies"], res.Before["rewards/accuracies"], base.Cheerful, tuned.Cheerful,
		base.Sad, tuned.Sad, base.Fluency, tuned.Fluency, data, base.NonWords, tuned.NonWords)
	t.Logf("base sample: %q", base.Example)
	t.Logf("tuned sample: %q", tuned.Example)
	if acc := res.After["rewards/accuracies"]; acc < 0.8 {
		t.Errorf("held-out accuracy %.3f, want >= 0.8", acc)
	}
	if tuned.Cheerful < base.Cheerful+0.3 {
		t.Errorf("cheerful share %.2f → %.2f, want a rise of at least 0.3", base.Cheerful, tuned.Cheerful)
	}
	if tuned.Sad > base.Sad {
		t.Errorf("sad share rose %.2f → %.2f", base.Sad, tuned.Sad)
	}
	// fluency: the base's log-prob per token of the samples may fall to what
	// the pairs' own (synthetic) wording scores, not further than 0.5 nats
	// below it (1.65x less likely tokens); and the samples stay spelt as
	// the base and the data spell (misspellings were the failure seen)
	if floor := math.Min(base.Fluency, data) - 0.5; tuned.Fluency < floor {
		t.Errorf("fluency fell from %.3f to %.3f nats/token (floor %.3f): the policy's text is no longer the base's language", base.Fluency, tuned.Fluency, floor)
	}
	if tuned.NonWords > base.NonWords+0.03 {
		t.Errorf("non-words %.3f → %.3f: the samples are misspelt", base.NonWords, tuned.NonWords)
	}
}

// BenchmarkStoriesSweep prints the table behind storiesStart and the
// defaults (scripts/bench-stories.sh; minutes per row): a measurement, run
// with -bench, never by go test alone. ALIGN_STORIES_MODEL picks the model
// (default stories260K.gguf), ALIGN_STORIES_ROWS the rows (default all).
func BenchmarkStoriesSweep(b *testing.B) {
	name := os.Getenv("ALIGN_STORIES_MODEL")
	if name == "" {
		name = "stories260K.gguf"
	}
	model := sharedModel(b, name)
	all := "q,k,v,o,gate,up,down"
	rows := []storySettings{
		{5e-4, 8, "q,k,v,o", 0.1, 3, 0}, // 0: the defaults before this measurement
		{5e-4, 16, all, 0.1, 2, 0},
		{5e-4, 16, all, 0.1, 2, 1},
		{1e-3, 16, all, 0.1, 2, 1},
		{2e-3, 16, all, 0.1, 2, 1}, // 4: the lr, rank and targets, with RPO
		{5e-4, 16, all, 0.3, 2, 0},
		{5e-4, 16, "q,k,v,o", 0.1, 2, 1},
		{1e-3, 16, all, 0.1, 2, 0},
		{5e-4, 16, all, 0.1, 3, 0}, // 8: the defaults chosen from this table
		{5e-4, 16, all, 0.1, 2, 0.5},
	}
	if v := os.Getenv("ALIGN_STORIES_ROWS"); v != "" {
		var pick []storySettings
		for _, f := range strings.Split(v, ",") {
			var i int
			fmt.Sscan(f, &i)
			if i >= 0 && i < len(rows) {
				pick = append(pick, rows[i])
			}
		}
		rows = pick
	}
	known := knownWords(b, model)
	base := scoreStories(b, model, "", 4, known)
	data := dataFluency(b, model)
	fmt.Printf("%s: base samples: cheerful %.2f, sad %.2f, fluency %.3f nats/token, non-words %.3f (%d samples); the held-out chosen continuations score %.3f under the base\n",
		name, base.Cheerful, base.Sad, base.Fluency, base.NonWords, base.N, data)
	fmt.Printf("| settings | held-out acc | margin | cheerful | sad | fluency | non-words |\n|---|---|---|---|---|---|---|\n")
	b.ResetTimer() // the table once per call: run it with -benchtime 1x
	for _, s := range rows {
		res, err := Run(context.Background(), storiesConfig(b, model, s), nil)
		if err != nil {
			b.Fatal(err)
		}
		sc := scoreStories(b, model, res.Adapter, 4, known)
		fmt.Printf("| %s | %.3f | %.2f | %.2f | %.2f | %.3f | %.3f |\n", s, res.After["rewards/accuracies"], res.After["rewards/margins"],
			sc.Cheerful, sc.Sad, sc.Fluency, sc.NonWords)
		b.Logf("%s sample: %q", s, sc.Example)
	}
}

// TinyStories-656K has no byte fallback: a pair with characters it cannot
// spell is refused with its file, line and the character (llama.cpp's
// tokenizer would throw; align maps them to <unk> and says so), or skipped
// and counted with SkipInvalid.
func TestRealModelUnspellable(t *testing.T) {
	model := sharedModel(t, "TinyStories-656K-Q8_0.gguf")
	data := filepath.Join(t.TempDir(), "pairs.jsonl")
	os.WriteFile(data, []byte(`{"id":"a","prompt":"Tom had a dog.","chosen":"They played all day.","rejected":"The dog ran away."}
{"id":"b","prompt":"Once upon a time there was a cat.","chosen":"The cat {was} happy.","rejected":"The cat was sad."}
`), 0o644)
	cfg := DefaultConfig()
	cfg.Model, cfg.Data, cfg.Out, cfg.EvalSplit, cfg.MaxSteps, cfg.Threads = model, data, t.TempDir(), 0, 1, 2
	_, err := Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "pairs.jsonl:2") || !strings.Contains(err.Error(), `"{"`) {
		t.Errorf("unspellable pair: %v; want an error naming pairs.jsonl:2 and \"{\"", err)
	}
	cfg.SkipInvalid, cfg.Out = true, t.TempDir()
	res, err := Run(context.Background(), cfg, nil)
	if err != nil || res.Skipped != 1 || res.TrainPairs != 1 {
		t.Errorf("--skip-invalid: %v, skipped %d, trained on %d pairs; want 1 and 1", err, res.Skipped, res.TrainPairs)
	}
}

// ORPO and SimPO on the same stories pairs and settings as TestStoriesDPO
// (lr, rank, targets, epochs; each method's own defaults otherwise, no
// RPO term): held-out accuracy rises. Their accuracy is the share of
// held-out pairs whose chosen response has the higher mean token log-prob
// under the policy (TRL's rewards/accuracies of both trainers: no
// reference), so before training it is the base's own preference, not
// 0 as for DPO. The samples' cheerful share and fluency are logged next
// to the base's, as TestStoriesDPO measures them.
func TestStoriesNoReference(t *testing.T) {
	testgate.Slow(t, "two real-model runs, ORPO and SimPO (about 5 minutes on 2 shared cores)")
	model := sharedModel(t, "stories260K.gguf")
	known := knownWords(t, model)
	base := scoreStories(t, model, "", 4, known)
	data := dataFluency(t, model)
	methods := []string{ORPO, SimPO}
	if os.Getenv("ALIGN_STORIES_SWEEP") != "" {
		// the table's control row (TestStoriesDPO asserts DPO) and
		// CPO-SimPO: SimPO with DPO's RPO term
		methods = append(methods, DPO, "simpo+rpo")
	}
	for _, name := range methods {
		t.Run(name, func(t *testing.T) {
			method, rpo := name, 0.0
			if name == "simpo+rpo" {
				method, rpo = SimPO, storiesStart.RPO
			}
			cfg := storiesConfig(t, model, storiesStart)
			if method == DPO {
				res, err := Run(context.Background(), cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				tuned := scoreStories(t, model, res.Adapter, 4, known)
				accD, accM := heldOutAccuracies(t, model, res.Adapter)
				t.Logf("dpo (%s, rpo %g, %d steps): held-out accuracy %.3f → %.3f (reward vs the base %.3f, mean log-prob %.3f); cheerful %.2f → %.2f, fluency %.3f → %.3f, non-words %.3f → %.3f",
					storiesStart, cfg.RPOAlpha, res.Steps, res.Before["rewards/accuracies"], res.After["rewards/accuracies"], accD, accM,
					base.Cheerful, tuned.Cheerful, base.Fluency, tuned.Fluency, base.NonWords, tuned.NonWords)
				return
			}
			d := Defaults(method)
			cfg.Method, cfg.Beta, cfg.RPOAlpha, cfg.ORPOLambda, cfg.SimPOGamma = method, d.Beta, rpo, d.ORPOLambda, d.SimPOGamma
			res, err := Run(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			tuned := scoreStories(t, model, res.Adapter, 4, known)
			before, after := res.Before["rewards/accuracies"], res.After["rewards/accuracies"]
			t.Logf("%s (lr %.0e r%d %s %dep, λ %g β %g γ %g rpo %g, %d steps): held-out accuracy %.3f → %.3f, margin %.3f → %.3f; cheerful %.2f → %.2f, sad %.2f → %.2f, fluency %.3f → %.3f nats/token (chosen data %.3f), non-words %.3f → %.3f",
				name, cfg.LR, cfg.Rank, storiesStart.Targets, cfg.Epochs, cfg.ORPOLambda, cfg.Beta, cfg.SimPOGamma, cfg.RPOAlpha, res.Steps, before, after, res.Before["rewards/margins"], res.After["rewards/margins"], base.Cheerful, tuned.Cheerful,
				base.Sad, tuned.Sad, base.Fluency, tuned.Fluency, data, base.NonWords, tuned.NonWords)
			accD, accM := heldOutAccuracies(t, model, res.Adapter)
			t.Logf("%s on DPO's scale: held-out accuracy by reward over the base %.3f (by mean log-prob %.3f)", name, accD, accM)
			t.Logf("tuned sample: %q", tuned.Example)
			// measured on 2 cores (AVX2): ORPO 0.588 → 0.800, SimPO 0.588 → 1.000
			if after < before+0.1 {
				t.Errorf("held-out accuracy %.3f → %.3f, want a rise of at least 0.1", before, after)
			}
			if !(res.After["rewards/margins"] > res.Before["rewards/margins"]) {
				t.Errorf("held-out margin %.3f → %.3f, want it to rise", res.Before["rewards/margins"], res.After["rewards/margins"])
			}
		})
	}
}

// heldOutAccuracies scores adapter on the held-out stories pairs by both
// kinds of implicit reward, so that DPO and the reference-free methods
// compare on one scale: the share of pairs whose chosen response gains
// more log-prob over the base than the rejected one (DPO's
// rewards/accuracies), and the share whose chosen response has the higher
// mean token log-prob under the policy (ORPO's and SimPO's).
func heldOutAccuracies(t testing.TB, model, adapter string) (dpo, mean float64) {
	t.Helper()
	af, err := bindings.ReadAdapterFile(adapter)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := bindings.NewTrainerFromFile(model, bindings.TrainerOptions{Threads: 2, Rank: af.Rank, Alpha: af.Alpha, Targets: af.Targets})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Set(0).Load(adapter); err != nil {
		t.Fatal(err)
	}
	ps, _, err := pairs.Load(storiesEval, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := NewEncoder(tr.Model(), DefaultConfig().MaxLength, false)
	if err != nil {
		t.Fatal(err)
	}
	exs, _, _, err := enc.Encode(ps, BetaTable{}, false)
	if err != nil {
		t.Fatal(err)
	}
	order := make([]int, len(exs))
	for i := range order {
		order[i] = i
	}
	var nd, nm int
	for _, mb := range Pack(exs, order, 2048, LayoutPair) {
		b := BuildBatch(exs, mb, LayoutPair)
		ref, err := tr.Set(0).Forward(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		pol, err := tr.Set(0).Forward(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		for k, i := range mb.Examples {
			if pol.Sums[2*k]-ref.Sums[2*k] > pol.Sums[2*k+1]-ref.Sums[2*k+1] {
				nd++
			}
			if pol.Sums[2*k]/float64(len(exs[i].Chosen)) > pol.Sums[2*k+1]/float64(len(exs[i].Rejected)) {
				nm++
			}
		}
	}
	return float64(nd) / float64(len(exs)), float64(nm) / float64(len(exs))
}

// storiesThumbs is thumbs feedback made from the stories pairs so that no
// prompt has both a liked and a disliked response: the chosen response of
// the prompts of the first half (up), the rejected ones of the others
// (down). align import --unpaired turns it into KTO's data and makes 0
// pairs from it.
func storiesThumbs(t testing.TB) (data string, rep pipeline.ImportReport) {
	t.Helper()
	ps, _, err := pairs.Load(storiesTrain, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// by prompt (some prompts have several pairs): the first half of the
	// distinct prompts keep only chosen responses, the rest only rejected
	var prompts []string
	seen := map[string]bool{}
	for _, p := range ps {
		if !seen[p.Prompt] {
			seen[p.Prompt] = true
			prompts = append(prompts, p.Prompt)
		}
	}
	liked := map[string]bool{}
	for _, p := range prompts[:len(prompts)/2] {
		liked[p] = true
	}
	var b strings.Builder
	for _, p := range ps {
		resp, rating := p.Chosen, "up"
		if !liked[p.Prompt] {
			resp, rating = p.Rejected, "down"
		}
		line, _ := json.Marshal(map[string]string{"prompt": p.Prompt, "response": resp, "rating": rating})
		b.Write(line)
		b.WriteByte('\n')
	}
	log := filepath.Join(dir, "thumbs.jsonl")
	if err := os.WriteFile(log, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	data = filepath.Join(dir, "kto.jsonl")
	rep, err = pipeline.Import(pipeline.ImportConfig{Feedback: []string{log}, Unpaired: true, OutTrain: data,
		OutEval: filepath.Join(dir, "kto-eval.jsonl"), EvalFraction: 0})
	if err != nil {
		t.Fatal(err)
	}
	return data, rep
}

// storiesKTO is the KTO configuration of the stories runs: the DPO
// starting point's LoRA, lr and β, on the unpaired feedback.
func storiesKTO(t testing.TB, model, data string) Config {
	cfg := storiesConfig(t, model, storiesStart)
	cfg.Method, cfg.Data, cfg.RPOAlpha = KTO, data, 0
	cfg.Epochs = storiesKTOEpochs
	return cfg
}

// storiesKTOEpochs: KTO sees each prompt once per epoch (one rated
// response) where DPO sees both responses.
const storiesKTOEpochs = 3

// KTO on unpaired feedback (no prompt has both a liked and a disliked
// response, so import makes no pairs at all) raises the held-out pair
// accuracy and the cheerful share of samples on stories260K, with the
// fluency bound of TestStoriesDPO.
func TestStoriesKTO(t *testing.T) {
	testgate.Slow(t, "a real-model KTO run (minutes on 2 shared cores)")
	model := sharedModel(t, "stories260K.gguf")
	data, rep := storiesThumbs(t)
	if rep.FeedbackPairs != 0 || rep.Desirable < 150 || rep.Undesirable < 150 {
		t.Fatalf("import: %d pairs, %d desirable, %d undesirable; want 0 pairs and both kinds", rep.FeedbackPairs, rep.Desirable, rep.Undesirable)
	}
	cfg := storiesKTO(t, model, data)
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	known := knownWords(t, model)
	base := scoreStories(t, model, "", 4, known)
	tuned := scoreStories(t, model, res.Adapter, 4, known)
	data0 := dataFluency(t, model)
	t.Logf("kto %d epochs on %d unpaired examples: held-out pair accuracy %.3f (before %.3f), margin %.3f; cheerful %.2f → %.2f, sad %.2f → %.2f, fluency %.3f → %.3f nats/token (chosen data %.3f), non-words %.3f → %.3f",
		cfg.Epochs, res.TrainPairs, res.After["rewards/accuracies"], res.Before["rewards/accuracies"], res.After["rewards/margins"],
		base.Cheerful, tuned.Cheerful, base.Sad, tuned.Sad, base.Fluency, tuned.Fluency, data0, base.NonWords, tuned.NonWords)
	t.Logf("tuned sample: %q", tuned.Example)
	if acc := res.After["rewards/accuracies"]; acc < 0.8 || !(acc > res.Before["rewards/accuracies"]) {
		t.Errorf("held-out accuracy %.3f (before %.3f), want >= 0.8", acc, res.Before["rewards/accuracies"])
	}
	if tuned.Cheerful < base.Cheerful+0.3 { // TestStoriesDPO's bound
		t.Errorf("cheerful share %.2f → %.2f, want a rise of at least 0.3", base.Cheerful, tuned.Cheerful)
	}
	if floor := math.Min(base.Fluency, data0) - 0.5; tuned.Fluency < floor {
		t.Errorf("fluency fell from %.3f to %.3f nats/token (floor %.3f, TestStoriesDPO's bound)", base.Fluency, tuned.Fluency, floor)
	}
	if tuned.NonWords > base.NonWords+0.03 {
		t.Errorf("non-words %.3f → %.3f: the samples are misspelt", base.NonWords, tuned.NonWords)
	}
}

// TestStoriesScore scores adapters for scripts/bench-methods.sh
// (ALIGN_SCORE_ADAPTERS="name=adapter.gguf,..."; "base" scores the base):
// one line per adapter, "score NAME cheerful fluency non-words".
func TestStoriesScore(t *testing.T) {
	spec := os.Getenv("ALIGN_SCORE_ADAPTERS")
	if spec == "" {
		t.Skip("set ALIGN_SCORE_ADAPTERS=name=adapter.gguf,... (scripts/bench-methods.sh does)")
	}
	model := sharedModel(t, "stories260K.gguf")
	known := knownWords(t, model)
	fmt.Printf("score data-fluency %.3f\n", dataFluency(t, model))
	for _, kv := range strings.Split(spec, ",") {
		name, path, _ := strings.Cut(kv, "=")
		if name == "base" {
			path = ""
		}
		sc := scoreStories(t, model, path, 4, known)
		fmt.Printf("score %s %.3f %.3f %.3f\n", name, sc.Cheerful, sc.Fluency, sc.NonWords)
	}
}
