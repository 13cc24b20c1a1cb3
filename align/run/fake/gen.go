package fake

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"

	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/bindings"
)

// EOS is the fake vocabulary's end-of-sequence token.
const EOS int32 = 0

// Vocab is the fake's tokenizer: a byte is the token of its value, EOS is
// 0, and there is no chat template (prompts are formatted plainly). It is
// a prompt.Model.
type Vocab struct{}

var _ prompt.Model = Vocab{}

func (Vocab) HasChatTemplate() bool { return false }

func (Vocab) ChatApply([]prompt.Message, bool) (string, error) {
	return "", errors.New("fake: no chat template")
}

func (Vocab) Tokenize(text string, _, _ bool) ([]int32, prompt.Unspelled, error) {
	out := make([]int32, 0, len(text))
	for i := 0; i < len(text); i++ {
		if text[i] != 0 {
			out = append(out, int32(text[i]))
		}
	}
	return out, prompt.Unspelled{}, nil
}

func (Vocab) EOS() int32 { return EOS }

// IsEOG reports whether tok ends a generation.
func (Vocab) IsEOG(tok int32) bool { return tok == EOS }

// Detokenize is the bytes of toks, EOS left out.
func (Vocab) Detokenize(toks []int32) (string, error) {
	b := make([]byte, 0, len(toks))
	for _, t := range toks {
		if t < 0 || t > 255 {
			return "", errors.New("fake: token out of the byte vocabulary")
		}
		if t != EOS {
			b = append(b, byte(t))
		}
	}
	return string(b), nil
}

// Alphabet is what the fake policy samples: EOS, space and a–z.
var Alphabet = func() []int32 {
	out := []int32{EOS, ' '}
	for c := 'a'; c <= 'z'; c++ {
		out = append(out, int32(c))
	}
	return out
}()

// SampleGain scales θ into the sampling logits, so a step's change of θ
// shows in the samples.
const SampleGain = 20

// EOSBias is added to EOS's logit: about one token in six ends a
// completion at the start, so completions differ in length (as a judge
// preferring the longer needs).
var EOSBias = math.Log(6)

// Generate samples one completion per prompt from policy p, as
// bindings.GenerateBatch does from the live adapters: each token is drawn
// from Alphabet with logits (SampleGain·θ[token] + EOSBias for EOS) /
// temperature, independent of the prompt; sequence i draws from a generator seeded sp.Seed+i, so the
// same seed samples the same completions; a completion ends after EOS
// (kept) or sp.MaxTokens tokens. Top-p, top-k and min-p are not modelled.
func Generate(ctx context.Context, p *Set, prompts [][]int32, sp bindings.SamplerParams) ([][]int32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(prompts) == 0 {
		return nil, errors.New("fake: no prompts")
	}
	if sp.MaxTokens <= 0 {
		return nil, errors.New("fake: MaxTokens must be positive")
	}
	temp := float64(sp.Temperature)
	if !(temp > 0) {
		temp = 1e-3
	}
	w := make([]float64, len(Alphabet))
	var total float64
	hi := math.Inf(-1)
	for i, c := range Alphabet {
		w[i] = SampleGain * p.Theta(int(c))
		if c == EOS {
			w[i] += EOSBias
		}
		w[i] /= temp
		hi = math.Max(hi, w[i])
	}
	for i := range w {
		w[i] = math.Exp(w[i] - hi)
		total += w[i]
	}
	out := make([][]int32, len(prompts))
	for i := range prompts {
		if len(prompts[i]) == 0 {
			return nil, errors.New("fake: empty prompt")
		}
		rng := rand.New(rand.NewPCG(uint64(sp.Seed+uint32(i)), 0x66616b65))
		var seq []int32
		for len(seq) < sp.MaxTokens {
			u, c := rng.Float64()*total, len(Alphabet)-1
			for k := range w {
				if u < w[k] {
					c = k
					break
				}
				u -= w[k]
			}
			seq = append(seq, Alphabet[c])
			if Alphabet[c] == EOS {
				break
			}
		}
		out[i] = seq
	}
	return out, nil
}
