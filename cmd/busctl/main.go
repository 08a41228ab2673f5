// Command busctl drives a plugbus bus from the terminal. See docs/busctl.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/plugbus/plugbus/internal/busctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := busctl.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
