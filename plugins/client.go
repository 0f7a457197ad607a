package plugins

import (
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
	// Keep the tail of what the trainer prints before the handshake: a binary that cannot
	// start (the CUDA trainer on a machine without a driver) says why on stderr.
	tail := &tailBuffer{max: 4 << 10}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake(),
		Plugins:          PluginSet(nil),
		Cmd:              cmd,
		Stderr:           tail,
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
	return c, nil
}

// tailBuffer keeps the last max bytes written to it. mu guards buf.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
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

// Exited reports whether a trainer this daemon launched has exited (always false for a
// reattached one: the daemon is not its parent and checks /proc instead).
func (c *Client) Exited() bool { return c.pc.Exited() }
