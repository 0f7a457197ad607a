package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sentinel errors of Run.
var (
	// ErrTimeout: the script ran past its timeout and its process group was killed.
	ErrTimeout = errors.New("hooks: script timed out")
	// ErrFailed: the script could not be started or exited unsuccessfully.
	ErrFailed = errors.New("hooks: script failed")
)

// Defaults of RunOptions.
const (
	DefaultTimeout   = 30 * time.Minute
	DefaultMaxOutput = 64 << 10
	defaultPath      = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// RunOptions tune Run. Zero values take the defaults.
type RunOptions struct {
	// Timeout bounds the whole run; the process group is killed when it expires.
	Timeout time.Duration
	// MaxOutput caps the bytes of combined stdout and stderr kept; the rest is dropped.
	MaxOutput int
	// Dir is the working directory ("" = the caller's).
	Dir string
	// Values are the placeholder values; each is exported as ST_<NAME> (upper case).
	Values map[string]string
}

// Result is what a finished script left behind.
type Result struct {
	ExitCode  int // -1 when killed by a signal or never started
	Output    []byte
	Truncated bool
	Duration  time.Duration
}

// Env returns a hook's whole environment: PATH, HOME and LANG from the parent (PATH falls back
// to a standard list) and ST_<NAME>=value for every placeholder value, sorted. Nothing else
// of the parent's environment (API keys, tokens) reaches a hook.
func Env(values map[string]string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := []string{"PATH=" + path}
	for _, k := range []string{"HOME", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	var st []string
	for k, v := range values {
		st = append(st, "ST_"+strings.ToUpper(k)+"="+v)
	}
	sort.Strings(st)
	return append(env, st...)
}

// cappedBuffer keeps the first max bytes written to it; it is shared by stdout and stderr.
type cappedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - c.buf.Len()
	if room < len(p) {
		c.truncated = true
		if room > 0 {
			c.buf.Write(p[:room])
		}
		return len(p), nil // keep the child writing; a broken pipe would change its behaviour
	}
	c.buf.Write(p)
	return len(p), nil
}

// Run executes argv (no shell) in a new process group and waits for it. argv[0] is opened
// and checked again as CheckExecutable checked it at submission (openProgram), and the
// file so opened is what runs, by its descriptor: a script swapped or made unsafe since
// the check is refused (ErrFailed wrapping ErrUnsafeExecutable), never run. A #! script
// therefore sees /proc/self/fd/3 as its own name ($0); its arguments are unchanged.
// When ctx ends or the timeout expires, the whole group is killed (SIGKILL), so children
// the script left behind die too. A non-zero exit wraps ErrFailed, a timeout ErrTimeout;
// the Result holds the capped output in every case.
func Run(ctx context.Context, argv []string, o RunOptions) (Result, error) {
	if len(argv) == 0 || argv[0] == "" {
		return Result{ExitCode: -1}, fmt.Errorf("%w: empty command", ErrFailed)
	}
	prog, err := openProgram(argv[0])
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%w: not run, it does not pass the check made at submission: %w", ErrFailed, err)
	}
	defer prog.Close()
	return runProgram(ctx, prog, argv, o)
}

// runProgram runs the opened program prog with argv (argv[0] only names it).
func runProgram(ctx context.Context, prog *os.File, argv []string, o RunOptions) (Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = DefaultMaxOutput
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	out := &cappedBuffer{max: o.MaxOutput}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Path = programPath // argv[0] stays the script's name, for ps
	cmd.ExtraFiles = []*os.File{prog}
	cmd.Dir = o.Dir
	cmd.Env = Env(o.Values)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group id is the child's pid (Setpgid with Pgid 0).
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// Grandchildren holding the output pipes must not keep Wait blocked forever.
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	res := Result{ExitCode: -1, Duration: time.Since(start)}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	out.mu.Lock()
	res.Output, res.Truncated = append([]byte(nil), out.buf.Bytes()...), out.truncated
	out.mu.Unlock()
	switch {
	case err == nil:
		return res, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("%w after %s: %s", ErrTimeout, o.Timeout, argv[0])
	default:
		return res, fmt.Errorf("%w: %s: %w", ErrFailed, argv[0], err)
	}
}
