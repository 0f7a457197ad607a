package webhooks

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	strict := Policy{DenyPrivate: true}
	tests := []struct {
		ip     string
		policy Policy
		class  string
	}{
		{"169.254.169.254", Policy{}, "cloud metadata"},
		{"169.254.0.1", Policy{}, "link-local"},
		{"::ffff:169.254.169.254", Policy{}, "cloud metadata"},
		{"::a9fe:a9fe", Policy{}, "cloud metadata"},        // IPv4-compatible
		{"64:ff9b::a9fe:a9fe", Policy{}, "cloud metadata"}, // NAT64
		{"2002:a9fe:a9fe::1", Policy{}, "cloud metadata"},  // 6to4
		{"fe80::1%eth0", Policy{}, "link-local"},
		{"fe80::1", Policy{DenyPrivate: true, Allow: []netip.Prefix{netip.MustParsePrefix("fe80::/10")}}, "link-local"},
		{"0.0.0.0", Policy{}, "unspecified"},
		{"0.1.2.3", Policy{}, "unspecified"},
		{"::", Policy{}, "unspecified"},
		{"ff02::1", Policy{}, "multicast"},
		{"239.1.1.1", Policy{}, "multicast"},
		{"100.100.100.200", Policy{}, "cloud metadata"},
		{"fd00:ec2::254", Policy{}, "cloud metadata"},
		{"127.0.0.1", Policy{}, ""},
		{"::1", Policy{}, ""},
		{"10.0.0.1", Policy{}, ""},
		{"127.0.0.1", strict, "loopback"},
		{"127.9.9.9", strict, "loopback"},
		{"::1", strict, "loopback"},
		{"::ffff:10.0.0.1", strict, "private"},
		{"fc00::1", strict, "unique-local"},
		{"198.18.0.1", strict, "benchmark"},
		{"2002:7f00:1::", strict, "loopback"},
		{"8.8.8.8", strict, ""},
		{"2001:4860:4860::8888", strict, ""},
		{"10.0.0.1", Policy{DenyPrivate: true, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			err := tc.policy.CheckAddr(netip.MustParseAddr(tc.ip))
			if tc.class == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), tc.class) {
				t.Fatalf("err = %v, want ErrBlocked %q", err, tc.class)
			}
		})
	}
	if err := (Policy{}).CheckAddr(netip.Addr{}); !errors.Is(err, ErrBlocked) {
		t.Errorf("zero address: %v", err)
	}
}

func TestHostIP(t *testing.T) {
	tests := []struct {
		host string
		want string // "" = not an IP
	}{
		{"2852039166", "169.254.169.254"},
		{"0xa9fea9fe", "169.254.169.254"},
		{"0XA9FEA9FE", "169.254.169.254"},
		{"0251.0376.0251.0376", "169.254.169.254"},
		{"0xa9.0xfe.0xa9.0xfe", "169.254.169.254"},
		{"169.254.43518", "169.254.169.254"},
		{"169.16689662", "169.254.169.254"},
		{"127.1", "127.0.0.1"},
		{"0", "0.0.0.0"},
		{"10.0.0.1.", "10.0.0.1"},
		{"[::1]", "::1"},
		{"::ffff:169.254.169.254", "::ffff:169.254.169.254"},
		{"fe80::1%lo", "fe80::1%lo"},
		{"4294967296", ""}, // > 32 bits
		{"256.1.1.1", ""},
		{"1.2.3.4.5", ""},
		{"08", ""}, // invalid octal
		{"example.com", ""},
		{"deadbeef", ""},
		{"0x", ""},
		{"", ""},
		{"1..2", ""},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			ip, ok := hostIP(tc.host)
			if tc.want == "" {
				if ok {
					t.Fatalf("parsed as %s", ip)
				}
				return
			}
			if !ok || ip.String() != tc.want {
				t.Fatalf("got %v %v, want %s", ip, ok, tc.want)
			}
		})
	}
}

// TestControlChecksTheConnectAddress: the Control hook is the last word, whatever
// resolution said.
func TestControlChecksTheConnectAddress(t *testing.T) {
	var connects []string
	g := newGuard(Policy{DenyPrivate: true}, newFakeResolver(), dialTimeout, nil, func(a string) { connects = append(connects, a) })
	for _, addr := range []string{"169.254.169.254:80", "127.0.0.1:80", "[::ffff:169.254.169.254]:80", "[fe80::1%lo]:80", "not-an-address"} {
		if err := g.control("tcp", addr, nil); !errors.Is(err, ErrBlocked) {
			t.Errorf("control(%s) = %v, want ErrBlocked", addr, err)
		}
	}
	if len(connects) != 0 {
		t.Fatalf("blocked addresses reached onConnect: %v", connects)
	}
	if err := g.control("tcp", "203.0.113.9:443", nil); err != nil {
		t.Fatalf("public address refused: %v", err)
	}
	if len(connects) != 1 {
		t.Fatalf("onConnect calls = %v", connects)
	}
}

func TestGuardDialBlocksNamesAndAnswers(t *testing.T) {
	res := newFakeResolver()
	res.set("meta.test", "169.254.169.254")
	res.set("loop.test", "127.0.0.1")
	connects := 0
	g := newGuard(Policy{DenyPrivate: true}, res, dialTimeout, nil, func(string) { connects++ })
	for _, addr := range []string{"meta.test:80", "loop.test:80", "metadata.google.internal:80", "localhost:80", "2852039166:80", "[::ffff:169.254.169.254]:80"} {
		_, err := g.dialContext(context.Background(), "tcp", addr)
		if !errors.Is(err, ErrBlocked) {
			t.Errorf("dial %s = %v, want ErrBlocked", addr, err)
		}
	}
	if connects != 0 {
		t.Fatalf("%d connects attempted", connects)
	}
	if _, err := g.dialContext(context.Background(), "tcp", "nxdomain.test:80"); err == nil || errors.Is(err, ErrBlocked) {
		t.Errorf("unknown host: %v", err)
	}
}
