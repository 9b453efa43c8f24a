//go:build !linux

package cli

import (
	"context"
	"io"
	"os"
)

const canReadTerminal = false

// readTerminalSecret: reading a terminal with echo off is implemented on
// Linux only; elsewhere a device on stdin is refused (readSecret).
func readTerminalSecret(context.Context, *os.File, io.Writer, string) (string, bool, error) {
	return "", false, nil
}
