package plugins

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// LaunchConfig says how to start a trainer process.
type LaunchConfig struct {
	Path string   // the trainer binary
	Args []string // its arguments
	// Env is the trainer's whole environment: the daemon's own is not inherited, so
	// secrets in it (API keys, tokens) never reach a trainer by accident.
	Env []string
	// Dir is the working directory.
	Dir string
	// SocketDir is where the plugin socket is created; it must outlive the daemon (not a
	// PrivateTmp or tmp-cleaned directory) so a restarted daemon can reattach.
	SocketDir string
	// StartTimeout bounds the handshake (default 30 s).
	StartTimeout time.Duration
	Logger       hclog.Logger
}

// Client is the daemon's handle on one trainer process.
type Client struct {
	Trainer
	pc *plugin.Client
	// cmd and stderr are set for a trainer this process launched (nil after Reattach):
	// its wait status and what it printed on stderr say how it ended.
	cmd    *exec.Cmd
	stderr *tailBuffer
}

// Launch starts a trainer in its own session (setsid), so signals to the daemon's process
// group, and the daemon's death, leave it running.
func Launch(cfg LaunchConfig) (*Client, error) {
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.Env = cfg.Env
	cmd.Dir = cfg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	// Keep the tail of what the trainer prints on stderr: a binary that cannot start (the
	// CUDA trainer on a machine without a driver) says why there, and so does one that
	// crashes (a Go panic or fatal error, a CUDA error).
	tail := &tailBuffer{max: StderrTailBytes}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: Handshake(),
		Plugins:         PluginSet(nil),
		Cmd:             cmd,
		Stderr:          tail,
		// What the trainer writes to os.Stderr after the handshake (go-plugin's server
		// points it at a stream of its own) belongs to the same tail.
		SyncStderr:       tail,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		SkipHostEnv:      true,
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: cfg.SocketDir},
		StartTimeout:     cfg.StartTimeout,
		Logger:           log,
	})
	c, err := dispense(pc)
	if err != nil {
		if out := strings.TrimSpace(tail.String()); out != "" {
			return nil, fmt.Errorf("%w; the trainer said: %s", err, out)
		}
		return nil, err
	}
	c.cmd, c.stderr = cmd, tail
	return c, nil
}

// StderrTailBytes is how much of a trainer's stderr the daemon keeps: the end of it.
const StderrTailBytes = 4 << 10

// tailBuffer keeps the last max bytes written to it, and the first line that starts a Go
// panic or fatal error (its message is at the top, above a stack that may not fit). mu
// guards the rest.
type tailBuffer struct {
	mu       sync.Mutex
	max      int
	buf      []byte
	line     []byte // the line being written, until its newline (bounded by max)
	headline string
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	if t.headline != "" {
		return len(p), nil
	}
	for _, b := range p {
		if b != '\n' {
			if len(t.line) < t.max {
				t.line = append(t.line, b)
			}
			continue
		}
		if l := string(t.line); strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			t.headline = l
			t.line = nil
			break
		}
		t.line = t.line[:0]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// Stderr returns what a trainer this process launched printed on stderr: the first line
// of a Go panic or fatal error, if there was one, and the last StderrTailBytes. Both are
// empty for a reattached trainer (its stderr went to the daemon that launched it).
func (c *Client) Stderr() (headline, tail string) {
	if c.stderr == nil {
		return "", ""
	}
	c.stderr.mu.Lock()
	defer c.stderr.mu.Unlock()
	return c.stderr.headline, string(c.stderr.buf)
}

// ExitStatus returns the wait status of a trainer this process launched once it has been
// reaped; ok is false while it runs and for a reattached trainer (the daemon is not its
// parent, so the kernel tells it nothing).
func (c *Client) ExitStatus() (ws syscall.WaitStatus, ok bool) {
	if c.cmd == nil || !c.pc.Exited() {
		return 0, false
	}
	// Exited is set under go-plugin's lock after cmd.Wait returned, so ProcessState is
	// complete here.
	st := c.cmd.ProcessState
	if st == nil {
		return 0, false
	}
	ws, ok = st.Sys().(syscall.WaitStatus)
	return ws, ok
}

// Attachment is what the daemon persists to find a trainer again after a restart.
type Attachment struct {
	Network string `json:"network"`
	Addr    string `json:"addr"`
	PID     int    `json:"pid"`
}

// Attachment returns the persistable address of the trainer.
func (c *Client) Attachment() (Attachment, error) {
	rc := c.pc.ReattachConfig()
	if rc == nil || rc.Addr == nil {
		return Attachment{}, fmt.Errorf("%w: no address", ErrTrainerGone)
	}
	return Attachment{Network: rc.Addr.Network(), Addr: rc.Addr.String(), PID: rc.Pid}, nil
}

// Reattach connects to a trainer a previous daemon launched. It does not prove identity:
// call Status and compare the nonce before trusting it.
func Reattach(a Attachment, log hclog.Logger) (*Client, error) {
	var addr net.Addr
	switch a.Network {
	case "unix":
		addr = &net.UnixAddr{Name: a.Addr, Net: "unix"}
	case "tcp":
		ta, err := net.ResolveTCPAddr("tcp", a.Addr)
		if err != nil {
			return nil, err
		}
		addr = ta
	default:
		return nil, fmt.Errorf("%w: unknown network %q", ErrTrainerGone, a.Network)
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake(),
		Plugins:          PluginSet(nil),
		Reattach:         &plugin.ReattachConfig{Protocol: plugin.ProtocolGRPC, ProtocolVersion: ProtocolVersion, Addr: addr, Pid: a.PID},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           log,
	})
	return dispense(pc)
}

func dispense(pc *plugin.Client) (*Client, error) {
	rpc, err := pc.Client()
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("%w: %w", ErrTrainerGone, err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("%w: dispense: %w", ErrTrainerGone, err)
	}
	t, ok := raw.(Trainer)
	if !ok {
		pc.Kill()
		return nil, errors.New("plugin does not implement the trainer interface")
	}
	return &Client{Trainer: t, pc: pc}, nil
}

// Shutdown asks the trainer process to exit (gracefully, then by force) and releases the
// connection. Use it once the job has ended and its events are stored.
func (c *Client) Shutdown() { c.pc.Kill() }

// QueryInfo launches the trainer of cfg, asks for its Info and shuts it down again: how
// the daemon and the CLI learn which model families an installed trainer trains. It is
// the same launch a job gets (so a trainer answers as it would for a job), and it needs
// nothing of a trainer beyond the contract. ctx bounds the Info call, cfg.StartTimeout
// the start.
func QueryInfo(ctx context.Context, cfg LaunchConfig) (Info, error) {
	c, err := Launch(cfg)
	if err != nil {
		return Info{}, err
	}
	defer c.Shutdown()
	info, err := c.Info(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("trainer info: %w", err)
	}
	return info, nil
}

// Exited reports whether a trainer this daemon launched has exited (always false for a
// reattached one: the daemon is not its parent and checks /proc instead).
func (c *Client) Exited() bool { return c.pc.Exited() }
