// Command purser is the Purser wallet and spend-control server and CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/purserhq/purser/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
