package rl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/align-dev/align/align/train"
	"github.com/align-dev/align/bindings"
)

// Checkpoints live in OUT/checkpoints/step-NNNNNNNN/ as state.bin and a
// DONE marker written last, under a temporary name renamed into place (a
// torn checkpoint is never loaded); the two newest are kept. state.bin
// holds the cursor, the KL coefficient, whether --max-kl stopped the run,
// and the policy and value sets' parameters, Adam moments and step counts,
// then a CRC-32. The rollout RNG needs no state of its own: each step's
// sampling seed and minibatch order are pure functions of (--seed, step).

const ckptMagic = "ALRL"

// runState is what the loop carries between rollout steps.
type runState struct {
	step, epoch, epochStep int
	klCoef                 float64
	stopped                bool
}

// snapshot is a consistent copy of the trainable state between steps.
type snapshot struct {
	st           runState
	policy, vals bindings.State
}

func (e *worker) snapshot(st runState) (*snapshot, error) {
	p, err := e.tr.GetStateSet(0)
	if err != nil {
		return nil, err
	}
	s := &snapshot{st: st, policy: p}
	if e.valueSet >= 0 {
		if s.vals, err = e.tr.GetStateSet(e.valueSet); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func saveCheckpoint(out string, s *snapshot) error {
	var buf bytes.Buffer
	w := func(v any) { binary.Write(&buf, binary.LittleEndian, v) }
	w(uint32(1))
	w(int64(s.st.step))
	w(int64(s.st.epoch))
	w(int64(s.st.epochStep))
	w(s.st.klCoef)
	stopped := uint8(0)
	if s.st.stopped {
		stopped = 1
	}
	w(stopped)
	for _, set := range []bindings.State{s.policy, s.vals} {
		w(uint64(len(set.Params)))
		w(set.Step)
		w(set.Params)
		w(set.M)
		w(set.V)
	}
	return train.WriteCheckpoint(out, ckptMagic, s.st.step, buf.Bytes())
}

// listCheckpoints returns the complete checkpoint folder names, oldest first.
func listCheckpoints(dir string) []string { return train.ListCheckpoints(dir) }

// loadCheckpoint restores the newest readable checkpoint into e.
func (e *worker) loadCheckpoint(out string) (runState, string, error) {
	var st runState
	note, err := train.LoadNewestCheckpoint(out, ckptMagic, "an RL checkpoint", func(path string, payload []byte) error {
		var err error
		st, err = e.readCheckpoint(path, payload)
		return err
	})
	if err != nil {
		return runState{}, "", err
	}
	return st, note, nil
}

func (e *worker) readCheckpoint(path string, payload []byte) (runState, error) {
	var st runState
	r := bytes.NewReader(payload)
	rd := func(v any) error { return binary.Read(r, binary.LittleEndian, v) }
	var version uint32
	var step, epoch, epochStep int64
	var stopped uint8
	for _, v := range []any{&version, &step, &epoch, &epochStep, &st.klCoef, &stopped} {
		if err := rd(v); err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
	}
	if version != 1 {
		return st, fmt.Errorf("%s: unknown checkpoint version %d", path, version)
	}
	sets := []int{0, e.valueSet}
	type loaded struct {
		set     int
		p, m, v []float32
		step    int64
	}
	var ls []loaded
	for k, set := range sets {
		var n uint64
		var optStep int64
		if err := rd(&n); err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
		if err := rd(&optStep); err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
		want := uint64(0)
		if set >= 0 {
			si, err := e.tr.SetInfo(set)
			if err != nil {
				return st, err
			}
			want = uint64(si.NParams)
		}
		if n != want {
			return st, fmt.Errorf("%s: checkpoint has %d parameters in set %d, this model and configuration %d", path, n, k, want)
		}
		l := loaded{set: set, p: make([]float32, n), m: make([]float32, n), v: make([]float32, n), step: optStep}
		for _, x := range [][]float32{l.p, l.m, l.v} {
			if err := rd(x); err != nil {
				return st, fmt.Errorf("%s: %w", path, err)
			}
		}
		for _, x := range l.p {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return st, errors.New(path + ": non-finite parameter")
			}
		}
		ls = append(ls, l)
	}
	for _, l := range ls {
		if l.set < 0 {
			continue
		}
		if err := e.tr.SetStateSet(l.set, l.p, l.m, l.v, l.step); err != nil {
			return st, err
		}
	}
	st.step, st.epoch, st.epochStep, st.stopped = int(step), int(epoch), int(epochStep), stopped == 1
	return st, nil
}
