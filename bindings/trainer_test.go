package bindings

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sampleText = "Hello! Naruto is complete at 72 volumes by Masashi Kishimoto. Berserk is ongoing. Thanks for asking!"

// fullBatch scores every position of each text after the first token.
func fullBatch(t testing.TB, m *Model, texts ...string) *Batch {
	t.Helper()
	var seqs [][]int32
	maxLen := 0
	for _, s := range texts {
		toks, err := m.Tokenize(s, true, false)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, toks)
		maxLen = max(maxLen, len(toks))
	}
	b := &Batch{NSeq: len(seqs), NTok: maxLen, Tokens: make([]int32, len(seqs)*maxLen),
		Lengths: make([]int32, len(seqs)), Scored: make([]uint8, len(seqs)*maxLen)}
	for i, s := range seqs {
		copy(b.Tokens[i*maxLen:], s)
		b.Lengths[i] = int32(len(s))
		for j := 1; j < len(s); j++ {
			b.Scored[i*maxLen+j] = 1
		}
	}
	return b
}

func newTrainer(t testing.TB, path string, opt TrainerOptions) *Trainer {
	t.Helper()
	if opt.Threads == 0 {
		opt.Threads = 2
	}
	tr, err := NewTrainerFromFile(path, opt)
	if err != nil {
		t.Fatalf("NewTrainerFromFile(%s): %v", path, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// The training forward at adapter scale 0 agrees with llama.cpp's inference
// log-probs on the same tokens, for every fixture type and both
// architectures.
func TestTrainerForwardMatchesLlama(t *testing.T) {
	// tolerances are max |Δ log-prob| per token; llama.cpp runs attention on
	// an F16 KV cache and quantises activations per kernel, we run F32
	// attention without a cache
	tols := map[string]float64{"f32": 5e-3, "f16": 5e-3, "q8_0": 6e-2, "q4_0": 6e-2, "q4_k": 6e-2}
	for _, arch := range []string{"llama", "qwen2"} {
		for _, typ := range []string{"f32", "f16", "q8_0", "q4_0", "q4_k"} {
			t.Run(arch+"-"+typ, func(t *testing.T) {
				path := fixture(t, arch, typ)
				m := load(t, path)
				b := fullBatch(t, m, sampleText, "Sorry, I cannot help with that.")
				tr := newTrainer(t, path, TrainerOptions{})
				out, err := tr.Set(0).Forward(b, 0)
				if err != nil {
					t.Fatal(err)
				}
				ours := out.Logps
				s := session(t, m, SessionOptions{NCtx: 256})
				var maxd float64
				k := 0
				for i := 0; i < b.NSeq; i++ {
					seq := b.Tokens[i*b.NTok : i*b.NTok+int(b.Lengths[i])]
					ref, err := s.LogProbs(context.Background(), seq)
					if err != nil {
						t.Fatal(err)
					}
					for j := range ref {
						maxd = math.Max(maxd, math.Abs(float64(ref[j]-ours[k])))
						k++
					}
				}
				t.Logf("%s %s: max |train - llama.cpp| log-prob = %.2e over %d tokens", arch, typ, maxd, k)
				if maxd > tols[typ] {
					t.Errorf("training forward differs from llama.cpp by %.3g (tolerance %.g)", maxd, tols[typ])
				}
			})
		}
	}
}

// Variants: tied output head, Llama 3.1 rope frequency factors.
func TestTrainerForwardMatchesLlamaVariants(t *testing.T) {
	for _, v := range []struct {
		name string
		p    FixtureParams
	}{
		{"tied", FixtureParams{Arch: "llama", Type: "f32", Size: "tiny", Seed: 7, TiedOutput: true}},
		{"llama3-rope", FixtureParams{Arch: "llama", Type: "f32", Size: "tiny", Seed: 7, Llama3Rope: true}},
		{"qwen2-tied", FixtureParams{Arch: "qwen2", Type: "f32", Size: "tiny", Seed: 7, TiedOutput: true}},
	} {
		t.Run(v.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), v.name+".gguf")
			if err := WriteFixture(path, v.p); err != nil {
				t.Fatal(err)
			}
			m := load(t, path)
			// a long sequence, so the low-frequency rope factors matter
			long := strings.Repeat(sampleText+" ", 6)
			b := fullBatch(t, m, long)
			tr := newTrainer(t, path, TrainerOptions{})
			out, err := tr.Set(0).Forward(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			ours := out.Logps
			s := session(t, m, SessionOptions{NCtx: 512})
			ref, err := s.LogProbs(context.Background(), b.Tokens[:b.Lengths[0]])
			if err != nil {
				t.Fatal(err)
			}
			// the tied fixtures have N(0,1) embeddings as the head: logits
			// of size ~16 and log-probs near -200, so the bound scales with
			// the magnitude (F32 rounding)
			var maxd, worst float64
			for j := range ref {
				d := math.Abs(float64(ref[j] - ours[j]))
				maxd = math.Max(maxd, d)
				worst = math.Max(worst, d/(5e-3+2e-4*math.Abs(float64(ref[j]))))
			}
			t.Logf("%s: max |train - llama.cpp| = %.2e over %d tokens (%.2f of the bound)", v.name, maxd, len(ref), worst)
			if worst > 1 {
				t.Errorf("differs from llama.cpp beyond 5e-3 + 2e-4·|log p| (%.2f of the bound)", worst)
			}
		})
	}
	// the factors change the model: without them llama.cpp disagrees
	with := filepath.Join(t.TempDir(), "with.gguf")
	without := filepath.Join(t.TempDir(), "without.gguf")
	WriteFixture(with, FixtureParams{Arch: "llama", Type: "f32", Size: "tiny", Seed: 7, Llama3Rope: true})
	WriteFixture(without, FixtureParams{Arch: "llama", Type: "f32", Size: "tiny", Seed: 7})
	mw, mo := load(t, with), load(t, without)
	toks, _ := mw.Tokenize(strings.Repeat(sampleText+" ", 6), true, false)
	lw, _ := session(t, mw, SessionOptions{NCtx: 512}).LogProbs(context.Background(), toks)
	lo, _ := session(t, mo, SessionOptions{NCtx: 512}).LogProbs(context.Background(), toks)
	var d float64
	for j := range lw {
		d = math.Max(d, math.Abs(float64(lw[j]-lo[j])))
	}
	if d < 1e-2 {
		t.Errorf("rope factors changed llama.cpp's log-probs by only %.3g; the variant test would not notice them", d)
	}
}

// Finite-difference check of every LoRA parameter class (A and B of q, k, v,
// o, gate, up, down in every layer) through the whole model on F32 bases.
func TestTrainerGradientCheck(t *testing.T) {
	const allTargets = 127
	for _, arch := range []string{"llama", "qwen2"} {
		t.Run(arch, func(t *testing.T) {
			path := fixture(t, arch, "f32")
			m := load(t, path)
			b := fullBatch(t, m, "Is Berserk finished?", "Happy to help! Naruto has 72 volumes.")
			const r = 2
			tr := newTrainer(t, path, TrainerOptions{Rank: r, Alpha: 4, Targets: allTargets, Seed: 3, ExactBackward: true})
			info := tr.Info()
			table, err := tr.Set(0).Params()
			if err != nil {
				t.Fatal(err)
			}
			if len(table) != 2*7*info.NLayer || len(table) != 2*info.NLoRATensors {
				t.Fatalf("parameter table has %d rows for %d layers x 7 targets x (A, B)", len(table), info.NLayer)
			}
			rng := rand.New(rand.NewPCG(11, 12))
			params := make([]float32, info.NLoRAParams)
			for i := range params {
				params[i] = float32(rng.NormFloat64() * 0.05)
			}
			if err := tr.Set(0).SetState(params, nil, nil, 0); err != nil {
				t.Fatal(err)
			}
			coef := []float64{0.7, -1.3} // loss = Σ coef_b · S_b
			loss := func() float64 {
				out, err := tr.Set(0).Forward(b, 1)
				if err != nil {
					t.Fatal(err)
				}
				return coef[0]*out.Sums[0] + coef[1]*out.Sums[1]
			}
			if _, err := tr.Set(0).ForwardGrad(b); err != nil {
				t.Fatal(err)
			}
			if err := backwardSums(tr.Set(0), b, coef); err != nil {
				t.Fatal(err)
			}
			st, err := tr.Set(0).GetState()
			if err != nil {
				t.Fatal(err)
			}
			grad := st.Grads
			// F32 forward noise on the sums is ~1e-5; h = 3e-2 keeps the
			// finite-difference noise near 1e-3 of typical gradients while the
			// bilinear LoRA terms keep the truncation error small
			const h = 3e-2
			worst := map[string]float64{}
			var num, den float64
			for _, row := range table {
				// two random elements of each A and B
				n := int(row.Ne0 * row.Ne1)
				for k := 0; k < 2; k++ {
					i := int(row.Offset) + rng.IntN(n)
					orig := params[i]
					params[i] = orig + h
					tr.Set(0).SetState(params, nil, nil, 0)
					lp := loss()
					params[i] = orig - h
					tr.Set(0).SetState(params, nil, nil, 0)
					lm := loss()
					params[i] = orig
					fd := (lp - lm) / (2 * h)
					an := float64(grad[i])
					rel := math.Abs(fd-an) / math.Max(math.Max(math.Abs(fd), math.Abs(an)), 1e-2)
					key := row.Name[strings.Index(row.Name, ".")+1:] // e.g. attn_q.weight.lora_a
					key = key[strings.Index(key, ".")+1:]
					worst[key] = math.Max(worst[key], rel)
					num += (fd - an) * (fd - an)
					den += fd * fd
					if rel > 5e-2 {
						t.Errorf("%s[%d]: analytic %.6g, finite difference %.6g (rel %.2g)", row.Name, i-int(row.Offset), an, fd, rel)
					}
				}
			}
			tr.Set(0).SetState(params, nil, nil, 0)
			t.Logf("%s: gradient NMSE over %d checked elements %.2e; worst relative error per class: %v", arch, 2*len(table), num/den, worst)
			if !(num/den < 1e-3) {
				t.Errorf("gradient NMSE %.3g against finite differences", num/den)
			}
		})
	}
}

// Quantized and F16 bases: forward and gradients against an F32 model of
// the same (dequantized) weights.
func TestTrainerQuantizedMatchesDequantized(t *testing.T) {
	for _, typ := range []string{"f16", "q8_0", "q4_0", "q4_k"} {
		t.Run(typ, func(t *testing.T) {
			qpath := fixture(t, "llama", typ)
			fpath := filepath.Join(t.TempDir(), "deq.gguf")
			if err := Dequantize(qpath, fpath); err != nil {
				t.Fatal(err)
			}
			m := load(t, qpath)
			b := fullBatch(t, m, sampleText, "I can connect you with a human teammate right away.")
			opt := TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: 5}
			tq := newTrainer(t, qpath, opt)
			opt.ExactBackward = true
			tf := newTrainer(t, fpath, opt)
			rng := rand.New(rand.NewPCG(1, 2))
			params := make([]float32, tq.Info().NLoRAParams)
			for i := range params {
				params[i] = float32(rng.NormFloat64() * 0.05)
			}
			tq.Set(0).SetState(params, nil, nil, 0)
			tf.Set(0).SetState(params, nil, nil, 0)
			grads := func(tr *Trainer) ([]float64, []float32) {
				out, err := tr.Set(0).ForwardGrad(b)
				if err != nil {
					t.Fatal(err)
				}
				if err := backwardSums(tr.Set(0), b, []float64{1, -1}); err != nil {
					t.Fatal(err)
				}
				st, _ := tr.Set(0).GetState()
				return out.Sums, st.Grads
			}
			sq, gq := grads(tq)
			sf, gf := grads(tf)
			var num, den float64
			for i := range gq {
				d := float64(gq[i] - gf[i])
				num += d * d
				den += float64(gf[i]) * float64(gf[i])
			}
			nmse := num / den
			dsum := math.Max(math.Abs(sq[0]-sf[0])/math.Abs(sf[0]), math.Abs(sq[1]-sf[1])/math.Abs(sf[1]))
			t.Logf("%s: relative sum difference %.2e, gradient NMSE %.2e", typ, dsum, nmse)
			if dsum > 2e-2 {
				t.Errorf("forward differs from the dequantized reference by %.3g", dsum)
			}
			if !(nmse <= 1e-2) { // also catches NaN
				t.Errorf("gradient NMSE against the dequantized reference = %.3g", nmse)
			}
		})
	}
}

