package bindings

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateBatchMatchesSingle checks that batched generation of 8
// sequences (equal prompts decoded once, their cache copied; sequence i
// sampling with seed Seed+i), greedy over different prompts and sampled
// over one prompt (GRPO's G samples) from a live trainer adapter, produces
// what one sequence at a time does. The two decode with
// different kernels on some CPUs, so the comparison holds up to the first
// step whose outcome rounding could flip (see sampler_replay_test.go): each
// batched token is replayed from logits recomputed by the single-sequence
// session, every step before the first such step must pick the same token,
// and the single run's text must equal the batched one at least that far.
func TestGenerateBatchMatchesSingle(t *testing.T) {
	tr, _, live := liveTrainer(t)
	m := tr.Model()
	ad := []LoRAScale{{LoRA: live, Scale: 1}}
	single := session(t, m, SessionOptions{NCtx: 256, Adapters: ad})
	nVocab := single.nVocab
	unk := m.TokenUnknown()
	if unk >= 0 && m.IsEOG(unk) {
		unk = -1 // the chain bans the unknown token only when it does not end a generation
	}
	// the logit change a step must withstand to count as firm: a session's
	// incremental logits differ from the same sequence's logits in one
	// batch by up to 4.8e-4 on this fixture (F16 cache, other kernels)
	const eps = 2e-3
	texts := []string{"Hello!", "Is Berserk finished?", "Can you recommend a manga", "Naruto has",
		"I am upset, this is the third time", "Thanks for asking", "Which volume", "Happy to help"}
	for _, mode := range []struct {
		name   string
		same   bool
		params SamplerParams
	}{
		{"greedy, 8 prompts", false, SamplerParams{Temperature: 0, MaxTokens: 24, Seed: 1}},
		// top-k 5: with top-k 40 the fixture's near-uniform candidates put a
		// boundary within rounding of most draws and little would be compared
		{"sampled, one prompt x 8", true, SamplerParams{Temperature: 0.9, TopP: 0.95, TopK: 5, MaxTokens: 24, Seed: 100}},
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
			compared, total, parted := 0, 0, 0
			for i := range prompts {
				sp := mode.params
				sp.Seed += uint32(i)
				var sb strings.Builder
				if _, err := single.Generate(context.Background(), prompts[i], sp, func(x string) bool { sb.WriteString(x); return true }); err != nil {
					t.Fatal(err)
				}
				// Detokenize drops the leading space of the first piece,
				// streaming keeps it
				singleText := strings.TrimPrefix(sb.String(), " ")
				toks := br.Tokens[i]
				total += len(toks)
				text := toks
				if n := len(text); n > 0 && m.IsEOG(text[n-1]) {
					text = text[:n-1]
				}
				got, _ := m.Detokenize(text, false)
				distinct[got] = true

				// the first batched step the single run's text leaves
				// (len(text) when the texts agree)
				agree := len(text)
				if got != singleText {
					parted++
					agree = 0
					for j := 1; j <= len(text); j++ {
						pre, _ := m.Detokenize(text[:j], false)
						if !strings.HasPrefix(singleText, pre) {
							break
						}
						agree = j
					}
				}
				// replay the batched tokens from the single session's
				// logits up to the first fragile step
				seq := append(append([]int32(nil), prompts[i]...), toks...)
				_, logits, err := single.LogProbsAndLogits(context.Background(), seq)
				if err != nil {
					t.Fatal(err)
				}
				rs := newReplaySampler(sp, sp.Seed, unk, eps)
				firm := len(toks) // steps before the first fragile one
				for j := range toks {
					row := len(prompts[i]) + j - 1
					want, fragile := rs.step(logits[row*nVocab : (row+1)*nVocab])
					if fragile {
						firm = j
						break
					}
					if want != toks[j] {
						t.Fatalf("sequence %d step %d: batched token %d, the sampler replayed from the single session's logits picks %d",
							i, j, toks[j], want)
					}
				}
				if agree < len(text) && agree < firm {
					t.Errorf("sequence %d: batched %q and single %q part at token %d, where no rounding could flip the sampler (first fragile step: %d)",
						i, got, sb.String(), agree, firm)
				}
				compared += firm
			}
			t.Logf("%s: %d generated tokens, %d distinct texts, %d of %d tokens before a fragile step, %d sequences parted after one, %.0f tok/s",
				mode.name, br.GeneratedTokens, len(distinct), compared, total, parted, float64(br.GeneratedTokens)/(br.GenerateMS/1000))
			if len(distinct) < 2 {
				t.Error("all sequences generated the same text; the comparison would not notice a mix-up")
			}
			// the tiny fixture is close to uniform, so boundaries are dense:
			// 89 to 146 of 192 sampled tokens are firm over five seeds
			if compared*3 < total {
				t.Errorf("only %d of %d tokens precede a fragile step: the comparison checks too little", compared, total)
			}
		})
	}
}

// A batched step over an adapter on all seven targets of a 12-layer model
// holds more graph nodes than this llama.cpp budgets for a model of so few
// tensors (max(1024, 8 x tensors)) once every sequence has a KV stream of
// its own: ggml-backend asserted on the ~100M fixture, so GRPO with train's
// default targets failed at its first rollout. One unified stream keeps
// the graph the size of one sequence's.
func TestGenerateBatchDeepAdapter(t *testing.T) {
	p := filepath.Join(t.TempDir(), "deep.gguf")
	if err := WriteFixture(p, FixtureParams{Arch: "llama", Type: "q8_0", Size: "tiny", Seed: 3, NLayer: 12}); err != nil {
		t.Fatal(err)
	}
	tr := newTrainer(t, p, TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: 1})
	live, err := tr.Set(0).LiveLoRA()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Close() })
	m := tr.Model()
	var prompts [][]int32
	for _, s := range []string{"Hello!", "Is Berserk finished?", "Which volume", "Naruto has"} {
		toks, _ := m.Tokenize(s, true, false)
		prompts = append(prompts, toks)
	}
	res, err := GenerateBatch(context.Background(), m, []LoRAScale{{LoRA: live, Scale: 1}}, prompts,
		SamplerParams{Temperature: 0.8, TopP: 0.95, Seed: 1, MaxTokens: 4}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens) != len(prompts) || res.GeneratedTokens == 0 {
		t.Fatalf("%d sequences, %d generated tokens", len(res.Tokens), res.GeneratedTokens)
	}
}
