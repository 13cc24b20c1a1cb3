package run

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

	"github.com/align-dev/align/bindings"
)

// A run's checkpoints live in OUT/checkpoints/step-NNNNNNNN/, each with
// state.bin (4-byte magic, payload, CRC-32 of both) and a DONE marker
// written last, so a torn write is never loaded (llm.c's habit); the
// directory is written under a temporary name and renamed. The two newest
// are kept. Every method writes the same payload (Encode): the cursor, the
// early-stopping state, each adapter set's parameters, Adam moments and
// step counter, and the method's own bytes (PPO's KL coefficient). Rollout
// RNGs need no state: each step's seeds are pure functions of (seed, step).

const (
	ckptMagic   = "ALRN"
	ckptVersion = 2
)

// Set is one trainable adapter set as a checkpoint sees it.
type Set interface {
	GetState() (bindings.State, error)
	// SetState restores parameters and moments (nil slices are kept).
	SetState(params, m, v []float32, step int64) error
	// NParams is the length of the set's flat state.
	NParams() (int64, error)
}

// Cursor is where a run is: optimiser (or rollout) steps done, and the
// epoch and step within it of the next one.
type Cursor struct {
	Step, Epoch, EpochStep int
}

// State is what the loop carries between steps and a checkpoint holds.
type State struct {
	Cursor
	BestScore float64     // early stopping: the best held-out score so far
	BadEvals  int         // evaluations since it
	BestStep  int         //
	Best      [][]float32 // the sets' parameters at BestScore (nil: none kept)
	Stopped   bool        // the run stopped early (patience, --max-kl)
	Extra     []byte      // the method's own state (Stepper.MarshalExtra)
}

// Snapshot is a checkpoint's payload, taken from the sets at one moment.
type Snapshot struct {
	State
	Sets []bindings.State
}

// Take copies the sets' state with st.
func Take(sets []Set, st State) (*Snapshot, error) {
	s := &Snapshot{State: st}
	for _, set := range sets {
		x, err := set.GetState()
		if err != nil {
			return nil, err
		}
		x.Grads = nil
		s.Sets = append(s.Sets, x)
	}
	return s, nil
}

