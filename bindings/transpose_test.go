package bindings

import (
	"math/rand/v2"
	"testing"
)

// The transposed copies are built in bounded tiles; the tile size changes
// no byte of them: gradients through copies made in one tile per matrix and
// in the smallest tiles (one quantisation block of W's columns each) are
// identical, for Q8_0 and Q4_K bases.
func TestTransposedTilesChangeNothing(t *testing.T) {
	for _, c := range []struct{ typ, backward string }{{"q8_0", "q8_0"}, {"q4_k", "q8_0"}, {"q4_k", "auto"}} {
		t.Run(c.typ+"-"+c.backward, func(t *testing.T) {
			path := fixture(t, "llama", c.typ)
			m := load(t, path)
			b := fullBatch(t, m, sampleText, "I can connect you with a human teammate right away.")
			// auto: Q4_K copies in the CPU's repacked buffer where it has
			// the kernel (AVX2), which takes a tensor's bytes whole
			opt := TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: 5, BackwardWeights: c.backward}
			grads := func(tile string) []float32 {
				t.Setenv("ALIGN_TRANSPOSE_TILE_FLOATS", tile)
				tr := newTrainer(t, path, opt)
				rng := rand.New(rand.NewPCG(1, 2))
				params := make([]float32, tr.Info().NLoRAParams)
				for i := range params {
					params[i] = float32(rng.NormFloat64() * 0.05)
				}
				set := tr.Set(0)
				if err := set.SetState(params, nil, nil, 0); err != nil {
					t.Fatal(err)
				}
				if _, err := set.ForwardGrad(b); err != nil {
					t.Fatal(err)
				}
				if err := backwardSums(set, b, []float64{1, -1}); err != nil {
					t.Fatal(err)
				}
				st, _ := set.GetState()
				return st.Grads
			}
			whole, tiles := grads("1000000000"), grads("1")
			if len(whole) != len(tiles) || len(whole) == 0 {
				t.Fatalf("%d and %d gradients", len(whole), len(tiles))
			}
			for i := range whole {
				if whole[i] != tiles[i] {
					t.Fatalf("gradient %d: %g in one tile, %g in small tiles", i, whole[i], tiles[i])
				}
			}
		})
	}
}
