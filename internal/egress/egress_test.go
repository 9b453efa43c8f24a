package egress_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/egress"
)

func TestPublic(t *testing.T) {
	t.Parallel()
	refused := []string{
		"127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::", "10.1.2.3", "172.16.0.1", "192.168.1.1",
		"169.254.169.254", "fe80::1", "fc00::1", "fd12::1", "100.64.0.1", "198.18.0.1", "192.0.2.1",
		"198.51.100.7", "203.0.113.9", "224.0.0.1", "239.1.1.1", "255.255.255.255", "240.0.0.1",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::127.0.0.1", "::ffff:0:7f00:1",
		"64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1",
		"ff02::1", "ff05::1", "fec0::1", "100::1", "3fff::1", "5f00::1", "192.88.99.1", "192.0.0.8",
	}
	for _, s := range refused {
		if egress.Public(netip.MustParseAddr(s)) {
			t.Errorf("%s is public, want refused", s)
		}
	}
	if egress.Public(netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("a zoned address is public")
	}
	if egress.Public(netip.Addr{}) {
		t.Error("the zero Addr is public")
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "54.187.174.169", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8"} {
		if !egress.Public(netip.MustParseAddr(s)) {
			t.Errorf("%s refused, want public", s)
		}
	}
}

// listen starts a TCP listener on 127.0.0.1 that accepts and closes.
func listen(t *testing.T) (port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestDialerRefusesPrivate is the attack: every spelling of a local
// address, a name that resolves to one (what DNS rebinding amounts to at
// connect time), and the metadata address, all refused before a byte is
// sent; the same dials succeed with allowPrivate.
func TestDialerRefusesPrivate(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(listen(t))
	ctx := context.Background()
	d := egress.Dialer(false, 2*time.Second)
	for _, addr := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::ffff:127.0.0.1]:" + port, "[::1]:" + port,
		"169.254.169.254:80", "10.0.0.1:80", "0.0.0.0:" + port} {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			t.Errorf("dial %s succeeded", addr)
			continue
		}
		if !errors.Is(err, egress.ErrPrivateAddress) {
			t.Errorf("dial %s: %v, want ErrPrivateAddress", addr, err)
		}
	}
	allow := egress.Dialer(true, 2*time.Second)
	for _, addr := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::ffff:127.0.0.1]:" + port} {
		c, err := allow.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Errorf("allowPrivate dial %s: %v", addr, err)
			continue
		}
		c.Close()
	}
}

// TestDialerPinsPort: under WithPort only that port is dialled, even with
// allowPrivate.
func TestDialerPinsPort(t *testing.T) {
	t.Parallel()
	p1, p2 := listen(t), listen(t)
	d := egress.Dialer(true, 2*time.Second)
	ctx := egress.WithPort(context.Background(), p1)
	c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(p1))
	if err != nil {
		t.Fatalf("pinned port: %v", err)
	}
	c.Close()
	if c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(p2)); err == nil || !errors.Is(err, egress.ErrPortRefused) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("other port: %v, want ErrPortRefused", err)
	}
}
