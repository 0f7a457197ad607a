package plugins

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseHandshake(t *testing.T) {
	for _, c := range []struct {
		line          string
		network, addr string
		version       int
		err           bool
	}{
		{"1|1|unix|/run/st/plugin123|grpc|\n", "unix", "/run/st/plugin123", 1, false},
		{"1|2|tcp|127.0.0.1:4321|grpc||true", "tcp", "127.0.0.1:4321", 2, false},
		{"1|x|unix|/s|grpc|", "", "", 0, true},
		{"1|1|unix||grpc|", "", "", 0, true},
		{"hello world", "", "", 0, true},
	} {
		n, a, v, err := parseHandshake(c.line)
		if (err != nil) != c.err || n != c.network || a != c.addr || v != c.version {
			t.Errorf("parseHandshake(%q) = %q %q %d %v", c.line, n, a, v, err)
		}
	}
}

// TestPublishBootstrapWritesTheFileBeforePassingTheHandshakeOn: the handshake line and
// everything after it reach the daemon unchanged, and by the time the line is passed on
// the bootstrap file holds the trainer's address, pid and the launch's nonce.
func TestPublishBootstrapWritesTheFileBeforePassingTheHandshakeOn(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		if out.Len() == 0 {
			if _, err := ReadBootstrap(dir); err != nil {
				t.Errorf("handshake passed on before the bootstrap file was written: %v", err)
			}
		}
		return out.Write(p)
	})
	in := "1|1|unix|/run/st/plugin42|grpc|\nlater output\n"
	publishBootstrap(strings.NewReader(in), w, dir, "n0nce", func() uint64 { return 777 }, func(err error) { t.Error(err) })
	if out.String() != in {
		t.Fatalf("passed on %q, want %q", out.String(), in)
	}
	b, err := ReadBootstrap(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Bootstrap{Version: 1, Network: "unix", Addr: "/run/st/plugin42", PID: os.Getpid(), ProcStart: 777, Nonce: "n0nce", ProtocolVersion: 1}
	if b != want {
		t.Fatalf("bootstrap %+v, want %+v", b, want)
	}
}

func TestReadBootstrapRefusesWhatItCannotUse(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadBootstrap(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no file: %v", err)
	}
	for _, body := range []string{`{`, `{"version":2,"network":"unix","addr":"/s","pid":5}`, `{"version":1,"network":"unix","addr":"","pid":5}`,
		`{"version":1,"network":"udp","addr":"/s","pid":5}`, `{"version":1,"network":"unix","addr":"/s","pid":0}`} {
		os.WriteFile(filepath.Join(dir, BootstrapFile), []byte(body), 0o600)
		if _, err := ReadBootstrap(dir); err == nil {
			t.Errorf("%s was accepted", body)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ io.Writer = writerFunc(nil)