// Training moves the adapters, and the exported adapter loaded by llama.cpp
// reproduces the trained policy's log-probs.
func TestTrainerExportMatchesLlama(t *testing.T) {
	for _, typ := range []string{"f32", "q8_0"} {
		t.Run(typ, func(t *testing.T) {
			path := fixture(t, "llama", typ)
			m := load(t, path)
			b := fullBatch(t, m, sampleText)
			tr := newTrainer(t, path, TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: 9})
			bo, _ := tr.Set(0).Forward(b, 1)
			before := bo.Sums
			sftSteps(t, tr, b, 5)
			ao, _ := tr.Set(0).Forward(b, 1)
			after, ours := ao.Sums, ao.Logps
			if after[0] <= before[0]+1 {
				t.Errorf("5 SFT steps moved the log-likelihood from %.3f to %.3f only", before[0], after[0])
			}
			ap := filepath.Join(t.TempDir(), "adapter.gguf")
			if err := tr.Set(0).Export(ap); err != nil {
				t.Fatal(err)
			}
			l, err := LoadLoRA(m, ap)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() }) // after the session's cleanup
			s := session(t, m, SessionOptions{NCtx: 256, Adapters: []LoRAScale{{LoRA: l, Scale: 1}}})
			ref, err := s.LogProbs(context.Background(), b.Tokens[:b.Lengths[0]])
			if err != nil {
				t.Fatal(err)
			}
			var maxd, sum float64
			for j := range ref {
				maxd = math.Max(maxd, math.Abs(float64(ref[j]-ours[j])))
				sum += float64(ref[j])
			}
			t.Logf("%s: trained sum %.3f (before %.3f), llama.cpp with adapter %.3f, max per-token |Δ| %.2e", typ, after[0], before[0], sum, maxd)
			tol := 5e-3
			if typ != "f32" {
				tol = 6e-2 // as for the base model's parity (TestTrainerForwardMatchesLlama)
			}
			if maxd > tol {
				t.Errorf("llama.cpp with the exported adapter differs from the trainer by %.3g per token", maxd)
			}
		})
	}
}

