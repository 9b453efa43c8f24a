package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// stripeMockVersion is the stripe-mock the tests run: the tool pinned in
// go.mod (go get -tool github.com/stripe/stripe-mock@VERSION).
const stripeMockVersion = "v0.203.0"

var stripeMockBuild struct {
	once sync.Once
	path string
	err  error
}

// stripeMockBinary builds stripe-mock once per test binary run, into a
// cache directory keyed by its version and the Go toolchain, so that
// later runs reuse it.
func stripeMockBinary(t *testing.T) string {
	t.Helper()
	b := &stripeMockBuild
	b.once.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "purser-test-tools")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, fmt.Sprintf("stripe-mock-%s-%s-%s-%s", stripeMockVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH))
		if fi, err := os.Stat(b.path); err == nil && fi.Mode()&0o111 != 0 {
			return
		}
		tmp := fmt.Sprintf("%s.tmp%d", b.path, os.Getpid())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// Built from the module's own requirements (the tool directive),
		// so the version is the one go.mod pins.
		cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "github.com/stripe/stripe-mock")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp)
			b.err = fmt.Errorf("go build github.com/stripe/stripe-mock: %v\n%s", err, out)
			return
		}
		b.err = os.Rename(tmp, b.path) // atomic: a concurrent run sees the old binary or the whole new one
	})
	if b.err != nil {
		if os.Getenv("PURSER_REQUIRE_STRIPE_MOCK") == "1" {
			t.Fatalf("stripe-mock is required (PURSER_REQUIRE_STRIPE_MOCK=1) but could not be built: %v", b.err)
		}
		t.Skipf("stripe-mock %s could not be built (no network for the module download?); set PURSER_REQUIRE_STRIPE_MOCK=1 to fail instead: %v", stripeMockVersion, b.err)
	}
	return b.path
}

// startStripeMock runs stripe-mock on a free loopback port (HTTP and
// HTTPS both on 127.0.0.1: its HTTPS default is every interface, port
// 12112) and returns its base URL; it is killed by its PID at cleanup.
func startStripeMock(t *testing.T) string {
	t.Helper()
	bin := stripeMockBinary(t)
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stripe-mock: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() { // keep reading so that stripe-mock never blocks on a full pipe
			if a, ok := strings.CutPrefix(sc.Text(), "Listening for HTTP at address: "); ok && !sent {
				addr <- strings.TrimSpace(a)
				sent = true
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("stripe-mock did not say where it listens within 30 s")
	}
	return ""
}
