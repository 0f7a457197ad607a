package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"simpletuner/supervisor/daemon"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/workeragent"
)

// Environment of `simpletuner worker` (SimpleTuner's names where it has them; the
// heartbeat interval is this server's, for tests and slow links).
const (
	envOrchestratorURL = "SIMPLETUNER_ORCHESTRATOR_URL"
	envWorkerToken     = "SIMPLETUNER_WORKER_TOKEN"
	envWorkerName      = "SIMPLETUNER_WORKER_NAME"
	envWorkerPersist   = "SIMPLETUNER_WORKER_PERSISTENT"
	envWorkerLabels    = "SIMPLETUNER_WORKER_LABELS"
	envWorkerHeartbeat = "SIMPLETUNER_WORKER_HEARTBEAT"
)

// workerCmd runs a remote worker: simpletuner worker --orchestrator-url URL --worker-token T ….
func workerCmd(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, fs, err := commandFlags("worker", stderr, getenv)
	if err != nil {
		return 2
	}
	url := fs.String("orchestrator-url", getenv(envOrchestratorURL), "the server's URL as this machine reaches it, e.g. http://orchestrator:8001 (env "+envOrchestratorURL+")")
	// No default shown for the token: --help must not print it.
	token := fs.String("worker-token", "", "the worker's token from POST /api/admin/workers (env "+envWorkerToken+", which keeps it out of the process list)")
	// No host-name default: the administrator named the worker when creating it, and a
	// registration without a name keeps that name.
	name := fs.String("name", getenv(envWorkerName), "rename the worker (env "+envWorkerName+"; default: the name it was created with)")
	persistent := fs.Bool("persistent", strings.EqualFold(getenv(envWorkerPersist), "true"), "keep running after a job (env "+envWorkerPersist+"=true); without it the worker exits once its one job ended")
	labels := fs.String("labels", getenv(envWorkerLabels), "the worker's labels, `k=v,…`, matched by a job's worker_labels (env "+envWorkerLabels+")")
	stateDir := fs.String("state-dir", filepath.Join(cfg.Home, "worker"), "the worker's own database, job folders and trainer sockets (one worker per directory)")
	job := fs.String("job", "", "bind the worker to this job `ID`: it runs that job only, then exits (Slurm batch scripts use it)")
	fs.StringVar(&cfg.PluginsDir, "plugins-dir", "", "directory of the trainer binaries (default: next to this binary)")
	fs.StringVar(&cfg.Trainer, "trainer", "", "path of the CPU trainer binary (default: simpletuner-trainer in --plugins-dir)")
	fs.Func("trainer-env", "KEY=VALUE added to every trainer's environment (repeatable)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE")
		}
		cfg.TrainerEnv = append(cfg.TrainerEnv, v)
		return nil
	})
	fs.StringVar(&cfg.NVMLLibrary, "nvml-library", cfg.NVMLLibrary, "NVML library to list GPUs with, a path or soname (env SIMPLETUNER_NVML_LIBRARY; default libnvidia-ml.so.1)")
	fs.IntVar(&cfg.JobAttempts, "job-attempts", 1, "launches of a job whose trainer crashes; retries resume from the latest checkpoint")
	fs.DurationVar(&cfg.StallTimeout, "stall-timeout", 0, "fail a job whose trainer emits nothing for this long, e.g. 30m (0: off)")
	verbose := fs.Bool("verbose", false, "log debug lines (same as --log-level debug)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, `Usage: simpletuner worker --orchestrator-url URL --worker-token TOKEN [flags]

Runs jobs that a simpletuner server dispatches to this machine: it registers with the
server, follows its dispatch stream, and runs each job with the server's own launcher on
this machine's GPUs (or the CPU trainer when it has none). Trainer events are kept in
--state-dir and uploaded in acknowledged batches, so a lost connection loses nothing; a
restarted worker reattaches the trainers it left running.

Environment: %s, %s,
%s, %s=true, %s;
%s sets the heartbeat interval (a duration such as 30s,
or whole seconds; default 30s).

Flags:
`, envOrchestratorURL, envWorkerToken, envWorkerName, envWorkerPersist, envWorkerLabels, envWorkerHeartbeat)
		printFlags(w, fs)
	}
	if code, stop := parseFlagsOnly(fs, args, "worker", stdout); stop {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "simpletuner worker: "+format+"\n", a...)
		return code
	}
	if *token == "" {
		*token = getenv(envWorkerToken)
	}
	if *url == "" {
		return fail(2, "--orchestrator-url (or %s) is required, e.g. http://orchestrator:8001", envOrchestratorURL)
	}
	if *token == "" {
		return fail(2, "--worker-token (or %s) is required: create a worker with POST /api/admin/workers (or 'simpletuner workers create') and use the token it shows", envWorkerToken)
	}
	lbls, err := parseWorkerLabels(*labels)
	if err != nil {
		return fail(2, "--labels: %v", err)
	}
	hb, err := parseHeartbeat(getenv(envWorkerHeartbeat))
	if err != nil {
		return fail(2, "%s: %v", envWorkerHeartbeat, err)
	}
	if *verbose {
		*logLevel = "debug"
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return fail(2, "%v", err)
	}
	// The worker keeps job records and trainer logs: nothing it creates is for others.
	syscall.Umask(0o077)
	inv := gpu.Open(gpu.NVMLOptions{Library: cfg.NVMLLibrary})
	defer inv.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = workeragent.Run(ctx, workeragent.Config{OrchestratorURL: *url, Token: *token, Name: *name, Persistent: *persistent,
		Labels: lbls, Job: *job, StateDir: *stateDir,
		CPUTrainer: daemon.TrainerPath(&cfg, "simpletuner-trainer"), GPUTrainer: daemon.TrainerPath(&cfg, "simpletuner-trainer-cuda"),
		TrainerEnv: daemon.TrainerEnv(&cfg, getenv), JobAttempts: cfg.JobAttempts, StallTimeout: cfg.StallTimeout,
		Inventory: inv, Heartbeat: hb, Log: log})
	if err != nil {
		// ErrUnauthorized says what to do about the token; the token is never in it.
		return fail(1, "%v", err)
	}
	return 0
}

// parseWorkerLabels reads "k=v,k2=v2" (an empty string: no labels).
func parseWorkerLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want key=value, e.g. gpu_type=a100,region=eu", part)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

// parseHeartbeat reads the heartbeat interval: a Go duration ("30s", "500ms") or whole
// seconds; empty is the default (0).
func parseHeartbeat(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration such as 30s", s)
	}
	return d, nil
}
