package daemon

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"simpletuner/internal/safefile"
	"simpletuner/options"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/slurm"
)

// Config is everything the daemon needs to start. Defaults() fills it from the
// environment; flags override it.
type Config struct {
	Host string
	Port int

	// Home is the root of the default locations (SIMPLETUNER_HOME, ~/.simpletuner).
	Home        string
	ConfigDir   string // environments; default ./config so the tutorial's paths work
	StateDir    string // badger database, TLS material, bootstrap token
	DatasetsDir string // dataset uploads
	OutputRoot  string // relative --output_dir values resolve here
	CacheDir    string // the default root of dataloader caches (cache_dir*), with OutputRoot

	// AllowFileRoots are folders, besides ConfigDir, that files named by options
	// (data_backend_config, webhook_config, …) may be read from (--allow-file-root).
	AllowFileRoots []string
	// AllowDataRoots are folders, besides DatasetsDir, CacheDir and OutputRoot, that a
	// dataloader's instance_data_dir and cache_dir* may name (--allow-data-root).
	AllowDataRoots []string

	// MaxExtractBytes caps the uncompressed bytes one dataset zip upload may extract
	// (0: the datasets package's default, 10 GiB).
	MaxExtractBytes int64

	SSL     bool
	SSLKey  string
	SSLCert string

	// TrustedProxies may set X-Forwarded-For/-Proto.
	TrustedProxies []netip.Prefix
	// AllowedHosts are extra names by which a caller on this machine may address the
	// server before setup and act as the administrator (--allowed-host).
	AllowedHosts []string
	// BodyTimeout bounds reading a request body (0: 30 s; see api.Config.BodyTimeout).
	BodyTimeout time.Duration
	// MaxConnsPerAddr caps the connections one client address holds open at once
	// (0: DefaultMaxConnsPerAddr; negative: no cap).
	MaxConnsPerAddr int

	// ShutdownTimeout bounds the drain on SIGTERM.
	ShutdownTimeout time.Duration

	// Env, when set, is validated at start-up (the daemon refuses to start when it is
	// invalid) and trained once the server is ready.
	Env string
	// PluginsDir is where trainer binaries are looked for; default: next to the daemon.
	PluginsDir string
	// Trainer overrides the CPU trainer binary.
	Trainer string
	// TrainerEnv adds KEY=VALUE pairs to every trainer's environment.
	TrainerEnv []string
	// Failpoints names launch-sequence points where the daemon kills itself, for crash
	// tests (SIMPLETUNER_FAILPOINTS=launch.before_persist,…). Never set in production.
	Failpoints []string
	// HooksDir, when set, is the only directory hook scripts may be run from.
	HooksDir string
	// WebhookDenyPrivate refuses webhook targets on private and loopback addresses too.
	WebhookDenyPrivate bool
	// JobAttempts is how many times a crashed job is launched (1: no retry).
	JobAttempts int
	// StallTimeout fails a job whose trainer is silent this long (0: no watchdog).
	StallTimeout time.Duration
	// EventRetention and EventRetentionAge bound the stored events (0: the hub's
	// defaults, 100000 events and 7 days; negative: unbounded).
	EventRetention    int
	EventRetentionAge time.Duration
	// EventHeartbeat is the heartbeat (and credential re-check) interval of event
	// streams (0: 15 s).
	EventHeartbeat time.Duration
	// Part "schedule" (issue 17): the built-in maintenance schedules. JobRetentionAge
	// and JobRetentionCount delete ended jobs older than the age, keeping the newest
	// count (both 0, the default: every job is kept). MaintenanceSpec is the cron spec of
	// job retention, stale upload staging and orphaned sockets (default @hourly); event
	// retention runs every minute.
	JobRetentionAge   time.Duration
	JobRetentionCount int
	MaintenanceSpec   string

	// --- part "agent" (issue 16): the NVML library, for the server and `simpletuner worker` ---
	// NVMLLibrary is the NVML library both load to list the machine's GPUs (a path or a
	// soname; empty: gpu.DefaultNVMLLibrary), from SIMPLETUNER_NVML_LIBRARY or
	// --nvml-library; both pass it to gpu.Open.
	NVMLLibrary string

	// Slurm is the Slurm executor's cluster (target=slurm; part "slurm" of issue 16):
	// --slurm-* flags and SIMPLETUNER_SLURM_* variables (slurm.go).
	Slurm slurm.Config

	// Part "workers" (issue 16): remote workers. WorkerHeartbeatTimeout marks a worker
	// offline (and requeues its job) when its last heartbeat is older (0: 120 s);
	// PublicURL is the orchestrator URL put in workers' connection commands (empty: the
	// URL the administrator's request came to).
	WorkerHeartbeatTimeout time.Duration
	PublicURL              string
	// --- part "metrics" (issue 17): GET /metrics ---
	// MetricsToken, when set (SIMPLETUNER_METRICS_TOKEN or --metrics-token), lets a
	// scraper on another machine read GET /metrics with "Authorization: Bearer <token>";
	// without it only callers on this machine may. At least MinMetricsTokenLen characters.
	MetricsToken string
}

