package webhooks

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// W5: TLS is verified by default; ssl_no_verify needs job.hooks, works per webhook and
// leaves an audit line.
func TestW5TLSVerification(t *testing.T) {
	rc := startReceiver(t, true, nil) // self-signed (httptest's test certificate)

	if !NeedsHooksPermission([]Config{{Type: TypeRaw, URL: rc.srv.URL, SSLNoVerify: true}}) {
		t.Fatal("ssl_no_verify does not need job.hooks")
	}

	t.Run("verify on: TLS error, not retried", func(t *testing.T) {
		log, buf := testLogger()
		d := newTestDispatcher(t, log, testOptions(&sleepRecorder{}))
		if err := d.Register("j", []Config{rawCfg(rc.srv.URL + "/hook")}, 0); err != nil {
			t.Fatal(err)
		}
		before := rc.count()
		d.Publish("j", Event{Type: "job.status"})
		waitFor(t, "outcome", 30*time.Second, settled(d, "j", 1))
		st := stats1(t, d, "j")
		if st.Failed != 1 || st.Retries != 0 || st.Delivered != 0 {
			t.Errorf("stats %+v", st)
		}
		if !strings.Contains(st.LastError, "certificate") {
			t.Errorf("last error %q is not a TLS verification error", st.LastError)
		}
		if rc.count() != before {
			t.Errorf("the untrusted receiver got the event")
		}
		if strings.Contains(buf.String(), "TLS verification disabled") {
			t.Errorf("audit line for a verifying webhook")
		}
	})

	t.Run("ssl_no_verify: delivered and audited", func(t *testing.T) {
		log, buf := testLogger()
		d := newTestDispatcher(t, log, testOptions(&sleepRecorder{}))
		cfg := rawCfg(rc.srv.URL + "/hook/SECRETPATH")
		cfg.SSLNoVerify = true
		// A second, verifying webhook on the same job keeps verifying.
		if err := d.Register("j", []Config{cfg, rawCfg(rc.srv.URL + "/other")}, 0); err != nil {
			t.Fatal(err)
		}
		d.Publish("j", Event{Type: "job.status"})
		waitFor(t, "outcomes", 30*time.Second, func() bool {
			st := d.Stats("j")
			return st[0].Delivered+st[0].Failed == 1 && st[1].Delivered+st[1].Failed == 1
		})
		st := d.Stats("j")
		if st[0].Delivered != 1 || st[1].Failed != 1 {
			t.Errorf("stats %+v", st)
		}
		out := buf.String()
		if !strings.Contains(out, "TLS verification disabled") || !strings.Contains(out, `"job_id":"j"`) {
			t.Errorf("no audit line: %s", out)
		}
		if strings.Contains(out, "SECRETPATH") {
			t.Errorf("audit line leaks the URL path")
		}
	})

	t.Run("private CA via RootCAs: verified delivery", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AddCert(rc.srv.Certificate())
		opts := testOptions(&sleepRecorder{})
		opts.RootCAs = pool
		d := newTestDispatcher(t, nil, opts)
		if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
			t.Fatal(err)
		}
		d.Publish("j", Event{Type: "job.status"})
		waitFor(t, "outcome", 30*time.Second, settled(d, "j", 1))
		if st := stats1(t, d, "j"); st.Delivered != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}
