package run

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/align-dev/align/bindings"
)

// memSet is a Set in memory.
type memSet struct{ s bindings.State }

func (m *memSet) GetState() (bindings.State, error) { return m.s, nil }
func (m *memSet) SetState(p, mm, v []float32, step int64) error {
	if p != nil {
		m.s.Params = p
	}
	if mm != nil {
		m.s.M = mm
	}
	if v != nil {
		m.s.V = v
	}
	m.s.Step = step
	return nil
}
func (m *memSet) NParams() (int64, error) { return int64(len(m.s.Params)), nil }

func newMemSet(n int, x float32) *memSet {
	s := &memSet{}
	s.s.Params, s.s.M, s.s.V = make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range s.s.Params {
		s.s.Params[i], s.s.M[i], s.s.V[i] = x*float32(i), x/2, x/4
	}
	return s
}

// Issue 7 item 23: a checkpoint that cannot be written (a full disk)
// leaves no .tmp-step-* behind, and the older checkpoints stay loadable.
func TestFailedCheckpointLeavesNoTemp(t *testing.T) {
	out := t.TempDir()
	sets := []Set{newMemSet(16, 1)}
	save := func(step int) error {
		snap, err := Take(sets, State{Cursor: Cursor{Step: step}})
		if err != nil {
			return err
		}
		return snap.Save(out)
	}
	if err := save(1); err != nil {
		t.Fatal(err)
	}
	syncWrite = func(path string, b []byte) error {
		os.WriteFile(path, b[:len(b)/2], 0o644)
		return errors.New("no space left on device")
	}
	defer func() { syncWrite = WriteSynced }()
	if err := save(2); err == nil {
		t.Fatal("a failed write reported success")
	}
	ents, _ := os.ReadDir(filepath.Join(out, "checkpoints"))
	if len(ents) != 1 || ents[0].Name() != "step-00000001" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("checkpoints after a failed write: %v, want only step-00000001", names)
	}
	if snap, _, err := LoadNewest(out, sets); err != nil || snap.Step != 1 {
		t.Errorf("older checkpoint: %v", err)
	}
}

// The codec round-trips N sets, the cursor, the early-stopping state and
// the method's bytes, and refuses a payload for other sets.
func TestCheckpointCodec(t *testing.T) {
	a, b := newMemSet(5, 1), newMemSet(3, 2)
	a.s.Step, b.s.Step = 7, 9
	st := State{Cursor: Cursor{Step: 12, Epoch: 1, EpochStep: 3}, BestScore: 0.5, BadEvals: 2, BestStep: 10,
		Best: [][]float32{{1, 2, 3, 4, 5}, nil}, Stopped: true, Extra: []byte("kl=0.1")}
	snap, err := Take([]Set{a, b}, st)
	if err != nil {
		t.Fatal(err)
	}
	a2, b2 := newMemSet(5, 0), newMemSet(3, 0)
	got, err := Decode("x", snap.Encode(), []Set{a2, b2})
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Restore([]Set{a2, b2}); err != nil {
		t.Fatal(err)
	}
	if got.Cursor != st.Cursor || got.BestScore != 0.5 || got.BadEvals != 2 || got.BestStep != 10 || !got.Stopped ||
		string(got.Extra) != "kl=0.1" || len(got.Best) != 2 || got.Best[1] != nil || got.Best[0][4] != 5 {
		t.Fatalf("decoded %+v", got.State)
	}
	if a2.s.Step != 7 || b2.s.Step != 9 || a2.s.Params[4] != 4 || b2.s.M[2] != 1 || b2.s.V[0] != 0.5 {
		t.Fatalf("restored sets %+v %+v", a2.s, b2.s)
	}
	if _, err := Decode("x", snap.Encode(), []Set{a2}); err == nil {
		t.Fatal("a payload of two sets decoded for one")
	}
	if _, err := Decode("x", snap.Encode(), []Set{a2, newMemSet(4, 0)}); err == nil {
		t.Fatal("a set of the wrong size decoded")
	}
}
