package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"simpletuner/internal/procenv"
	"simpletuner/plugins/kit"
	"simpletuner/plugins/kit/kittest"
)

// The test binary doubles as the daemon: with this variable set it runs main's logic, so
// the tests below start the real program as a separate process on loopback.
const asDaemon = "SIMPLETUNER_TEST_RUN_MAIN"

// asTrainer makes the test binary a fake trainer (the real plugin kit around a fake
// training loop); the daemon under test launches it with --trainer and --trainer-env.
const asTrainer = "SIMPLETUNER_TEST_RUN_TRAINER"

func TestMain(m *testing.M) {
	if os.Getenv(asTrainer) == "1" {
		kit.Main(kittest.FromEnv())
		return
	}
	if os.Getenv(asDaemon) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(m.Run())
}

// proc is a running simpletuner server process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	base   string // empty when the daemon exited before it listened
	stderr *syncBuffer
	done   chan error    // the exit, once (a test that reads it owns it)
	exited chan struct{} // closed on exit, for any number of watchers
	// ready is the daemon's first sd_notify message (READY=1 and the address it
	// listens on); notes carries the ones after it (STOPPING=1).
	ready string
	notes chan string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs `simpletuner server` with SIMPLETUNER_HOME=home on loopback port 0 and
// returns once it listens (d.base is its address) or has exited (d.base is empty; the
// exit is on d.done).
func start(t *testing.T, home string, extra ...string) *proc {
	t.Helper()
	return startEnv(t, home, nil, extra...)
}

// startEnv is start with extra environment variables for the daemon.
//
// The daemon picks its port (--port 0), so no other process can take it between a pick
// and the bind, and reports the address the way it reports readiness to systemd: the
// harness is its notify socket (an abstract unixgram socket of this test), and the
// READY=1 message carries "STATUS=listening on ADDR".
func startEnv(t *testing.T, home string, env []string, extra ...string) *proc {
	t.Helper()
	sock := fmt.Sprintf("@simpletuner-test-%d-%s", os.Getpid(), rand.Text())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--host", "127.0.0.1", "--port", "0"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asDaemon+"=1", "SIMPLETUNER_HOME="+home, "SIMPLETUNER_STATE_DIR=", "SIMPLETUNER_CONFIG_DIR="+filepath.Join(home, "config"))
	cmd.Env = append(cmd.Env, env...)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock)
	d := &proc{t: t, cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1), exited: make(chan struct{}), notes: make(chan string, 16)}
	cmd.Stderr = d.stderr
	cmd.Stdout = d.stderr
	if err := cmd.Start(); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	go func() {
		d.done <- cmd.Wait()
		close(d.exited)
	}()
	go func() {
		defer close(d.notes)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			d.notes <- string(buf[:n])
		}
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			cmd.Process.Kill()
			<-d.exited
		}
		conn.Close()
		killTrainersUnder(home)
	})
	scheme := "http"
	if strings.Contains(strings.Join(extra, " "), "--ssl") {
		scheme = "https"
	}
	deadline := time.After(60 * time.Second)
	for d.base == "" {
		select {
		case note := <-d.notes:
			if _, addr, ok := strings.Cut(note, "STATUS=listening on "); ok {
				d.ready = note
				d.base = scheme + "://" + strings.TrimSpace(addr)
			}
		case <-d.exited:
			return d
		case <-deadline:
			t.Fatalf("the daemon did not report its address within 60 s\n%s", d.stderr)
		}
	}
	return d
}

