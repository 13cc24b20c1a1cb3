// Package cli holds align's commands (urfave/cli/v2), one file per command.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/bindings"
)

// Exit codes of the align command.
const (
	ExitOK          = 0   // success
	ExitError       = 1   // runtime error (bad file, failed call, ...)
	ExitUsage       = 2   // bad flags or arguments
	ExitBudget      = 3   // a spending limit (--max-usd) was reached; rerun to continue
	ExitResumable   = 4   // interrupted after saving state; --resume continues
	ExitInterrupted = 130 // interrupted (SIGINT/SIGTERM), nothing to resume
)

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
		Description: "Exit codes: 0 ok, 1 error, 2 usage, 3 budget reached, 4 interrupted (resumable), " +
			"130 interrupted.",
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
				bindings.SetLogger(func(level int, text string) { fmt.Fprint(env.Stderr, text) })
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
	for _, sub := range cmd.Subcommands {
		setUsageHandler(sub)
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
	fmt.Fprintf(env.Stderr, "align: error: %s\n", msg)
	var ue *UsageError
	var ec *ExitCodeError
	switch {
	case errors.As(err, &ue) || isFlagError(err):
		fmt.Fprintf(env.Stderr, "align: run 'align --help' or 'align COMMAND --help' for usage\n")
		return ExitUsage
	case errors.As(err, &ec):
		return ec.Code
	case ctx.Err() != nil:
		return ExitInterrupted
	}
	return ExitError
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
