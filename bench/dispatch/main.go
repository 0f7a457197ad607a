// Command dispatch measures how fast the daemon hands a job to where it runs, and how fast
// a remote worker's events reach the daemon's store, each against a local trainer as the
// baseline of the same run (docs/architecture.md §1 on executors).
//
//	go run ./bench/dispatch -daemon bin/simpletuner [-runs 7 -burst 20000] [-slurm]
//
// Everything runs on loopback on this machine: the daemon, one `simpletuner worker` agent
// (persistent, registered through POST /api/admin/workers, seeing two fake GPUs through
// supervisor/gpu/testdata/fakenvml.c, which needs a C compiler), and this program
// re-executed as a fake trainer (plugins/kit/kittest) under either of them.
//
//   - dispatch latency: POST /api/queue/submit with target local, then worker (then slurm
//     with -slurm: a one-node cluster from scripts/slurm-ci.sh whose batch jobs run an
//     ephemeral worker bound to the job) → the job's first trainer event is stored (polled
//     on GET /api/jobs/{id}/events every ms); the median of -runs jobs each, one at a time;
//   - event throughput: the fake trainer emits -burst events as fast as it can; reported is
//     the rate at which the daemon stored them (first emit → the job's last_seq reached
//     the last burst event, sampled every 2 ms), for a local trainer and for a worker's
//     (whose agent stores them in its own store and uploads them in batches); the ratio
//     worker/local has the goal ≥ 0.8 (issue 16). Beside it, the CPU time the daemon and
//     the worker agent spent per 1,000 events: on a machine whose cores the agent shares
//     with the daemon, the wall-time ratio also measures the agent's own work.
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"simpletuner/bench/internal/benchkit"
	"simpletuner/plugins/kit"
	"simpletuner/plugins/kit/kittest"
)

// asTrainer makes this program a fake trainer (set in the trainer environment of the
// daemon and of the worker).
const asTrainer = "DISPATCH_RUN_TRAINER"

func main() {
	if os.Getenv(asTrainer) == "1" {
		kit.Main(kittest.FromEnv())
		return
	}
	daemonBin := flag.String("daemon", "bin/simpletuner", "path of the simpletuner binary (server and worker)")
	runs := flag.Int("runs", 7, "jobs per target for the dispatch latency")
	burst := flag.Int("burst", 20000, "events of the throughput run")
	localOnly := flag.Bool("local-only", false, "measure the local baseline only (no worker agent)")
	split := flag.Bool("split", false, "model two machines: pin the daemon (and the trainers it launches) to CPU 0 and the worker agent (and its trainers) to CPU 1")
	withSlurm := flag.Bool("slurm", false, "also measure target slurm on a one-node Slurm brought up with scripts/slurm-ci.sh (root; Slurm installed)")
	flag.Parse()
	targets := []string{"local", "worker"}
	if *localOnly {
		targets = targets[:1]
	}
	if *withSlurm {
		targets = append(targets, "slurm")
	}
	if err := run(*daemonBin, *runs, *burst, targets, *split); err != nil {
		fmt.Fprintln(os.Stderr, "dispatch:", err)
		os.Exit(1)
	}
}

// setup is a daemon and one worker agent connected to it, on a home of their own.
type setup struct {
	home   string
	d      *benchkit.Daemon
	worker *exec.Cmd
	exited chan struct{}
	c      *http.Client
}

// start brings up the daemon and, with worker set, a worker agent, with the fake trainer
// settings env (KEY=VALUE of kittest) for both, and waits until the worker is idle. With
// withSlurm the daemon submits target=slurm jobs to the cluster slurmUp brought up.
// pinTo binds every thread of process pid to cpu; threads it starts later inherit that
// from the thread that starts them, and so do its child processes (the trainers).
func pinTo(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for range 2 { // a thread started while the first pass ran is caught by the second
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d of %d to CPU %d: %w", tid, pid, cpu, err)
			}
		}
	}
	return nil
}

