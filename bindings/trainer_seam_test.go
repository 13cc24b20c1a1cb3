package bindings

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// tokenFDCheck checks set 0's gradients of Σ c_j·log p_j (random c, seed
// 5/6) against central differences at params (fdCheck, 3e-2); afterBackward,
// if not nil, runs between the backward and reading the gradients.
func tokenFDCheck(t *testing.T, tr *Trainer, b *Batch, params []float32, afterBackward func()) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	cot := make([]float32, b.NScored())
	for j := range cot {
		cot[j] = float32(rng.NormFloat64())
	}
	loss := func() float64 {
		out, err := tr.Set(0).Forward(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		var l float64
		for j, lp := range out.Logps {
			l += float64(cot[j]) * float64(lp)
		}
		return l
	}
	if _, err := tr.Set(0).ForwardGrad(b); err != nil {
		t.Fatal(err)
	}
	if err := tr.Set(0).Backward(cot, nil); err != nil {
		t.Fatal(err)
	}
	if afterBackward != nil {
		afterBackward()
	}
	st, err := tr.Set(0).GetState()
	if err != nil {
		t.Fatal(err)
	}
	fdCheck(t, tr, 0, params, st.Grads, loss, 3e-2)
}

// fdCheck compares analytic gradients of every row of a set's parameter
// table (two random elements each) with central differences of loss.
// setParams writes the flat parameter vector.
func fdCheck(t *testing.T, tr *Trainer, set int, params []float32, grad []float32, loss func() float64, h float32) {
	t.Helper()
	table, err := tr.Set(set).Params()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(21, 22))
	var num, den float64
	worst := 0.0
	for _, row := range table {
		n := int(row.Ne0 * row.Ne1)
		for k := 0; k < 2; k++ {
			i := int(row.Offset) + rng.IntN(n)
			orig := params[i]
			params[i] = orig + h
			tr.Set(set).SetState(params, nil, nil, 0)
			lp := loss()
			params[i] = orig - h
			tr.Set(set).SetState(params, nil, nil, 0)
			lm := loss()
			params[i] = orig
			fd := (lp - lm) / (2 * float64(h))
			an := float64(grad[i])
			rel := math.Abs(fd-an) / math.Max(math.Max(math.Abs(fd), math.Abs(an)), 1e-2)
			worst = math.Max(worst, rel)
			num += (fd - an) * (fd - an)
			den += fd * fd
			if rel > 5e-2 {
				t.Errorf("%s[%d]: analytic %.6g, finite difference %.6g (rel %.2g)", row.Name, i-int(row.Offset), an, fd, rel)
			}
		}
	}
	tr.Set(set).SetState(params, nil, nil, 0)
	t.Logf("gradient NMSE over %d elements of %d tensors %.2e, worst element %.2e", 2*len(table), len(table), num/den, worst)
	if !(num/den < 1e-3) {
		t.Errorf("gradient NMSE %.3g against finite differences", num/den)
	}
}

func randomParams(t *testing.T, tr *Trainer, set int, seed uint64, scale float64) []float32 {
	t.Helper()
	si, err := tr.Set(set).Info()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, seed+1))
	params := make([]float32, si.NParams)
	for i := range params {
		params[i] = float32(rng.NormFloat64() * scale)
	}
	if err := tr.Set(set).SetState(params, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	return params
}

// A cotangent per token (PPO/GRPO's seam): loss = Σ_j c_j · log p_j with
// random c_j, against finite differences on an F32 base.
func TestTrainerTokenCotangents(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2"} {
		t.Run(arch, func(t *testing.T) {
			path := fixture(t, arch, "f32")
			m := load(t, path)
			b := fullBatch(t, m, "Is Berserk finished?", "Happy to help! Naruto has 72 volumes.")
			tr := newTrainer(t, path, TrainerOptions{Rank: 2, Alpha: 4, Targets: 127, Seed: 3, ExactBackward: true})
			params := randomParams(t, tr, 0, 11, 0.05)
			tokenFDCheck(t, tr, b, params, nil)
		})
	}
}

