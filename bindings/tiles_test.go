package bindings

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// BackwardWeights "tiles" keeps no transposed copies: each backward makes
// Wᵀ in Q8_0 tiles from W's blocks (native/src/train_tiles.cpp). Its LoRA
// gradients match resident Q8_0 copies' (the same quantised Wᵀ, up to the
// quantiser's rounding and the order of the tiles' sums) and the exact F32
// reference as closely as Q8_0 copies do; with many small tiles too. The
// LM head keeps its copy (its backward runs once per chunk of scored
// tokens); the Q4_K fixture's and TinyStories-656K's bodies have none.
func TestTiledInputGradient(t *testing.T) {
	type model struct {
		name string
		path func(t *testing.T) string
	}
	for _, md := range []model{
		{"tiny q4_k fixture", func(t *testing.T) string { return fixture(t, "llama", "q4_k") }},
		{"TinyStories-656K", func(t *testing.T) string { return sharedModel(t, "TinyStories-656K-Q8_0.gguf") }},
	} {
		t.Run(md.name, func(t *testing.T) { tiledGradient(t, md.name, md.path(t)) })
	}
}

func tiledGradient(t *testing.T, name, path string) {
	md := struct{ name, path string }{name, path}
	{
		fpath := filepath.Join(t.TempDir(), "deq.gguf")
		if err := Dequantize(md.path, fpath); err != nil {
			t.Fatal(err)
		}
		m := load(t, md.path)
		b := fullBatch(t, m, "Once upon a time there was a little dog.", "The cat sat on the mat and smiled at the sun.")
		opt := TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: 5}
		grads := func(tr *Trainer, params []float32) []float32 { return loraGrads(t, tr, b, params) }
		o8, ot, of := opt, opt, opt
		o8.BackwardWeights, ot.BackwardWeights, of.ExactBackward = "q8_0", "tiles", true
		q8, ref := newTrainer(t, md.path, o8), newTrainer(t, fpath, of)
		params := make([]float32, q8.Info().NLoRAParams)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range params {
			params[i] = float32(rng.NormFloat64() * 0.05)
		}
		gr, g8 := grads(ref, params), grads(q8, params)
		e8 := nmse(g8, gr)
		var first []float32
		for _, elems := range []string{"", "2048"} { // default tiles; 2,048 elements: many tiles a matrix
			t.Setenv("ALIGN_TILE_ELEMS", elems)
			tl := newTrainer(t, md.path, ot)
			gt := grads(tl, params)
			et, d := nmse(gt, gr), nmse(gt, g8)
			t.Logf("%s, tile elements %q: NMSE against F32 %.2e (Q8_0 copies %.2e), against Q8_0 copies %.2e; copies %d bytes (Q8_0: %d)",
				md.name, elems, et, e8, d, tl.Info().TransposedBytes, q8.Info().TransposedBytes)
			// the Q8_0 rounding of Wᵀ itself is ~5e-4 against F32: the
			// quantisers' rounding modes differ by far less
			if !(d < 2e-4) || !(et < 1.2*e8) || math.IsNaN(et) {
				t.Errorf("%s, tile elements %q: gradient NMSE %.3g against Q8_0 copies (bound 2e-4), %.3g against F32 (Q8_0 copies: %.3g)", md.name, elems, d, et, e8)
			}
			if first == nil {
				first = gt
			} else if d := nmse(gt, first); !(d < 1e-6) || d == 0 {
				// many tiles sum the same products in another order
				t.Errorf("%s: small tiles against one tile a matrix: NMSE %.3g, want above 0 (other sums) and below 1e-6", md.name, d)
			}
			if got, q := tl.Info().TransposedBytes, q8.Info().TransposedBytes; got >= q {
				t.Errorf("%s: tiles keep %d bytes of copies, Q8_0 copies %d: the tiles were not used", md.name, got, q)
			}
			tl.Close()
		}
	}
}
