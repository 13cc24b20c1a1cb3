// Package mergefile holds what align merge checks about its output before
// the native merge runs: the output types it writes, and the temporary
// files a killed merge leaves behind.
package mergefile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Types are the --type values align_merge writes (any case): the types
// ggml quantises without an importance matrix (writable() in
// native/src/merge.cpp; bindings' TestMergeTypes keeps the two lists
// equal).
var Types = []string{"f32", "f16", "bf16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs"}

// ValidType reports whether t (any case) is one of Types.
func ValidType(t string) bool {
	for _, m := range Types {
		if strings.EqualFold(t, m) {
			return true
		}
	}
	return false
}

// TempName is the temporary file align_merge writes for out in process
// pid and renames over out when it is done.
func TempName(out string, pid int) string { return out + ".tmp." + strconv.Itoa(pid) }

// RemoveStaleTemps removes what merges into out that were killed (kill -9,
// a crash) left behind: only a signal the merge can catch removes its
// TempName. A file is removed only when it has exactly that name, is a
// regular file, is empty or starts with the GGUF magic, and no process
// PID is alive; anything else is left alone. It returns the paths removed.
func RemoveStaleTemps(out string) ([]string, error) {
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	prefix := base + ".tmp."
	var removed []string
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || !e.Type().IsRegular() {
			continue
		}
		digits := name[len(prefix):]
		pid, err := strconv.Atoi(digits)
		if err != nil || pid <= 0 || strconv.Itoa(pid) != digits || pidAlive(pid) {
			continue
		}
		path := filepath.Join(dir, name)
		if !ggufOrEmpty(path) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, path)
	}
	return removed, nil
}

// pidAlive reports whether process pid exists (one of another user counts:
// EPERM).
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ggufOrEmpty reports whether path is empty or starts with "GGUF".
func ggufOrEmpty(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	n, err := io.ReadFull(f, magic[:])
	if n == 0 && errors.Is(err, io.EOF) {
		return true
	}
	return n == 4 && bytes.Equal(magic[:], []byte("GGUF"))
}