// Scalar heads on the final hidden state (value, score), in a second
// adapter set with its own LoRA, trained from head cotangents and token
// cotangents together.
func TestTrainerScalarHeads(t *testing.T) {
	path := fixture(t, "llama", "f32")
	m := load(t, path)
	b := fullBatch(t, m, "Is Berserk finished?", "Happy to help! Naruto has 72 volumes.")
	b.HeadAt = make([]uint8, len(b.Tokens))
	for s := 0; s < b.NSeq; s++ {
		b.HeadAt[s*b.NTok+int(b.Lengths[s])-1] = 1 // the last token (a reward model's read-out)
		b.HeadAt[s*b.NTok+2] = 1
	}
	tr := newTrainer(t, path, TrainerOptions{Rank: 2, Alpha: 4, Seed: 3, ExactBackward: true})
	set, err := tr.AddSet(SetOptions{Name: "value", Rank: 2, Alpha: 2, Targets: TargetQ | TargetV | TargetDown, Seed: 9,
		Heads: []HeadSpec{{"value", 1}, {"score", 2}}})
	if err != nil {
		t.Fatal(err)
	}
	si, _ := set.Info()
	if si.NHeadOut != 3 || si.NHeads != 2 || si.Name != "value" {
		t.Fatalf("set info %+v", si)
	}
	params := randomParams(t, tr, set.ID(), 13, 0.05)
	rng := rand.New(rand.NewPCG(7, 8))
	cot := make([]float32, b.NScored())
	for j := range cot {
		cot[j] = float32(rng.NormFloat64() * 0.3)
	}
	hcot := make([]float32, b.NHeadAt()*si.NHeadOut)
	for j := range hcot {
		hcot[j] = float32(rng.NormFloat64())
	}
	loss := func() float64 {
		out, err := set.Forward(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Heads) != len(hcot) {
			t.Fatalf("%d head values, want %d", len(out.Heads), len(hcot))
		}
		var l float64
		for j, lp := range out.Logps {
			l += float64(cot[j]) * float64(lp)
		}
		for j, v := range out.Heads {
			l += float64(hcot[j]) * float64(v)
		}
		return l
	}
	if _, err := set.ForwardGrad(b); err != nil {
		t.Fatal(err)
	}
	if err := set.Backward(cot, hcot); err != nil {
		t.Fatal(err)
	}
	st, err := set.GetState()
	if err != nil {
		t.Fatal(err)
	}
	fdCheck(t, tr, set.ID(), params, st.Grads, loss, 3e-2)
	// set 0 was not touched by the other set's backward
	s0, _ := tr.Set(0).GetState()
	for _, g := range s0.Grads {
		if g != 0 {
			t.Fatal("a backward of set 1 accumulated into set 0")
		}
	}
}

