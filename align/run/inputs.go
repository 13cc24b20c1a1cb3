package run

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"syscall"
)

// FileStat identifies a version of a file without reading it: its size,
// modification time (ns) and inode. A file whose stat is unchanged is taken
// to hold the bytes it held when it was hashed (as make and rsync assume),
// so resuming a run on a 5 GB base does not read the base to hash it.
type FileStat struct {
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
	Inode uint64 `json:"inode,omitempty"`
}

// StatFile is path's FileStat.
func StatFile(path string) (FileStat, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileStat{}, err
	}
	st := FileStat{Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Inode = uint64(sys.Ino)
	}
	return st, nil
}

// hashed memoises this process's hashes by path and stat (the reward
// model of a GRPO run checks the base the run itself hashed).
var hashed sync.Map // hashKey → string

type hashKey struct {
	path string
	st   FileStat
}

// HashFile is the hex SHA-256 of a file's bytes, and the stat it was taken
// at.
func HashFile(path string) (string, FileStat, error) {
	st, err := StatFile(path)
	if err != nil {
		return "", st, err
	}
	if h, ok := hashed.Load(hashKey{path, st}); ok {
		return h.(string), st, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", st, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20)); err != nil {
		return "", st, fmt.Errorf("%s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	hashed.Store(hashKey{path, st}, sum)
	return sum, st, nil
}

// HashKnown is path's hash when its stat is still known (the run recorded
// hash at stat); otherwise it hashes the file.
func HashKnown(path, hash string, known FileStat) (string, FileStat, error) {
	if hash != "" && known != (FileStat{}) {
		if st, err := StatFile(path); err == nil && st == known {
			return hash, st, nil
		}
	}
	return HashFile(path)
}

// Input is one input file of a run: its key in Hashes, its path and the
// flag that names it.
type Input struct {
	Key, Path, Flag string
}

// HashInputs hashes the inputs with a path into c.Hashes and c.Stats. A
// run being resumed passes the hashes and stats it recorded (prev, prevSt):
// a file whose stat has not changed is not read again.
func HashInputs(ins []Input, prev map[string]string, prevSt map[string]FileStat) (map[string]string, map[string]FileStat, error) {
	hs, sts := map[string]string{}, map[string]FileStat{}
	for _, in := range ins {
		if in.Path == "" {
			continue
		}
		h, st, err := HashKnown(in.Path, prev[in.Key], prevSt[in.Key])
		if err != nil {
			return nil, nil, fmt.Errorf("--%s: %w", in.Flag, err)
		}
		hs[in.Key], sts[in.Key] = h, st
	}
	return hs, sts, nil
}

// CheckHashes refuses to resume the run in out when an input changed since
// it started (a run from before align recorded hashes is not checked).
func CheckHashes(out string, saved, now map[string]string, ins []Input) error {
	if saved == nil {
		return nil
	}
	byKey := map[string]Input{}
	for _, in := range ins {
		byKey[in.Key] = in
	}
	keys := make([]string, 0, len(now)+len(saved))
	for k := range now {
		keys = append(keys, k)
	}
	for k := range saved {
		if _, ok := now[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if saved[k] == now[k] {
			continue
		}
		in := byKey[k]
		what := "--" + in.Flag + " " + in.Path
		if in.Flag == "" {
			what = "input " + k
		}
		return fmt.Errorf("%s: cannot resume: %s changed since the run started (sha256 %.12s then, %.12s now); start a new run with --out",
			out, what, orNone(saved[k]), orNone(now[k]))
	}
	return nil
}

func orNone(h string) string {
	if h == "" {
		return "none"
	}
	return h
}
