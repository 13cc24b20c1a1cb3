// Command align: preference alignment for GGUF models. main only hands the
// process to cli.Main (signals, context, exit code); the commands live in
// package cli.
package main

import (
	"os"

	"github.com/align-dev/align/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
