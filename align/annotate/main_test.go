package annotate

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// The test binary doubles as an `annotate serve` process (the helper
// process pattern), so that tests can kill -9 a real server process and
// start it again without building the align binary.
const helperEnv = "ALIGN_ANNOTATE_SERVE_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperServe(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helperServe is a minimal `align annotate serve` over the same package
// calls (the CLI's own flag checks are tested in package cli).
func helperServe(args []string) int {
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	in := fs.String("in", "", "")
	out := fs.String("out", "", "")
	addr := fs.String("addr", DefaultAddr, "")
	ann := fs.String("annotators", "", "")
	k := fs.Int("per-item", 1, "")
	rubric := fs.Bool("rubric", false, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var names []string
	if *ann != "" {
		names = strings.Split(*ann, ",")
	}
	items, err := LoadItems(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	all := names
	if all == nil {
		all = []string{DefaultName}
	}
	toks, err := LoadTokens(TokensPath(*out), all)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = Serve(ctx, ServeConfig{Items: items, Labels: *out, Addr: *addr, Annotators: names, Tokens: toks, PerItem: *k, Rubric: *rubric, Log: os.Stderr},
		func(urls []Named) {
			for _, u := range urls {
				fmt.Printf("%s %s\n", u.Name, u.URL)
			}
		})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// helperCommand runs `annotate serve args` in a child test process.
func helperCommand(args []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	return cmd
}
