package bindings

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/align-dev/align/align/testgate"
)

// sharedModel finds a real pretrained model of ../shared/models (its README):
// ALIGN_SHARED_MODELS, or the first shared/models folder walking up from the
// package directory. Without one the test is skipped, saying so.
func sharedModel(t testing.TB, name string) string {
	t.Helper()
	return testgate.SharedModel(t, name)
}

// realModels: stories260K (F32, byte fallback) and TinyStories-656K (Q8_0,
// tied embedding, no byte fallback).
var realModels = []string{"stories260K.gguf", "TinyStories-656K-Q8_0.gguf"}

// realF32Tol is the per-token log-prob tolerance trainer vs llama.cpp on an
// F32 real model (measured 3.0e-3 on stories260K, 5.1e-3 on TinyStories-656K
// dequantized: sharper distributions than the random fixtures' 5e-3).
const realF32Tol = 1e-2

const storyText = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her dog."

// The training forward agrees with llama.cpp on the real models; SFT steps
// raise the text's likelihood; the exported adapter reproduces the trained
// policy in llama.cpp; merging it into the base reproduces it too.
func TestRealModels(t *testing.T) {
	for _, name := range realModels {
		t.Run(name, func(t *testing.T) {
			path := sharedModel(t, name)
			texts := []string{storyText, "Tom was sad because he lost his red ball in the park."}
			tol, mergeTol := realF32Tol, 1e-3
			if info := modelInfo(t, path); info != "f32" {
				// a quantized model: llama.cpp's own quantized kernels (8-bit
				// activations, repacked layouts) differ from its dequantized
				// F32 copy by gap; the trainer may differ from llama.cpp by as
				// much, and a merge (W + ΔW quantized again) by twice as much
				deq := filepath.Join(t.TempDir(), "deq.gguf")
				if err := Dequantize(path, deq); err != nil {
					t.Fatal(err)
				}
				dm := load(t, deq)
				gap := maxAbsDiff(tokenLogps(t, load(t, path), nil, texts...), tokenLogps(t, dm, nil, texts...))
				dtr := newTrainer(t, deq, TrainerOptions{})
				o, err := dtr.Set(0).Forward(fullBatch(t, dm, texts...), 0)
				if err != nil {
					t.Fatal(err)
				}
				dd := maxAbsDiff(o.Logps, tokenLogps(t, dm, nil, texts...))
				t.Logf("%s: llama.cpp %s vs its F32 copy %.2e; trainer vs llama.cpp on the F32 copy %.2e", name, info, gap, dd)
				if dd > realF32Tol {
					t.Errorf("on the dequantized copy the trainer differs from llama.cpp by %.3g (tolerance %.g)", dd, realF32Tol)
				}
				tol, mergeTol = math.Max(6e-2, 1.25*gap), math.Max(6e-2, 2*gap)
			}
			m := load(t, path)
			b := fullBatch(t, m, texts...)
			tr := newTrainer(t, path, TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: 5})
			base, err := tr.Set(0).Forward(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			ref := tokenLogps(t, m, nil, texts...)
			d := maxAbsDiff(base.Logps, ref)
			t.Logf("%s: max |trainer - llama.cpp| = %.2e over %d tokens (tolerance %.2e)", name, d, len(ref), tol)
			if d > tol {
				t.Errorf("training forward differs from llama.cpp by %.3g (tolerance %.3g)", d, tol)
			}
			sftSteps(t, tr, b, 5)
			after, _ := tr.Set(0).Forward(b, 1)
			if after.Sums[0] <= base.Sums[0]+1 {
				t.Errorf("5 SFT steps moved the log-likelihood from %.3f to %.3f only", base.Sums[0], after.Sums[0])
			}
			ap := filepath.Join(t.TempDir(), "adapter.gguf")
			if err := tr.Set(0).Export(ap); err != nil {
				t.Fatal(err)
			}
			l, err := LoadLoRA(m, ap)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			withAdapter := tokenLogps(t, m, []LoRAScale{{LoRA: l, Scale: 1}}, texts...)
			de := maxAbsDiff(after.Logps, withAdapter)
			t.Logf("%s: SFT sum %.2f → %.2f; llama.cpp with the exported adapter vs trainer: %.2e", name, base.Sums[0], after.Sums[0], de)
			if de > tol {
				t.Errorf("llama.cpp with the exported adapter differs from the trainer by %.3g", de)
			}
			merged := filepath.Join(t.TempDir(), "merged.gguf")
			if _, err := Merge(context.Background(), path, []MergeLoRA{{Path: ap, Scale: 1}}, merged, MergeOptions{}); err != nil {
				t.Fatal(err)
			}
			dm := maxAbsDiff(tokenLogps(t, load(t, merged), nil, texts...), withAdapter)
			t.Logf("%s: merged vs base + adapter in llama.cpp: %.2e (bound %.2e)", name, dm, mergeTol)
			if dm > mergeTol {
				t.Errorf("merged model differs from base + adapter by %.3g (bound %.3g)", dm, mergeTol)
			}
		})
	}
}

// modelInfo is the type of a model's blk.0.attn_q.weight ("f32", "q8_0", ...),
// read through the merge planner: a merge to F32 converts exactly the
// tensors that are not F32.
func modelInfo(t *testing.T, path string) string {
	t.Helper()
	res, err := Merge(context.Background(), path, nil, filepath.Join(t.TempDir(), "probe.gguf"), MergeOptions{Type: "f32"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Converted == 0 {
		return "f32"
	}
	return "quantized"
}
