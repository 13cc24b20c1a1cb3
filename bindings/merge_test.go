package bindings

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trainedAdapter trains 5 SFT steps with every target on the model at
// path and exports the adapter (a delta large enough to matter).
func trainedAdapter(t *testing.T, path string, seed uint64) string {
	t.Helper()
	tr := newTrainer(t, path, TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: seed})
	b := fullBatch(t, tr.Model(), sampleText)
	sftSteps(t, tr, b, 5)
	ap := filepath.Join(t.TempDir(), "adapter.gguf")
	if err := tr.Set(0).Export(ap); err != nil {
		t.Fatal(err)
	}
	return ap
}

// tokenLogps is llama.cpp's per-token log-probs of texts under m with
// adapters, concatenated.
func tokenLogps(t *testing.T, m *Model, adapters []LoRAScale, texts ...string) []float32 {
	t.Helper()
	s := session(t, m, SessionOptions{NCtx: 256, Adapters: adapters})
	var out []float32
	for _, text := range texts {
		toks, err := m.Tokenize(text, true, false)
		if err != nil {
			t.Fatal(err)
		}
		lp, err := s.LogProbs(context.Background(), toks)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lp...)
	}
	return out
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// mergeCase is base + adapter (llama.cpp applying the LoRA at run time)
// against the merged file, and against the base alone (what the adapter
// changes, so a merge that drops it fails).
func mergeCase(t *testing.T, base string, loras []MergeLoRA, opt MergeOptions) (merged, effect float64, res MergeResult) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "merged.gguf")
	res, err := Merge(context.Background(), base, loras, out, opt)
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	texts := []string{sampleText, "Sorry, I cannot help with that. One Piece is ongoing."}
	m := load(t, base)
	var as []LoRAScale
	for _, l := range loras {
		a, err := LoadLoRA(m, l.Path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() }) // after the session's cleanup
		as = append(as, LoRAScale{LoRA: a, Scale: l.Scale})
	}
	want := tokenLogps(t, m, as, texts...)
	plain := tokenLogps(t, m, nil, texts...)
	got := tokenLogps(t, load(t, out), nil, texts...)
	return maxAbsDiff(got, want), maxAbsDiff(plain, want), res
}

// Merged F32 equals base + adapter within float error, for one adapter and
// for two with user scales; quantized bases stay within a stated bound of
// base + adapter (the merged weights are re-quantized, the run-time LoRA is
// not).
func TestMergeMatchesRuntimeAdapter(t *testing.T) {
	// bound: max per-token |Δ log-prob| merged vs base + adapter in
	// llama.cpp. F32: summation order only. Quantized: one re-quantization
	// of W + ΔW, on top of llama.cpp's 8-bit activations (see
	// TestTrainerForwardMatchesLlama's 6e-2 for our trainer vs llama.cpp).
	bounds := map[string]float64{"f32": 1e-3, "f16": 2e-2, "q8_0": 6e-2, "q4_k": 0.5}
	for _, typ := range []string{"f32", "f16", "q8_0", "q4_k"} {
		t.Run(typ, func(t *testing.T) {
			base := fixture(t, "llama", typ)
			a1 := trainedAdapter(t, base, 9)
			d, eff, res := mergeCase(t, base, []MergeLoRA{{Path: a1, Scale: 1}}, MergeOptions{})
			t.Logf("%s: max |merged - (base + adapter)| = %.2e; the adapter moves log-probs by up to %.2e; %+v", typ, d, eff, res)
			if res.Merged != 14 || res.Converted != 0 {
				t.Errorf("merged %d tensors, converted %d; want 14 (7 targets x 2 layers) and 0", res.Merged, res.Converted)
			}
			if eff < 10*bounds[typ] {
				t.Fatalf("the adapter moves log-probs by %.2e only: the test cannot tell a merge from none", eff)
			}
			if d > bounds[typ] {
				t.Errorf("merged differs from base + adapter by %.3g (bound %.g)", d, bounds[typ])
			}
			if typ != "f32" {
				// W + ΔW lies off the quantization grid: the merge costs about
				// one quantization of the model to this type, no more
				q := requantCost(t, typ)
				t.Logf("%s: quantizing the F32 fixture to %s alone moves log-probs by up to %.2e", typ, typ, q)
				if d > 2*q+1e-2 {
					t.Errorf("merged differs from base + adapter by %.3g, more than twice one quantization to %s (%.3g)", d, typ, q)
				}
				return
			}
			a2 := trainedAdapter(t, base, 11)
			d2, eff2, _ := mergeCase(t, base, []MergeLoRA{{Path: a1, Scale: 0.5}, {Path: a2, Scale: -1.5}}, MergeOptions{})
			t.Logf("two adapters, scales 0.5 and -1.5: max |Δ| = %.2e (effect %.2e)", d2, eff2)
			if d2 > bounds[typ] {
				t.Errorf("two merged adapters differ from base + both by %.3g", d2)
			}
		})
	}
}

// requantCost is the max per-token log-prob change of writing the F32
// fixture as typ (no adapters).
func requantCost(t *testing.T, typ string) float64 {
	t.Helper()
	base := fixture(t, "llama", "f32")
	out := filepath.Join(t.TempDir(), "requant.gguf")
	if _, err := Merge(context.Background(), base, nil, out, MergeOptions{Type: typ}); err != nil {
		t.Fatal(err)
	}
	texts := []string{sampleText, "Sorry, I cannot help with that. One Piece is ongoing."}
	return maxAbsDiff(tokenLogps(t, load(t, out), nil, texts...), tokenLogps(t, load(t, base), nil, texts...))
}