// liveTrainer is a trainer on the F32 fixture after 3 SFT steps on
// sampleText (b), and a live adapter over its policy, closed after the
// sessions a test makes with it.
func liveTrainer(t *testing.T) (*Trainer, *Batch, *LoRA) {
	t.Helper()
	tr := newTrainer(t, fixture(t, "llama", "f32"), TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: 9})
	b := fullBatch(t, tr.Model(), sampleText)
	sftSteps(t, tr, b, 3)
	live, err := tr.Set(0).LiveLoRA()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Close() }) // registered before the sessions, so it runs after their cleanups
	return tr, b, live
}

// sftSteps takes n AdamW steps (lr 1e-2) that maximise the log-likelihood
// of every sequence of b.
func sftSteps(t *testing.T, tr *Trainer, b *Batch, n int) {
	t.Helper()
	minus := make([]float64, b.NSeq)
	for i := range minus {
		minus[i] = -1
	}
	for i := 0; i < n; i++ {
		if _, err := tr.Set(0).ForwardGrad(b); err != nil {
			t.Fatal(err)
		}
		if err := backwardSums(tr.Set(0), b, minus); err != nil {
			t.Fatal(err)
		}
		if err := tr.Set(0).Step(AdamW{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, GradScale: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTrainerRejectsBadInput(t *testing.T) {
	path := fixture(t, "llama", "q8_0")
	tr := newTrainer(t, path, TrainerOptions{})
	info := tr.Info()
	cases := map[string]*Batch{
		"token out of range": {NSeq: 1, NTok: 3, Tokens: []int32{1, int32(info.NVocab), 5}, Lengths: []int32{3}, Scored: []uint8{0, 1, 1}},
		"scored position 0":  {NSeq: 1, NTok: 3, Tokens: []int32{1, 2, 3}, Lengths: []int32{3}, Scored: []uint8{1, 1, 1}},
		"length too long":    {NSeq: 1, NTok: 3, Tokens: []int32{1, 2, 3}, Lengths: []int32{4}, Scored: []uint8{0, 1, 1}},
		"nothing scored":     {NSeq: 1, NTok: 3, Tokens: []int32{1, 2, 3}, Lengths: []int32{3}, Scored: []uint8{0, 0, 0}},
		"scored padding":     {NSeq: 1, NTok: 3, Tokens: []int32{1, 2, 3}, Lengths: []int32{2}, Scored: []uint8{0, 1, 1}},
	}
	invalid := &Error{Code: StatusInvalidArgument}
	for name, b := range cases {
		if _, err := tr.Set(0).Forward(b, 0); !errors.Is(err, invalid) {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	if err := tr.Set(0).Backward([]float32{1}, nil); !errors.Is(err, invalid) {
		t.Errorf("backward without forward_grad: %v, want INVALID_ARGUMENT", err)
	}
	if _, err := NewTrainerFromFile(filepath.Join(t.TempDir(), "none.gguf"), TrainerOptions{}); !errors.Is(err, &Error{Code: StatusIO}) {
		t.Errorf("missing model: %v, want IO", err)
	}
}

// A cotangent, state or output buffer of the wrong length is refused by the
// C API with ALIGN_ERR_INVALID_ARGUMENT (the call passes the slice's
// length; before the counts, a short slice was read past its end), and the
// pending forward_grad survives a refused backward.
func TestTrainerRefusesShortBuffers(t *testing.T) {
	path := fixture(t, "llama", "q8_0")
	tr := newTrainer(t, path, TrainerOptions{Rank: 2, Alpha: 4, Seed: 3})
	b := &Batch{NSeq: 2, NTok: 4, Tokens: []int32{1, 5, 6, 7, 1, 8, 9, 0}, Lengths: []int32{4, 3}, Scored: []uint8{0, 1, 1, 1, 0, 1, 1, 0}}
	out, err := tr.Set(0).ForwardGrad(b)
	if err != nil {
		t.Fatal(err)
	}
	invalid := &Error{Code: StatusInvalidArgument}
	short := make([]float32, len(out.Logps)-1)
	for i := range short {
		short[i] = 1
	}
	if err := tr.Set(0).Backward(short, nil); !errors.Is(err, invalid) {
		t.Errorf("backward with %d cotangents for %d tokens: %v, want INVALID_ARGUMENT", len(short), len(out.Logps), err)
	}
	if err := tr.Set(0).Backward(nil, []float32{1}); !errors.Is(err, invalid) {
		t.Errorf("head cotangents for a batch without heads: %v, want INVALID_ARGUMENT", err)
	}
	if err := tr.Set(0).Backward(make([]float32, len(out.Logps)), nil); err != nil {
		t.Errorf("backward with the right count after refusals: %v", err)
	}
	si, err := tr.Set(0).Info()
	if err != nil {
		t.Fatal(err)
	}
	// the C API directly: a state buffer of the wrong count, and an output
	// buffer smaller than the batch's sums
	if st := cGetStateCount(tr, si.NParams-1); st != StatusInvalidArgument {
		t.Errorf("get_state with n = n_params - 1: status %d, want INVALID_ARGUMENT", st)
	}
	if st := cSetStateCount(tr, si.NParams+1); st != StatusInvalidArgument {
		t.Errorf("set_state with n = n_params + 1: status %d, want INVALID_ARGUMENT", st)
	}
	if st := cForwardSums(tr, b, int64(b.NSeq-1)); st != StatusInvalidArgument {
		t.Errorf("forward with room for %d of %d sums: status %d, want INVALID_ARGUMENT", b.NSeq-1, b.NSeq, st)
	}
	if st := cForwardSums(tr, b, int64(b.NSeq)); st != StatusOK {
		t.Errorf("forward with room for every sum: status %d", st)
	}
}

// backwardSums accumulates the gradient of a sequence-level loss:
// dLoss/dSum[s] = dsums[s] for each sequence, broadcast over its scored
// tokens (b is the batch of the set's last ForwardGrad).
func backwardSums(set Set, b *Batch, dsums []float64) error {
	if len(dsums) != b.NSeq {
		return fmt.Errorf("%d loss gradients for %d sequences", len(dsums), b.NSeq)
	}
	seq := b.TokenSeq()
	cot := make([]float32, len(seq))
	for j, s := range seq {
		cot[j] = float32(dsums[s])
	}
	return set.Backward(cot, nil)
}

// A Q4_K model at a real width (Llama 3.2 1B's 2048; one layer) trains as
// loaded by NewTrainerFromFile, untied and tied. On AMX CPUs
// llama.cpp puts Q4_K matrices 2048 wide or more in its AMX buffer, whose
// layout the trainer cannot read: the trainer's model keeps them in host
// memory (ModelOptions.Trainable). Elsewhere they stay repacked
// (CPU_REPACK), which the trainer reads. Either way the training forward
// agrees with llama.cpp's inference on the trainer's own model, and SFT
// steps raise the log-likelihood.
func TestTrainerWideQ4K(t *testing.T) {
	for _, tied := range []bool{false, true} {
		name := map[bool]string{false: "untied", true: "tied"}[tied]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "wide-"+name+".gguf")
			// the built-in 3,113-token vocabulary and FFN 2048 instead of
			// 8192 keep the test short: every matrix is still 2048 wide,
			// where AMX takes it
			fp := FixtureParams{Arch: "llama", Type: "q4_k", Size: "tiny", NLayer: 1, NEmbd: 2048, NHead: 16, NHeadKV: 8, HeadDim: 128,
				NFF: 2048, Seed: 5, TiedOutput: tied}
			if err := WriteFixture(path, fp); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			tr := newTrainer(t, path, TrainerOptions{Rank: 4, Alpha: 8, Seed: 9})
			if info := tr.Info(); info.NEmbd != 2048 || info.NFF != 2048 {
				t.Fatalf("fixture is %d wide with FFN %d, want 2048 and 2048", info.NEmbd, info.NFF)
			}
			t.Logf("trainer ready in %v", time.Since(t0))
			m := tr.Model()
			b := fullBatch(t, m, sampleText)
			out, err := tr.Set(0).Forward(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := session(t, m, SessionOptions{NCtx: 256}).LogProbs(context.Background(), b.Tokens[:b.Lengths[0]])
			if err != nil {
				t.Fatal(err)
			}
			// as TestTrainerForwardMatchesLlama's Q4_K bound (llama.cpp runs
			// attention on an F16 KV cache), relative where the tied head's
			// N(0,1) embeddings give log-probs in the hundreds
			var maxd, worst, before float64
			for j := range ref {
				d := math.Abs(float64(ref[j] - out.Logps[j]))
				maxd = math.Max(maxd, d)
				worst = math.Max(worst, d/(6e-2+2e-3*math.Abs(float64(ref[j]))))
				before += float64(out.Logps[j])
			}
			if worst > 1 {
				t.Errorf("training forward differs from llama.cpp by %.3g per token (%.2f of 6e-2 + 2e-3·|log p|)", maxd, worst)
			}
			sftSteps(t, tr, b, 3)
			ao, err := tr.Set(0).Forward(b, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: max |train - llama.cpp| = %.2e; 3 SFT steps: log-likelihood %.2f -> %.2f", name, maxd, before, ao.Sums[0])
			if !(ao.Sums[0] > before+1) {
				t.Errorf("3 SFT steps moved the log-likelihood from %.3f to %.3f only", before, ao.Sums[0])
			}
		})
	}
}
