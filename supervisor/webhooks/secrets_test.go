package webhooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSecretSweep (docs/security.md row E6): webhook URLs with tokens in the path and
// query, auth tokens, and every failure mode that builds an error message from the URL
// (connection refused wraps the full URL in *url.Error; 500s; blocked; TLS; a rejected
// config) — nothing secret reaches the log, the stats or an error.
func TestSecretSweep(t *testing.T) {
	const (
		pathSecret    = "PATHSECRETabc123"
		querySecret   = "QUERYSECRETdef456"
		authSecret    = "st_AUTHSECRETghi789"
		discordSecret = "DISCORDSECRETjkl012"
		blockedSecret = "BLOCKEDSECRETmno345"
		tlsSecret     = "TLSSECRETpqr678"
	)
	secrets := []string{pathSecret, querySecret, authSecret, discordSecret, blockedSecret, tlsSecret}

	failing := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })
	closed := newReceiver(t, nil)
	closedURL := closed.srv.URL
	closed.srv.Close() // connection refused
	tlsRC := startReceiver(t, true, nil)

	log, buf := testLogger()
	res := newFakeResolver()
	res.set("internal.test", "169.254.169.254")
	opts := testOptions(&sleepRecorder{})
	opts.Resolver = res
	opts.MaxAttempts = 3
	d := newTestDispatcher(t, log, opts)

	raw := rawCfg(failing.srv.URL + "/hooks/" + pathSecret + "?token=" + querySecret)
	raw.AuthToken = authSecret
	refused := Config{Type: TypeDiscord, URL: closedURL + "/api/webhooks/999/" + discordSecret, LogLevel: "debug"}
	blocked := rawCfg("http://internal.test/hook/" + blockedSecret)
	blocked.AuthToken = authSecret
	insecure := rawCfg(tlsRC.srv.URL + "/x/" + tlsSecret)
	verifying := rawCfg(tlsRC.srv.URL + "/y/" + tlsSecret)
	insecure.SSLNoVerify = true
	cfgs := []Config{raw, refused, blocked, insecure, verifying}
	if err := d.Register("job", cfgs, 0); err != nil {
		t.Fatal(err)
	}
	d.Publish("job", Event{Type: "job.status", Title: "Running", Message: "job started"})
	d.Publish("job", Event{Type: "debug", Message: "a debug line"})
	waitFor(t, "all outcomes", 30*time.Second, func() bool {
		var n uint64
		for _, st := range d.Stats("job") {
			n += st.Delivered + st.Failed
		}
		return n >= 6 // raw, refused ×2 (debug level), blocked, insecure, verifying
	})
	stats := d.Stats("job")
	if stats[0].Failed != 1 || stats[1].Failed != 2 || stats[2].Blocked != 1 || stats[3].Delivered != 1 || stats[4].Failed != 1 {
		t.Fatalf("unexpected outcomes: %+v", stats)
	}

	// Errors from configuration and validation, and formatted configs.
	var errs []string
	_, err := Parse(`[{"webhook_type":"raw","callback_url":"gopher://h/` + pathSecret + `","auth_token":"` + authSecret + `"}]`)
	errs = append(errs, fmt.Sprint(err))
	_, err = Parse(`[{"webhook_type":"raw","callback_url":"http://u:` + pathSecret + `@h/"}]`)
	errs = append(errs, fmt.Sprint(err))
	err = Validate([]Config{rawCfg("http://169.254.169.254/" + pathSecret + "?t=" + querySecret)}, Policy{})
	errs = append(errs, fmt.Sprint(err))
	err = d.Register("other", []Config{rawCfg("http://metadata.google.internal/" + pathSecret)}, 0)
	errs = append(errs, fmt.Sprint(err))
	if err == nil || !errors.Is(err, ErrBlocked) {
		t.Errorf("metadata registration: %v", err)
	}
	log.Info("config", "webhook", raw, "all", cfgs)
	for _, c := range cfgs {
		errs = append(errs, fmt.Sprintf("%v %+v %#v %s", c, c, c, c))
	}
	statsJSON, _ := json.Marshal(d.Snapshot())

	out := buf.String() + "\n" + strings.Join(errs, "\n") + "\n" + string(statsJSON)
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("secret %s leaked:\n%s", s, out)
		}
	}
	// The sweep must have had something to sweep: failures were logged, with redacted
	// targets and the error classes intact.
	for _, want := range []string{"webhook delivery failed", "webhook delivery failed; retrying", "connection refused",
		"cloud metadata", "certificate", "receiver answered 500", `"target":"http://` + failing.addr() + `/***"`,
		"TLS verification disabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
