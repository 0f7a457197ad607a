package daemon

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxConnsPerAddr is how many connections one client address may hold open at once
// unless --max-conns-per-addr says otherwise: room for a browser (6 per origin), a few
// event streams and scripts, not for a flood of idle or trickling connections.
const DefaultMaxConnsPerAddr = 64

// connLimiter wraps a listener so that each client address holds at most max connections
// at once; a connection over the cap is closed as soon as it is accepted (before TLS and
// before any request, so nothing is answered). Loopback is capped like any address: a
// local process can exhaust the daemon's descriptors as well as a remote one. Peers in
// exempt (trusted reverse proxies, which carry many clients on one address) are not
// capped: the proxy must limit its own clients (nginx limit_conn).
type connLimiter struct {
	net.Listener
	max    int
	exempt []netip.Prefix
	log    *slog.Logger

	// mu guards open (connections per address key) and warned (last refusal logged).
	mu     sync.Mutex
	open   map[netip.Addr]int
	warned time.Time
}

// limitConnsPerAddr returns ln capped at max connections per client address; max <= 0
// returns ln unchanged.
func limitConnsPerAddr(ln net.Listener, max int, exempt []netip.Prefix, log *slog.Logger) net.Listener {
	if max <= 0 {
		return ln
	}
	return &connLimiter{Listener: ln, max: max, exempt: exempt, log: log, open: map[netip.Addr]int{}}
}

// Accept returns the next connection within the cap, closing those over it.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, ok := l.key(c.RemoteAddr())
		if !ok {
			return c, nil
		}
		if l.take(key) {
			return &limitedConn{Conn: c, release: func() { l.release(key) }}, nil
		}
		c.Close()
	}
}

// key is the address a connection counts against: the peer's IPv4 address, or its IPv6
// /64 (one host commonly holds a whole /64, so single IPv6 addresses are free to mint).
// ok is false for peers that are not capped.
func (l *connLimiter) key(a net.Addr) (netip.Addr, bool) {
	ta, isTCP := a.(*net.TCPAddr)
	if !isTCP {
		return netip.Addr{}, false
	}
	ip, _ := netip.AddrFromSlice(ta.IP)
	ip = ip.Unmap()
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return netip.Addr{}, false
		}
	}
	return addrKey(ip), true
}

// addrKey is the counting key of a client address (see key).
func addrKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		return netip.PrefixFrom(ip.WithZone(""), 64).Masked().Addr()
	}
	return ip
}

func (l *connLimiter) take(key netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] >= l.max {
		if now := time.Now(); now.Sub(l.warned) > time.Minute {
			l.warned = now
			l.log.Warn("refusing connections: too many open from one address (--max-conns-per-addr); further refusals are not logged for a minute",
				"addr", key, "limit", l.max)
		}
		return false
	}
	l.open[key]++
	return true
}

func (l *connLimiter) release(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// limitedConn gives its slot back when closed, however often Close is called (the HTTP
// server and a hijacking WebSocket may both close it).
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
