package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Black-box tests of docs/security.md, rows H3 (pre-setup DNS rebinding; an administrator made by
// any route closes setup), H10 (last-administrator race; offline recovery), H11 (login
// lockout per account; unknown logins never logged) and H12 (slow bodies; connections per
// address).

func portOf(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

func setupStatus(t *testing.T, d *proc) map[string]any {
	t.Helper()
	code, st := call(t, &http.Client{Timeout: 10 * time.Second}, "GET", d.base+"/api/auth/setup/status", nil, nil)
	if code != 200 {
		t.Fatalf("setup status: %d %v", code, st)
	}
	return st
}

// Row H3: the reported reproduction. A page on http://attacker.example:PORT whose name
// now resolves to 127.0.0.1 posts same-origin to first-admin from the loopback peer:
// refused, and no administrator exists. The server's own loopback names still work.
func TestSecurityPreSetupDNSRebindingRefused(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	c := &http.Client{Timeout: 10 * time.Second}
	d.waitReady(c)
	port := portOf(t, d.base)
	evil := "attacker.example:" + port
	rebound := map[string]string{"Origin": "http://" + evil, "Sec-Fetch-Site": "same-origin"}
	admin := map[string]any{"email": "evil@example.com", "username": "evil", "password": "attacker-password"}

	code, body := hostCall(t, c, "POST", d.base+"/api/auth/setup/first-admin", evil, admin, rebound)
	if code == 200 || code < 400 {
		t.Fatalf("rebound first-admin from loopback: %d %v (the attacker's administrator was created)", code, body)
	}
	if detail := fmt.Sprint(body["detail"]); !strings.Contains(detail, "X-Setup-Token") || strings.Contains(detail, home) {
		t.Fatalf("refusal %q: want how to proceed, without the server's paths", detail)
	}
	if code, _ := hostCall(t, c, "GET", d.base+"/api/users", evil, nil, rebound); code != 403 && code != 401 {
		t.Fatalf("rebound GET /api/users before setup: %d, want 401 or 403", code)
	}
	if st := setupStatus(t, d); st["needs_setup"] != true || st["has_admin"] != false {
		t.Fatalf("after the rebound request: %v", st)
	}
	if _, err := os.Stat(filepath.Join(home, "state", "bootstrap-token")); err != nil {
		t.Fatalf("bootstrap token gone though setup is open: %v", err)
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		if code, _ := hostCall(t, c, "GET", d.base+"/api/users", host, nil, nil); code != 200 {
			t.Fatalf("loopback peer with Host %s before setup: %d", host, code)
		}
	}
	admin = map[string]any{"email": "a@example.com", "username": "admin", "password": "your-secure-password"}
	if code, body := hostCall(t, c, "POST", d.base+"/api/auth/setup/first-admin", "localhost:"+port, admin, nil); code != 200 {
		t.Fatalf("first-admin with Host localhost: %d %v", code, body)
	}
}

// Row H3, second part: an administrator created through POST /api/users before setup
// closes setup as first-admin does.
func TestSecurityAdminByUsersRouteClosesSetup(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	c := &http.Client{Timeout: 10 * time.Second}
	d.waitReady(c)
	code, body := call(t, c, "POST", d.base+"/api/users", map[string]any{"email": "boss@example.com", "username": "boss",
		"password": "your-secure-password", "level_names": []string{"admin"}}, nil)
	if code != 201 {
		t.Fatalf("create an admin before setup: %d %v", code, body)
	}
	if st := setupStatus(t, d); st["needs_setup"] != false || st["has_admin"] != true {
		t.Fatalf("setup still open after an administrator was created: %v", st)
	}
	if code, _ := call(t, c, "GET", d.base+"/api/users", nil, nil); code != 401 {
		t.Fatalf("anonymous loopback call to an admin route after setup: %d, want 401", code)
	}
	if _, err := os.Stat(filepath.Join(home, "state", "bootstrap-token")); !os.IsNotExist(err) {
		t.Fatalf("bootstrap token not removed: %v", err)
	}
	if code, _ := call(t, c, "POST", d.base+"/api/auth/setup/first-admin", map[string]any{"email": "x@example.com", "username": "late",
		"password": "your-secure-password"}, nil); code != 409 {
		t.Fatalf("first-admin after setup: %d, want 409", code)
	}
	loginMember(t, d, "boss", nil)
}

// Row H10: two administrators deactivating each other at the same moment never leave
// zero active administrators.
func TestSecurityMutualAdminDeactivationLeavesAnAdmin(t *testing.T) {
	d := start(t, t.TempDir())
	adminC := adminClient(t, d)
	a1 := loginMember(t, d, "admin", adminC)
	if code, body := call(t, adminC, "POST", d.base+"/api/users", map[string]any{"email": "admin2@example.com", "username": "admin2",
		"password": teamPassword, "level_names": []string{"admin"}}, nil); code != 201 {
		t.Fatalf("second admin: %d %v", code, body)
	}
	a2 := loginMember(t, d, "admin2", nil)
	c := &http.Client{Timeout: 30 * time.Second}
	users := func(key string) []map[string]any {
		req, _ := http.NewRequest("GET", d.base+"/api/users?include_inactive=true", nil)
		req.Header.Set("X-API-Key", key)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			return nil
		}
		var out []map[string]any
		json.NewDecoder(res.Body).Decode(&out)
		return out
	}
	admins := []member{a1, a2}
	for round := range 20 {
		var wg sync.WaitGroup
		go1 := make(chan struct{})
		codes := make([]int, 2)
		for i := range admins {
			me, other := admins[i], admins[1-i]
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-go1
				codes[i] = keyStatus(c, "POST", fmt.Sprintf("%s/api/users/%d/deactivate", d.base, int64(other.id)), me.key)
			}()
		}
		close(go1)
		wg.Wait()
		if codes[0] == 200 && codes[1] == 200 {
			t.Fatalf("round %d: both administrators deactivated each other: no active administrator is left", round)
		}
		var survivor *member
		var list []map[string]any
		for i := range admins {
			if list = users(admins[i].key); list != nil {
				survivor = &admins[i]
				break
			}
		}
		if survivor == nil {
			t.Fatalf("round %d (answers %v): no administrator can list users", round, codes)
		}
		active := 0
		for _, u := range list {
			if u["is_admin"] == true && u["is_active"] == true {
				active++
			}
		}
		if active < 1 {
			t.Fatalf("round %d: %d active administrators", round, active)
		}
		for _, m := range admins {
			if m.id != survivor.id {
				if code := keyStatus(c, "POST", fmt.Sprintf("%s/api/users/%d/activate", d.base, int64(m.id)), survivor.key); code != 200 {
					t.Fatalf("round %d: re-activate %s: %d", round, m.name, code)
				}
			}
		}
	}
}