// Several sets over one base: no set (or scale 0) is exactly the frozen
// base, sets are independent, a heads-only set leaves log-probs alone.
func TestTrainerSets(t *testing.T) {
	path := fixture(t, "llama", "q8_0")
	m := load(t, path)
	b := fullBatch(t, m, sampleText)
	tr := newTrainer(t, path, TrainerOptions{Rank: 4, Alpha: 8, Seed: 3})
	reward, err := tr.AddSet(SetOptions{Name: "reward", Heads: []HeadSpec{{"score", 1}}, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.AddSet(SetOptions{Name: "reward"}); !errors.Is(err, &Error{Code: StatusInvalidArgument}) {
		t.Errorf("a second set named reward: %v, want INVALID_ARGUMENT", err)
	}
	randomParams(t, tr, 0, 1, 0.05)
	base, err := tr.Set(-1).Forward(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	off, _ := tr.Set(0).Forward(b, 0)
	on, _ := tr.Set(0).Forward(b, 1)
	ho, err := reward.Forward(b, 1)
	if err != nil {
		t.Fatal(err)
	}
	for j := range base.Logps {
		if base.Logps[j] != off.Logps[j] || base.Logps[j] != ho.Logps[j] {
			t.Fatalf("token %d: no set %v, set 0 at scale 0 %v, heads-only set %v: want identical", j, base.Logps[j], off.Logps[j], ho.Logps[j])
		}
	}
	if on.Sums[0] == base.Sums[0] {
		t.Error("random adapters did not change the log-probs")
	}
	// a step of the reward set leaves the policy as it was
	before, _ := tr.Set(0).GetState()
	b.HeadAt = make([]uint8, len(b.Tokens))
	b.HeadAt[int(b.Lengths[0])-1] = 1
	if _, err := reward.ForwardGrad(b); err != nil {
		t.Fatal(err)
	}
	if err := reward.Backward(nil, []float32{1}); err != nil {
		t.Fatal(err)
	}
	if err := reward.Step(AdamW{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, GradScale: 1}); err != nil {
		t.Fatal(err)
	}
	after, _ := tr.Set(0).GetState()
	ri, _ := reward.Info()
	if ri.Step != 1 || after.Step != 0 {
		t.Errorf("steps: reward %d, policy %d; want 1 and 0", ri.Step, after.Step)
	}
	for i := range before.Params {
		if before.Params[i] != after.Params[i] {
			t.Fatal("a step of the reward set changed the policy")
		}
	}
	if err := reward.Export(filepath.Join(t.TempDir(), "x.gguf")); !errors.Is(err, &Error{Code: StatusInvalidArgument}) {
		t.Errorf("exporting a set without adapters: %v, want INVALID_ARGUMENT", err)
	}
}

// The head in chunks of scored tokens gives the same log-probs and
// gradients as one chunk.
func TestTrainerHeadChunks(t *testing.T) {
	path := fixture(t, "llama", "f32")
	m := load(t, path)
	b := fullBatch(t, m, sampleText, "Sorry, I cannot help with that.")
	run := func(chunkBytes int64) (Outputs, []float32) {
		tr := newTrainer(t, path, TrainerOptions{Rank: 2, Alpha: 4, Targets: 127, Seed: 3, HeadChunkBytes: chunkBytes})
		randomParams(t, tr, 0, 11, 0.05)
		out, err := tr.Set(0).ForwardGrad(b)
		if err != nil {
			t.Fatal(err)
		}
		cot := make([]float32, len(out.Logps))
		for j := range cot {
			cot[j] = float32(j%5) - 2
		}
		if err := tr.Set(0).Backward(cot, nil); err != nil {
			t.Fatal(err)
		}
		st, _ := tr.Set(0).GetState()
		return out, st.Grads
	}
	info, _ := load(t, path).Info()
	// 7 scored tokens a chunk (16 bytes per vocabulary entry and token)
	small := int64(7 * 16 * info.NVocab)
	one, g1 := run(0)
	many, g7 := run(small)
	var maxd float64
	for j := range one.Logps {
		maxd = math.Max(maxd, math.Abs(float64(one.Logps[j]-many.Logps[j])))
	}
	var num, den float64
	for i := range g1 {
		d := float64(g1[i] - g7[i])
		num += d * d
		den += float64(g1[i]) * float64(g1[i])
	}
	t.Logf("%d scored tokens: one chunk vs chunks of 7: max |Δ log p| %.2e, gradient NMSE %.2e", len(one.Logps), maxd, num/den)
	if maxd > 1e-5 || !(num/den < 1e-10) {
		t.Errorf("chunked head differs: max |Δ log p| %.3g, gradient NMSE %.3g", maxd, num/den)
	}
}

// Sampling from the live policy needs no file: a session with the live
// adapter generates what a session with the exported adapter generates, and
// sees later steps without being rebuilt.
func TestTrainerLiveAdapter(t *testing.T) {
	tr, b, live := liveTrainer(t)
	m := tr.Model()
	ls := session(t, m, SessionOptions{NCtx: 256, Adapters: []LoRAScale{{LoRA: live, Scale: 1}}})
	ap := filepath.Join(t.TempDir(), "adapter.gguf")
	if err := tr.Set(0).Export(ap); err != nil {
		t.Fatal(err)
	}
	file, err := LoadLoRA(m, ap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() })
	fs := session(t, m, SessionOptions{NCtx: 256, Adapters: []LoRAScale{{LoRA: file, Scale: 1}}})
	prompt, _ := m.Tokenize("Hello! Can you recommend", true, false)
	gen := func(s *Session) string {
		var sb strings.Builder
		if _, err := s.Generate(context.Background(), prompt, SamplerParams{Temperature: 0, MaxTokens: 48, Seed: 1}, func(x string) bool {
			sb.WriteString(x)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return sb.String()
	}
	a, f := gen(ls), gen(fs)
	t.Logf("live: %q", a)
	if a != f || a == "" {
		t.Errorf("live adapter generated %q, exported adapter %q", a, f)
	}
	// two more steps: the same live session follows, the file does not
	lp0, _ := ls.LogProbs(context.Background(), b.Tokens[:b.Lengths[0]])
	sftSteps(t, tr, b, 2)
	lp1, _ := ls.LogProbs(context.Background(), b.Tokens[:b.Lengths[0]])
	out, _ := tr.Set(0).Forward(b, 1)
	var moved, maxd float64
	for j := range lp1 {
		moved += float64(lp1[j] - lp0[j])
		maxd = math.Max(maxd, math.Abs(float64(lp1[j]-out.Logps[j])))
	}
	t.Logf("two more steps moved the live session's log-likelihood by %+.3f; max |live session - trainer| %.2e", moved, maxd)
	if moved <= 0 || maxd > 5e-3 {
		t.Errorf("live session did not follow the trainer (moved %.3g, max difference %.3g)", moved, maxd)
	}
}

// A cancel requested before or during a call stops it, and stays until
// cleared.
func TestTrainerCancel(t *testing.T) {
	path := fixture(t, "llama", "q8_0")
	tr := newTrainer(t, path, TrainerOptions{})
	b := fullBatch(t, tr.Model(), sampleText)
	tr.Cancel()
	if _, err := tr.Set(0).Forward(b, 1); !errors.Is(err, ErrCancelled) {
		t.Fatalf("forward after Cancel: %v, want cancelled", err)
	}
	if _, err := tr.Set(0).ForwardGrad(b); !errors.Is(err, ErrCancelled) {
		t.Fatalf("second call after Cancel: %v, want cancelled (sticky)", err)
	}
	tr.ClearCancel()
	if _, err := tr.Set(0).Forward(b, 1); err != nil {
		t.Fatalf("after ClearCancel: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := tr.Watch(ctx)
	cancel()
	for i := 0; i < 100; i++ { // the watcher runs asynchronously
		if _, err := tr.Set(0).Forward(b, 1); errors.Is(err, ErrCancelled) {
			stop()
			return
		}
	}
	stop()
	t.Error("a cancelled context did not stop the trainer")
}

// The head at 8,192 scored tokens on the ~100M fixture (32 sequences of
// 257 tokens; the old engine stopped at 4,096) runs, and its log-probs
// match a reference computed one sequence at a time in chunks of 100
// scored tokens (four of the sequences, to keep the test short).
func TestTrainerHead8192Scored(t *testing.T) {
	path := filepath.Join(fixtureDir, "llama-small-q8_0.gguf")
	if err := WriteFixture(path, FixtureParams{Arch: "llama", Type: "q8_0", Size: "small", Seed: 7}); err != nil {
		t.Fatal(err)
	}
	tr := newTrainer(t, path, TrainerOptions{})
	info := tr.Info()
	const nSeq, T = 32, 257
	rng := rand.New(rand.NewPCG(3, 4))
	b := &Batch{NSeq: nSeq, NTok: T, Tokens: make([]int32, nSeq*T), Lengths: make([]int32, nSeq), Scored: make([]uint8, nSeq*T)}
	for s := 0; s < nSeq; s++ {
		b.Lengths[s] = T
		for j := 0; j < T; j++ {
			b.Tokens[s*T+j] = int32(5 + rng.IntN(info.NVocab-5))
			b.Scored[s*T+j] = uint8(min(j, 1))
		}
	}
	if b.NScored() != 8192 {
		t.Fatalf("%d scored tokens", b.NScored())
	}
	all, err := tr.Set(0).Forward(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, head := tr.ComputeBytes()
	ref := newTrainer(t, path, TrainerOptions{HeadChunkBytes: int64(100 * 16 * info.NVocab)})
	var maxd float64
	for _, s := range []int{0, 9, 22, 31} {
		one := &Batch{NSeq: 1, NTok: T, Tokens: b.Tokens[s*T : (s+1)*T], Lengths: []int32{T}, Scored: b.Scored[s*T : (s+1)*T]}
		out, err := ref.Set(0).Forward(one, 0)
		if err != nil {
			t.Fatal(err)
		}
		for j, lp := range out.Logps {
			maxd = math.Max(maxd, math.Abs(float64(lp-all.Logps[s*(T-1)+j])))
		}
	}
	t.Logf("8192 scored tokens in one forward: LM-head compute buffer %.1f MiB; max |Δ log p| against single forwards in chunks of 100: %.2e",
		float64(head)/(1<<20), maxd)
	if maxd > 1e-3 {
		t.Errorf("8192-token head differs from the chunked reference by %.3g", maxd)
	}
}

// The native trainer has no implicit set: NewTrainer adds the "policy" set
// 0, and with NoPolicySet (a reward-model run) the caller's first set is 0
// and nothing else is allocated.
func TestTrainerNoImplicitSet(t *testing.T) {
	path := fixture(t, "llama", "q8_0")
	m := load(t, path)
	b := fullBatch(t, m, sampleText)
	tr := newTrainer(t, path, TrainerOptions{Rank: 4, Alpha: 8, Seed: 3, NoPolicySet: true})
	if info := tr.Info(); info.NSets != 0 || info.NLoRAParams != 0 {
		t.Fatalf("a trainer with NoPolicySet: %d sets, %d LoRA params, want none", info.NSets, info.NLoRAParams)
	}
	if _, err := tr.Set(0).ForwardGrad(b); err == nil {
		t.Error("forward_grad of set 0 with no set: no error")
	}
	reward, err := tr.AddSet(SetOptions{Name: "reward", Rank: 4, Alpha: 8, Targets: 15, Heads: []HeadSpec{{"score", 1}}, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	if reward.ID() != 0 || tr.Info().NSets != 1 {
		t.Errorf("the first set added: id %d, %d sets; want id 0 of 1", reward.ID(), tr.Info().NSets)
	}
	pol := newTrainer(t, path, TrainerOptions{Rank: 4, Alpha: 8, Seed: 3})
	si, err := pol.Set(0).Info()
	if err != nil || si.Name != "policy" || si.Rank != 4 || si.Targets != 15 || pol.Info().NSets != 1 {
		t.Errorf("NewTrainer's set 0: %+v (%v), %d sets; want the policy, rank 4, q,k,v,o, one set", si, err, pol.Info().NSets)
	}
}
