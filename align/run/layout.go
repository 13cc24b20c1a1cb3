package run

import "github.com/align-dev/align/bindings"

// Seq is one sequence of a micro-batch: a prompt and the response whose
// tokens are scored.
type Seq struct {
	Prompt, Response []int32
}

// Layout is the one batch layout of every method: seqs padded to the
// longest, each response's tokens scored. With heads, the set's heads read
// the hidden state before each response token (value t is V(state before
// token t), PPO's value head); a reward head marks its own positions.
func Layout(seqs []Seq, heads bool) *bindings.Batch {
	T := 0
	for _, s := range seqs {
		T = max(T, len(s.Prompt)+len(s.Response))
	}
	b := &bindings.Batch{NSeq: len(seqs), NTok: T, Tokens: make([]int32, len(seqs)*T),
		Lengths: make([]int32, len(seqs)), Scored: make([]uint8, len(seqs)*T)}
	if heads {
		b.HeadAt = make([]uint8, len(seqs)*T)
	}
	for k, s := range seqs {
		row := b.Tokens[k*T : (k+1)*T]
		copy(row, s.Prompt)
		copy(row[len(s.Prompt):], s.Response)
		n := len(s.Prompt) + len(s.Response)
		b.Lengths[k] = int32(n)
		for t := len(s.Prompt); t < n; t++ {
			b.Scored[k*T+t] = 1
			if heads {
				b.HeadAt[k*T+t-1] = 1
			}
		}
	}
	return b
}
