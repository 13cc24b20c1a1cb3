package fake

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// batch is two sequences of prompt + response, responses scored, heads
// before each response token.
func batch() *bindings.Batch {
	return run.Layout([]run.Seq{{Prompt: []int32{3, 4}, Response: []int32{5, 6, 5}}, {Prompt: []int32{7}, Response: []int32{8, 3}}}, true)
}

// Backward is the exact gradient of Σ cot·logp + Σ headCot·head: central
// differences of the forward agree.
func TestBackwardMatchesFiniteDifferences(t *testing.T) {
	f := New(16)
	b := batch()
	out, _ := f.ForwardGrad(b)
	cot := []float32{0.5, -1, 0.25, 2, -0.75}
	headCot := []float32{1, -0.5, 0.3, -2, 0.7}
	if len(out.Logps) != len(cot) || len(out.Heads) != len(headCot) {
		t.Fatalf("%d log-probs, %d heads", len(out.Logps), len(out.Heads))
	}
	if err := f.Backward(cot, headCot); err != nil {
		t.Fatal(err)
	}
	dot := func(x, y []float32) (d float64) {
		for i := range x {
			d += float64(x[i]) * float64(y[i])
		}
		return d
	}
	loss := func() float64 {
		o := f.forward(b, 1)
		return dot(cot, o.Logps) + dot(headCot, o.Heads)
	}
	for j := range f.theta {
		th := f.theta[j]
		// outputs are float32: a step well above their rounding
		f.theta[j] = th + 1e-3
		up := loss()
		f.theta[j] = th - 1e-3
		down := loss()
		f.theta[j] = th
		if fd := (up - down) / 2e-3; math.Abs(fd-f.grad[j]) > 1e-3 {
			t.Errorf("θ[%d]: gradient %g, finite difference %g", j, f.grad[j], fd)
		}
	}
	if err := f.Backward(cot[:4], nil); err == nil {
		t.Error("a short cotangent was accepted")
	}
}

// A set restored from another's state (a checkpoint) steps as it does.
func TestStateRestoresExactly(t *testing.T) {
	a, b := New(16), New(16)
	step := func(f *Set) {
		f.ForwardGrad(batch())
		f.Backward([]float32{1, -1, 1, -1, 1}, nil)
		f.Step(run.AdamW(0.1, 0.01, 1))
	}
	step(a)
	st, _ := a.GetState()
	if err := b.SetState(st.Params, st.M, st.V, st.Step); err != nil {
		t.Fatal(err)
	}
	step(a)
	step(b)
	sa, _ := a.GetState()
	sb, _ := b.GetState()
	if !slices.Equal(sa.Params, sb.Params) || !slices.Equal(sa.M, sb.M) || sa.Step != 2 || sb.Step != 2 {
		t.Error("the restored set stepped differently")
	}
	if err := b.SetState(st.Params[:3], nil, nil, 0); err == nil {
		t.Error("a short state was accepted")
	}
}

// Generation is a pure function of the seed: sequence i of a batch is
// sequence 0 of one seeded Seed+i (bindings.GenerateBatch's contract);
// each completion ends with EOS or at MaxTokens; a cancelled context
// samples nothing.
func TestGenerate(t *testing.T) {
	p := New(256)
	prompts := [][]int32{{1, 2}, {1, 2}, {3}, {4, 5, 6}}
	sp := bindings.SamplerParams{Temperature: 1, Seed: 7, MaxTokens: 12}
	a, err := Generate(context.Background(), p, prompts, sp)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(context.Background(), p, prompts, sp)
	sp.Seed = 9
	c, _ := Generate(context.Background(), p, prompts[:1], sp)
	if !slices.EqualFunc(a, b, slices.Equal) {
		t.Error("the same seed sampled different completions")
	}
	if !slices.Equal(c[0], a[2]) {
		t.Error("sequence 2 of seed 7 differs from sequence 0 of seed 9")
	}
	if slices.Equal(a[0], a[1]) {
		t.Error("two sequences of one prompt are identical")
	}
	eos, full := 0, 0
	for _, s := range a {
		switch {
		case len(s) == 0 || len(s) > sp.MaxTokens || slices.Contains(s[:len(s)-1], EOS):
			t.Errorf("completion %v: empty, too long, or past EOS", s)
		case s[len(s)-1] == EOS:
			eos++
		case len(s) == sp.MaxTokens:
			full++
		default:
			t.Errorf("completion %v ends before MaxTokens without EOS", s)
		}
	}
	t.Logf("%d completions ended with EOS, %d at MaxTokens", eos, full)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Generate(ctx, p, prompts, sp); err == nil {
		t.Error("a cancelled context sampled")
	}
	if txt, _ := (Vocab{}).Detokenize([]int32{'h', 'i', EOS}); txt != "hi" {
		t.Errorf("detokenized %q", txt)
	}
}