// MinMetricsTokenLen is the shortest scrape token accepted: a shorter one could be
// guessed by a scraper that may try as often as it likes.
const MinMetricsTokenLen = 16

// ConfigsOptions are the configs service's options for this config, with the roots of
// docs/security.md: files named by options are read from ConfigDir and AllowFileRoots;
// a dataloader's instance_data_dir lies under DatasetsDir, its cache_dir* under CacheDir
// or OutputRoot, either also under AllowDataRoots.
func ConfigsOptions(c *Config, reg *options.Registry, st configs.Settings) configs.Options {
	return configs.Options{Dir: c.ConfigDir, Registry: reg, Settings: st, OutputRoot: c.OutputRoot, FileRoots: c.AllowFileRoots,
		Folders: &configs.Folders{
			Data:  safefile.New(append([]string{c.DatasetsDir}, c.AllowDataRoots...)...),
			Cache: safefile.New(append([]string{c.CacheDir, c.OutputRoot}, c.AllowDataRoots...)...),
		}}
}

// trainerPassthrough are the variables of the daemon's environment a trainer inherits;
// nothing else is passed on, so credentials in the daemon's environment stay there. The
// Hugging Face settings say where the shared model cache is, which Hub to ask and whether
// to ask at all, so a trainer finds what Python tools of the same user downloaded; the
// token itself (HF_TOKEN) is a credential and is not among them: a trainer reads the token
// file under HF_HOME (or HF_TOKEN_PATH), or gets HF_TOKEN through --trainer-env.
func trainerPassthrough() []string {
	return []string{"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "LD_LIBRARY_PATH",
		"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "SIMPLETUNER_BLAS",
		"XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE",
		"TRANSFORMERS_OFFLINE", "HF_TOKEN_PATH", "HF_HUB_DISABLE_IMPLICIT_TOKEN", "HF_HUB_DISABLE_SYMLINKS",
		"HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"}
}

// TrainerEnv is the base environment of every trainer launched with this config.
func TrainerEnv(c *Config, getenv func(string) string) []string { return c.trainerEnv(getenv) }

// TrainerPath finds the named trainer binary for this config.
func TrainerPath(c *Config, name string) string { return c.trainerPath(name) }

// trainerEnv is the base environment of every trainer.
func (c *Config) trainerEnv(getenv func(string) string) []string {
	var env []string
	for _, k := range trainerPassthrough() {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env, c.TrainerEnv...)
}

// trainerPath finds a trainer binary: --trainer for the CPU trainer, else --plugins-dir,
// else the daemon's own directory.
func (c *Config) trainerPath(name string) string {
	if name == "simpletuner-trainer" && c.Trainer != "" {
		return c.Trainer
	}
	dir := c.PluginsDir
	if dir == "" {
		if exe, err := os.Executable(); err == nil {
			dir = filepath.Dir(exe)
		}
	}
	return filepath.Join(dir, name)
}