// start brings the setup up; with split the daemon is pinned to CPU 0 and the worker to
// CPU 1: the orchestrator's machine and a worker's, one core each, as they are deployed.
func start(daemonBin string, worker, withSlurm, split bool, env ...string) (*setup, error) {
	home, err := os.MkdirTemp("", "st-dispatch-")
	if err != nil {
		return nil, err
	}
	s := &setup{home: home, c: &http.Client{Timeout: 30 * time.Second}}
	if err := writeEnv(home); err != nil {
		s.close()
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		s.close()
		return nil, err
	}
	trainer := []string{"--trainer", self, "--trainer-env", asTrainer + "=1"}
	for _, e := range env {
		trainer = append(trainer, "--trainer-env", e)
	}
	port, err := benchkit.FreePort()
	if err != nil {
		s.close()
		return nil, err
	}
	var slurmArgs []string
	if withSlurm {
		// The Slurm job's worker: this binary's `worker` with the fake trainer, reaching the
		// daemon on loopback (one node: the node is this machine).
		wrapper := filepath.Join(home, "slurm-worker")
		script := fmt.Sprintf("#!/bin/sh\nexec %q \"$@\" --log-level warn --trainer %q", daemonBin, self)
		for _, e := range append([]string{asTrainer + "=1"}, env...) {
			script += fmt.Sprintf(" --trainer-env %q", e)
		}
		if err := os.WriteFile(wrapper, []byte(script+"\n"), 0o755); err != nil {
			s.close()
			return nil, err
		}
		// --export=ALL: the default --export=NONE makes Slurm build the node's login
		// environment first, which measures root's shell profile, not dispatch.
		slurmArgs = []string{"--slurm-worker-url", fmt.Sprintf("http://127.0.0.1:%d", port), "--slurm-worker-command", wrapper,
			"--slurm-env", "SIMPLETUNER_HOME=" + filepath.Join(home, "slurm-worker-home"), "--slurm-poll", "200ms",
			"--slurm-sbatch-arg", "--export=ALL"}
	}
	if s.d, err = benchkit.StartDaemon(daemonBin, home, port, append(append([]string{"--event-retention", "-1"}, slurmArgs...), trainer...)...); err != nil {
		s.close()
		return nil, err
	}
	if split {
		if err := pinTo(s.d.Cmd.Process.Pid, 0); err != nil {
			s.close()
			return nil, err
		}
	}
	if !worker {
		return s, nil
	}
	// Open on loopback until an admin exists, as a fresh install is.
	var w struct {
		ID    string `json:"worker_id"`
		Token string `json:"token"`
	}
	if err := s.do("POST", "/api/admin/workers", map[string]any{"name": "bench-worker", "worker_type": "persistent"}, &w); err != nil {
		s.close()
		return nil, err
	}
	// The worker sees two fake H100s (a worker without GPUs takes no GPU job) and runs this
	// program as its GPU trainer too.
	lib, plugins, err := fakeGPUs(home, self)
	if err != nil {
		s.close()
		return nil, err
	}
	args := append([]string{"worker", "--orchestrator-url", s.d.Base, "--name", "bench-worker", "--persistent",
		"--state-dir", filepath.Join(home, "worker"), "--plugins-dir", plugins, "--nvml-library", lib, "--log-level", "warn"}, trainer...)
	s.worker = exec.Command(daemonBin, args...)
	s.worker.Env = append(os.Environ(), "SIMPLETUNER_HOME="+filepath.Join(home, "worker-home"), "SIMPLETUNER_WORKER_TOKEN="+w.Token)
	s.worker.Stderr = os.Stderr
	if err := s.worker.Start(); err != nil {
		s.close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.worker.Wait(); close(s.exited) }()
	if split {
		if err := pinTo(s.worker.Process.Pid, 1); err != nil {
			s.close()
			return nil, err
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		var list struct {
			Workers []struct {
				ID     string `json:"worker_id"`
				Status string `json:"status"`
			} `json:"workers"`
		}
		if err := s.do("GET", "/api/admin/workers", nil, &list); err != nil {
			s.close()
			return nil, err
		}
		if len(list.Workers) == 1 && list.Workers[0].Status == "idle" {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.close()
			return nil, fmt.Errorf("the worker did not become idle within 30 s: %+v", list.Workers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// slurmUp brings up the one-node Slurm of scripts/slurm-ci.sh (run from the repository
// root) under the lock its tests take (one cluster per machine), exports its SLURM_CONF to
// the daemon started after it, and returns what tears it down.
func slurmUp() (down func(), err error) {
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "simpletuner-slurm-ci.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, err
	}
	dir, err := os.MkdirTemp("", "st-dispatch-slurm-")
	if err != nil {
		lock.Close()
		return nil, err
	}
	script := filepath.Join("scripts", "slurm-ci.sh")
	down = func() {
		if out, err := exec.Command(script, "down", dir).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "dispatch: slurm-ci.sh down: %v\n%s", err, out)
		}
		lock.Close()
	}
	if out, err := exec.Command(script, "up", dir).CombinedOutput(); err != nil {
		down()
		return nil, fmt.Errorf("slurm-ci.sh up (root, Slurm installed: scripts/slurm-ci.sh install): %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		down()
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
	}
	return down, nil
}

// fakeGPUs compiles the fake libnvidia-ml of the GPU tests (run from the repository root,
// as make does) and makes a plugins folder whose GPU trainer is self.
func fakeGPUs(home, self string) (lib, plugins string, err error) {
	lib = filepath.Join(home, "libnvidia-ml.so.1")
	cmd := exec.Command("cc", "-shared", "-fPIC", "-O1", "-o", lib, filepath.Join("supervisor", "gpu", "testdata", "fakenvml.c"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("build the fake NVML library (run from the repository root with a C compiler): %v: %s", err, out)
	}
	plugins = filepath.Join(home, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return "", "", err
	}
	return lib, plugins, os.Symlink(self, filepath.Join(plugins, "simpletuner-trainer-cuda"))
}

// close stops the worker and the daemon and removes the home.
func (s *setup) close() {
	if s.worker != nil && s.worker.Process != nil {
		_ = s.worker.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.worker.Process.Kill()
			<-s.exited
		}
	}
	if s.d != nil {
		s.d.Stop()
	}
	os.RemoveAll(s.home)
}

// do sends body as JSON and decodes a 2xx answer into out.
func (s *setup) do(method, path string, body, out any) error {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, s.d.Base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := s.c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		var e bytes.Buffer
		e.ReadFrom(res.Body)
		return fmt.Errorf("%s %s: %s %s", method, path, res.Status, e.String())
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(res.Body).Decode(out)
}

// writeEnv stores the environment "bench" (the fake trainer reads none of its data).
func writeEnv(home string) error {
	dir := filepath.Join(home, "config", "bench")
	data := filepath.Join(home, "datasets", "bench")
	for _, d := range []string{dir, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	dl := fmt.Sprintf(`[{"id":"img","type":"local","dataset_type":"image","instance_data_dir":%q,"caption_strategy":"filename","resolution":32,"resolution_type":"pixel"},{"id":"txt","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":%q}]`, data, filepath.Join(home, "cache", "text"))
	if err := os.WriteFile(filepath.Join(dir, "multidatabackend.json"), []byte(dl), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`{"--model_family":"dit","--model_flavour":"tiny","--model_type":"full","--output_dir":%q,"--data_backend_config":%q,"--max_train_steps":1,"--num_train_epochs":0}`,
		filepath.Join(home, "out"), filepath.Join(dir, "multidatabackend.json"))
	return os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644)
}

// submit queues the environment for target and returns the job id.
func (s *setup) submit(target string) (string, error) {
	var r struct {
		JobID string `json:"job_id"`
	}
	if err := s.do("POST", "/api/queue/submit", map[string]any{"config_name": "bench", "target": target}, &r); err != nil {
		return "", err
	}
	if r.JobID == "" {
		return "", errors.New("submit answered no job_id")
	}
	return r.JobID, nil
}

// job is the part of GET /api/jobs/{id} the benchmark reads.
type job struct {
	Status   string `json:"status"`
	LastSeq  uint64 `json:"last_seq"`
	Executor string `json:"executor"`
	Error    string `json:"error"`
}

// waitEnd waits until job id has ended and checks it completed on the executor wanted.
func (s *setup) waitEnd(id, executor string) error {
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var j job
		if err := s.do("GET", "/api/jobs/"+id, nil, &j); err != nil {
			return err
		}
		switch j.Status {
		case "completed":
			// A daemon from before executors (no "executor" field) runs every job locally.
			if j.Executor != executor && (j.Executor != "" || executor != "local") {
				return fmt.Errorf("job %s ran on %q, want %q", id, j.Executor, executor)
			}
			return nil
		case "failed", "cancelled", "stopped":
			return fmt.Errorf("job %s %s: %s", id, j.Status, j.Error)
		}
	}
	return fmt.Errorf("job %s did not end within 5 minutes", id)
}

// dispatchLatency is submit → first stored trainer event of one job.
func (s *setup) dispatchLatency(target string) (time.Duration, error) {
	t0 := time.Now()
	id, err := s.submit(target)
	if err != nil {
		return 0, err
	}
	var lat time.Duration
	for deadline := t0.Add(2 * time.Minute); ; time.Sleep(time.Millisecond) {
		var evs struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := s.do("GET", "/api/jobs/"+id+"/events?since_seq=0", nil, &evs); err != nil {
			return 0, err
		}
		if len(evs.Events) > 0 {
			lat = time.Since(t0)
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no event of job %s within 2 minutes", id)
		}
	}
	return lat, s.waitEnd(id, target)
}

// storedEvent is the part of a stored event the throughput run reads.
type storedEvent struct {
	Seq   uint64 `json:"seq"`
	Title string `json:"title"`
	Data  struct {
		Burst   int     `json:"burst"`
		Emit    int64   `json:"emit_unix_ns"`
		Seconds float64 `json:"seconds"`
	} `json:"data"`
}

// throughput runs one burst job on target and returns the rate at which the daemon
// stored the burst and the trainer's own emit rate, in events/s, and the CPU time the
// daemon and the worker agent spent meanwhile (the trainer's is left out: it is the same
// program on both paths).
func (s *setup) throughput(target string, burst int) (stored, emitted float64, daemonCPU, agentCPU time.Duration, err error) {
	agent := 0 // no agent with -local-only: procCPU reads nothing
	if s.worker != nil {
		agent = s.worker.Process.Pid
	}
	d0, a0 := procCPU(s.d.Cmd.Process.Pid), procCPU(agent)
	defer func() {
		daemonCPU, agentCPU = procCPU(s.d.Cmd.Process.Pid)-d0, procCPU(agent)-a0
	}()
	id, err := s.submit(target)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	type sample struct {
		at  time.Time
		seq uint64
	}
	var samples []sample
	for {
		var j job
		if err := s.do("GET", "/api/jobs/"+id, nil, &j); err != nil {
			return 0, 0, 0, 0, err
		}
		samples = append(samples, sample{time.Now(), j.LastSeq})
		if j.Status == "completed" || j.Status == "failed" || j.Status == "cancelled" {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := s.waitEnd(id, target); err != nil {
		return 0, 0, 0, 0, err
	}
	var first int64
	var lastSeq uint64
	for since := uint64(0); ; {
		var pg struct {
			Events  []storedEvent `json:"events"`
			NextSeq uint64        `json:"next_seq"`
		}
		if err := s.do("GET", fmt.Sprintf("/api/jobs/%s/events?since_seq=%d", id, since), nil, &pg); err != nil {
			return 0, 0, 0, 0, err
		}
		if len(pg.Events) == 0 {
			break
		}
		for _, e := range pg.Events {
			if e.Data.Burst == 1 {
				first = e.Data.Emit
			}
			if e.Data.Burst == burst {
				lastSeq = e.Seq
			}
			if e.Title == "emit stats" && e.Data.Seconds > 0 {
				emitted = float64(burst) / e.Data.Seconds
			}
		}
		since = pg.NextSeq
	}
	if first == 0 || lastSeq == 0 {
		return 0, 0, 0, 0, fmt.Errorf("job %s: the burst's first or last event is not stored", id)
	}
	for _, sm := range samples {
		if sm.seq >= lastSeq {
			return float64(burst) / sm.at.Sub(time.Unix(0, first)).Seconds(), emitted, 0, 0, nil
		}
	}
	return 0, 0, 0, 0, fmt.Errorf("job %s: last_seq never reached %d while sampled", id, lastSeq)
}

// procCPU is a process's user plus system CPU time from /proc/<pid>/stat (in clock ticks
// of 10 ms, the kernel's USER_HZ on Linux), or 0 when it cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces) start after the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// tpRunsN is how many burst jobs each target runs; the median is reported.
const tpRunsN = 3

func run(daemonBin string, runs, burst int, targets []string, split bool) error {
	withWorker, withSlurm := slices.Contains(targets, "worker"), slices.Contains(targets, "slurm")
	if withSlurm {
		down, err := slurmUp()
		if err != nil {
			return err
		}
		defer down()
	}
	// Latency: one step, no burst, so the first event is the trainer's first word.
	s, err := start(daemonBin, withWorker, withSlurm, split, kittest.EnvSteps+"=1", kittest.EnvStepMS+"=1")
	if err != nil {
		return err
	}
	lat := map[string][]time.Duration{}
	for i := range runs {
		// Alternate the targets so drift in the machine's load hits both alike.
		for _, target := range targets {
			d, err := s.dispatchLatency(target)
			if err != nil {
				s.close()
				return fmt.Errorf("latency run %d, %s: %w", i+1, target, err)
			}
			lat[target] = append(lat[target], d)
		}
	}
	s.close()

	s, err = start(daemonBin, withWorker, false, split, kittest.EnvSteps+"=1", kittest.EnvStepMS+"=1", fmt.Sprintf("%s=%d", kittest.EnvBurst, burst))
	if err != nil {
		return err
	}
	defer s.close()
	type rates struct {
		stored, emitted     float64
		daemonCPU, agentCPU time.Duration
	}
	tpTargets := slices.DeleteFunc(slices.Clone(targets), func(t string) bool { return t == "slurm" })
	tpRuns := map[string][]rates{}
	for i := range tpRunsN {
		for _, target := range tpTargets {
			st, em, dc, ac, err := s.throughput(target, burst)
			if err != nil {
				return fmt.Errorf("throughput run %d, %s: %w", i+1, target, err)
			}
			tpRuns[target] = append(tpRuns[target], rates{st, em, dc, ac})
		}
	}
	// The run of median stored rate, per target.
	tp := map[string]rates{}
	for target, rs := range tpRuns {
		slices.SortFunc(rs, func(a, b rates) int { return cmp.Compare(a.stored, b.stored) })
		tp[target] = rs[len(rs)/2]
	}

	if split {
		fmt.Printf("dispatch: daemon and its trainers on CPU 0, one worker agent and its trainers on CPU 1 (two one-core machines), loopback\n\n")
	} else {
		fmt.Printf("dispatch: daemon, one worker agent and fake trainers on loopback, same CPUs\n\n")
	}
	fmt.Printf("submit → first trainer event stored, median of %d jobs each\n", runs)
	fmt.Printf("%-10s %10s %10s %10s %8s\n", "target", "median ms", "min ms", "max ms", "ratio")
	base := median(lat["local"])
	for _, target := range targets {
		ds := lat[target]
		m := median(ds)
		fmt.Printf("%-10s %10.1f %10.1f %10.1f %8.2f\n", target, ms(m), ms(slices.Min(ds)), ms(slices.Max(ds)), float64(m)/float64(base))
	}
	fmt.Printf("\nevent throughput, a burst of %d events (first emit → last stored), median of %d runs each\n", burst, tpRunsN)
	fmt.Printf("%-10s %14s %14s %8s %18s %18s\n", "target", "stored ev/s", "emitted ev/s", "ratio", "daemon CPU ms/1k", "agent CPU ms/1k")
	perK := func(d time.Duration) float64 { return ms(d) * 1000 / float64(burst) }
	for _, target := range tpTargets {
		r := tp[target]
		fmt.Printf("%-10s %14.0f %14.0f %8.2f %18.1f %18.1f\n", target, r.stored, r.emitted, r.stored/tp["local"].stored, perK(r.daemonCPU), perK(r.agentCPU))
	}
	if !withWorker {
		return nil
	}
	ratio := tp["worker"].stored / tp["local"].stored
	verdict := "FAIL"
	if ratio >= 0.8 {
		verdict = "PASS"
	}
	fmt.Printf("goal: worker/local event throughput ≥ 0.8  %.2f %s\n", ratio, verdict)
	return nil
}
