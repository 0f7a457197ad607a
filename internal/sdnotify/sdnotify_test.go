package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen binds a unixgram socket at addr and returns a function that reads
// one datagram (failing the test after a timeout).
func listen(t *testing.T, addr string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %q: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("read datagram: %v", err)
		}
		return string(buf[:n])
	}
}

func TestNotifySocketPath(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	recv := listen(t, sock)
	state := "READY=1\nSTATUS=listening on 127.0.0.1:8001"
	if err := NotifySocket(sock, state); err != nil {
		t.Fatalf("NotifySocket: %v", err)
	}
	if got := recv(); got != state {
		t.Fatalf("received %q, want %q", got, state)
	}
}

func TestNotifySocketAbstract(t *testing.T) {
	name := fmt.Sprintf("@simpletuner-sdnotify-test-%d", time.Now().UnixNano())
	recv := listen(t, name)
	if err := NotifySocket(name, Stopping); err != nil {
		t.Fatalf("NotifySocket(%q): %v", name, err)
	}
	if got := recv(); got != Stopping {
		t.Fatalf("received %q, want %q", got, Stopping)
	}
}

func TestNotifyFromEnv(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	recv := listen(t, sock)
	t.Setenv(EnvSocket, sock)
	sent, err := Notify(Ready)
	if err != nil || !sent {
		t.Fatalf("Notify = (%v, %v), want (true, nil)", sent, err)
	}
	if got := recv(); got != Ready {
		t.Fatalf("received %q, want %q", got, Ready)
	}
}

func TestNotifyUnsetEnv(t *testing.T) {
	t.Setenv(EnvSocket, "") // restores the caller's value afterwards
	sent, err := Notify(Ready)
	if sent || err != nil {
		t.Fatalf("Notify without %s = (%v, %v), want (false, nil)", EnvSocket, sent, err)
	}
	sent, err = Notifier{}.Notify(Ready)
	if sent || err != nil {
		t.Fatalf("zero Notifier.Notify = (%v, %v), want (false, nil)", sent, err)
	}
}

func TestNotifyBadSocket(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such.sock")
	for _, addr := range []string{missing, "relative.sock", "vsock:2:1234"} {
		sent, err := Notifier{Socket: addr}.Notify(Ready)
		if err == nil || sent {
			t.Errorf("Notify to %q = (%v, %v), want (false, error)", addr, sent, err)
			continue
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("error %q does not name the socket %q", err, addr)
		}
	}
	if err := NotifySocket("", Ready); !errors.Is(err, ErrEmptySocket) {
		t.Errorf("NotifySocket(\"\") = %v, want ErrEmptySocket", err)
	}
}

func TestNotifySocketNotAListener(t *testing.T) {
	// A stream socket at the path: the datagram connect must fail rather
	// than report success.
	sock := filepath.Join(t.TempDir(), "stream.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := NotifySocket(sock, Ready); err == nil {
		t.Fatal("NotifySocket to a stream socket succeeded, want an error")
	}
}