// waitReady polls /health until the daemon answers or exits.
func (d *proc) waitReady(c *http.Client) {
	d.t.Helper()
	if d.base == "" {
		d.t.Fatalf("daemon exited before it listened: %v\n%s", <-d.done, d.stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			d.t.Fatalf("daemon exited early: %v\n%s", err, d.stderr)
		default:
		}
		if res, err := c.Get(d.base + "/health"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("daemon not ready\n%s", d.stderr)
}

// stop sends SIGTERM and returns the exit error and how long the exit took.
func (d *proc) stop() (error, time.Duration) {
	t0 := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		return err, time.Since(t0)
	case <-time.After(60 * time.Second):
		d.t.Fatalf("daemon ignored SIGTERM for 60 s\n%s", d.stderr)
	}
	return nil, 0
}

func TestSeedFlowAgainstRealDaemonLeavesNoSecretsOnDisk(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	d.waitReady(c)

	const password = "your-secure-password"
	code, st := call(t, c, "GET", d.base+"/api/cloud/auth/setup/status", nil, nil)
	if code != 200 || st["needs_setup"] != true {
		t.Fatalf("setup status: %d %v", code, st)
	}
	if _, err := os.Stat(filepath.Join(home, "state", "bootstrap-token")); err != nil {
		t.Fatalf("no bootstrap token before setup: %v", err)
	}
	code, _ = call(t, c, "POST", d.base+"/api/cloud/auth/setup/first-admin", map[string]any{"email": "admin@example.com", "username": "admin", "password": password}, nil)
	if code != 200 {
		t.Fatalf("first admin: %d", code)
	}
	if _, err := os.Stat(filepath.Join(home, "state", "bootstrap-token")); !os.IsNotExist(err) {
		t.Fatalf("bootstrap token not removed after setup: %v", err)
	}
	code, _ = call(t, c, "POST", d.base+"/api/cloud/auth/login", map[string]any{"username": "admin", "password": password}, nil)
	if code != 200 {
		t.Fatalf("login: %d", code)
	}
	code, k := call(t, c, "POST", d.base+"/api/cloud/auth/api-keys", map[string]any{"name": "automation-key"}, nil)
	key, _ := k["key"].(string)
	if code != 200 || !strings.HasPrefix(key, "st_") {
		t.Fatalf("api key: %d %v", code, k)
	}
	anon := &http.Client{Timeout: 10 * time.Second}
	if code, _ := call(t, anon, "GET", d.base+"/api/training/status", nil, map[string]string{"X-API-Key": key}); code != 200 {
		t.Fatalf("status with key: %d", code)
	}
	if code, _ := call(t, anon, "GET", d.base+"/api/training/status", nil, nil); code != 401 {
		t.Fatalf("anonymous status: %d", code)
	}
	code, _ = call(t, c, "POST", d.base+"/api/users", map[string]any{"email": "researcher@example.com", "username": "researcher", "password": "their-password", "level_names": []string{"researcher"}}, nil)
	if code != 201 {
		t.Fatalf("create user: %d", code)
	}

	err, _ := d.stop()
	if err != nil {
		t.Fatalf("SIGTERM: exit %v\n%s", err, d.stderr)
	}

	// Neither the raw files nor any decoded value holds a password or key in clear.
	noSecretsUnder(t, home, d.stderr.String(), password, "their-password", key, key[3:])
}

// TestNotifiesSystemdWhenReady: the harness is the daemon's notify socket (see
// startEnv), as systemd would be.
func TestNotifiesSystemdWhenReady(t *testing.T) {
	d := start(t, t.TempDir())
	if !strings.Contains(d.ready, "READY=1") {
		t.Fatalf("no READY=1 from the daemon: %q\n%s", d.ready, d.stderr)
	}
	// READY comes after the listener is up: /health answers at once.
	if res, err := http.Get(d.base + "/health"); err != nil || res.StatusCode != 200 {
		t.Fatalf("READY before the port answers: %v", err)
	}
	d.stop()
	select {
	case note := <-d.notes:
		if !strings.Contains(note, "STOPPING=1") {
			t.Fatalf("after READY: %q, want STOPPING=1", note)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no STOPPING=1")
	}
}

func TestSecondDaemonOnSameStateExitsAtOnce(t *testing.T) {
	home := t.TempDir()
	a := start(t, home)
	c := &http.Client{Timeout: 30 * time.Second}
	a.waitReady(c)
	b := start(t, home)
	select {
	case err := <-b.done:
		if err == nil {
			t.Fatal("second daemon exited 0")
		}
		if !strings.Contains(b.stderr.String(), filepath.Join(home, "state")) {
			t.Fatalf("message does not name the state dir:\n%s", b.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("second daemon still running after 30 s\n%s", b.stderr)
	}
	if res, err := c.Get(a.base + "/health"); err != nil || res.StatusCode != 200 {
		t.Fatalf("first daemon hurt: %v", err)
	}
	if err, _ := a.stop(); err != nil {
		t.Fatalf("first daemon exit: %v", err)
	}
}

func TestDamagedStateRefusesToStart(t *testing.T) {
	home := t.TempDir()
	a := start(t, home)
	a.waitReady(&http.Client{Timeout: 30 * time.Second})
	if err, _ := a.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(home, "state", "badger")); err != nil {
		t.Fatal(err)
	}
	b := start(t, home)
	select {
	case err := <-b.done:
		if err == nil || !strings.Contains(b.stderr.String(), "damaged") {
			t.Fatalf("exit %v\n%s", err, b.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon started over a damaged state dir\n%s", b.stderr)
	}
}

func TestSelfSignedTLS(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, "--ssl")
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	d.waitReady(c)
	if _, err := os.Stat(filepath.Join(home, "state", "ssl", "server.crt")); err != nil {
		t.Fatalf("no generated certificate: %v", err)
	}
	req, _ := http.NewRequest("POST", d.base+"/api/auth/setup/first-admin", strings.NewReader(`{"email":"a@example.com","username":"admin","password":"long-enough"}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var secure bool
	for _, ck := range res.Cookies() {
		secure = secure || (ck.Name == "simpletuner_session" && ck.Secure)
	}
	if res.StatusCode != 200 || !secure {
		t.Fatalf("first admin over TLS: %d secure=%v", res.StatusCode, secure)
	}
}

func TestCLIHelpVersionAndBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	env := func(string) string { return "" }
	if code := run([]string{"version"}, &out, &errb, env); code != 0 || !strings.HasPrefix(out.String(), "simpletuner ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"server", "--help"}, &out, &errb, func(k string) string {
		if k == "SIMPLETUNER_HOME" {
			return "/srv/st"
		}
		return ""
	}); code != 0 {
		t.Fatalf("server --help: %d", code)
	}
	for _, want := range []string{"--host", "--port", "--config-dir", "--state-dir", "--datasets-dir", "--output-root", "--ssl", "--trusted-proxy", "/srv/st"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("server --help lacks %q", want)
		}
	}
	for _, args := range [][]string{{"bogus"}, {"server", "--port", "notanumber"}, {"server", "--trusted-proxy", "nonsense"}, {"server", "extra"}, {"server", "--log-level", "loud"}} {
		errb.Reset()
		if code := run(args, &out, &errb, env); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
	errb.Reset()
	if code := run([]string{"server"}, &out, &errb, func(k string) string {
		if k == "SIMPLETUNER_PORT" {
			return "99999"
		}
		return "/tmp"
	}); code != 2 || !strings.Contains(errb.String(), "SIMPLETUNER_PORT") {
		t.Errorf("bad SIMPLETUNER_PORT: %d %q", code, errb.String())
	}
}

// killTrainersUnder kills trainer processes whose job directory lies under home: they run
// in their own sessions and outlive the daemon by design, so a test must end them itself.
func killTrainersUnder(home string) {
	for _, pid := range trainersUnder(home) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// trainersUnder lists the live trainer processes whose job directory is under home.
func trainersUnder(home string) []int { return procenv.Find("SIMPLETUNER_JOB_DIR=" + home) }
