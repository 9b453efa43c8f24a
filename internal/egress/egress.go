// Package egress decides which network addresses Purser may connect to on
// someone else's behalf (webhook deliveries, the API proxy), and enforces
// it at connect time: the check runs on the address the socket actually
// connects to, after DNS resolution, so a name that resolves (or
// re-resolves, DNS rebinding) to a private address is refused too.
//
// The classification follows Stripe's smokescreen (anything that is not
// global unicast, loopback and RFC 1918 / unique-local space is refused)
// and is stricter: it also refuses CGNAT, benchmarking, documentation and
// reserved ranges, and the IPv6 transition forms that embed an IPv4
// address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo), so that
// no IPv6 spelling reaches IPv4 space the IPv4 rules refuse.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// ErrPrivateAddress is returned when a connection would go to an address
// that is private, loopback, link-local or otherwise not public.
var ErrPrivateAddress = errors.New("egress: the target address is private, loopback, link-local or otherwise not public")

// ErrPortRefused is returned when a connection would go to a port other
// than the one allowed by WithPort.
var ErrPortRefused = errors.New("egress: the target port is not the allowed one")

// Public reports whether ip is an address Purser may reach by default:
// global unicast and in none of the special-purpose ranges below.
func Public(ip netip.Addr) bool {
	if ip.Zone() != "" {
		return false // a zone only makes sense for link-local addresses
	}
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("10.0.0.0/8"),      // private
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, cloud metadata
	netip.MustParsePrefix("172.16.0.0/12"),   // private
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("192.168.0.0/16"),  // private
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated): embeds an IPv4 address
	netip.MustParsePrefix("::ffff:0:0/96"),   // IPv4-mapped (Unmap handles most)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT)
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: can reach IPv4 private space
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments, Teredo (2001::/32) embeds an IPv4 address
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds an IPv4 address
	netip.MustParsePrefix("3fff::/20"),       // documentation
	netip.MustParsePrefix("5f00::/16"),       // SRv6 SIDs
	netip.MustParsePrefix("fc00::/7"),        // unique local
	netip.MustParsePrefix("fe80::/10"),       // link-local
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
	netip.MustParsePrefix("ff00::/8"),        // multicast
}

type portKey struct{}

// WithPort returns a context under which a Dialer connects to port only:
// the API proxy pins the credential's port, so that nothing (a bug in URL
// building included) can make it connect elsewhere on the same host.
func WithPort(ctx context.Context, port int) context.Context {
	return context.WithValue(ctx, portKey{}, port)
}

// Dialer returns a dialer that checks, at connect time, the address it
// actually connects to: unless allowPrivate, a non-Public address is
// refused with ErrPrivateAddress; and if the dial's context carries
// WithPort, any other port is refused with ErrPortRefused (whatever
// allowPrivate says).
func Dialer(allowPrivate bool, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	d.ControlContext = func(ctx context.Context, network, address string, _ syscall.RawConn) error {
		return Check(ctx, allowPrivate, address)
	}
	return d
}

// Check applies the Dialer's rules to a resolved "ip:port" address.
func Check(ctx context.Context, allowPrivate bool, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, address)
	}
	if want, ok := ctx.Value(portKey{}).(int); ok && int(ap.Port()) != want {
		return fmt.Errorf("%w: %d, only %s", ErrPortRefused, ap.Port(), strconv.Itoa(want))
	}
	if !allowPrivate && !Public(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, ap.Addr())
	}
	return nil
}
