package bindings

import (
	"context"
	"strings"
	"testing"
)

// Batched generation of 8 sequences equals 8 single generations (sequence i
// seeded Seed+i), greedy over different prompts and sampled over one prompt
// (GRPO's G samples), from a live trainer adapter.
func TestGenerateBatchMatchesSingle(t *testing.T) {
	tr, _, live := liveTrainer(t)
	m := tr.Model()
	ad := []LoRAScale{{LoRA: live, Scale: 1}}
	single := session(t, m, SessionOptions{NCtx: 256, Adapters: ad})
	texts := []string{"Hello!", "Is Berserk finished?", "Can you recommend a manga", "Naruto has",
		"I am upset, this is the third time", "Thanks for asking", "Which volume", "Happy to help"}
	for _, mode := range []struct {
		name   string
		same   bool
		params SamplerParams
	}{
		{"greedy, 8 prompts", false, SamplerParams{Temperature: 0, MaxTokens: 24, Seed: 1}},
		{"sampled, one prompt x 8", true, SamplerParams{Temperature: 0.9, TopP: 0.95, TopK: 40, MaxTokens: 24, Seed: 100}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			prompts := make([][]int32, len(texts))
			for i, s := range texts {
				if mode.same {
					s = texts[2]
				}
				prompts[i], _ = m.Tokenize(s, true, false)
			}
			br, err := GenerateBatch(context.Background(), m, ad, prompts, mode.params, 2)
			if err != nil {
				t.Fatal(err)
			}
			distinct := map[string]bool{}
			for i := range prompts {
				sp := mode.params
				sp.Seed += uint32(i)
				var sb strings.Builder
				if _, err := single.Generate(context.Background(), prompts[i], sp, func(x string) bool { sb.WriteString(x); return true }); err != nil {
					t.Fatal(err)
				}
				toks := br.Tokens[i]
				if n := len(toks); n > 0 && m.IsEOG(toks[n-1]) {
					toks = toks[:n-1]
				}
				got, _ := m.Detokenize(toks, false)
				distinct[got] = true
				// Detokenize drops the leading space of the first piece,
				// streaming keeps it
				if got != strings.TrimPrefix(sb.String(), " ") {
					t.Errorf("sequence %d: batched %q, single %q", i, got, sb.String())
				}
			}
			t.Logf("%s: %d generated tokens, %d distinct texts, %.0f tok/s over all sequences", mode.name, br.GeneratedTokens,
				len(distinct), float64(br.GeneratedTokens)/(br.GenerateMS/1000))
			if len(distinct) < 2 {
				t.Error("all sequences generated the same text; the comparison would not notice a mix-up")
			}
		})
	}
}
