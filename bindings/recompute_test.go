package bindings

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Gradient checkpointing (TrainerOptions.Recompute): the backward recomputes
// one layer at a time from its saved input, with the same nodes in the same
// order as the one-graph backward, so everything it yields must be
// bit-identical to training without it.

// remapTokens returns b with every real token replaced by another (same
// shape, lengths and scored positions: the trainer reuses its graphs).
func remapTokens(b *Batch, nVocab int) *Batch {
	c := *b
	c.Tokens = make([]int32, len(b.Tokens))
	for s := 0; s < b.NSeq; s++ {
		for t := 0; t < int(b.Lengths[s]); t++ {
			i := s*b.NTok + t
			c.Tokens[i] = int32((int(b.Tokens[i])*7 + 3) % nVocab)
		}
	}
	return &c
}

// recomputeRun is what one trainer yields on a fixed script: the outputs of
// every forward, both sets' gradients after two micro-batches, and set 0's
// parameters after three AdamW steps of two micro-batches each.
type recomputeRun struct {
	sums           [][]float64
	logps, heads   [][]float32
	grads0, grads1 []float32
	params         []float32
	body, ckpt     int64
}

func runRecomputeScript(t *testing.T, path string, recompute bool, a, c *Batch) recomputeRun {
	t.Helper()
	tr := newTrainer(t, path, TrainerOptions{Rank: 2, Alpha: 4, Targets: 127, Seed: 3, Recompute: recompute})
	info := tr.Info()
	if info.NLoRATensors != 7*info.NLayer {
		t.Fatalf("%d adapted tensors for %d layers", info.NLoRATensors, info.NLayer)
	}
	set, err := tr.AddSet(SetOptions{Name: "value", Rank: 2, Alpha: 2, Targets: TargetQ | TargetV | TargetDown, Seed: 9,
		Heads: []HeadSpec{{"value", 1}, {"score", 2}}})
	if err != nil {
		t.Fatal(err)
	}
	randomParams(t, tr, 0, 11, 0.05) // B ≠ 0: every LoRA factor has a gradient
	randomParams(t, tr, set.ID(), 13, 0.05)
	var run recomputeRun
	keep := func(out Outputs) {
		run.sums = append(run.sums, out.Sums)
		run.logps = append(run.logps, out.Logps)
		run.heads = append(run.heads, out.Heads)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	// set 0: two micro-batches of different shapes (the second rebuilds),
	// one through per-sequence sums, one through per-token cotangents
	out, err := tr.Set(0).ForwardGrad(a)
	if err != nil {
		t.Fatal(err)
	}
	keep(out)
	if err := backwardSums(tr.Set(0), a, []float64{0.7, -1.3}); err != nil {
		t.Fatal(err)
	}
	if out, err = tr.Set(0).ForwardGrad(c); err != nil {
		t.Fatal(err)
	}
	keep(out)
	cot := make([]float32, c.NScored())
	for j := range cot {
		cot[j] = float32(rng.NormFloat64())
	}
	if err := tr.Set(0).Backward(cot, nil); err != nil {
		t.Fatal(err)
	}
	// the value set: adapters on q, v, down and two stacked heads
	ah := *a
	ah.HeadAt = make([]uint8, len(a.Tokens))
	for s := 0; s < a.NSeq; s++ {
		ah.HeadAt[s*a.NTok+int(a.Lengths[s])-1] = 1
		ah.HeadAt[s*a.NTok+2] = 1
	}
	if out, err = set.ForwardGrad(&ah); err != nil {
		t.Fatal(err)
	}
	keep(out)
	hcot := make([]float32, len(out.Heads))
	for j := range hcot {
		hcot[j] = float32(rng.NormFloat64())
	}
	cot = make([]float32, a.NScored())
	for j := range cot {
		cot[j] = float32(rng.NormFloat64() * 0.3)
	}
	if err := set.Backward(cot, hcot); err != nil {
		t.Fatal(err)
	}
	s0, err := tr.Set(0).GetState()
	if err != nil {
		t.Fatal(err)
	}
	s1, err := set.GetState()
	if err != nil {
		t.Fatal(err)
	}
	run.grads0, run.grads1 = s0.Grads, s1.Grads
	// three AdamW steps, each of two micro-batches of one shape (the second
	// reuses the graphs), after a reference pass at scale 0 (forward only)
	if _, err := tr.Set(0).Forward(a, 0); err != nil {
		t.Fatal(err)
	}
	if err := tr.Set(0).ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	b := remapTokens(a, info.NVocab)
	for step := 0; step < 3; step++ {
		for _, mb := range []*Batch{a, b} {
			if out, err = tr.Set(0).ForwardGrad(mb); err != nil {
				t.Fatal(err)
			}
			keep(out)
			if err := backwardSums(tr.Set(0), mb, []float64{1, -1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tr.Set(0).Step(AdamW{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, GradScale: 0.5}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := tr.Set(0).GetState()
	if err != nil {
		t.Fatal(err)
	}
	run.params = st.Params
	run.body, _ = tr.ComputeBytes()
	run.ckpt = tr.CheckpointBytes()
	if recompute != (run.ckpt > 0) {
		t.Errorf("recompute %v: checkpoint bytes %d", recompute, run.ckpt)
	}
	return run
}

// sameFloats reports the first index where two vectors differ bitwise (-1:
// none) and the largest |a − b| relative to max |a|.
func sameFloats[F float32 | float64](a, b []F) (first int, rel float64) {
	first = -1
	if len(a) != len(b) {
		return 0, math.Inf(1)
	}
	var maxd, maxa float64
	for i := range a {
		if a[i] != b[i] && first < 0 {
			first = i
		}
		maxd = math.Max(maxd, math.Abs(float64(a[i])-float64(b[i])))
		maxa = math.Max(maxa, math.Abs(float64(a[i])))
	}
	return first, maxd / math.Max(maxa, 1e-30)
}

// Recompute on and off: identical log-probs, head values, gradients of every
// LoRA factor and head, and adapters after three AdamW steps. Tolerance:
// none (bit-identical), on llama (GQA 4:2), qwen3 (Q/K norms) and gemma3
// (six layers, five sliding with the window cut at 16 < T).
func TestRecomputeMatchesOneGraph(t *testing.T) {
	for _, v := range []struct {
		name string
		p    FixtureParams
	}{
		{"llama", FixtureParams{Arch: "llama", Type: "f32"}},
		{"qwen3", FixtureParams{Arch: "qwen3", Type: "f32"}},
		{"gemma3", FixtureParams{Arch: "gemma3", Type: "f32"}},
		{"llama-q8_0", FixtureParams{Arch: "llama", Type: "q8_0"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			path := archFixture(t, "recompute-"+v.name, v.p)
			m := load(t, path)
			a := fullBatch(t, m, longText, "Is Berserk finished? Happy to help!")
			c := fullBatch(t, m, "Sorry, I cannot help with that.", "Naruto has 72 volumes.", sampleText)
			if v.p.Arch == "gemma3" && a.NTok <= 16 {
				t.Fatalf("sequence of %d tokens does not cross the window", a.NTok)
			}
			off := runRecomputeScript(t, path, false, a, c)
			on := runRecomputeScript(t, path, true, a, c)
			if len(on.sums) != len(off.sums) {
				t.Fatalf("%d forwards with recompute, %d without", len(on.sums), len(off.sums))
			}
			for i := range off.sums {
				if k, rel := sameFloats(on.sums[i], off.sums[i]); k >= 0 {
					t.Errorf("forward %d: sequence %d log-prob sum %v with recompute, %v without (rel %.2g)", i, k, on.sums[i][k], off.sums[i][k], rel)
				}
				if k, _ := sameFloats(on.logps[i], off.logps[i]); k >= 0 {
					t.Errorf("forward %d: token %d log-prob differs", i, k)
				}
				if k, _ := sameFloats(on.heads[i], off.heads[i]); k >= 0 {
					t.Errorf("forward %d: head value %d differs", i, k)
				}
			}
			for _, g := range []struct {
				what    string
				on, off []float32
			}{{"policy gradient", on.grads0, off.grads0}, {"value-set gradient", on.grads1, off.grads1}, {"adapter after 3 steps", on.params, off.params}} {
				nz := 0
				for _, x := range g.off {
					if x != 0 {
						nz++
					}
				}
				if nz == 0 {
					t.Errorf("%s: all zero", g.what)
				}
				if k, rel := sameFloats(g.on, g.off); k >= 0 {
					t.Errorf("%s: element %d is %v with recompute, %v without (max rel difference %.2g)", g.what, k, g.on[k], g.off[k], rel)
				}
			}
			t.Logf("%s: body compute buffer %.2f MiB with recompute (+ %.2f MiB checkpoints), %.2f MiB without",
				v.name, float64(on.body)/(1<<20), float64(on.ckpt)/(1<<20), float64(off.body)/(1<<20))
		})
	}
}

// The finite-difference check of TestTrainerGradientCheck, with recompute.
func TestRecomputeGradientCheck(t *testing.T) {
	for _, v := range []struct {
		name string
		p    FixtureParams
	}{
		{"llama", FixtureParams{Arch: "llama", Type: "f32"}},
		{"gemma3", FixtureParams{Arch: "gemma3", Type: "f32", NLayer: 3}},
	} {
		t.Run(v.name, func(t *testing.T) {
			path := archFixture(t, "recompute-grad-"+v.name, v.p)
			m := load(t, path)
			b := fullBatch(t, m, "Is Berserk finished? Happy to help! Naruto has 72 volumes by Masashi Kishimoto.",
				"Sorry, I cannot help with that.")
			tr := newTrainer(t, path, TrainerOptions{Rank: 2, Alpha: 4, Targets: 127, Seed: 3, ExactBackward: true, Recompute: true})
			params := randomParams(t, tr, 0, 11, 0.05)
			tokenFDCheck(t, tr, b, params, func() {
				if tr.CheckpointBytes() == 0 {
					t.Fatal("no checkpoints: the backward did not recompute")
				}
			})
		})
	}
}

// On 8 layers the recomputed body's compute buffer (its largest piece: one
// layer's forward and backward) is well below the one-graph body's (every
// layer's activations at once). Measured ratio 0.14; asserted < 0.4.
func TestRecomputeBodyMemory(t *testing.T) {
	path := archFixture(t, "recompute-mem", FixtureParams{Arch: "llama", Type: "f32", NLayer: 8})
	m := load(t, path)
	b := fullBatch(t, m, longText, longText[:200])
	var bytes [2]int64
	var ckpt int64
	for i, rc := range []bool{false, true} {
		tr := newTrainer(t, path, TrainerOptions{Rank: 2, Alpha: 4, Targets: 127, Seed: 3, Recompute: rc})
		if _, err := tr.Set(0).ForwardGrad(b); err != nil {
			t.Fatal(err)
		}
		if err := backwardSums(tr.Set(0), b, []float64{1, -1}); err != nil {
			t.Fatal(err)
		}
		bytes[i], _ = tr.ComputeBytes()
		if rc {
			ckpt = tr.CheckpointBytes()
		}
		tr.Close()
	}
	ratio := float64(bytes[1]) / float64(bytes[0])
	t.Logf("8 layers, 2 x %d tokens: body compute %.2f MiB without recompute, %.2f MiB with (ratio %.3f), + %.2f MiB checkpoints (total ratio %.3f)",
		b.NTok, float64(bytes[0])/(1<<20), float64(bytes[1])/(1<<20), ratio, float64(ckpt)/(1<<20), float64(bytes[1]+ckpt)/float64(bytes[0]))
	if !(ratio < 0.4) {
		t.Errorf("recompute compute buffer ratio %.3f, want < 0.4", ratio)
	}
	if !(float64(bytes[1]+ckpt) < 0.5*float64(bytes[0])) {
		t.Errorf("recompute buffer + checkpoints %d bytes, not below half of %d", bytes[1]+ckpt, bytes[0])
	}
}

// Measurement, not run by default (ALIGN_RECOMPUTE_SHAPES=1; writes 0.1–1.8
// GB fixtures under the test cache): the body's compute buffer at 2 × 512
// tokens (a DPO pair) on one- and two-layer models of the Llama 3.2 1B,
// Llama 3.1 8B and Llama 3 70B layer shapes, with and without recompute.
// Buffers depend on shapes only, so each is read after allocation and the
// step is cancelled before it computes. The two-minus-one-layer difference
// is one layer's activations; with recompute a layer costs its checkpoint
// (n_embd × N F32) and the buffer is one piece.
//
// ALIGN_RECOMPUTE_SHAPES: 1 (all) or a comma list (1b,8b,70b);
// ALIGN_RECOMPUTE_SEQ: tokens per sequence instead of 512.
func TestRecomputeLayerBytes(t *testing.T) {
	want := os.Getenv("ALIGN_RECOMPUTE_SHAPES")
	if want == "" {
		t.Skip("set ALIGN_RECOMPUTE_SHAPES=1 to measure (large fixtures)")
	}
	B, T := 2, 512
	if s := os.Getenv("ALIGN_RECOMPUTE_SEQ"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 8 || n > 2048 {
			t.Fatalf("ALIGN_RECOMPUTE_SEQ=%q: want 8..2048", s)
		}
		T = n
	}
	for _, sh := range []struct {
		name               string
		embd, head, kv, ff int
	}{
		{"1b", 2048, 32, 8, 8192},
		{"8b", 4096, 32, 8, 14336},
		{"70b", 8192, 64, 8, 28672},
	} {
		if want != "1" && !slices.Contains(strings.Split(want, ","), sh.name) {
			continue
		}
		var full, rc, ckpt [3]int64
		for _, nl := range []int{1, 2} {
			path := filepath.Join(t.TempDir(), fmt.Sprintf("shape-%s-%d.gguf", sh.name, nl))
			if err := WriteFixture(path, FixtureParams{Arch: "llama", Type: "q8_0", Size: "tiny", Seed: 7, NLayer: nl,
				NEmbd: sh.embd, NHead: sh.head, NHeadKV: sh.kv, NFF: sh.ff}); err != nil {
				t.Fatal(err)
			}
			b := &Batch{NSeq: B, NTok: T, Tokens: make([]int32, B*T), Lengths: []int32{int32(T), int32(T)}, Scored: make([]uint8, B*T)}
			for i := range b.Tokens {
				b.Tokens[i] = int32(5 + i%200)
				if i%T > 0 {
					b.Scored[i] = 1
				}
			}
			for _, on := range []bool{false, true} {
				tr := newTrainer(t, path, TrainerOptions{Rank: 8, Alpha: 16, Seed: 1, Recompute: on})
				tr.Cancel() // allocate, then stop before the first node
				if _, err := tr.Set(0).ForwardGrad(b); !errors.Is(err, ErrCancelled) {
					t.Fatalf("%s: %v, want cancelled", sh.name, err)
				}
				body, _ := tr.ComputeBytes()
				if on {
					rc[nl], ckpt[nl] = body, tr.CheckpointBytes()
				} else {
					full[nl] = body
				}
				tr.Close()
			}
			os.Remove(path)
		}
		mib := func(x int64) float64 { return float64(x) / (1 << 20) }
		t.Logf("%s shape (n_embd %d, %d heads / %d KV, n_ff %d), %d x %d tokens: one-graph body %.1f MiB (1 layer), %.1f MiB (2 layers): %.1f MiB per layer; recompute: buffer %.1f / %.1f MiB, checkpoints %.1f / %.1f MiB: %.1f MiB per layer",
			sh.name, sh.embd, sh.head, sh.kv, sh.ff, B, T, mib(full[1]), mib(full[2]), mib(full[2]-full[1]),
			mib(rc[1]), mib(rc[2]), mib(ckpt[1]), mib(ckpt[2]), mib(rc[2]+ckpt[2]-rc[1]-ckpt[1]))
		if !(rc[2]+ckpt[2]-rc[1]-ckpt[1] < (full[2]-full[1])/4) {
			t.Errorf("%s: recompute saves less than 4x per layer", sh.name)
		}
	}
}