// --type re-quantizes every matrix; the result loads and stays near base +
// adapter.
func TestMergeConvertsType(t *testing.T) {
	base := fixture(t, "llama", "f32")
	a := trainedAdapter(t, base, 9)
	for _, c := range []struct {
		typ   string
		bound float64
	}{{"f16", 2e-2}, {"q8_0", 6e-2}, {"Q4_K", 0.6}} {
		t.Run(c.typ, func(t *testing.T) {
			d, eff, res := mergeCase(t, base, []MergeLoRA{{Path: a, Scale: 1}}, MergeOptions{Type: c.typ})
			t.Logf("f32 base --type %s: max |merged - (base + adapter)| = %.2e (effect %.2e); %+v", c.typ, d, eff, res)
			if res.Converted == 0 || res.Fallback != 0 {
				t.Errorf("converted %d tensors (%d by fallback); want some, none by fallback", res.Converted, res.Fallback)
			}
			if d > c.bound {
				t.Errorf("merged as %s differs from base + adapter by %.3g (bound %.g)", c.typ, d, c.bound)
			}
		})
	}
}

// With nothing to fold and no type change, every byte is the base's: the
// metadata and tensor data are copied, not re-encoded.
func TestMergeCopiesBytes(t *testing.T) {
	for _, typ := range []string{"q8_0", "q4_k"} {
		base := fixture(t, "llama", typ)
		out := filepath.Join(t.TempDir(), "copy.gguf")
		res, err := Merge(context.Background(), base, nil, out, MergeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(base)
		b, _ := os.ReadFile(out)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: a merge of no adapters is not the base byte for byte (%d vs %d bytes)", typ, len(a), len(b))
		}
		if res.Copied != res.Tensors || res.Bytes != int64(len(a)) {
			t.Errorf("%s: result %+v for a plain copy of %d bytes", typ, res, len(a))
		}
	}
}

func TestMergeRejectsBadInput(t *testing.T) {
	base := fixture(t, "llama", "f32")
	a := trainedAdapter(t, base, 9)
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists.gguf")
	if err := os.WriteFile(exists, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := fixture(t, "qwen2", "f32")
	small2 := filepath.Join(dir, "wide.gguf") // blk.0.attn_q.weight is 256 x 256
	randomAdapter(t, small2, "llama", 4, []string{"blk.0.attn_q.weight"}, 512, 256, 3)
	ghost := filepath.Join(dir, "ghost.gguf")
	randomAdapter(t, ghost, "llama", 4, []string{"blk.9.attn_q.weight"}, 256, 256, 3)
	junk := filepath.Join(dir, "junk.gguf")
	os.WriteFile(junk, []byte("GGUF but not really"), 0o644)
	for _, c := range []struct {
		name  string
		base  string
		loras []MergeLoRA
		out   string
		opt   MergeOptions
		want  string
	}{
		{"existing out", base, []MergeLoRA{{a, 1}}, exists, MergeOptions{}, "--force"},
		{"out is the base", base, []MergeLoRA{{a, 1}}, base, MergeOptions{Force: true}, "base model itself"},
		{"out is the adapter", base, []MergeLoRA{{a, 1}}, a, MergeOptions{Force: true}, "input adapter"},
		{"unknown type", base, []MergeLoRA{{a, 1}}, filepath.Join(dir, "x.gguf"), MergeOptions{Type: "q7_z"}, "q7_z"},
		{"imatrix type", base, []MergeLoRA{{a, 1}}, filepath.Join(dir, "x.gguf"), MergeOptions{Type: "iq2_xxs"}, "iq2_xxs"},
		{"other arch", other, []MergeLoRA{{a, 1}}, filepath.Join(dir, "x.gguf"), MergeOptions{}, "architecture"},
		{"other shapes", base, []MergeLoRA{{small2, 1}}, filepath.Join(dir, "x.gguf"), MergeOptions{}, "do not fit"},
		{"no such weight", base, []MergeLoRA{{ghost, 1}}, filepath.Join(dir, "x.gguf"), MergeOptions{}, "blk.9.attn_q.weight"},
		{"model as adapter", base, []MergeLoRA{{base, 1}}, filepath.Join(dir, "x.gguf"), MergeOptions{}, "not a LoRA adapter"},
		{"adapter as model", a, []MergeLoRA{{a, 1}}, filepath.Join(dir, "x.gguf"), MergeOptions{}, "not a model"},
		{"junk adapter", base, []MergeLoRA{{junk, 1}}, filepath.Join(dir, "x.gguf"), MergeOptions{}, "junk.gguf"},
		{"missing adapter", base, []MergeLoRA{{filepath.Join(dir, "nope.gguf"), 1}}, filepath.Join(dir, "x.gguf"), MergeOptions{}, "nope.gguf"},
		{"nan scale", base, []MergeLoRA{{a, float32(math.NaN())}}, filepath.Join(dir, "x.gguf"), MergeOptions{}, "finite"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Merge(context.Background(), c.base, c.loras, c.out, c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v; want an error containing %q", err, c.want)
			}
		})
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep me" {
		t.Error("a refused merge changed the existing file")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") || e.Name() == "x.gguf" {
			t.Errorf("a failed merge left %s behind", e.Name())
		}
	}
	// --force replaces it
	if _, err := Merge(context.Background(), base, []MergeLoRA{{a, 1}}, exists, MergeOptions{Force: true}); err != nil {
		t.Fatalf("--force: %v", err)
	}
	// a cancelled merge leaves nothing
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Merge(ctx, base, []MergeLoRA{{a, 1}}, filepath.Join(dir, "c.gguf"), MergeOptions{})
	if !errors.Is(err, ErrCancelled) {
		t.Errorf("cancelled merge: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "c.gguf")); err == nil {
		t.Error("a cancelled merge wrote its output")
	}
}
