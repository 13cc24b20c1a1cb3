// Package cli holds align's commands (urfave/cli/v2), one file per command.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/engine"
)

// Exit codes of the align command.
const (
	ExitOK          = 0   // success
	ExitError       = 1   // runtime error (bad file, failed call, ...)
	ExitUsage       = 2   // bad flags or arguments
	ExitBudget      = 3   // a spending limit (--max-usd) was reached; rerun to continue
	ExitResumable   = 4   // interrupted after saving state; --resume continues
	ExitInterrupted = 130 // interrupted (SIGINT/SIGTERM/SIGHUP), nothing to resume
)

// InterruptSignals end a command the way Ctrl-C does: its context is
// cancelled, long commands save what they can (train: a checkpoint, exit
// 4) and exit. SIGHUP (the terminal closed) is one of them, so closing the
// terminal loses no more than SIGTERM does.
var InterruptSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// Main runs align as the process: args as os.Args, the process's streams,
// InterruptSignals cancelling the context. It returns the exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), InterruptSignals...)
	defer stop()
	return Run(ctx, args, MainEnv())
}

// UsageError marks an error as the user's invocation, not the work.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, a ...any) error { return &UsageError{Err: fmt.Errorf(format, a...)} }

// ExitCodeError carries a specific exit code (budget reached, resumable).
type ExitCodeError struct {
	Code int
	Err  error
}

func (e *ExitCodeError) Error() string { return e.Err.Error() }
func (e *ExitCodeError) Unwrap() error { return e.Err }

// Env holds the process's streams, so commands are testable.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

func envOf(c *cli.Context) Env {
	e, _ := c.App.Metadata["env"].(Env)
	return e
}

// NewApp builds the command tree.
func NewApp(env Env) *cli.App {
	app := &cli.App{
		Name:  "align",
		Usage: "align GGUF language models with preference optimisation",
		Description: `Builds preference data (collect, rank, screen, annotate, import, data),
trains LoRA adapters on a frozen GGUF base (train: SFT, the DPO family, a
reward model, PPO and GRPO; on the CPU, or a GPU in a CUDA build), scores
and evaluates them (score, eval, report), folds them into the base (merge)
and runs GGUF models (sample, model, bench). Each command's
--help ends with examples. SIGINT, SIGTERM and SIGHUP interrupt a command
cleanly (train saves a checkpoint).

Exit codes: 0 ok, 1 error, 2 usage, 3 budget reached, 4 interrupted (resumable),
130 interrupted.

Example:
   align model init --out models/tiny.gguf
   align sample --model models/tiny.gguf --prompt "Is Berserk finished?" -n 32
   align train --model models/tiny.gguf --data testdata/pairs/train.jsonl --out runs/dpo`,
		Reader:          env.Stdin,
		Writer:          env.Stdout,
		ErrWriter:       env.Stderr,
		HideHelpCommand: true,
		Metadata:        map[string]any{"env": env},
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "show native (llama.cpp/ggml) logs", EnvVars: []string{"ALIGN_VERBOSE"}},
		},
		Before: func(c *cli.Context) error {
			if c.Bool("verbose") {
				engine.SetNativeLog(func(text string) { fmt.Fprint(env.Stderr, text) })
			}
			return nil
		},
		OnUsageError:   func(c *cli.Context, err error, _ bool) error { return &UsageError{Err: err} },
		ExitErrHandler: func(*cli.Context, error) {},
		Commands:       registeredCommands(),
	}
	for _, cmd := range app.Commands {
		setUsageHandler(cmd)
	}
	return app
}

var commandMakers []func() *cli.Command

// register adds a command to the app; each command file calls it from init,
// so adding a command touches only its own file.
func register(make func() *cli.Command) { commandMakers = append(commandMakers, make) }

func registeredCommands() []*cli.Command {
	var cmds []*cli.Command
	for _, mk := range commandMakers {
		cmds = append(cmds, mk())
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	return cmds
}

func setUsageHandler(cmd *cli.Command) {
	cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error { return &UsageError{Err: err} }
	checkRequiredFlags(cmd)
	for _, sub := range cmd.Subcommands {
		setUsageHandler(sub)
	}
}

// checkRequiredFlags moves the check of cmd's required flags from urfave/cli,
// which prints the whole help on standard output before its error, into
// cmd.Before, which fails with one usage error naming the flags.
func checkRequiredFlags(cmd *cli.Command) {
	var required [][]string // each required flag's names
	for _, f := range cmd.Flags {
		rf, ok := f.(cli.RequiredFlag)
		if !ok || !rf.IsRequired() {
			continue
		}
		v := reflect.ValueOf(f)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			continue
		}
		field := v.Elem().FieldByName("Required")
		if !field.IsValid() || !field.CanSet() || field.Kind() != reflect.Bool {
			continue
		}
		field.SetBool(false)
		required = append(required, f.Names())
	}
	if len(required) == 0 {
		return
	}
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		var missing []string
		for _, names := range required {
			set := false
			for _, n := range names {
				set = set || c.IsSet(n)
			}
			if !set {
				missing = append(missing, "--"+names[0])
			}
		}
		switch len(missing) {
		case 0:
		case 1:
			return usagef("%s is required", missing[0])
		default:
			return usagef("%s and %s are required", strings.Join(missing[:len(missing)-1], ", "), missing[len(missing)-1])
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
}

// Run executes align with args (args[0] is the program name) and returns
// the exit code. Errors are printed as one line: "align: error: ...".
func Run(ctx context.Context, args []string, env Env) int {
	app := NewApp(env)
	err := app.RunContext(ctx, args)
	if err == nil {
		return ExitOK
	}
	msg := strings.TrimSpace(err.Error())
	msg = strings.ReplaceAll(msg, "\n", " ")
	var ue *UsageError
	var ec *ExitCodeError
	if errors.As(err, &ue) || isFlagError(err) {
		// one line: the problem and where the usage is
		fmt.Fprintf(env.Stderr, "align: error: %s (see '%s --help')\n", msg, commandPath(app, args))
		return ExitUsage
	}
	fmt.Fprintf(env.Stderr, "align: error: %s\n", msg)
	switch {
	case errors.As(err, &ec):
		return ec.Code
	case ctx.Err() != nil:
		return ExitInterrupted
	}
	return ExitError
}

// commandPath is "align" plus the (sub)command names at the start of args,
// for pointing at the right --help.
func commandPath(app *cli.App, args []string) string {
	path := []string{"align"}
	cmds := app.Commands
	for _, a := range args[min(1, len(args)):] {
		if strings.HasPrefix(a, "-") {
			break
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			break
		}
		path = append(path, next.Name)
		cmds = next.Subcommands
	}
	return strings.Join(path, " ")
}

// isFlagError recognises urfave/cli's own argument errors that bypass
// OnUsageError (required flags, unknown commands).
func isFlagError(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "Required flag") || strings.HasPrefix(s, "flag provided but not defined") ||
		strings.HasPrefix(s, "No help topic")
}

// MainEnv is the real process environment.
func MainEnv() Env { return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr} }
