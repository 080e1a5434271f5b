// Command fog runs Fog and manages it: `fog up`, `fog sql mi ...`, `fog sql midb ...`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fogdb/fog/internal/cli"
	"github.com/fogdb/fog/internal/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.Run(ctx, os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, daemon.Commands); err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		stop()
		os.Exit(cli.ExitCode(err))
	}
}