// Encode is the payload of s.
func (s *Snapshot) Encode() []byte {
	var buf bytes.Buffer
	w := func(v any) { binary.Write(&buf, binary.LittleEndian, v) }
	w(uint32(ckptVersion))
	w(int64(s.Step))
	w(int64(s.Epoch))
	w(int64(s.EpochStep))
	w(s.BestScore)
	w(int64(s.BadEvals))
	w(int64(s.BestStep))
	w(b2u(s.Stopped))
	w(uint32(len(s.Sets)))
	for i, set := range s.Sets {
		w(uint64(len(set.Params)))
		w(set.Step)
		w(set.Params)
		w(set.M)
		w(set.V)
		hasBest := s.Best != nil && i < len(s.Best) && s.Best[i] != nil
		w(b2u(hasBest))
		if hasBest {
			w(s.Best[i])
		}
	}
	w(uint32(len(s.Extra)))
	buf.Write(s.Extra)
	return buf.Bytes()
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Decode reads a payload for sets (it checks each set's size) without
// touching them.
func Decode(path string, payload []byte, sets []Set) (*Snapshot, error) {
	s := &Snapshot{}
	r := bytes.NewReader(payload)
	fail := func(err error) (*Snapshot, error) { return nil, fmt.Errorf("%s: %w", path, err) }
	rd := func(vs ...any) error {
		for _, v := range vs {
			if err := binary.Read(r, binary.LittleEndian, v); err != nil {
				return err
			}
		}
		return nil
	}
	var version, nsets uint32
	var step, epoch, epochStep, bad, bestStep int64
	var stopped uint8
	if err := rd(&version); err != nil {
		return fail(err)
	}
	if version != ckptVersion {
		return fail(fmt.Errorf("unknown checkpoint version %d", version))
	}
	if err := rd(&step, &epoch, &epochStep, &s.BestScore, &bad, &bestStep, &stopped, &nsets); err != nil {
		return fail(err)
	}
	if int(nsets) != len(sets) {
		return fail(fmt.Errorf("checkpoint has %d adapter sets, this run %d", nsets, len(sets)))
	}
	for i, set := range sets {
		var n uint64
		var x bindings.State
		if err := rd(&n, &x.Step); err != nil {
			return fail(err)
		}
		want, err := set.NParams()
		if err != nil {
			return nil, err
		}
		if int64(n) != want {
			return fail(fmt.Errorf("checkpoint has %d adapter parameters in set %d, this model and configuration %d", n, i, want))
		}
		x.Params, x.M, x.V = make([]float32, n), make([]float32, n), make([]float32, n)
		var hasBest uint8
		if err := rd(x.Params, x.M, x.V, &hasBest); err != nil {
			return fail(err)
		}
		for _, v := range x.Params {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fail(errors.New("non-finite parameter"))
			}
		}
		if hasBest == 1 {
			if s.Best == nil {
				s.Best = make([][]float32, len(sets))
			}
			s.Best[i] = make([]float32, n)
			if err := rd(s.Best[i]); err != nil {
				return fail(err)
			}
		}
		s.Sets = append(s.Sets, x)
	}
	var nextra uint32
	if err := rd(&nextra); err != nil {
		return fail(err)
	}
	if int64(nextra) != int64(r.Len()) {
		return fail(fmt.Errorf("checkpoint has %d bytes of method state, %d left", nextra, r.Len()))
	}
	s.Extra = make([]byte, nextra)
	r.Read(s.Extra)
	s.Step, s.Epoch, s.EpochStep, s.BadEvals, s.BestStep, s.Stopped = int(step), int(epoch), int(epochStep), int(bad), int(bestStep), stopped == 1
	return s, nil
}

// Restore writes s's sets back.
func (s *Snapshot) Restore(sets []Set) error {
	for i, set := range sets {
		x := s.Sets[i]
		if err := set.SetState(x.Params, x.M, x.V, x.Step); err != nil {
			return err
		}
	}
	return nil
}

// Save stores s as the checkpoint of its step in out.
func (s *Snapshot) Save(out string) error { return WriteCheckpoint(out, s.Step, s.Encode()) }

// syncWrite writes checkpoint files; tests replace it to fail like a full disk.
var syncWrite = WriteSynced

// WriteCheckpoint stores payload as the checkpoint of step: written to a
// temporary folder, synced, then renamed into place; older checkpoints
// beyond the newest two are removed. A failed write leaves nothing behind.
func WriteCheckpoint(out string, step int, payload []byte) (err error) {
	var buf bytes.Buffer
	buf.WriteString(ckptMagic)
	buf.Write(payload)
	binary.Write(&buf, binary.LittleEndian, crc32.ChecksumIEEE(buf.Bytes()))

	dir := filepath.Join(out, "checkpoints")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := fmt.Sprintf("step-%08d", step)
	tmp := filepath.Join(dir, ".tmp-"+name)
	os.RemoveAll(tmp)
	defer func() {
		if err != nil {
			os.RemoveAll(tmp) // a failed write (disk full) leaves nothing behind
		}
	}()
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := syncWrite(filepath.Join(tmp, "state.bin"), buf.Bytes()); err != nil {
		return err
	}
	if err := WriteSynced(filepath.Join(tmp, "DONE"), []byte("ok\n")); err != nil {
		return err
	}
	final := filepath.Join(dir, name)
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	names := ListCheckpoints(dir)
	for i := 0; i+2 < len(names); i++ {
		os.RemoveAll(filepath.Join(dir, names[i]))
	}
	return nil
}

// ListCheckpoints returns the complete checkpoint folder names in dir
// (OUT/checkpoints), oldest first.
func ListCheckpoints(dir string) []string {
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

// HasCheckpoint reports whether out holds a complete checkpoint.
func HasCheckpoint(out string) bool {
	return len(ListCheckpoints(filepath.Join(out, "checkpoints"))) > 0
}

// LoadNewest decodes the newest checkpoint in out that is whole and fits
// sets, and restores the sets from it; when it had to skip newer ones,
// note says which and why.
func LoadNewest(out string, sets []Set) (s *Snapshot, note string, err error) {
	dir := filepath.Join(out, "checkpoints")
	names := ListCheckpoints(dir)
	if len(names) == 0 {
		return nil, "", fmt.Errorf("%s: no checkpoint to resume from", out)
	}
	var firstErr error
	for i := len(names) - 1; i >= 0; i-- {
		path := filepath.Join(dir, names[i], "state.bin")
		payload, err := readFramed(path)
		if err == nil {
			s, err = Decode(path, payload, sets)
		}
		if err == nil {
			err = s.Restore(sets)
		}
		if err == nil {
			if firstErr != nil {
				note = fmt.Sprintf("skipped the newest checkpoint (%v); resuming from %s", firstErr, names[i])
			}
			return s, note, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, "", firstErr
}

// readFramed returns the payload of a checkpoint file after checking its
// magic and checksum.
func readFramed(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < len(ckptMagic)+4 || string(b[:len(ckptMagic)]) != ckptMagic {
		return nil, fmt.Errorf("%s: not an align checkpoint (or one from an older align: start the run again)", path)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("%s: checksum mismatch (torn or corrupt)", path)
	}
	return body[len(ckptMagic):], nil
}
