package jsonl

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// Appender appends records to a JSON Lines file, one write call per record,
// so that a crash tears at most the last record. It is not safe for
// concurrent use.
//
// For a ".zst" path every record is its own zstd frame (with a checksum);
// concatenated frames are a valid zstd stream, so Open reads the file like
// any other. Compression per record is weaker than for a whole file; use
// WriteFileAtomic for final outputs.
type Appender struct {
	f    *os.File
	path string
	enc  *zstd.Encoder // nil for plain files
}

// OpenAppend opens path for appending, creating it (and nothing else) if it
// does not exist. A torn last record — a last line without its newline or
// that is not valid JSON, or for ".zst" a truncated or corrupt last frame —
// is dropped by truncating the file. Damage anywhere before the last record
// is an error naming path and line (or frame): that is not a crash, and
// align does not guess.
//
// id, if not nil, is called on every record already in the file; the set of
// ids it returns comes back so a rerun can skip finished work. An error from
// id is returned with the record's line number.
func OpenAppend(path string, id func(json.RawMessage) (string, error)) (*Appender, map[string]bool, error) {
	if path == "-" {
		return nil, nil, errors.New("cannot append to standard output: name a file")
	}
	done := map[string]bool{}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	var keep int
	if IsZstd(path) {
		keep, err = scanZstd(path, data, id, done)
	} else {
		keep, err = scanLines(path, data, 0, true, id, done)
	}
	if err != nil {
		return nil, nil, err
	}
	if data != nil && keep < len(data) {
		if err := os.Truncate(path, int64(keep)); err != nil {
			return nil, nil, fmt.Errorf("dropping torn last record: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	if data != nil && keep < len(data) {
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	a := &Appender{f: f, path: path}
	if IsZstd(path) {
		a.enc, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
		if err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return a, done, nil
}

// scanLines walks the JSON lines in data (the first line being firstLine+1)
// and returns how many bytes hold complete, valid records. When last is true
// a bad final line is a torn write and is left out; otherwise (and for any
// earlier line) it is an error.
func scanLines(name string, data []byte, firstLine int, last bool, id func(json.RawMessage) (string, error), done map[string]bool) (int, error) {
	off, line := 0, firstLine
	for off < len(data) {
		line++
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			if last {
				if !tornRecord(data[off:]) {
					return 0, fmt.Errorf("%s:%d: %w", name, line, errNotOurs)
				}
				return off, nil // torn: no newline
			}
			return 0, fmt.Errorf("%s:%d: record without a trailing newline", name, line)
		}
		rec := bytes.TrimSpace(data[off : off+nl])
		end := off + nl + 1
		if len(rec) > 0 {
			if !json.Valid(rec) {
				if last && end == len(data) {
					if !tornRecord(rec) {
						return 0, fmt.Errorf("%s:%d: %w", name, line, errNotOurs)
					}
					return off, nil // torn: the final line is invalid
				}
				return 0, fmt.Errorf("%s:%d: invalid JSON in a record before the last", name, line)
			}
			if id != nil {
				k, err := id(json.RawMessage(rec))
				if err != nil {
					return 0, fmt.Errorf("%s:%d: %w", name, line, err)
				}
				done[k] = true
			}
		}
		off = end
	}
	return off, nil
}

// errNotOurs refuses to drop a last line that no crash of ours can have
// left: align writes JSON objects, so a torn record starts with '{'.
var errNotOurs = errors.New("not a JSON Lines record (nor a torn one): refusing to truncate a file align did not write")

// tornRecord reports whether b (a last line without its newline, or an
// invalid one) can be the start of a record cut by a crash: blank, or a
// '{' and what followed it.
func tornRecord(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) == 0 || b[0] == '{'
}

// scanZstd walks the frames in data and returns how many bytes hold
// complete frames whose content is complete JSON lines.
func scanZstd(name string, data []byte, id func(json.RawMessage) (string, error), done map[string]bool) (int, error) {
	if len(data) == 0 {
		return 0, nil
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	off, line, frame := 0, 0, 0
	for off < len(data) {
		frame++
		n, skippable, err := frameSize(data[off:])
		isLast := err == nil && off+n == len(data)
		if err != nil {
			if errors.Is(err, errShortFrame) {
				return off, nil // torn: the file ends inside this frame
			}
			return 0, fmt.Errorf("%s: frame %d at byte %d: %w", name, frame, off, err)
		}
		if skippable {
			off += n
			continue
		}
		content, err := dec.DecodeAll(data[off:off+n], nil)
		if err != nil {
			if isLast {
				return off, nil // torn: the last frame is corrupt
			}
			return 0, fmt.Errorf("%s: frame %d at byte %d: %w", name, frame, off, err)
		}
		keep, err := scanLines(name, content, line, false, id, done)
		if err != nil {
			if isLast {
				return off, nil
			}
			return 0, err
		}
		line += bytes.Count(content[:keep], []byte{'\n'})
		off += n
	}
	return off, nil
}

var errShortFrame = errors.New("truncated zstd frame")

// frameSize returns the size in bytes of the zstd frame at the start of b
// (RFC 8878 §3.1), without decoding it.
func frameSize(b []byte) (n int, skippable bool, err error) {
	if len(b) < 4 {
		return 0, false, errShortFrame
	}
	magic := binary.LittleEndian.Uint32(b)
	if magic&0xFFFFFFF0 == 0x184D2A50 {
		if len(b) < 8 {
			return 0, true, errShortFrame
		}
		n := 8 + int(binary.LittleEndian.Uint32(b[4:]))
		if n > len(b) {
			return 0, true, errShortFrame
		}
		return n, true, nil
	}
	if magic != 0xFD2FB528 {
		return 0, false, fmt.Errorf("not a zstd frame (magic %#08x)", magic)
	}
	if len(b) < 5 {
		return 0, false, errShortFrame
	}
	fhd := b[4]
	single := fhd>>5&1 == 1
	n = 5
	if !single {
		n++ // window descriptor
	}
	n += [4]int{0, 1, 2, 4}[fhd&3] // dictionary id
	switch fhd >> 6 {              // frame content size
	case 0:
		if single {
			n++
		}
	case 1:
		n += 2
	case 2:
		n += 4
	case 3:
		n += 8
	}
	for {
		if n+3 > len(b) {
			return 0, false, errShortFrame
		}
		h := int(b[n]) | int(b[n+1])<<8 | int(b[n+2])<<16
		n += 3
		last, typ, size := h&1 == 1, h>>1&3, h>>3
		switch typ {
		case 1: // RLE: one byte repeated size times
			size = 1
		case 3:
			return 0, false, errors.New("reserved zstd block type")
		}
		n += size
		if n > len(b) {
			return 0, false, errShortFrame
		}
		if last {
			break
		}
	}
	if fhd>>2&1 == 1 {
		n += 4 // content checksum
		if n > len(b) {
			return 0, false, errShortFrame
		}
	}
	return n, false, nil
}

// Path is the file being appended to.
func (a *Appender) Path() string { return a.path }

// Write appends v as one record and hands it to the operating system in a
// single write call (it does not fsync; call Sync for that).
func (a *Appender) Write(v any) error {
	if a == nil || a.f == nil {
		return errors.New("write to a closed appender")
	}
	b, err := Marshal(v)
	if err != nil {
		return err
	}
	return a.WriteRaw(b)
}

// WriteRaw appends one record that is already JSON. A trailing newline is
// added if missing; a newline inside is an error.
func (a *Appender) WriteRaw(b []byte) error {
	if a == nil || a.f == nil {
		return errors.New("write to a closed appender")
	}
	b = bytes.TrimRight(b, "\n")
	if bytes.IndexByte(b, '\n') >= 0 {
		return errors.New("record contains a newline")
	}
	b = append(b[:len(b):len(b)], '\n')
	if a.enc != nil {
		b = a.enc.EncodeAll(b, nil)
	}
	_, err := a.f.Write(b)
	return err
}

// Sync commits the file to stable storage.
func (a *Appender) Sync() error {
	if a == nil || a.f == nil {
		return nil
	}
	return a.f.Sync()
}

// Close syncs and closes the file. It is safe to call more than once and on
// a nil Appender.
func (a *Appender) Close() error {
	if a == nil || a.f == nil {
		return nil
	}
	f := a.f
	a.f = nil
	if a.enc != nil {
		a.enc.Close()
	}
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// WriteFileAtomic writes a whole file: write is called with a buffered writer
// over a temporary file in path's directory (compressing when path ends in
// ".zst"), then the file is synced and renamed over path, so readers see the
// old file or the new one, never a part. On error the temporary file is
// removed and path is untouched. "-" writes standard output instead.
func WriteFileAtomic(path string, write func(io.Writer) error) (err error) {
	if path == "-" {
		return writeTo(os.Stdout, false, write)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = writeTo(f, IsZstd(path), write); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable; best effort
		d.Sync()
		d.Close()
	}
	return nil
}

// writeTo runs write over a buffered (and, if zst, compressing) writer on w
// and flushes everything to w.
func writeTo(w io.Writer, zst bool, write func(io.Writer) error) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	var out io.Writer = bw
	var enc *zstd.Encoder
	if zst {
		var err error
		if enc, err = zstd.NewWriter(bw, zstd.WithEncoderCRC(true)); err != nil {
			return err
		}
		out = enc
	}
	if err := write(out); err != nil {
		if enc != nil {
			enc.Close()
		}
		return err
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return err
		}
	}
	return bw.Flush()
}
