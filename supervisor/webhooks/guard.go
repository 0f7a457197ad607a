package webhooks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Policy says which destinations webhooks may reach. The zero value allows public,
// private and loopback addresses and refuses only the always-denied classes.
type Policy struct {
	// DenyPrivate also refuses loopback, RFC 1918, unique-local, CGNAT and benchmark
	// addresses and the name localhost (daemon flag --webhook-deny-private).
	DenyPrivate bool
	// Allow exempts these prefixes from DenyPrivate. It never exempts the always-denied
	// classes: link-local, unspecified, multicast, reserved and cloud metadata addresses.
	Allow []netip.Prefix
}

type addrClass struct {
	prefix netip.Prefix
	class  string
}

// alwaysDenied is checked first, so 169.254.169.254 reports "cloud metadata" rather than
// "link-local" and fd00:ec2::254 is refused even though ULA may be allowed.
var alwaysDenied = []addrClass{
	{netip.MustParsePrefix("169.254.169.254/32"), "cloud metadata"},
	{netip.MustParsePrefix("169.254.170.2/32"), "cloud metadata"}, // ECS task metadata
	{netip.MustParsePrefix("100.100.100.200/32"), "cloud metadata"},
	{netip.MustParsePrefix("168.63.129.16/32"), "cloud metadata"}, // Azure wire server
	{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata"},
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // includes 255.255.255.255
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// privateRanges are refused only under Policy.DenyPrivate.
var privateRanges = []addrClass{
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmark"},
	{netip.MustParsePrefix("fc00::/7"), "unique-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

// IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, IPv4-compatible).
var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96")
	compatPrefix = netip.MustParsePrefix("::/96")
	sixToFour    = netip.MustParsePrefix("2002::/16")
)

// blockedNames are metadata endpoints reachable by name inside clouds.
var blockedNames = map[string]bool{
	"metadata.google.internal":   true,
	"metadata.goog":              true,
	"metadata":                   true,
	"instance-data":              true,
	"instance-data.ec2.internal": true,
}

// CheckAddr returns nil when ip may be connected to, or an error wrapping ErrBlocked that
// names the address class.
func (p Policy) CheckAddr(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrBlocked)
	}
	ip = ip.WithZone("").Unmap()
	if class := p.blockedClass(ip); class != "" {
		return fmt.Errorf("%w: %s address %s", ErrBlocked, class, ip)
	}
	// An IPv6 address that embeds an IPv4 one reaches that IPv4 host through a
	// translator, so the embedded address must pass too.
	if ip.Is6() && ip != netip.IPv6Unspecified() && ip != netip.IPv6Loopback() &&
		(nat64Prefix.Contains(ip) || compatPrefix.Contains(ip)) {
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if class := p.blockedClass(v4); class != "" {
			return fmt.Errorf("%w: %s address %s embedded in %s", ErrBlocked, class, v4, ip)
		}
	}
	if ip.Is6() && sixToFour.Contains(ip) {
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		if class := p.blockedClass(v4); class != "" {
			return fmt.Errorf("%w: %s address %s embedded in %s", ErrBlocked, class, v4, ip)
		}
	}
	return nil
}

// blockedClass names why ip is refused, or "" when it is allowed.
func (p Policy) blockedClass(ip netip.Addr) string {
	for _, c := range alwaysDenied {
		if c.prefix.Contains(ip) {
			return c.class
		}
	}
	if !p.DenyPrivate {
		return ""
	}
	for _, a := range p.Allow {
		if a.Contains(ip) {
			return ""
		}
	}
	for _, c := range privateRanges {
		if c.prefix.Contains(ip) {
			return c.class
		}
	}
	return ""
}

// checkHostName refuses metadata names always and localhost under DenyPrivate. host is
// already lower-case ASCII (the transport applies IDNA before dialing).
func (p Policy) checkHostName(host string) error {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if blockedNames[h] {
		return fmt.Errorf("%w: cloud metadata host %s", ErrBlocked, h)
	}
	if p.DenyPrivate && (h == "localhost" || strings.HasSuffix(h, ".localhost") || h == "localhost.localdomain") {
		return fmt.Errorf("%w: loopback host %s", ErrBlocked, h)
	}
	return nil
}

// hostIP returns the address a URL host denotes when it is an IP literal, including the
// legacy numeric IPv4 forms (2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518)
// that inet_aton and therefore many resolvers accept.
func hostIP(host string) (netip.Addr, bool) {
	h := strings.TrimSuffix(host, ".")
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip, true
	}
	return parseLegacyIPv4(h)
}

// parseLegacyIPv4 parses inet_aton's forms: 1–4 dot-separated parts, each decimal, octal
// (leading 0) or hex (0x); the last part fills the remaining bytes.
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		digits := p
		switch {
		case len(p) > 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil || digits == "" {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (8 * (3 - i))
	}
	last := vals[len(vals)-1]
	if rest := 4 - (len(vals) - 1); last >= 1<<(8*rest) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// Resolver looks up a host's addresses; *net.Resolver satisfies it. Tests inject fakes to
// make DNS rebinding deterministic.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// guard dials only addresses the policy allows. It checks the resolved addresses before
// dialing (for a clear error) and again in the dialer's Control hook, which sees the
// address the socket is about to connect to: whatever a resolver answered, nothing else
// can be reached.
type guard struct {
	policy   Policy
	resolver Resolver
	dialer   *net.Dialer
	// rewrite, for tests only, maps the checked address to the one actually dialed, as a
	// network that routes 169.254.169.254 to a local server would. Control still checks
	// the rewritten address.
	rewrite func(addr string) string
	// onConnect, for tests only, counts sockets that passed Control (real connect attempts).
	onConnect func(addr string)
}

func newGuard(p Policy, r Resolver, dialTimeout time.Duration, rewrite func(string) string, onConnect func(string)) *guard {
	g := &guard{policy: p, resolver: r, rewrite: rewrite, onConnect: onConnect}
	g.dialer = &net.Dialer{Timeout: dialTimeout, Control: g.control}
	return g
}

// control is the net.Dialer Control hook: the last word on every connect.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable dial address", ErrBlocked)
	}
	if err := g.policy.CheckAddr(ap.Addr()); err != nil {
		return err
	}
	if g.onConnect != nil {
		g.onConnect(address)
	}
	return nil
}

// dialContext resolves addr itself (so the policy sees every answer) and dials the first
// allowed address.
func (g *guard) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("webhook dial: %w", err)
	}
	if err := g.policy.checkHostName(host); err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, ok := hostIP(host); ok {
		ips = []netip.Addr{ip}
	} else {
		lookupNet := "ip"
		switch network {
		case "tcp4":
			lookupNet = "ip4"
		case "tcp6":
			lookupNet = "ip6"
		}
		ips, err = g.resolver.LookupNetIP(ctx, lookupNet, host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	var firstErr error
	for _, ip := range ips {
		if err := g.policy.CheckAddr(ip); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		target := net.JoinHostPort(ip.Unmap().String(), port)
		if g.rewrite != nil {
			target = g.rewrite(target)
		}
		conn, err := g.dialer.DialContext(ctx, network, target)
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}
