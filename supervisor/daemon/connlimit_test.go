package daemon

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"127.0.0.1", "127.0.0.1"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::"}, // one /64 is one client
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::"},
		{"::1", "::"},
	} {
		if got := addrKey(netip.MustParseAddr(tc.in)); got.String() != tc.want {
			t.Errorf("addrKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// Connections over the cap are closed at accept; closing one frees its slot; exempt
// peers are not counted.
func TestConnLimiter(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitConnsPerAddr(inner, 2, nil, slog.New(slog.DiscardHandler))
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()
	defer a.Close()
	defer b.Close()
	srvA, srvB := <-accepted, <-accepted
	extra := dial()
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || isTimeoutErr(err) {
		t.Fatalf("third connection was not closed: %v", err)
	}
	srvA.Close()
	srvA.Close() // twice: one slot back, not two
	d := dial()
	defer d.Close()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a freed slot was not reused")
	}
	over := dial()
	defer over.Close()
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil || isTimeoutErr(err) {
		t.Fatalf("a double Close gave back two slots: %v", err)
	}
	srvB.Close()

	exempt := limitConnsPerAddr(inner, 1, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, slog.New(slog.DiscardHandler)).(*connLimiter)
	if _, capped := exempt.key(&net.TCPAddr{IP: net.ParseIP("127.0.0.1")}); capped {
		t.Fatal("a trusted proxy is capped")
	}
	if _, capped := exempt.key(&net.TCPAddr{IP: net.ParseIP("192.0.2.1")}); !capped {
		t.Fatal("an ordinary peer is not capped")
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout() && err != io.EOF
}
