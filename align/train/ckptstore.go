package train

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// A run's checkpoints live in OUT/checkpoints/step-NNNNNNNN/, each with
// state.bin (4-byte magic, payload, CRC-32 of both) and a DONE marker
// written last, so a torn write is never loaded (llm.c's habit). The two
// newest are kept. The training driver and align/rl share this store; each
// writes its own payload under its own magic.

// WriteCheckpoint stores payload as the checkpoint of step: written to a
// temporary folder, synced, then renamed into place; older checkpoints
// beyond the newest two are removed. A failed write leaves nothing behind.
func WriteCheckpoint(out, magic string, step int, payload []byte) (err error) {
	var buf bytes.Buffer
	buf.WriteString(magic)
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
	names := ListCheckpoints(dir)
	for i := 0; i+2 < len(names); i++ {
		os.RemoveAll(filepath.Join(dir, names[i]))
	}
	return nil
}

// ListCheckpoints returns the complete checkpoint folder names in dir
// (OUT/checkpoints), oldest first.
func ListCheckpoints(dir string) []string { return listCheckpoints(dir) }

// LoadNewestCheckpoint hands the payload of the newest checkpoint whose
// magic and checksum are right, and that restore accepts, to restore; when
// it had to skip newer ones, note says which and why. what names the kind
// of checkpoint in errors ("a checkpoint", "an RL checkpoint").
func LoadNewestCheckpoint(out, magic, what string, restore func(path string, payload []byte) error) (note string, err error) {
	dir := filepath.Join(out, "checkpoints")
	names := listCheckpoints(dir)
	if len(names) == 0 {
		return "", fmt.Errorf("%s: no checkpoint to resume from", out)
	}
	var firstErr error
	for i := len(names) - 1; i >= 0; i-- {
		path := filepath.Join(dir, names[i], "state.bin")
		payload, err := readFramed(path, magic, what)
		if err == nil {
			err = restore(path, payload)
		}
		if err == nil {
			if firstErr != nil {
				note = fmt.Sprintf("skipped the newest checkpoint (%v); resuming from %s", firstErr, names[i])
			}
			return note, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return "", firstErr
}

// readFramed returns the payload of a checkpoint file after checking its
// magic and checksum.
func readFramed(path, magic, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < len(magic)+4 || string(b[:len(magic)]) != magic {
		return nil, fmt.Errorf("%s: not %s", path, what)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("%s: checksum mismatch (torn or corrupt)", path)
	}
	return body[len(magic):], nil
}
