package webhooks

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// W1: each SSRF form is refused at validation and, independently, at dial time; no
// connection reaches the loopback "metadata" server even though the test network routes
// every address to it; the delivery is recorded as failed(blocked).
func TestW1BlockedFormsNeverConnect(t *testing.T) {
	meta := newReceiver(t, nil)
	port := meta.port()
	forms := []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://[::ffff:169.254.169.254]/",
		"http://[fe80::1%25lo]/",
		"http://0.0.0.0:" + port + "/",
		"http://localhost:" + port + "/", // blocked under DenyPrivate only
		"http://2852039166/",
		"http://metadata.google.internal/",
		"http://meta-alias.test:" + port + "/", // a name resolving to 169.254.169.254
		"http://１６９.２５４.１６９.２５４:" + port + "/",
	}
	policies := map[string]Policy{
		"default":      {},
		"deny-private": {DenyPrivate: true},
		// Link-local stays blocked even when private ranges (and link-local itself) are
		// allow-listed.
		"allow-listed": {DenyPrivate: true, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"),
			netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("::/0")}},
	}
	for pname, policy := range policies {
		for _, form := range forms {
			if strings.Contains(form, "localhost") && !policy.DenyPrivate {
				continue // loopback is allowed without --webhook-deny-private
			}
			if strings.Contains(form, "localhost") && pname == "allow-listed" {
				continue // 127.0.0.0/8 is allow-listed there
			}
			t.Run(pname+" "+form, func(t *testing.T) {
				res := newFakeResolver()
				res.set("meta-alias.test", "169.254.169.254")
				var connects atomic.Int32
				opts := testOptions(&sleepRecorder{})
				opts.Policy = policy
				opts.Resolver = res
				opts.dialRewrite = func(string) string { return meta.addr() } // "the network routes it there"
				opts.onConnect = func(string) { connects.Add(1) }
				d := newTestDispatcher(t, nil, opts)
				cfg := rawCfg(form)

				// At validation (names that need DNS are only caught at dial time).
				verr := d.Register("j", []Config{cfg}, 0)
				if !strings.Contains(form, ".test") && !errors.Is(verr, ErrBlocked) {
					t.Errorf("Register = %v, want ErrBlocked", verr)
				}
				if verr == nil {
					d.Publish("j", Event{Type: "job.status"})
					waitFor(t, "blocked delivery", 30*time.Second, settled(d, "j", 1))
					if st := stats1(t, d, "j"); st.Blocked != 1 || st.Failed != 1 || st.Retries != 0 {
						t.Errorf("stats = %+v", st)
					}
				}

				// At dial time, skipping validation: the delivery path alone must refuse.
				s := d.newSink("j", 0, cfg, 0)
				defer s.cancel()
				s.deliver(&Event{ID: "x", Type: "job.status"})
				st := s.snapshot()
				if st.Failed != 1 || st.Blocked != 1 || st.Retries != 0 || st.Delivered != 0 {
					t.Errorf("dial-time stats = %+v", st)
				}
				if !strings.Contains(st.LastError, "blocked") {
					t.Errorf("last error %q does not name the block", st.LastError)
				}
				if connects.Load() != 0 || meta.connCount() != 0 || meta.count() != 0 {
					t.Fatalf("connect attempts %d, metadata server connections %d hits %d", connects.Load(), meta.connCount(), meta.count())
				}
			})
		}
	}

	// The harness can see a hit: an allowed public name routed to the same server lands.
	t.Run("control: allowed address reaches the server", func(t *testing.T) {
		res := newFakeResolver()
		res.set("public.test", "203.0.113.10")
		opts := testOptions(&sleepRecorder{})
		opts.Resolver = res
		opts.dialRewrite = func(string) string { return meta.addr() }
		d := newTestDispatcher(t, nil, opts)
		if err := d.Register("j", []Config{rawCfg("http://public.test:" + port + "/")}, 0); err != nil {
			t.Fatal(err)
		}
		d.Publish("j", Event{Type: "job.status"})
		waitFor(t, "delivery", 30*time.Second, settled(d, "j", 1))
		if st := stats1(t, d, "j"); st.Delivered != 1 || meta.count() != 1 {
			t.Fatalf("stats %+v hits %d", st, meta.count())
		}
	})
}

