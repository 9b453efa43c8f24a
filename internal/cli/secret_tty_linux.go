package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

// canReadTerminal: readTerminalSecret tells a terminal from another
// device, so a device that is no terminal is read like a file.
const canReadTerminal = true

// readTerminalSecret prompts on w and reads one line from the terminal f
// with echo off, so the secret does not show as it is typed. ok is false
// when f is not a terminal (a file, a pipe, /dev/null).
func readTerminalSecret(ctx context.Context, f *os.File, w io.Writer, prompt string) (secret string, ok bool, err error) {
	var old syscall.Termios
	if !termios(f, syscall.TCGETS, &old) {
		return "", false, nil
	}
	noEcho := old
	noEcho.Lflag &^= syscall.ECHO
	noEcho.Lflag |= syscall.ICANON | syscall.ECHONL
	if !termios(f, syscall.TCSETS, &noEcho) {
		return "", true, errors.New("could not turn the terminal's echo off")
	}
	defer termios(f, syscall.TCSETS, &old)
	fmt.Fprint(w, prompt)
	type line struct {
		s   string
		err error
	}
	got := make(chan line, 1)
	go func() {
		s, err := bufio.NewReaderSize(f, maxSecret+1).ReadString('\n')
		got <- line{s, err}
	}()
	select {
	case <-ctx.Done():
		// The read stays blocked until the process ends; the terminal's
		// echo is restored now.
		fmt.Fprintln(w)
		return "", true, ctx.Err()
	case l := <-got:
		if l.err != nil && !errors.Is(l.err, io.EOF) {
			return "", true, l.err
		}
		return strings.TrimRight(l.s, "\r\n"), true, nil
	}
}

func termios(f *os.File, req uintptr, t *syscall.Termios) bool {
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(t)))
	return e == 0
}
