package bindings

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// The repacked Q4_K transposed copies (the default on Q4_K weights,
// train_weights.cpp) against the dequantised F32 reference with an exact
// backward, next to Q8_0 copies (BackwardWeights "q8_0"): the forward is the
// same (it does not use the copies); the input gradients carry a second
// 4-bit rounding.
func TestTransposedQ4KGradientAccuracy(t *testing.T) {
	qpath := fixture(t, "llama", "q4_k")
	fpath := filepath.Join(t.TempDir(), "deq.gguf")
	if err := Dequantize(qpath, fpath); err != nil {
		t.Fatal(err)
	}
	m := load(t, qpath)
	b := fullBatch(t, m, sampleText, "I can connect you with a human teammate right away.")
	opt := TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: 5}
	rng := rand.New(rand.NewPCG(1, 2))
	grads := func(tr *Trainer, params []float32) []float32 { return loraGrads(t, tr, b, params) }
	o8 := opt
	o8.BackwardWeights = "q8_0"
	q8 := newTrainer(t, qpath, o8)
	q4 := newTrainer(t, qpath, opt) // auto
	fopt := opt
	fopt.ExactBackward = true
	ref := newTrainer(t, fpath, fopt)
	params := make([]float32, q8.Info().NLoRAParams)
	for i := range params {
		params[i] = float32(rng.NormFloat64() * 0.05)
	}
	gr := grads(ref, params)
	e8, e4 := nmse(grads(q8, params), gr), nmse(grads(q4, params), gr)
	b8, b4 := q8.Info().TransposedBytes, q4.Info().TransposedBytes
	t.Logf("input-gradient NMSE against the dequantised reference: Q8_0 copy %.2e (%d bytes), repacked Q4_K copy %.2e (%d bytes)",
		e8, b8, e4, b4)
	if b4 >= b8 {
		t.Errorf("the default did not make Q4_K copies (%d bytes against %d with q8_0)", b4, b8)
	}
	if !(e8 < 1e-3) || !(e4 < 2e-2) || math.IsNaN(e4) {
		t.Errorf("gradient NMSE: Q8_0 copy %.3g (bound 1e-3), Q4_K copy %.3g (bound 2e-2)", e8, e4)
	}
}

// loraGrads is set 0's LoRA gradient at params of the loss sum(seq 0) −
// sum(seq 1) over b (two sequences).
func loraGrads(t *testing.T, tr *Trainer, b *Batch, params []float32) []float32 {
	t.Helper()
	tr.Set(0).SetState(params, nil, nil, 0)
	if _, err := tr.Set(0).ForwardGrad(b); err != nil {
		t.Fatal(err)
	}
	if err := backwardSums(tr.Set(0), b, []float64{1, -1}); err != nil {
		t.Fatal(err)
	}
	st, _ := tr.Set(0).GetState()
	return st.Grads
}

// nmse is Σ(g − ref)² / Σ ref².
func nmse(g, ref []float32) float64 {
	var num, den float64
	for i := range g {
		d := float64(g[i] - ref[i])
		num += d * d
		den += float64(ref[i]) * float64(ref[i])
	}
	return num / den
}
