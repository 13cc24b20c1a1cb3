package cli

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"

	"github.com/urfave/cli/v2"
)

func numCPU() int { return runtime.NumCPU() }

// Flag checks run before a command does any work; each failure is one
// usage line naming the flag and the value given (exit 2).

// checkIntsAtLeast checks that each named int flag is at least min.
func checkIntsAtLeast(c *cli.Context, min int, names ...string) error {
	for _, n := range names {
		if v := c.Int(n); v < min {
			return usagef("--%s %d: want %d or more", n, v, min)
		}
	}
	return nil
}

// checkAmounts checks that each named float flag is a finite number, 0 or
// more (NaN and Inf parse as floats but mean nothing here).
func checkAmounts(c *cli.Context, names ...string) error {
	for _, n := range names {
		if v := c.Float64(n); math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return usagef("--%s %g: want a finite number, 0 or more", n, v)
		}
	}
	return nil
}

// checkDurations checks that each named duration flag is not negative
// (0 keeps its documented meaning: none, or the default).
func checkDurations(c *cli.Context, names ...string) error {
	for _, n := range names {
		if v := c.Duration(n); v < 0 {
			return usagef("--%s %s: want 0 or more", n, v)
		}
	}
	return nil
}

// checkPositiveDurations checks that each named duration flag is above 0.
func checkPositiveDurations(c *cli.Context, names ...string) error {
	for _, n := range names {
		if v := c.Duration(n); v <= 0 {
			return usagef("--%s %s: want more than 0", n, v)
		}
	}
	return nil
}

// checkAll returns the first error of errs.
func checkAll(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// namedPath is a file a command reads or writes, with the flag naming it.
type namedPath struct{ flag, path string }

// sameFile reports whether a and b name the same file: the same cleaned
// absolute path, or, when both exist, the same inode (links).
func sameFile(a, b string) bool {
	if a == "-" || b == "-" || a == "" || b == "" {
		return false
	}
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	if err1 == nil && err2 == nil && aa == bb {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// checkDistinct refuses an output that is an input or another output, so
// that no command replaces or mixes into what it reads.
func checkDistinct(inputs, outputs []namedPath) error {
	for i, o := range outputs {
		for _, in := range inputs {
			if sameFile(o.path, in.path) {
				return usagef("--%s %s is also the input --%s: refusing to write over what is read", o.flag, o.path, in.flag)
			}
		}
		for _, o2 := range outputs[:i] {
			if sameFile(o.path, o2.path) {
				return usagef("--%s and --%s are the same file (%s)", o2.flag, o.flag, o.path)
			}
		}
	}
	return nil
}

// fmtCount formats n with the singular or plural noun.
func fmtCount(n int, singular, plural string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, singular)
	}
	return fmt.Sprintf("%d %s", n, plural)
}

// maxUSDFlag is --max-usd: a spending ceiling whose absence means no limit,
// so its help shows no "(default: 0)" (0 means spend nothing).
func maxUSDFlag() *cli.Float64Flag {
	return &cli.Float64Flag{Name: "max-usd", DefaultText: "no limit",
		Usage:   "stop cleanly (exit 3) before spending more than `USD` in total, earlier runs' ledger included (0: spend nothing; leave out for no limit)",
		EnvVars: []string{"ALIGN_MAX_USD"}}
}

// checkNewFile checks an output file a command writes whole: its folder
// exists, it is not a folder, and an existing file is replaced only with
// --force (force says whether it was given).
func checkNewFile(flag, path string, force bool) error {
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return usagef("--%s %s: folder %s does not exist (create it first)", flag, path, dir)
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return nil
	case st.IsDir():
		return usagef("--%s %s is a folder; want a file", flag, path)
	case !force:
		return usagef("--%s %s exists (pass --force to replace it)", flag, path)
	}
	return nil
}
