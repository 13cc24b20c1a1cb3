// Command align: preference alignment for GGUF models. main only wires
// signals, context and the exit code; the commands live in package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/align-dev/align/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, cli.MainEnv())
	stop()
	os.Exit(code)
}
