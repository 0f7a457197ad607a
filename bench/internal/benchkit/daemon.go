package benchkit

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Daemon is a simpletuner daemon a benchmark started.
type Daemon struct {
	Cmd    *exec.Cmd
	Base   string        // http://127.0.0.1:port
	exited chan struct{} // closed once Cmd was waited for
}

// StartDaemon runs `bin server` on 127.0.0.1:port with warnings-only logging, the
// home (and its config/ folder) as the daemon's own, and args added, and waits until it
// answers /health.
func StartDaemon(bin, home string, port int, args ...string) (*Daemon, error) {
	all := append([]string{"server", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--log-level", "warn"}, args...)
	cmd := exec.Command(bin, all...)
	cmd.Env = append(os.Environ(), "SIMPLETUNER_HOME="+home, "SIMPLETUNER_CONFIG_DIR="+filepath.Join(home, "config"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start daemon: %w", err)
	}
	d := &Daemon{Cmd: cmd, Base: fmt.Sprintf("http://127.0.0.1:%d", port), exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.exited) }()
	for range 400 {
		if res, err := http.Get(d.Base + "/health"); err == nil {
			res.Body.Close()
			return d, nil
		}
		select {
		case <-d.exited:
			return nil, fmt.Errorf("the daemon exited before answering")
		case <-time.After(25 * time.Millisecond):
		}
	}
	d.Stop()
	return nil, fmt.Errorf("the daemon did not answer %s/health within 10 s", d.Base)
}

// Stop ends the daemon with SIGTERM and waits for it.
func (d *Daemon) Stop() {
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	<-d.exited
}
