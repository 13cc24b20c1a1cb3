package rl

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

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

func saveCheckpoint(out string, s *snapshot) (err error) {
	var buf bytes.Buffer
	buf.WriteString(ckptMagic)
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
	w(crc32.ChecksumIEEE(buf.Bytes()))

	dir := filepath.Join(out, "checkpoints")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := fmt.Sprintf("step-%08d", s.st.step)
	tmp := filepath.Join(dir, ".tmp-"+name)
	os.RemoveAll(tmp)
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := train.WriteSynced(filepath.Join(tmp, "state.bin"), buf.Bytes()); err != nil {
		return err
	}
	if err := train.WriteSynced(filepath.Join(tmp, "DONE"), []byte("ok\n")); err != nil {
		return err
	}
	final := filepath.Join(dir, name)
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	names := listCheckpoints(dir)
	for i := 0; i+2 < len(names); i++ {
		os.RemoveAll(filepath.Join(dir, names[i]))
	}
	return nil
}

func listCheckpoints(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step-") {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "DONE")); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names
}

// loadCheckpoint restores the newest readable checkpoint into e.
func (e *worker) loadCheckpoint(out string) (runState, string, error) {
	dir := filepath.Join(out, "checkpoints")
	names := listCheckpoints(dir)
	if len(names) == 0 {
		return runState{}, "", fmt.Errorf("%s: no checkpoint to resume from", out)
	}
	var first error
	for i := len(names) - 1; i >= 0; i-- {
		st, err := e.readCheckpoint(filepath.Join(dir, names[i], "state.bin"))
		if err == nil {
			note := ""
			if first != nil {
				note = fmt.Sprintf("skipped the newest checkpoint (%v); resuming from %s", first, names[i])
			}
			return st, note, nil
		}
		if first == nil {
			first = err
		}
	}
	return runState{}, "", first
}

func (e *worker) readCheckpoint(path string) (runState, error) {
	var st runState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if len(b) < 8 || string(b[:4]) != ckptMagic {
		return st, fmt.Errorf("%s: not an RL checkpoint", path)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return st, fmt.Errorf("%s: checksum mismatch (torn or corrupt)", path)
	}
	r := bytes.NewReader(body[4:])
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
