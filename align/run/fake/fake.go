// Package fake is a closed-form stand-in for the native trainer: adapter
// sets whose log-probs, head values and gradients are exact and cheap, and
// sampling from the live policy, so the loops of align/train and align/rl
// run in milliseconds without a model. It is for tests: nothing outside
// _test files imports it, so the align binary does not carry it.
//
// The model: each token id j has one parameter θ[j mod n] and
// log p(token) = log σ(scale·θ[j mod n]); the head at position t is
// scale × the mean of θ over tokens 0..t. AdamW is the textbook update with
// its state rounded to float32 as the engine keeps it, so a checkpoint
// restores a set exactly and resume is bit-identical.
package fake

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// Set is one adapter set of the fake model (run.Trainer). Calls counts
// its operations: "forward@S" (a forward at scale S), "forward_grad",
// "backward" and "step".
type Set struct {
	theta, m, v, grad []float64
	step              int64
	last              *bindings.Batch // of the last ForwardGrad
	Calls             map[string]int
}

var _ run.Trainer = (*Set)(nil)

// New is a set of n parameters, θ[i] = 0.01·(i mod 7 − 3).
func New(n int) *Set {
	f := &Set{theta: make([]float64, n), m: make([]float64, n), v: make([]float64, n), grad: make([]float64, n), Calls: map[string]int{}}
	for i := range f.theta {
		f.theta[i] = float64(float32(0.01 * float64(i%7-3)))
	}
	return f
}

// Theta is parameter j mod n (the fake's "adapter" for token j).
func (f *Set) Theta(j int) float64 { return f.theta[j%len(f.theta)] }

func (f *Set) NParams() (int64, error) { return int64(len(f.theta)), nil }

// Info describes the fake as a trainer (one set, no context limit).
func (f *Set) Info() bindings.TrainerInfo {
	return bindings.TrainerInfo{Arch: "fake", NVocab: 1000, NLoRAParams: int64(len(f.theta))}
}

func (f *Set) forward(b *bindings.Batch, scale float64) bindings.Outputs {
	out := bindings.Outputs{Sums: make([]float64, b.NSeq)}
	for k := 0; k < b.NSeq; k++ {
		for t := 0; t < b.NTok; t++ {
			if b.Scored[k*b.NTok+t] != 0 {
				lp := objective.LogSigmoid(scale * f.Theta(int(b.Tokens[k*b.NTok+t])))
				out.Sums[k] += lp
				out.Logps = append(out.Logps, float32(lp))
			}
		}
	}
	if b.HeadAt != nil {
		// the head at position t is the mean of θ over tokens 0..t, times scale
		for k := 0; k < b.NSeq; k++ {
			var sum float64
			for t := 0; t < int(b.Lengths[k]); t++ {
				sum += f.Theta(int(b.Tokens[k*b.NTok+t]))
				if b.HeadAt[k*b.NTok+t] != 0 {
					out.Heads = append(out.Heads, float32(scale*sum/float64(t+1)))
				}
			}
		}
	}
	return out
}

func (f *Set) Forward(b *bindings.Batch, scale float32) (bindings.Outputs, error) {
	f.Calls[fmt.Sprintf("forward@%g", scale)]++
	return f.forward(b, float64(scale)), nil
}

func (f *Set) ForwardGrad(b *bindings.Batch) (bindings.Outputs, error) {
	f.Calls["forward_grad"]++
	f.last = b
	return f.forward(b, 1), nil
}

// Backward is the tokens' gradient plus the head values' (see forward).
func (f *Set) Backward(cot, headCot []float32) error {
	if f.last == nil {
		return errors.New("fake: backward without forward_grad")
	}
	if err := f.backwardTokens(cot); err != nil {
		return err
	}
	b, i := f.last, 0
	if headCot == nil {
		return nil
	}
	if b.HeadAt == nil {
		return errors.New("fake: head cotangents without head positions")
	}
	for k := 0; k < b.NSeq; k++ {
		for t := 0; t < int(b.Lengths[k]); t++ {
			if b.HeadAt[k*b.NTok+t] == 0 {
				continue
			}
			if i >= len(headCot) {
				return errors.New("fake: too few head cotangents")
			}
			for u := 0; u <= t; u++ {
				f.grad[int(b.Tokens[k*b.NTok+u])%len(f.theta)] += float64(headCot[i]) / float64(t+1)
			}
			i++
		}
	}
	if i != len(headCot) {
		return errors.New("fake: too many head cotangents")
	}
	return nil
}

func (f *Set) backwardTokens(cot []float32) error {
	f.Calls["backward"]++
	if cot == nil {
		return nil // zeros: a head-only loss
	}
	b, i := f.last, 0
	for k := 0; k < b.NSeq; k++ {
		for t := 0; t < b.NTok; t++ {
			if b.Scored[k*b.NTok+t] == 0 {
				continue
			}
			if i >= len(cot) {
				return errors.New("fake: too few cotangents")
			}
			j := int(b.Tokens[k*b.NTok+t]) % len(f.theta)
			f.grad[j] += float64(cot[i]) * objective.Sigmoid(-f.theta[j]) // d log σ(θ)/dθ = σ(−θ)
			i++
		}
	}
	if i != len(cot) {
		return errors.New("fake: too many cotangents")
	}
	return nil
}

func (f *Set) GradNorm(scale float64) (float64, error) {
	var s float64
	for _, g := range f.grad {
		s += g * g
	}
	return math.Sqrt(s) * scale, nil
}

func (f *Set) Step(p bindings.AdamW) error {
	f.Calls["step"]++
	f.step++
	b1, b2 := float64(p.Beta1), float64(p.Beta2)
	// state is rounded to float32, as the engine keeps it, so a
	// checkpoint (float32) restores it exactly
	r := func(x float64) float64 { return float64(float32(x)) }
	for i := range f.theta {
		g := f.grad[i] * float64(p.GradScale)
		f.m[i] = r(b1*f.m[i] + (1-b1)*g)
		f.v[i] = r(b2*f.v[i] + (1-b2)*g*g)
		mh := f.m[i] / (1 - math.Pow(b1, float64(f.step)))
		vh := f.v[i] / (1 - math.Pow(b2, float64(f.step)))
		f.theta[i] = r(f.theta[i] - float64(p.LR)*(mh/(math.Sqrt(vh)+float64(p.Eps))+float64(p.WeightDecay)*f.theta[i]))
		f.grad[i] = 0
	}
	return nil
}

func f32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

func (f *Set) GetState() (bindings.State, error) {
	return bindings.State{Params: f32(f.theta), M: f32(f.m), V: f32(f.v), Grads: f32(f.grad), Step: f.step}, nil
}

func (f *Set) SetState(params, m, v []float32, step int64) error {
	for _, x := range []struct {
		src []float32
		dst []float64
	}{{params, f.theta}, {m, f.m}, {v, f.v}} {
		if x.src == nil {
			continue
		}
		if len(x.src) != len(x.dst) {
			return fmt.Errorf("fake: state of %d values for %d parameters", len(x.src), len(x.dst))
		}
		for i := range x.dst {
			x.dst[i] = float64(x.src[i])
		}
	}
	f.step = step
	return nil
}

// Export writes θ as little-endian float32s.
func (f *Set) Export(path string) error {
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, f32(f.theta))
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// HeadSet is a set whose heads a run exports (PPO's value set): Set with
// ExportHeads. Set itself has none, as align/train's reward-model tests
// expect of the fake.
type HeadSet struct{ *Set }

// ExportHeads writes θ (the head is a function of θ).
func (h HeadSet) ExportHeads(path string) error { return h.Export(path) }
