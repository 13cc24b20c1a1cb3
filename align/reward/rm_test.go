package reward

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/align/train"
	"github.com/align-dev/align/bindings"
)

// OpenRewardModel refuses what is not a finished reward-model run on its
// base model.
func TestOpenRewardModelErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenRewardModel(dir, RewardModelOptions{}); err == nil || !strings.Contains(err.Error(), "not a training run") {
		t.Errorf("empty directory: %v", err)
	}
	cfg := train.DefaultConfig()
	cfg.Method, cfg.Out = train.DPO, dir
	save := func() {
		if err := run.WriteJSON(filepath.Join(dir, "config.json"), cfg); err != nil {
			t.Fatal(err)
		}
	}
	save()
	if _, err := OpenRewardModel(dir, RewardModelOptions{}); err == nil || !strings.Contains(err.Error(), "a --method dpo run, not a reward model") {
		t.Errorf("dpo run: %v", err)
	}
	cfg.Method = train.RM
	save()
	if _, err := OpenRewardModel(dir, RewardModelOptions{}); err == nil || !strings.Contains(err.Error(), "no adapter.gguf") {
		t.Errorf("unfinished run: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "adapter.gguf"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, run.HeadFile), nil, 0o644)
	cfg.Model, cfg.Hashes = tinyModel, map[string]string{"model": strings.Repeat("0", 64)}
	save()
	otherPath := filepath.Join(t.TempDir(), "other.gguf")
	if err := bindings.WriteFixture(otherPath, bindings.FixtureParams{Arch: "llama", Type: "f32", Size: "tiny", Seed: 1}); err != nil {
		t.Fatal(err)
	}
	other, err := bindings.LoadModel(otherPath, bindings.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := OpenRewardModel(dir, RewardModelOptions{Model: other}); err == nil || !strings.Contains(err.Error(), "the reward model was trained on") {
		t.Errorf("other base: %v", err)
	}
}

// An rm: term scores a rollout on its own tokens when they were formatted
// as the reward model formats (issue 17: no detokenize and re-tokenize
// round trip), and on the text otherwise:
//   - tokens that are what the text encodes to give the text's reward;
//   - the tokens are what is scored: with the text replaced, the reward
//     stays the tokens' (and the text's reward differs);
//   - tokens of another format (another Key) are not read: the text is.
func TestRMScoresRolloutTokens(t *testing.T) {
	chosen, rejected := samplesOf(t, evalData, 4)
	samples := append(chosen, rejected...)
	m, err := OpenRewardModel(rmRun, RewardModelOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	text, err := m.ScoreSamples(ctx, samples)
	if err != nil {
		t.Fatal(err)
	}
	// the policy's formatter: another formatter over the same model and
	// options, as align/rl makes one
	cfg := m.Config()
	po, err := cfg.PromptOptions()
	if err != nil {
		t.Fatal(err)
	}
	f, err := engine.NewFormatter(m.tr.Model(), po)
	if err != nil {
		t.Fatal(err)
	}
	if f.Key() != m.Format() {
		t.Fatalf("formatter keys differ: %q vs %q", f.Key(), m.Format())
	}
	tokened := make([]Sample, len(samples))
	swapped := make([]Sample, len(samples))
	foreign := make([]Sample, len(samples))
	for i, s := range samples {
		p, r, _, err := f.EncodePair(s.Prompt, []Message{{Role: "assistant", Content: s.Response}})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.EndResponse(r[:len(r)-1]); len(got) != len(r) || got[len(got)-1] != r[len(r)-1] {
			t.Fatalf("sample %d: EndResponse %v, the encoded response ends %v", i, got, r)
		}
		tk := &Tokens{Format: f.Key(), Prompt: p, Response: r[:len(r)-1]} // the end-of-generation token is not passed
		tokened[i] = s
		tokened[i].Tokens = tk
		swapped[i] = samples[(i+1)%len(samples)] // another sample's text, this one's tokens
		swapped[i].Tokens = tk
		foreign[i] = swapped[i]
		foreign[i].Tokens = &Tokens{Format: f.Key() + "|other", Prompt: p, Response: r[:len(r)-1]}
	}
	t0, x0 := m.Counts()
	fromTokens, err := m.ScoreSamples(ctx, tokened)
	if err != nil {
		t.Fatal(err)
	}
	fromSwapped, err := m.ScoreSamples(ctx, swapped)
	if err != nil {
		t.Fatal(err)
	}
	t1, x1 := m.Counts()
	if t1-t0 != 2*len(samples) || x1 != x0 {
		t.Errorf("%d samples scored on tokens and %d on text, want %d and 0", t1-t0, x1-x0, 2*len(samples))
	}
	fromForeign, err := m.ScoreSamples(ctx, foreign)
	if err != nil {
		t.Fatal(err)
	}
	if t2, x2 := m.Counts(); t2 != t1 || x2-x1 != len(samples) {
		t.Errorf("foreign tokens: %d scored on tokens, %d on text; want 0 and %d", t2-t1, x2-x1, len(samples))
	}
	differs := 0
	for i := range samples {
		next := text[(i+1)%len(samples)]
		if math.Abs(fromTokens[i]-text[i]) > 1e-6 || math.Abs(fromSwapped[i]-text[i]) > 1e-6 || math.Abs(fromForeign[i]-next) > 1e-6 {
			t.Errorf("sample %d: text %g, tokens %g, tokens under another text %g, foreign tokens %g (their text's %g)",
				i, text[i], fromTokens[i], fromSwapped[i], fromForeign[i], next)
		}
		if math.Abs(next-text[i]) > 1e-4 {
			differs++
		}
	}
	if differs == 0 {
		t.Errorf("rewards %v: no two neighbours differ, so the swap shows nothing", text)
	}
}