// W2: a redirect (302, and the other redirect codes) is not followed; the delivery is
// recorded with its status and not retried; the redirect target gets nothing.
func TestW2RedirectNotFollowed(t *testing.T) {
	admin := newReceiver(t, nil)
	for _, code := range []int{http.StatusFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		hook := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://"+admin.addr()+"/admin", code)
		})
		d := newTestDispatcher(t, nil, testOptions(&sleepRecorder{}))
		if err := d.Register("j", []Config{rawCfg(hook.srv.URL + "/hook")}, 0); err != nil {
			t.Fatal(err)
		}
		d.Publish("j", Event{Type: "training.checkpoint"})
		waitFor(t, "delivery", 30*time.Second, settled(d, "j", 1))
		st := stats1(t, d, "j")
		if st.Failed != 1 || st.LastStatus != code || st.Retries != 0 || !strings.Contains(st.LastError, "redirects are not followed") {
			t.Errorf("%d: stats = %+v", code, st)
		}
		if hook.count() != 1 {
			t.Errorf("%d: hook hits %d", code, hook.count())
		}
	}
	if admin.count() != 0 || admin.connCount() != 0 {
		t.Errorf("redirect target hits %d conns %d", admin.count(), admin.connCount())
	}
}

// W3: DNS rebinding. Every delivery resolves afresh; when the answer turns into a blocked
// address the dial is refused.
func TestW3DNSRebinding(t *testing.T) {
	t.Run("allowed then metadata", func(t *testing.T) {
		rc := newReceiver(t, nil)
		res := newFakeResolver()
		res.set("rebind.test", "127.0.0.1", "169.254.169.254")
		var connects atomic.Int32
		opts := testOptions(&sleepRecorder{})
		opts.Resolver = res
		// Were 169.254.169.254 dialed, the test network would deliver it to rc.
		opts.dialRewrite = func(a string) string { return net.JoinHostPort("127.0.0.1", rc.port()) }
		opts.onConnect = func(string) { connects.Add(1) }
		d := newTestDispatcher(t, nil, opts)
		if err := d.Register("j", []Config{rawCfg("http://rebind.test:" + rc.port() + "/hook")}, 0); err != nil {
			t.Fatal(err)
		}
		d.Publish("j", Event{Seq: 1, Type: "job.status"})
		d.Publish("j", Event{Seq: 2, Type: "job.status"})
		waitFor(t, "2 outcomes", 30*time.Second, settled(d, "j", 2))
		st := stats1(t, d, "j")
		if st.Delivered != 1 || st.Blocked != 1 || rc.count() != 1 || connects.Load() != 1 {
			t.Errorf("stats %+v hits %d connects %d", st, rc.count(), connects.Load())
		}
		if res.lookups("rebind.test") != 2 {
			t.Errorf("lookups = %d, want one per delivery", res.lookups("rebind.test"))
		}
	})
	t.Run("deny-private: allowed then loopback", func(t *testing.T) {
		rc := newReceiver(t, nil)
		res := newFakeResolver()
		res.set("rebind.test", "127.0.0.1", "127.0.0.2")
		opts := testOptions(&sleepRecorder{})
		opts.Resolver = res
		opts.Policy = Policy{DenyPrivate: true, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
		opts.dialRewrite = func(a string) string { return net.JoinHostPort("127.0.0.1", rc.port()) }
		d := newTestDispatcher(t, nil, opts)
		if err := d.Register("j", []Config{rawCfg("http://rebind.test:" + rc.port() + "/")}, 0); err != nil {
			t.Fatal(err)
		}
		d.Publish("j", Event{Seq: 1, Type: "job.status"})
		d.Publish("j", Event{Seq: 2, Type: "job.status"})
		waitFor(t, "2 outcomes", 30*time.Second, settled(d, "j", 2))
		if st := stats1(t, d, "j"); st.Delivered != 1 || st.Blocked != 1 || rc.count() != 1 {
			t.Errorf("stats %+v hits %d", st, rc.count())
		}
	})
	// The Control hook checks the address the socket connects to, not what the resolver
	// said: here resolution yields an allowed address but the connect goes to loopback.
	t.Run("control hook sees the real connect address", func(t *testing.T) {
		rc := newReceiver(t, nil)
		res := newFakeResolver()
		res.set("public.test", "203.0.113.7")
		var connects atomic.Int32
		opts := testOptions(&sleepRecorder{})
		opts.Resolver = res
		opts.Policy = Policy{DenyPrivate: true}
		opts.dialRewrite = func(string) string { return rc.addr() }
		opts.onConnect = func(string) { connects.Add(1) }
		d := newTestDispatcher(t, nil, opts)
		if err := d.Register("j", []Config{rawCfg("http://public.test:" + rc.port() + "/")}, 0); err != nil {
			t.Fatal(err)
		}
		d.Publish("j", Event{Type: "job.status"})
		waitFor(t, "outcome", 30*time.Second, settled(d, "j", 1))
		if st := stats1(t, d, "j"); st.Blocked != 1 || rc.connCount() != 0 || connects.Load() != 0 {
			t.Errorf("stats %+v conns %d connects %d", st, rc.connCount(), connects.Load())
		}
	})
}
