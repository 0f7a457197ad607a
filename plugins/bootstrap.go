package plugins

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// BootstrapFile is where a trainer publishes, in its job directory, the address it
// listens on once it does (like a containerd shim's address file): a daemon that died
// between launching the trainer and recording it reattaches through this file instead of
// killing the trainer (docs/architecture.md §8).
const BootstrapFile = "bootstrap.json"

// EnvJobNonce carries a launch's nonce into the trainer's environment: the daemon finds
// the trainer's processes by it, and the trainer repeats it in its bootstrap file.
const EnvJobNonce = "SIMPLETUNER_JOB_NONCE"

// bootstrapVersion is the version of Bootstrap this package writes and reads.
const bootstrapVersion = 1

// Bootstrap is the content of BootstrapFile.
type Bootstrap struct {
	Version int    `json:"version"`
	Network string `json:"network"` // "unix" or "tcp"
	Addr    string `json:"addr"`
	PID     int    `json:"pid"`
	// ProcStart is the trainer's /proc/<pid>/stat starttime (clock ticks), when readable.
	ProcStart uint64 `json:"proc_start,omitempty"`
	// Nonce is the launch's nonce (EnvJobNonce): a bootstrap file of an older launch in
	// the same job directory does not match the launch the daemon recorded.
	Nonce string `json:"nonce"`
	// ProtocolVersion is the plugin protocol the trainer speaks.
	ProtocolVersion int `json:"protocol_version"`
}

// ReadBootstrap reads dir's bootstrap file; fs.ErrNotExist when the trainer has not
// published one (yet).
func ReadBootstrap(dir string) (Bootstrap, error) {
	var b Bootstrap
	raw, err := os.ReadFile(filepath.Join(dir, BootstrapFile))
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, fmt.Errorf("%s: %w", BootstrapFile, err)
	}
	if b.Version != bootstrapVersion {
		return b, fmt.Errorf("%s: version %d is not understood (want %d)", BootstrapFile, b.Version, bootstrapVersion)
	}
	if b.PID <= 0 || b.Addr == "" || (b.Network != "unix" && b.Network != "tcp") {
		return b, fmt.Errorf("%s: incomplete (pid %d, %s %q)", BootstrapFile, b.PID, b.Network, b.Addr)
	}
	return b, nil
}

// writeBootstrap writes b into dir atomically.
func writeBootstrap(dir string, b Bootstrap) error {
	raw, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, BootstrapFile), append(raw, '\n'))
}

// parseHandshake reads go-plugin's handshake line ("core|app|network|addr|protocol|…").
func parseHandshake(line string) (network, addr string, appVersion int, err error) {
	parts := strings.Split(strings.TrimSpace(line), "|")
	if len(parts) < 5 {
		return "", "", 0, fmt.Errorf("handshake line %q: too few fields", line)
	}
	appVersion, err = strconv.Atoi(parts[1])
	if err != nil {
		return "", "", 0, fmt.Errorf("handshake line %q: protocol version: %w", line, err)
	}
	if parts[2] == "" || parts[3] == "" {
		return "", "", 0, errors.New("handshake line without an address")
	}
	return parts[2], parts[3], appVersion, nil
}

// publishBootstrap passes what go-plugin writes on stdout through to out and, from its
// handshake line (the first), writes the bootstrap file into dir. go-plugin's ServeConfig
// does not expose its listener's address; its handshake on stdout is the documented
// place where it says it. It runs until in ends.
func publishBootstrap(in io.Reader, out io.Writer, dir, nonce string, procStart func() uint64, warn func(error)) {
	r := bufio.NewReader(in)
	line, err := r.ReadString('\n')
	// The file first, then the line: once the daemon has the handshake, the file exists.
	if err == nil {
		if network, addr, v, perr := parseHandshake(line); perr != nil {
			warn(perr)
		} else if werr := writeBootstrap(dir, Bootstrap{Version: bootstrapVersion, Network: network, Addr: addr,
			PID: os.Getpid(), ProcStart: procStart(), Nonce: nonce, ProtocolVersion: v}); werr != nil {
			warn(fmt.Errorf("write %s: %w", BootstrapFile, werr))
		}
	}
	if line != "" {
		_, _ = io.WriteString(out, line)
	}
	_, _ = io.Copy(out, r)
}

// selfStart reads this process's start time from /proc/self/stat (0 when unreadable).
func selfStart() uint64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