// Defaults returns the embedded defaults, with the environment applied: SIMPLETUNER_HOST,
// SIMPLETUNER_PORT, SIMPLETUNER_HOME, SIMPLETUNER_CONFIG_DIR, SIMPLETUNER_STATE_DIR,
// SIMPLETUNER_NVML_LIBRARY.
// SIMPLETUNER_NVML_LIBRARY, SIMPLETUNER_METRICS_TOKEN.
func Defaults(getenv func(string) string) (Config, error) {
	c := Config{Host: "0.0.0.0", Port: 8001, ConfigDir: "config", ShutdownTimeout: 10 * time.Second}
	home := getenv("SIMPLETUNER_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return c, fmt.Errorf("cannot find the home directory; set SIMPLETUNER_HOME: %w", err)
		}
		home = filepath.Join(h, ".simpletuner")
	}
	c.Home = home
	c.StateDir = filepath.Join(home, "state")
	c.DatasetsDir = filepath.Join(home, "datasets")
	c.OutputRoot = filepath.Join(home, "output")
	c.CacheDir = filepath.Join(home, "cache")
	if v := getenv("SIMPLETUNER_HOST"); v != "" {
		c.Host = v
	}
	if v := getenv("SIMPLETUNER_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return c, fmt.Errorf("SIMPLETUNER_PORT=%q: want a port number from 1 to 65535", v)
		}
		c.Port = p
	}
	if v := getenv("SIMPLETUNER_CONFIG_DIR"); v != "" {
		c.ConfigDir = v
	}
	if v := getenv("SIMPLETUNER_STATE_DIR"); v != "" {
		c.StateDir = v
	}
	c.NVMLLibrary = getenv("SIMPLETUNER_NVML_LIBRARY")   // part "agent" (issue 16)
	c.MetricsToken = getenv("SIMPLETUNER_METRICS_TOKEN") // part "metrics" (issue 17)
	if v := getenv("SIMPLETUNER_FAILPOINTS"); v != "" {
		c.Failpoints = strings.Split(v, ",")
	}
	var err error
	if c.Slurm, err = slurmFromEnv(getenv); err != nil { // Slurm (part "slurm" of issue 16)
		return c, err
	}
	return c, nil
}

// ParseTrustedProxies parses a comma-separated list of addresses or CIDR prefixes.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxy %q: not an IP address or CIDR prefix", part)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// ParseAllowedHosts parses a comma-separated list of host names or addresses, without
// ports (--allowed-host).
func ParseAllowedHosts(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if _, err := netip.ParseAddr(strings.Trim(part, "[]")); err != nil && strings.ContainsAny(part, ":/@ \t*[]") {
			return nil, fmt.Errorf("--allowed-host %q: want a host name or address without port, scheme or wildcard", part)
		}
		out = append(out, part)
	}
	return out, nil
}

// Validate checks the values a person may have typed.
func (c *Config) Validate() error {
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("--port %d: want a port number from 1 to 65535 (0 picks a free one)", c.Port)
	}
	if c.BodyTimeout < 0 {
		return fmt.Errorf("--body-timeout %s: want a positive duration such as 30s", c.BodyTimeout)
	}
	if (c.SSLKey == "") != (c.SSLCert == "") {
		return fmt.Errorf("--ssl-key and --ssl-cert go together: give both, or neither to generate a self-signed pair")
	}
	if c.MaxExtractBytes < 0 {
		return fmt.Errorf("--max-extract-bytes %d: want a byte count (0 for the default, 10 GiB)", c.MaxExtractBytes)
	}
	if err := c.Slurm.Validate(); err != nil { // Slurm (part "slurm" of issue 16)
		return err
	}
	for _, kv := range c.TrainerEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--trainer-env %q: want KEY=VALUE", kv)
		}
	}
	for _, p := range c.AllowFileRoots {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("--allow-file-root %q: give an absolute path", p)
		}
	}
	for _, p := range c.AllowDataRoots {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("--allow-data-root %q: give an absolute path", p)
		}
	}
	if t := c.MetricsToken; t != "" && (len(t) < MinMetricsTokenLen || strings.TrimSpace(t) != t || strings.ContainsAny(t, " \t\r\n")) {
		return fmt.Errorf("--metrics-token (SIMPLETUNER_METRICS_TOKEN): want at least %d characters without spaces, e.g. the output of `openssl rand -hex 24`", MinMetricsTokenLen)
	}
	for _, p := range []string{c.SSLKey, c.SSLCert} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("TLS file %s: %w", p, err)
		}
	}
	return nil
}
