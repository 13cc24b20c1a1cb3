package train

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/align-dev/align/bindings"
)

// Tests on the real pretrained models of ../shared/models (README there):
// found through ALIGN_SHARED_MODELS, or the first shared/models folder
// walking up from the package directory. A clone without them skips these
// tests and says so.

func sharedModel(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("ALIGN_SHARED_MODELS")
	if dir == "" {
		wd, _ := os.Getwd()
		for d := wd; ; d = filepath.Dir(d) {
			if st, err := os.Stat(filepath.Join(d, "shared", "models")); err == nil && st.IsDir() {
				dir = filepath.Join(d, "shared", "models")
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); dir == "" || err != nil {
		t.Skipf("real model %s not found (set ALIGN_SHARED_MODELS or put it in a shared/models folder above the repository)", name)
	}
	return p
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
	N                      int
	Example                string
}

// scoreStories samples perPrompt continuations (48 tokens, T 0.8, top-p
// 0.95) of each prompt in testdata/stories/prompts.txt from model + adapter
// ("" for the base) and scores them.
func scoreStories(t testing.TB, model, adapter string, perPrompt int) storyScore {
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
		bindings.SamplerParams{Temperature: 0.8, TopP: 0.95, Seed: 1, MaxTokens: 48}, 2)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: 256}) // the base: fluency
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var sc storyScore
	var lpSum float64
	var lpN int
	for i, toks := range res.Tokens {
		var cont []int32
		for _, tk := range toks {
			if m.IsEOG(tk) {
				break
			}
			cont = append(cont, tk)
		}
		text, _ := m.Detokenize(cont, false)
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
		if len(cont) == 0 {
			continue
		}
		seq := append(append([]int32(nil), prompts[i]...), cont...)
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
	return sc
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
// model (testdata/stories/README.md; measured by TestStoriesSweep).
var storiesStart = storySettings{LR: 2e-3, Rank: 16, Targets: "q,k,v,o,gate,up,down", Beta: 0.1, Epochs: 2, RPO: 1}

// DPO on stories260K with cheerful-over-sad pairs raises the cheerful share
// of sampled continuations, and the base model still finds them about as
// likely as its own samples (fluency does not collapse).
func TestStoriesDPO(t *testing.T) {
	if testing.Short() {
		t.Skip("a real-model DPO run (about 3 minutes on 2 shared cores)")
	}
	model := sharedModel(t, "stories260K.gguf")
	cfg := storiesConfig(t, model, storiesStart)
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := scoreStories(t, model, "", 4)
	tuned := scoreStories(t, model, res.Adapter, 4)
	t.Logf("%s: held-out accuracy %.3f (before %.3f); cheerful %.2f → %.2f, sad %.2f → %.2f, fluency %.3f → %.3f nats/token",
		storiesStart, res.After["rewards/accuracies"], res.Before["rewards/accuracies"], base.Cheerful, tuned.Cheerful,
		base.Sad, tuned.Sad, base.Fluency, tuned.Fluency)
	t.Logf("base sample: %q", base.Example)
	t.Logf("tuned sample: %q", tuned.Example)
	if acc := res.After["rewards/accuracies"]; acc < 0.9 {
		t.Errorf("held-out accuracy %.3f, want >= 0.9", acc)
	}
	if tuned.Cheerful < base.Cheerful+0.3 {
		t.Errorf("cheerful share %.2f → %.2f, want a rise of at least 0.3", base.Cheerful, tuned.Cheerful)
	}
	if tuned.Sad > base.Sad {
		t.Errorf("sad share rose %.2f → %.2f", base.Sad, tuned.Sad)
	}
	// nats per token under the base: a drop of 0.5 is a 1.65x less likely
	// token on average, where misspelt text falls by several nats
	if tuned.Fluency < base.Fluency-0.5 {
		t.Errorf("fluency fell from %.3f to %.3f nats/token: the policy's text is no longer the base's language", base.Fluency, tuned.Fluency)
	}
}

// TestStoriesSweep prints the table behind storiesStart and the defaults
// (ALIGN_STORIES_SWEEP=1; minutes per row).
func TestStoriesSweep(t *testing.T) {
	if os.Getenv("ALIGN_STORIES_SWEEP") == "" {
		t.Skip("set ALIGN_STORIES_SWEEP=1 (and optionally ALIGN_STORIES_MODEL=TinyStories-656K-Q8_0.gguf) to measure the settings table")
	}
	name := os.Getenv("ALIGN_STORIES_MODEL")
	if name == "" {
		name = "stories260K.gguf"
	}
	model := sharedModel(t, name)
	all := "q,k,v,o,gate,up,down"
	rows := []storySettings{
		{5e-4, 8, "q,k,v,o", 0.1, 3, 0}, // today's defaults
		{5e-4, 16, all, 0.1, 3, 0},
		{2e-3, 16, all, 0.1, 3, 0}, // the run
		{2e-3, 16, all, 0.1, 2, 1},
		{1e-3, 16, all, 0.1, 2, 1},
		{2e-3, 16, "q,k,v,o", 0.1, 2, 1},
		{2e-3, 8, all, 0.1, 2, 1},
		{2e-3, 16, all, 0.3, 2, 1},
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
	base := scoreStories(t, model, "", 4)
	t.Logf("%s base: cheerful %.2f sad %.2f fluency %.3f (%d samples)", name, base.Cheerful, base.Sad, base.Fluency, base.N)
	fmt.Printf("| %s settings | held-out acc | margin | cheerful | sad | fluency (base %.3f) |\n|---|---|---|---|---|---|\n", name, base.Fluency)
	for _, s := range rows {
		res, err := Run(context.Background(), storiesConfig(t, model, s), nil)
		if err != nil {
			t.Fatal(err)
		}
		sc := scoreStories(t, model, res.Adapter, 4)
		fmt.Printf("| %s | %.3f | %.2f | %.2f | %.2f | %.3f |\n", s, res.After["rewards/accuracies"], res.After["rewards/margins"],
			sc.Cheerful, sc.Sad, sc.Fluency)
		t.Logf("%s sample: %q", s, sc.Example)
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