// runCLI runs `simpletuner args…` (the test binary as main) with stdin, and returns its
// stdout, stderr and exit code.
func runCLI(t *testing.T, home, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asDaemon+"=1", "SIMPLETUNER_HOME="+home, "SIMPLETUNER_STATE_DIR=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// lockOutAdmins deactivates every administrator and wipes their password hashes directly
// in the stopped daemon's database: the state `admin reset` exists for.
func lockOutAdmins(t *testing.T, state string) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(state, "badger")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("users/id/"), PrefetchValues: true})
		defer it.Close()
		type rec struct {
			key []byte
			val []byte
		}
		var recs []rec
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			var u map[string]any
			if err := json.Unmarshal(v, &u); err != nil {
				return err
			}
			if u["is_admin"] != true {
				continue
			}
			u["is_active"], u["password_hash"] = false, ""
			b, _ := json.Marshal(u)
			recs = append(recs, rec{it.Item().KeyCopy(nil), b})
		}
		for _, r := range recs {
			if err := txn.Set(r.key, r.val); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("locked out %d admins: %v", n, err)
	}
}

// Row H10, recovery: with every administrator locked out, `simpletuner admin reset` run
// with the daemon stopped restores access (refusing while the daemon runs).
func TestSecurityAdminResetOffline(t *testing.T) {
	home := t.TempDir()
	state := filepath.Join(home, "state")
	d := start(t, home)
	adminC := adminClient(t, d)
	if code, body := call(t, adminC, "POST", d.base+"/api/users", map[string]any{"email": "admin2@example.com", "username": "admin2",
		"password": teamPassword, "level_names": []string{"admin"}}, nil); code != 201 {
		t.Fatalf("second admin: %d %v", code, body)
	}
	if err, _ := d.stop(); err != nil {
		t.Fatal(err)
	}
	lockOutAdmins(t, state)

	d = start(t, home)
	c := &http.Client{Timeout: 10 * time.Second}
	d.waitReady(c)
	if code, _ := call(t, c, "POST", d.base+"/api/auth/login", map[string]any{"username": "admin", "password": teamPassword}, nil); code != 401 {
		t.Fatalf("locked-out admin logged in: %d", code)
	}
	if _, errs, code := runCLI(t, home, "", "admin", "reset", "--state-dir", state); code != 1 || !strings.Contains(errs, "running daemon") {
		t.Fatalf("reset while the daemon runs: exit %d, %q", code, errs)
	}
	if err, _ := d.stop(); err != nil {
		t.Fatal(err)
	}

	const chosen = "rescued-password-1"
	out, errs, code := runCLI(t, home, chosen+"\n", "admin", "reset", "--state-dir", state, "--username", "admin", "--password-stdin")
	if code != 0 || strings.Contains(out, chosen) {
		t.Fatalf("reset admin: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	out, errs, code = runCLI(t, home, "", "admin", "reset", "--state-dir", state, "--username", "admin2")
	m := regexp.MustCompile(`Password \(shown once[^)]*\): (\S+)`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("reset admin2: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}

	d = start(t, home)
	d.waitReady(c)
	jar, _ := cookiejar.New(nil)
	ac := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if code, body := call(t, ac, "POST", d.base+"/api/auth/login", map[string]any{"username": "admin", "password": chosen}, nil); code != 200 {
		t.Fatalf("login with the reset password: %d %v", code, body)
	}
	if code, _ := call(t, ac, "GET", d.base+"/api/users", nil, nil); code != 200 {
		t.Fatalf("the reset account is not an administrator: %d", code)
	}
	if code, body := call(t, c, "POST", d.base+"/api/auth/login", map[string]any{"username": "admin2", "password": m[1]}, nil); code != 200 {
		t.Fatalf("login with the generated password: %d %v", code, body)
	}
}

// Row H11: failures by username and by e-mail count against one account. On the old
// code each name had its own five free failures, so ten failures split between the two
// never locked anything.
func TestSecurityLoginLockoutSharedByUsernameAndEmail(t *testing.T) {
	d := start(t, t.TempDir())
	adminC := adminClient(t, d)
	if code, body := call(t, adminC, "POST", d.base+"/api/users", map[string]any{"email": "carol@example.com", "username": "carol",
		"password": "carol-right-password", "level_names": []string{"researcher"}}, nil); code != 201 {
		t.Fatalf("create carol: %d %v", code, body)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	try := func(login, pw string) (int, int) {
		req, _ := http.NewRequest("POST", d.base+"/api/auth/login", strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, login, pw)))
		req.Header.Set("Content-Type", "application/json")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		ra, _ := strconv.Atoi(res.Header.Get("Retry-After"))
		return res.StatusCode, ra
	}
	names := []string{"carol", "carol@example.com"}
	for i, login := range []string{"carol", "carol", "carol", "carol@example.com", "carol@example.com", "carol@example.com"} {
		if code, _ := try(login, "wrong-password"); code != 401 {
			t.Fatalf("failure %d (%s): %d", i+1, login, code)
		}
	}
	// Six failures lock the account for 1 s, doubling with each further failure. Fail on,
	// alternating names, until the lock is long (4 s) enough that no scheduling delay can
	// outlast it before the next request; at most 4 per name, below the 5 free failures
	// a name had alone.
	for failures := 6; ; {
		code, retry := try(names[failures%2], "wrong-password")
		if code == 429 && retry >= 3 {
			break
		}
		switch code {
		case 401:
			failures++
		case 429:
			time.Sleep(100 * time.Millisecond) // a short lock: wait it out
		default:
			t.Fatalf("failure %d: %d", failures+1, code)
		}
		if failures == 10 {
			t.Fatalf("no lockout after %d failures split between username and e-mail", failures)
		}
	}
	for _, login := range names {
		if code, _ := try(login, "carol-right-password"); code != 429 {
			t.Fatalf("the right password by %s during the account's lock: %d, want 429", login, code)
		}
	}
}

// Row H11: a login string that names no account (a password typed into the username
// field) never reaches the log, at any level.
func TestSecurityUnknownLoginNeverLogged(t *testing.T) {
	d := start(t, t.TempDir(), "--log-level", "debug")
	adminClient(t, d)
	c := &http.Client{Timeout: 10 * time.Second}
	const typed = "hunter2-secret-xyz"
	for _, path := range []string{"/api/auth/login", "/api/cloud/auth/login"} {
		if code, _ := call(t, c, "POST", d.base+path, map[string]any{"username": typed, "password": "whatever-password"}, nil); code != 401 {
			t.Fatalf("%s: %d", path, code)
		}
	}
	if err, _ := d.stop(); err != nil {
		t.Fatal(err)
	}
	log := d.stderr.String()
	if !strings.Contains(log, "failed login") {
		t.Fatalf("no failed-login record at all:\n%s", log)
	}
	if strings.Contains(log, "hunter2") {
		t.Fatalf("the unknown login string is in the daemon's log:\n%s", log)
	}
}

// Row H12: a body trickled a byte a second to the public login route is cut off once the
// body deadline passes (--body-timeout 2s): the server answers 408 or closes.
func TestSecuritySlowBodyCutOff(t *testing.T) {
	d := start(t, t.TempDir(), "--body-timeout", "2s")
	d.waitReady(&http.Client{Timeout: 10 * time.Second})
	conn, err := net.Dial("tcp", strings.TrimPrefix(d.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/auth/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{", strings.TrimPrefix(d.base, "http://"))
	t0 := time.Now()
	ended := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(conn)
		ended <- fmt.Sprintf("%q (%v)", b, err)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// A generous bound (30x the deadline), not a latency check: the old code held the
	// connection for as long as the trickle went on (200 bytes: 200 s).
	bound := time.After(60 * time.Second)
	for {
		select {
		case got := <-ended:
			if !strings.Contains(got, " 408 ") && strings.Contains(got, "HTTP/1.1") {
				t.Fatalf("slow body answered %s, want 408 or a closed connection", got)
			}
			t.Logf("connection ended after %v: %s", time.Since(t0).Round(time.Millisecond), got)
			return
		case <-tick.C:
			conn.Write([]byte(" "))
		case <-bound:
			t.Fatalf("a body trickled a byte a second held the connection for %v", time.Since(t0).Round(time.Second))
		}
	}
}

// Row H12: one address holds at most --max-conns-per-addr connections; the ones over the
// cap are closed while the first ones keep working, and a closed one frees its slot.
func TestSecurityConnectionCapPerAddress(t *testing.T) {
	const limit = 4
	d := start(t, t.TempDir(), "--max-conns-per-addr", strconv.Itoa(limit))
	d.waitReady(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}})
	addr := strings.TrimPrefix(d.base, "http://")
	type hc struct {
		c net.Conn
		r *bufio.Reader
	}
	// health asks /health on the connection; 0 when the connection is closed.
	health := func(h hc) int {
		h.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(h.c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
			return 0
		}
		res, err := http.ReadResponse(h.r, nil)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	dial := func() hc {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return hc{c, bufio.NewReader(c)}
	}
	// The first `limit` connections are served. (waitReady's closed connections may take
	// a moment to give their slots back: poll.)
	var first []hc
	deadline := time.Now().Add(30 * time.Second)
	for len(first) < limit {
		h := dial()
		if health(h) == 200 {
			first = append(first, h)
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d connections served below the cap of %d", len(first), limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 3 {
		if code := health(dial()); code != 0 {
			t.Fatalf("connection %d beyond the cap of %d was served: %d", limit+i+1, limit, code)
		}
	}
	for i, h := range first {
		if code := health(h); code != 200 {
			t.Fatalf("connection %d within the cap: %d after the extra ones were refused", i+1, code)
		}
	}
	first[0].c.Close()
	deadline = time.Now().Add(30 * time.Second)
	for {
		if health(dial()) == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection did not free its slot")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Row H12: event streams have no body deadline: an SSE stream keeps delivering
// heartbeats well past --body-timeout.
func TestSecurityEventStreamOutlivesBodyDeadline(t *testing.T) {
	d := start(t, t.TempDir(), "--body-timeout", "1s", "--event-heartbeat", "300ms")
	c := adminClient(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	frames := openStream(t, ctx, c, d.base+"/api/events", nil)
	for f := range frames {
		if f.Name == "heartbeat" && time.Since(t0) > 3*time.Second {
			return
		}
	}
	t.Fatalf("the event stream ended after %v, within 3x the body deadline", time.Since(t0).Round(time.Millisecond))
}
