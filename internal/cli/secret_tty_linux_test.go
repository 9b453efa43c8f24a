package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY opens a pseudo-terminal: the controller side (what a terminal
// emulator reads and writes) and the terminal the CLI gets as stdin.
func openPTY(t *testing.T) (ctrl, term *os.File) {
	t.Helper()
	ctrl, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	var unlock int32
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ctrl.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlock the pseudo-terminal: %v", e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, ctrl.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Skipf("pseudo-terminal number: %v", e)
	}
	term, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { term.Close(); ctrl.Close() })
	return ctrl, term
}

// TestVaultPutPromptsWithoutEcho: with a terminal on stdin, vault put
// prompts (on stderr) and reads the secret with the echo off: what the
// terminal shows back holds no byte of the secret, the server receives
// it, and the terminal's echo is on again afterwards.
func TestVaultPutPromptsWithoutEcho(t *testing.T) {
	t.Parallel()
	const secret = "sk_typed_at_the_terminal_0123"
	var mu sync.Mutex
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = string(b)
		mu.Unlock()
		w.WriteHeader(201)
		io.WriteString(w, `{"id":"crd_1","name":"k","upstream":"https://api.example.com","inject":"header:X-Api-Key={secret}","version":1}`)
	}))
	t.Cleanup(srv.Close)
	ctrl, term := openPTY(t)
	// What the terminal shows: everything the CLI's side wrote or echoed.
	var shown bytes.Buffer
	var shownMu sync.Mutex
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ctrl.Read(buf)
			shownMu.Lock()
			shown.Write(buf[:n])
			shownMu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	var out bytes.Buffer
	errW := &lockedWriter{w: term} // the prompt goes to the terminal, as stderr would
	e := &env{stdio: Stdio{In: term, Out: &out, Err: errW}, getenv: func(k string) string {
		return map[string]string{"PURSER_SERVER": srv.URL, "PURSER_OWNER_TOKEN": "tok"}[k]
	}}
	done := make(chan int, 1)
	go func() {
		done <- e.run(context.Background(), []string{"vault", "put", "k", "--upstream", "https://api.example.com", "--inject", "header:X-Api-Key={secret}"})
	}()
	// Type the secret once the prompt is shown.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		shownMu.Lock()
		prompted := strings.Contains(shown.String(), "secret (not echoed): ")
		shownMu.Unlock()
		if prompted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no prompt")
		}
	}
	if _, err := ctrl.Write([]byte(secret + "\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("vault put did not finish")
	}
	time.Sleep(50 * time.Millisecond) // let the reader drain the terminal
	shownMu.Lock()
	defer shownMu.Unlock()
	if strings.Contains(shown.String(), secret[:6]) || strings.Contains(out.String(), secret) {
		t.Errorf("the secret was echoed: %q", shown.String())
	}
	mu.Lock()
	if !strings.Contains(got, `"secret":"`+secret+`"`) {
		t.Errorf("the server received %s", got)
	}
	mu.Unlock()
	var now syscall.Termios
	if !termios(term, syscall.TCGETS, &now) || now.Lflag&syscall.ECHO == 0 {
		t.Error("the terminal's echo was not restored")
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
