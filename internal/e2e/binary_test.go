package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binDir   string // temporary directory of the built binary, removed by TestMain
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// purserBinary builds cmd/purser once per test binary and returns its path.
func purserBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binError = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		gomod := strings.TrimSpace(string(out))
		if gomod == "" || gomod == os.DevNull {
			binError = errors.New("go env GOMOD: not in a module")
			return
		}
		if binDir, err = os.MkdirTemp("", "purser-e2e-"); err != nil {
			binError = err
			return
		}
		binPath = filepath.Join(binDir, "purser")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/purser")
		cmd.Dir = filepath.Dir(gomod)
		if out, err := cmd.CombinedOutput(); err != nil {
			binError = fmt.Errorf("go build ./cmd/purser: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

// proc is one `purser serve` process.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	url    string
	logs   *lockedBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after exited is closed
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe starts `purser serve` on addr ("" picks a free port) and
// waits until /healthz answers ok. The process is killed at cleanup.
func startServe(t *testing.T, dataDir, dsn, addr string) *proc {
	t.Helper()
	bin := purserBinary(t)
	fixed := addr != ""
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if !fixed {
			addr = freeAddr(t)
		}
		p, err := spawn(t, bin, dataDir, dsn, addr)
		if err == nil {
			return p
		}
		lastErr = err
		if !strings.Contains(string(p.logs.Bytes()), "address already in use") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("purser serve: %v", lastErr)
	return nil
}

func spawn(t *testing.T, bin, dataDir, dsn, addr string) (*proc, error) {
	args := []string{"serve", "--data", dataDir, "--listen", addr, "--log-level", "warn"}
	if dsn != "" {
		args = append(args, "--db", dsn)
	}
	p := &proc{addr: addr, url: "http://" + addr, logs: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.Env = append(os.Environ(), "PURSER_PASSPHRASE=") // the key file, not a passphrase
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start purser: %v", err)
	}
	pid := p.cmd.Process.Pid
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t, pid) })
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return p, fmt.Errorf("exited before it was healthy (%v); output:\n%s", p.err, p.logs.Bytes())
		default:
		}
		resp, err := hc.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.kill()
	return p, fmt.Errorf("not healthy within 60s; output:\n%s", p.logs.Bytes())
}

// kill sends SIGKILL to the process and waits for it to exit.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck
	<-p.exited
}

// stop ends the process by its PID: SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop(t *testing.T, pid int) {
	select {
	case <-p.exited:
		return
	default:
	}
	syscall.Kill(pid, syscall.SIGTERM) //nolint:errcheck
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Logf("purser (pid %d) did not stop within 10s of SIGTERM; killing it", pid)
		syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
		<-p.exited
	}
}
