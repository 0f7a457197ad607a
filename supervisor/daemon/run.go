package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"simpletuner/internal/sdnotify"
	"simpletuner/store"
	"simpletuner/supervisor/api"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/datasets"
	"simpletuner/supervisor/events"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/hookrunner"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/metrics"
	"simpletuner/supervisor/slurm"
	"simpletuner/supervisor/training"
	"simpletuner/supervisor/webhooks"
	"simpletuner/supervisor/workers"
)

// limitsKey is where the queue's concurrency limits are kept in the settings store.
const limitsKey = "queue_limits"

// ErrStateLocked is returned when another daemon uses the state directory.
var ErrStateLocked = store.ErrLocked

// Run starts the daemon and blocks until ctx is cancelled, then drains within
// cfg.ShutdownTimeout. ready, if non-nil, is called with the listening address.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(addr string)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// POST /api/system/shutdown cancels this context: the same path as SIGTERM.
	ctx, shutdown := context.WithCancel(ctx)
	defer shutdown()
	for _, d := range []string{cfg.ConfigDir, cfg.DatasetsDir, cfg.OutputRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	// The store comes first: a second daemon on the same state must fail before it binds.
	db, err := store.Open(cfg.StateDir, log.With("component", "store"))
	if err != nil {
		return err
	}
	dbClosed := false
	defer func() {
		if !dbClosed {
			db.Close()
		}
	}()

	as, err := auth.NewService(db, log.With("component", "auth"), auth.Options{})
	if err != nil {
		return err
	}
	// The options registry validates against the families the installed trainer trains.
	reg := TrainerRegistry(ctx, &cfg, os.Getenv, log.With("component", "families"))
	cs, err := configs.New(ConfigsOptions(&cfg, reg, db.Settings()))
	if err != nil {
		return err
	}
	ds, err := datasets.New(datasets.Options{Dir: cfg.DatasetsDir, Settings: db.Settings(), Limits: datasets.Limits{MaxTotalBytes: cfg.MaxExtractBytes}})
	if err != nil {
		return err
	}
	defer ds.Close()
	inv := gpu.Open(gpu.NVMLOptions{Library: cfg.NVMLLibrary}) // --nvml-library: part "agent" (issue 16)
	defer inv.Close()
	if info := inv.Info(); info.Reason != "" {
		log.Info("no GPUs: jobs run on the CPU trainer", "reason", info.Reason)
	}
	limits := gpu.Limits{}
	if _, err := db.Settings().Get(limitsKey, &limits); err != nil {
		return fmt.Errorf("read queue limits: %w", err)
	}
	alloc := gpu.NewAllocator(inv, limits)
	// The event hub exists before the job manager: reconciliation already reports status
	// changes. Its streams end before the HTTP server drains (they would hold it open).
	hub := events.New(events.Config{Store: db, Log: log.With("component", "events"), Heartbeat: cfg.EventHeartbeat,
		RetentionCount: cfg.EventRetention, RetentionAge: cfg.EventRetentionAge, RetentionEvery: -1 /* the scheduler trims */})
	defer hub.Close()
	// Part "metrics" (issue 17): this daemon's registry; job and GPU figures are read
	// at scrape time, the rest is fed by the webhooks, the hooks, the event sink and the API.
	mt, err := metrics.New(metrics.Config{Jobs: db.Jobs(), GPUs: alloc, Log: log.With("component", "metrics")})
	if err != nil {
		return err
	}
	wh := webhooks.New(log.With("component", "webhooks"), webhooks.Options{Policy: webhooks.Policy{DenyPrivate: cfg.WebhookDenyPrivate}, OnResult: mt.WebhookResult})
	defer wh.Close()
	hr := hookrunner.New(db, log.With("component", "hooks"), hookrunner.Options{Emit: func(jobID, typ, sev, title, msg string, data any) {
		hub.Emit(jobID, typ, sev, title, msg, data)
	}, OnResult: mt.HookResult})
	defer hr.Close()
	sink := newRelay(hub, hr, wh, db, webhooks.Policy{DenyPrivate: cfg.WebhookDenyPrivate}, cs.ReadFile, log.With("component", "relay"))
	jm, err := jobs.New(jobs.Config{JobsDir: filepath.Join(cfg.Home, "jobs"), RunDir: filepath.Join(cfg.Home, "run"),
		CPUTrainer: cfg.trainerPath("simpletuner-trainer"), GPUTrainer: cfg.trainerPath("simpletuner-trainer-cuda"),
		TrainerEnv: cfg.trainerEnv(os.Getenv), MaxAttempts: cfg.JobAttempts, StallTimeout: cfg.StallTimeout,
		Events: mt.Sink(sink), Failpoint: failpoint(cfg.Failpoints, log)}, db, alloc, log.With("component", "jobs"))
	if err != nil {
		return err
	}
	// Part "workers" (issue 16): the registry of remote workers and its executor, added
	// before Reconcile so jobs that ran on workers are recovered through it.
	wreg, err := workers.New(workers.Config{HeartbeatTimeout: cfg.WorkerHeartbeatTimeout, PublicURL: cfg.PublicURL},
		db, jm, log.With("component", "workers"))
	if err != nil {
		return err
	}
	jm.AddExecutor(wreg.Executor())
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go wreg.Run(wctx)
	// Part "slurm" (issue 16): with a cluster configured, target=slurm submits each job
	// as a Slurm batch job whose worker is bound to it through the registry.
	stopSlurm := func() {}
	if cfg.Slurm.Configured() {
		scfg := cfg.Slurm
		scfg.JobsDir = filepath.Join(cfg.Home, "jobs")
		sx, err := slurm.New(scfg, wreg, slurm.ExecRunner{Env: slurm.CommandEnv(os.Environ())}, log.With("component", "slurm"))
		if err != nil {
			return err
		}
		jm.AddExecutor(sx)
		stopSlurm = sx.Close
		defer stopSlurm()
	}
	// Reconcile before admitting any work: trainers that outlived the previous daemon are
	// reattached (or classified) and re-take their GPUs first.
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	err = jm.Reconcile(rctx)
	rcancel()
	if err != nil {
		return fmt.Errorf("reconcile jobs: %w", err)
	}
	jm.Start()
	defer jm.Close()
	hub.Start()
	ts := training.New(reg, cs, jm, cfg.OutputRoot, log.With("component", "training"))
	ts.SetWebhookPolicy(webhooks.Policy{DenyPrivate: cfg.WebhookDenyPrivate})
	ts.SetHooksDir(cfg.HooksDir)
	ts.SetTrainerCheck(jm.Validate)
	var autostart *training.Bundle
	if cfg.Env != "" {
		if autostart, err = ts.FromEnvironment(cfg.Env, []string{"*"}); err != nil {
			return fmt.Errorf("--env %s: %w", cfg.Env, err)
		}
		if !autostart.Valid() {
			return fmt.Errorf("--env %s is not valid:\n  %s", cfg.Env, strings.Join(autostart.Issues.Errors().Messages(), "\n  "))
		}
	}
	// Part "schedule" (issue 17): cron schedules and the daemon's own maintenance, on one
	// scheduler; started once the job manager has reconciled, stopped before it closes.
	sched, err := newScheduler(&cfg, db, as, ts, jm, hub, ds, log.With("component", "schedule"))
	if err != nil {
		return err
	}
	sched.Start()
	defer sched.Close()
	apiCfg := api.Config{TrustedProxies: cfg.TrustedProxies, AllowedHosts: cfg.AllowedHosts, BodyTimeout: cfg.BodyTimeout, Configs: cs, Datasets: ds, Training: ts, Jobs: jm, GPUs: alloc,
		Store: db, Events: hub, Workers: wreg, OutputRoot: cfg.OutputRoot, SaveLimits: func(l gpu.Limits) error { return db.Settings().Put(limitsKey, l) }}
	if !as.SetupDone() {
		tok, path, err := writeBootstrapToken(cfg.StateDir)
		if err != nil {
			return err
		}
		apiCfg.SetupToken = tok
		apiCfg.OnSetupDone = func() {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				log.Warn("remove bootstrap token", "path", path, "err", err)
			}
		}
		log.Info("no administrator yet: create one with POST /api/auth/setup/first-admin from this machine, "+
			"or from elsewhere with the X-Setup-Token header set to the contents of the token file", "token_file", path)
	}
	apiCfg.Shutdown = shutdown
	apiCfg.Schedules = sched
	apiCfg.Metrics, apiCfg.MetricsToken, apiCfg.Requests = mt.Handler(), cfg.MetricsToken, mt // part "metrics" (issue 17)
	srv, err := api.New(apiCfg, as, log.With("component", "api"))
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen on %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	maxConns := cfg.MaxConnsPerAddr
	if maxConns == 0 {
		maxConns = DefaultMaxConnsPerAddr
	}
	ln = limitConnsPerAddr(ln, maxConns, cfg.TrustedProxies, log.With("component", "http"))
	scheme := "http"
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// No WriteTimeout: it would cut event streams. Streams set per-write deadlines.
	}
	if cfg.SSL || cfg.SSLCert != "" {
		cert, certPath, err := loadOrCreateCert(&cfg)
		if err != nil {
			ln.Close()
			return err
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, hs.TLSConfig)
		scheme = "https"
		log.Info("TLS enabled", "cert", certPath)
	}
	addr := ln.Addr().String()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	log.Info("simpletuner server listening", "api", fmt.Sprintf("%s://%s/api", scheme, addr),
		"docs", fmt.Sprintf("%s://%s/docs", scheme, addr), "state_dir", cfg.StateDir, "config_dir", cfg.ConfigDir)
	if _, err := sdnotify.Notify("READY=1\nSTATUS=listening on " + addr); err != nil {
		log.Warn("sd_notify READY failed", "err", err)
	}
	if ready != nil {
		ready(addr)
	}
	if autostart != nil {
		job, err := ts.Start(ctx, training.StartRequest{Bundle: autostart, Owner: "server --env"})
		if err != nil {
			log.Error("--env: training did not start", "env", cfg.Env, "err", err, "issues", autostart.Issues.Errors().Messages())
		} else {
			log.Info("--env: training submitted", "env", cfg.Env, "job_id", job.ID, "status", job.Status)
		}
	}

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain_timeout", cfg.ShutdownTimeout)
	_, _ = sdnotify.Notify("STOPPING=1")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	hub.Close()  // end the event streams, or the drain would wait for them
	wreg.Close() // and the workers' dispatch streams (workers reconnect to the next daemon)
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("drain incomplete; closing remaining connections", "err", err)
		hs.Close()
	}
	sched.Close() // no run starts once the drain began
	// Stop following trainers and Slurm jobs (they keep running) before the store they
	// write to closes.
	stopSlurm()
	jm.Close()
	dbClosed = true
	if err := db.Close(); err != nil {
		return fmt.Errorf("close state: %w", err)
	}
	log.Info("stopped")
	return nil
}

// writeBootstrapToken writes a fresh one-time setup token (0600) and returns it with its
// path. A token from an earlier run is replaced: only the current process's token works.
func writeBootstrapToken(stateDir string) (string, string, error) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	path := filepath.Join(stateDir, "bootstrap-token")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write bootstrap token: %w", err)
	}
	return tok, path, nil
}

// failpoint returns the job manager's crash hook for the configured failpoints: the
// daemon SIGKILLs itself there, as a power cut or OOM kill would.
func failpoint(names []string, log *slog.Logger) func(string) {
	if len(names) == 0 {
		return nil
	}
	return func(name string) {
		if slices.Contains(names, name) {
			log.Warn("failpoint reached: killing the daemon", "failpoint", name)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
}
