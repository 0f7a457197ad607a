package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io/fs"
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

	badger "github.com/dgraph-io/badger/v4"

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
	base   string
	stderr *syncBuffer
	done   chan error
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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs `simpletuner server` with SIMPLETUNER_HOME=home on a free loopback port.
func start(t *testing.T, home string, extra ...string) *proc {
	t.Helper()
	return startEnv(t, home, nil, extra...)
}

// startEnv is start with extra environment variables for the daemon.
func startEnv(t *testing.T, home string, env []string, extra ...string) *proc {
	t.Helper()
	port := freePort(t)
	args := append([]string{"server", "--host", "127.0.0.1", "--port", fmt.Sprint(port)}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asDaemon+"=1", "SIMPLETUNER_HOME="+home, "SIMPLETUNER_STATE_DIR=", "SIMPLETUNER_CONFIG_DIR="+filepath.Join(home, "config"))
	cmd.Env = append(cmd.Env, env...)
	d := &proc{t: t, cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = d.stderr
	cmd.Stdout = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-d.done
		}
		killTrainersUnder(home)
	})
	scheme := "http"
	if strings.Contains(strings.Join(extra, " "), "--ssl") {
		scheme = "https"
	}
	d.base = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
	return d
}

// waitReady polls /health until the daemon answers or exits.
func (d *proc) waitReady(c *http.Client) {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
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
	case <-time.After(15 * time.Second):
		d.t.Fatalf("daemon ignored SIGTERM for 15 s\n%s", d.stderr)
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

	err, took := d.stop()
	if err != nil || took > 10*time.Second {
		t.Fatalf("SIGTERM: exit %v after %v\n%s", err, took, d.stderr)
	}

	// Neither the raw files nor any decoded value holds a password or key in clear.
	secrets := []string{password, "their-password", key, key[3:]}
	err = filepath.WalkDir(home, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains a secret in clear", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(home, "state", "badger")).WithLogger(nil).WithReadOnly(false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	values := 0
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			values++
			for _, s := range secrets {
				if bytes.Contains(v, []byte(s)) || bytes.Contains(it.Item().Key(), []byte(s)) {
					t.Errorf("record %s holds a secret in clear", it.Item().Key())
				}
			}
		}
		return nil
	})
	if err != nil || values < 5 {
		t.Fatalf("scanned %d records: %v", values, err)
	}
	if strings.Contains(d.stderr.String(), password) || strings.Contains(d.stderr.String(), key) {
		t.Fatal("the log contains a secret")
	}
}

func TestNotifiesSystemdWhenReady(t *testing.T) {
	home := t.TempDir()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	d := start(t, home)
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "READY=1") {
		t.Fatalf("no READY=1 from the daemon: %q %v\n%s", buf[:n], err, d.stderr)
	}
	// READY comes after the listener is up: /health answers at once.
	if res, err := http.Get(d.base + "/health"); err != nil || res.StatusCode != 200 {
		t.Fatalf("READY before the port answers: %v", err)
	}
	d.stop()
	n, err = conn.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "STOPPING=1") {
		t.Fatalf("no STOPPING=1: %q %v", buf[:n], err)
	}
}

func TestSecondDaemonOnSameStateExitsAtOnce(t *testing.T) {
	home := t.TempDir()
	a := start(t, home)
	c := &http.Client{Timeout: 5 * time.Second}
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
	case <-time.After(5 * time.Second):
		t.Fatalf("second daemon still running after 5 s\n%s", b.stderr)
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
	a.waitReady(&http.Client{Timeout: 5 * time.Second})
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
	case <-time.After(10 * time.Second):
		t.Fatal("daemon started over a damaged state dir")
	}
}

func TestSelfSignedTLS(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, "--ssl")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
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
