// Package jsonl reads and writes JSON Lines, the format every align stage
// uses for its inputs and outputs.
//
// Files whose name ends in ".zst" are compressed with zstd transparently,
// both ways; "-" names standard input (Open) or standard output
// (WriteFileAtomic).
//
// Outputs of long-running stages are append-only (OpenAppend): each record is
// one write call, so a crash leaves at most one torn record at the end of the
// file, which the next OpenAppend drops before returning the ids of the
// records already done. Final outputs are written with WriteFileAtomic
// (temporary file, fsync, rename), so a reader never sees a half-written
// file.
package jsonl

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// IsZstd reports whether path names a zstd-compressed file (".zst" suffix).
func IsZstd(path string) bool { return strings.HasSuffix(path, ".zst") }

// Open opens path for reading. "-" is standard input (closing it does not
// close os.Stdin); a ".zst" file is decompressed as it is read, including
// files made of many concatenated frames (as OpenAppend writes them).
func Open(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if !IsZstd(path) {
		return f, nil
	}
	d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &zstdReadCloser{d: d, f: f}, nil
}

type zstdReadCloser struct {
	d *zstd.Decoder
	f *os.File
}

func (z *zstdReadCloser) Read(p []byte) (int, error) { return z.d.Read(p) }

func (z *zstdReadCloser) Close() error {
	z.d.Close()
	return z.f.Close()
}

// LineError is a line that is not valid JSON (or does not decode into the
// value given to Next). The Reader stays usable: the next call to Next reads
// the following line.
type LineError struct {
	Name string // file name as given to NewReader
	Line int    // 1-based line number
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Name, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Reader reads JSON Lines one record at a time. Lines may be of any length.
// Blank lines (only spaces, tabs or a carriage return) are skipped, a UTF-8
// byte order mark on the first line is ignored, and a final line without a
// newline is read like any other. A Reader is not safe for concurrent use.
type Reader struct {
	r    *bufio.Reader
	name string
	line int
	err  error // sticky read error
}

// NewReader returns a Reader over r; name (usually the file name) prefixes
// error messages as "name:line: ...".
func NewReader(r io.Reader, name string) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), name: name}
}

// Name is the name given to NewReader.
func (r *Reader) Name() string { return r.name }

// NextRaw returns the next non-blank line, trimmed of surrounding white
// space, and its 1-based line number. It returns io.EOF after the last line.
// The returned slice is only valid until the next call.
func (r *Reader) NextRaw() (json.RawMessage, int, error) {
	for {
		if r.err != nil {
			return nil, r.line, r.err
		}
		b, err := r.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: collect it whole.
			buf := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = r.r.ReadSlice('\n')
				buf = append(buf, b...)
			}
			b = buf
		}
		if err != nil {
			if err != io.EOF {
				r.err = fmt.Errorf("%s:%d: %w", r.name, r.line+1, err)
				return nil, r.line + 1, r.err
			}
			r.err = io.EOF
			if len(b) == 0 {
				return nil, r.line, io.EOF
			}
		}
		r.line++
		if r.line == 1 {
			b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		return b, r.line, nil
	}
}

// Next decodes the next non-blank line into v and returns its line number.
// It returns io.EOF after the last line. A line that is not one JSON value,
// or does not fit v, is a *LineError naming "name:line"; reading can go on
// past it. Other errors (the underlying reader failed) are final.
func (r *Reader) Next(v any) (int, error) {
	b, line, err := r.NextRaw()
	if err != nil {
		return line, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return line, &LineError{Name: r.name, Line: line, Err: err}
	}
	return line, nil
}

// Marshal returns v as one JSON line (with its trailing newline). HTML
// characters are not escaped.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Encode writes v to w as one JSON line.
func Encode(w io.Writer, v any) error {
	b, err := Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// RecordID returns a deterministic id for a record: the hex of the first 16
// bytes of SHA-256 over the parts, each prefixed by its length, so ("ab", "c")
// and ("a", "bc") differ.
func RecordID(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
