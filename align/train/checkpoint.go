package train

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
)

// Checkpoints live in Out/checkpoints/step-NNNNNNNN/ as state.bin (adapter,
// Adam moments, cursor, early-stopping state, CRC-32) and a DONE marker
// written last; a directory is written under a temporary name and renamed,
// so a torn checkpoint is never loaded. The two newest are kept.

const ckptMagic = "ALCK"

func saveConfig(cfg Config) error { return writeJSON(filepath.Join(cfg.Out, "config.json"), cfg) }

func loadConfig(out string) (Config, error) {
	var cfg Config
	if err := readJSON(filepath.Join(out, "config.json"), &cfg); err != nil {
		return cfg, fmt.Errorf("%s: cannot resume: %w", out, err)
	}
	return cfg, nil
}

func saveCheckpoint(out string, tr Trainer, st runState) (err error) {
	s, err := tr.GetState()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(ckptMagic)
	w := func(v any) { binary.Write(&buf, binary.LittleEndian, v) }
	w(uint32(1))
	w(uint64(len(s.Params)))
	w(s.Step)
	w(int64(st.step))
	w(int64(st.epoch))
	w(int64(st.epochStep))
	w(st.bestMargin)
	w(int64(st.badEvals))
	w(int64(st.bestStep))
	hasBest := uint8(0)
	if st.best != nil {
		hasBest = 1
	}
	w(hasBest)
	w(s.Params)
	w(s.M)
	w(s.V)
	if st.best != nil {
		w(st.best)
	}
	w(crc32.ChecksumIEEE(buf.Bytes()))

	dir := filepath.Join(out, "checkpoints")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := fmt.Sprintf("step-%08d", st.step)
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
	if err := writeSynced(filepath.Join(tmp, "DONE"), []byte("ok\n")); err != nil {
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
	names := listCheckpoints(dir)
	for i := 0; i+2 < len(names); i++ {
		os.RemoveAll(filepath.Join(dir, names[i]))
	}
	return nil
}

// syncWrite writes checkpoint files; tests replace it to fail like a full disk.
var syncWrite = writeSynced

func writeSynced(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// listCheckpoints returns complete checkpoint directory names, oldest first.
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

// loadCheckpoint restores the newest readable checkpoint into tr. When it
// had to skip newer ones, note says which and why.
func loadCheckpoint(out string, tr Trainer) (st runState, note string, err error) {
	dir := filepath.Join(out, "checkpoints")
	names := listCheckpoints(dir)
	if len(names) == 0 {
		return runState{}, "", fmt.Errorf("%s: no checkpoint to resume from", out)
	}
	var firstErr error
	for i := len(names) - 1; i >= 0; i-- {
		st, err := readCheckpoint(filepath.Join(dir, names[i], "state.bin"), tr)
		if err == nil {
			if firstErr != nil {
				note = fmt.Sprintf("skipped the newest checkpoint (%v); resuming from %s", firstErr, names[i])
			}
			return st, note, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return runState{}, "", firstErr
}

func readCheckpoint(path string, tr Trainer) (runState, error) {
	var st runState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if len(b) < 8 || string(b[:4]) != ckptMagic {
		return st, fmt.Errorf("%s: not a checkpoint", path)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return st, fmt.Errorf("%s: checksum mismatch (torn or corrupt)", path)
	}
	r := bytes.NewReader(body[4:])
	rd := func(v any) error { return binary.Read(r, binary.LittleEndian, v) }
	var version uint32
	var n uint64
	var optStep, step, epoch, epochStep, bad, bestStep int64
	var hasBest uint8
	for _, v := range []any{&version, &n, &optStep, &step, &epoch, &epochStep, &st.bestMargin, &bad, &bestStep, &hasBest} {
		if err := rd(v); err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
	}
	if version != 1 {
		return st, fmt.Errorf("%s: unknown checkpoint version %d", path, version)
	}
	if int64(n) != tr.Info().NLoRAParams {
		return st, fmt.Errorf("%s: checkpoint has %d adapter parameters, this model and configuration %d", path, n, tr.Info().NLoRAParams)
	}
	params, m, v := make([]float32, n), make([]float32, n), make([]float32, n)
	for _, x := range [][]float32{params, m, v} {
		if err := rd(x); err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
	}
	if hasBest == 1 {
		st.best = make([]float32, n)
		if err := rd(st.best); err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
	}
	for _, x := range params {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return st, errors.New(path + ": non-finite parameter")
		}
	}
	if err := tr.SetState(params, m, v, optStep); err != nil {
		return st, err
	}
	st.step, st.epoch, st.epochStep, st.badEvals, st.bestStep = int(step), int(epoch), int(epochStep), int(bad), int(bestStep)
	return st, nil
}

// LoadRunConfig reads the configuration of the run in dir.
func LoadRunConfig(dir string) (Config, error) { return loadConfig(dir) }
