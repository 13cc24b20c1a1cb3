package train

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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

func saveCheckpoint(out string, tr Trainer, st runState) error {
	s, err := tr.GetState()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
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
	return WriteCheckpoint(out, ckptMagic, st.step, buf.Bytes())
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
	note, err = LoadNewestCheckpoint(out, ckptMagic, "a checkpoint", func(path string, payload []byte) error {
		var err error
		st, err = readCheckpoint(path, payload, tr)
		return err
	})
	if err != nil {
		return runState{}, "", err
	}
	return st, note, nil
}

func readCheckpoint(path string, payload []byte, tr Trainer) (runState, error) {
	var st runState
	r := bytes.NewReader(payload)
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
