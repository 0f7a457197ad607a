package slurm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// fakeSlurm is an in-memory Slurm behind the Runner interface: sbatch queues a job
// PENDING (Resources), tests move it with set, scancel cancels it.
type fakeSlurm struct {
	mu        sync.Mutex
	next      int
	jobs      map[string]JobInfo
	scripts   map[string]string
	args      map[string][]string
	squeues   [][]string // the ids of each squeue -j call
	cancels   []string
	sbatchErr error
}

func newFakeSlurm() *fakeSlurm {
	return &fakeSlurm{next: 100, jobs: map[string]JobInfo{}, scripts: map[string]string{}, args: map[string][]string{}}
}

func (f *fakeSlurm) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	flag := func(k string) string {
		if i := slices.Index(args, k); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return ""
	}
	switch name {
	case "sbatch":
		if f.sbatchErr != nil {
			return nil, f.sbatchErr
		}
		f.next++
		id := fmt.Sprint(f.next)
		f.jobs[id] = JobInfo{ID: id, State: "PENDING", Reason: "Resources"}
		f.scripts[id], f.args[id] = string(stdin), args
		return []byte(id + "\n"), nil
	case "squeue":
		var b strings.Builder
		if ids := flag("-j"); ids != "" {
			f.squeues = append(f.squeues, strings.Split(ids, ","))
			for _, id := range strings.Split(ids, ",") {
				if j, ok := f.jobs[id]; ok {
					fmt.Fprintf(&b, "%s|%s|%s|%s\n", j.ID, j.State, j.Reason, j.Nodes)
				}
			}
		}
		if n := flag("-n"); n != "" {
			for id, j := range f.jobs {
				if a := f.args[id]; len(a) > 2 && a[2] == "--job-name="+n {
					fmt.Fprintf(&b, "%s|%s|%s|%s\n", j.ID, j.State, j.Reason, j.Nodes)
				}
			}
		}
		return []byte(b.String()), nil
	case "sacct":
		var b strings.Builder
		b.WriteString("JobID|State|ExitCode|Reason\n")
		for _, id := range strings.Split(flag("-j"), ",") {
			if j, ok := f.jobs[id]; ok && j.Ended() {
				fmt.Fprintf(&b, "%s|%s|%s|\n", j.ID, j.State, j.ExitCode)
			}
		}
		return []byte(b.String()), nil
	case "scancel":
		id := args[len(args)-1]
		f.cancels = append(f.cancels, id)
		if j, ok := f.jobs[id]; ok && !j.Ended() {
			j.State, j.Reason, j.ExitCode = "CANCELLED", "", "0:15"
			f.jobs[id] = j
		}
		return nil, nil
	}
	return nil, fmt.Errorf("%s: not faked", name)
}

// set moves a fake job to a state.
func (f *fakeSlurm) set(id, state, reason, nodes, exit string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[id] = JobInfo{ID: id, State: state, Reason: reason, Nodes: nodes, ExitCode: exit}
}

func (f *fakeSlurm) cancelled() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cancels)
}

// fakeWorkers is the registry side: tests end a job with finish.
type fakeWorkers struct {
	mu       sync.Mutex
	bound    map[string]string
	unbound  []string
	commands []string
	cmdErr   error
	exits    map[string]chan jobs.Exit
}

func newFakeWorkers() *fakeWorkers {
	return &fakeWorkers{bound: map[string]string{}, exits: map[string]chan jobs.Exit{}}
}

func (w *fakeWorkers) exit(jobID string) chan jobs.Exit {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.exits[jobID]
	if !ok {
		c = make(chan jobs.Exit, 1)
		w.exits[jobID] = c
	}
	return c
}

func (w *fakeWorkers) BindJob(jobID string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	tok := "token-for-" + jobID
	w.bound[jobID] = tok
	return tok, nil
}

func (w *fakeWorkers) Command(ctx context.Context, jobID string, c plugins.Command) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.commands = append(w.commands, jobID+":"+c.String())
	return w.cmdErr
}

func (w *fakeWorkers) Wait(ctx context.Context, jobID string) (jobs.Exit, error) {
	select {
	case x := <-w.exit(jobID):
		return x, nil
	case <-ctx.Done():
		return jobs.Exit{}, ctx.Err()
	}
}

func (w *fakeWorkers) Unbind(jobID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.bound, jobID)
	w.unbound = append(w.unbound, jobID)
}

func (w *fakeWorkers) state() (bound map[string]string, unbound, commands []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps(w.bound), slices.Clone(w.unbound), slices.Clone(w.commands)
}

func maps(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// fakeReporter records handles and notes.
type fakeReporter struct {
	mu      sync.Mutex
	handles map[string]jobs.Handle
	saveErr error
	notes   chan string // "jobID: note"
}

func newFakeReporter() *fakeReporter {
	return &fakeReporter{handles: map[string]jobs.Handle{}, notes: make(chan string, 100)}
}

func (r *fakeReporter) SaveHandle(jobID string, h jobs.Handle) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.saveErr != nil {
		return r.saveErr
	}
	r.handles[jobID] = h
	return nil
}
func (r *fakeReporter) Running(jobID string) {}
func (r *fakeReporter) Events(jobID string, evs []plugins.Event) (uint64, error) {
	return 0, errors.New("not used")
}
func (r *fakeReporter) Note(jobID, note string) { r.notes <- jobID + ": " + note }

// waitNote reads notes until want arrives.
func (r *fakeReporter) waitNote(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case n := <-r.notes:
			if n == want {
				return
			}
			seen = append(seen, n)
		case <-timeout:
			t.Fatalf("note %q never came; saw %q", want, seen)
		}
	}
}

type harness struct {
	e   *Executor
	s   *fakeSlurm
	w   *fakeWorkers
	r   *fakeReporter
	dir string
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{s: newFakeSlurm(), w: newFakeWorkers(), r: newFakeReporter(), dir: t.TempDir()}
	cfg := Config{Partition: "gpu", Account: "lab", SbatchArgs: []string{"--time=1:00:00"}, WorkerURL: "http://10.0.0.1:8001",
		WorkerCommand: "/opt/simpletuner", Env: []string{"HF_HOME=/shared/hf"}, Poll: 5 * time.Millisecond,
		JobsDir: h.dir, CancelGrace: 20 * time.Millisecond, EndGrace: 20 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg, h.w, h.s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	h.e = e
	return h
}

func (h *harness) launch(t *testing.T, id string, gpus int) jobs.Task {
	t.Helper()
	j := &store.Job{ID: id, NumGPUs: gpus}
	p, err := h.e.Place(context.Background(), j)
	if err != nil || p.Outcome != jobs.PlaceStart {
		t.Fatalf("Place = %+v, %v", p, err)
	}
	task, err := h.e.Launch(context.Background(), j, p, h.r)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// running launches a job, waits in the background, and returns once Slurm runs it on n1.
func (h *harness) running(t *testing.T, id string) (jobs.Task, chan jobs.Exit) {
	t.Helper()
	task := h.launch(t, id, 0)
	done := wait(task)
	h.s.set("101", "RUNNING", "None", "n1", "")
	h.r.waitNote(t, id+": Slurm: RUNNING on n1")
	return task, done
}

// wantScancel checks the Slurm jobs scancel was run on.
func (h *harness) wantScancel(t *testing.T, ids ...string) {
	t.Helper()
	if c := h.s.cancelled(); !slices.Equal(c, ids) {
		t.Fatalf("scancel %v, want %v", c, ids)
	}
}

// wait runs task.Wait in the background.
func wait(task jobs.Task) chan jobs.Exit {
	c := make(chan jobs.Exit, 1)
	go func() {
		x, err := task.Wait(context.Background())
		if err != nil {
			x.Error = "Wait: " + err.Error()
		}
		c <- x
	}()
	return c
}

func TestLaunchFollowsSlurmToTheWorkersEnd(t *testing.T) {
	h := newHarness(t, nil)
	task := h.launch(t, "job-a", 2)
	// The handle is stored before Launch returns, naming Slurm's id and the output file.
	hd := h.r.handles["job-a"]
	var d handleData
	if err := json.Unmarshal(hd.Data, &d); err != nil || hd.Kind != jobs.KindSlurm || hd.Version != 1 || d.SlurmJobID != "101" ||
		d.Output != filepath.Join(h.dir, "job-a", "slurm-101.out") {
		t.Fatalf("handle %+v (%s), data %+v, %v", hd, hd.Data, d, err)
	}
	if task.Handle().Kind != jobs.KindSlurm {
		t.Fatalf("task handle %+v", task.Handle())
	}
	h.s.mu.Lock()
	args, script := h.s.args["101"], h.s.scripts["101"]
	h.s.mu.Unlock()
	wantArgs := []string{"--parsable", "--export=NONE", "--job-name=simpletuner-job-a", "-o", filepath.Join(h.dir, "job-a", "slurm-%j.out"),
		"--partition=gpu", "--account=lab", "--gres=gpu:2", "--time=1:00:00"}
	if !slices.Equal(args, wantArgs) {
		t.Fatalf("sbatch %q, want %q", args, wantArgs)
	}
	for _, want := range []string{"SIMPLETUNER_WORKER_TOKEN='token-for-job-a'", "HF_HOME='/shared/hf'",
		"exec '/opt/simpletuner' worker --orchestrator-url 'http://10.0.0.1:8001' --job 'job-a' --name 'slurm-job-a'"} {
		if !strings.Contains(script, want) {
			t.Fatalf("script lacks %q:\n%s", want, script)
		}
	}
	done := wait(task)
	h.r.waitNote(t, "job-a: Slurm: PENDING (Resources)")
	h.s.set("101", "RUNNING", "None", "n1", "")
	h.r.waitNote(t, "job-a: Slurm: RUNNING on n1")
	h.w.exit("job-a") <- jobs.Exit{State: plugins.StateCompleted}
	if x := <-done; x != (jobs.Exit{State: plugins.StateCompleted}) {
		t.Fatalf("exit %+v", x)
	}
	bound, unbound, _ := h.w.state()
	if len(bound) != 0 || !slices.Equal(unbound, []string{"job-a"}) {
		t.Fatalf("bound %v unbound %v: the token must die with the job", bound, unbound)
	}
	h.e.mu.Lock()
	n := len(h.e.tasks)
	h.e.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d tasks still followed", n)
	}
	if err := task.Command(context.Background(), plugins.CommandStop); !errors.Is(err, jobs.ErrEnded) {
		t.Fatalf("command after the end: %v", err)
	}
}

func TestSlurmEndWithoutFinalStatusFails(t *testing.T) {
	h := newHarness(t, nil)
	task := h.launch(t, "job-b", 0)
	out := filepath.Join(h.dir, "job-b", "slurm-101.out")
	var lines []string
	for i := range 30 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	lines[29] = "panic: out of cheese"
	if err := os.WriteFile(out, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := wait(task)
	h.s.set("101", "FAILED", "NonZeroExitCode", "n1", "1:0")
	x := <-done
	want := "Slurm job 101 ended FAILED (NonZeroExitCode, exit 1:0) without a final status; see " + out + "\n" +
		strings.Join(lines[10:], "\n")
	if x.State != plugins.StateFailed || x.Error != want || x.Retry {
		t.Fatalf("exit %+v\nwant error %q", x, want)
	}
	if _, unbound, _ := h.w.state(); !slices.Equal(unbound, []string{"job-b"}) {
		t.Fatalf("unbound %v", unbound)
	}
}

func TestFinalStatusWithinTheGraceWins(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.EndGrace = time.Hour })
	task := h.launch(t, "job-c", 0)
	done := wait(task)
	h.s.set("101", "COMPLETED", "None", "n1", "0:0")
	h.r.waitNote(t, "job-c: Slurm: COMPLETED")
	h.w.exit("job-c") <- jobs.Exit{State: plugins.StateStopped}
	if x := <-done; x.State != plugins.StateStopped {
		t.Fatalf("exit %+v", x)
	}
}

func TestLostWorkerScancelsItsSlurmJob(t *testing.T) {
	h := newHarness(t, nil)
	_, done := h.running(t, "job-l")
	lost := jobs.Exit{Retry: true, Lost: true, Error: "worker slurm-job-l went offline: no heartbeat for 2m0s"}
	h.w.exit("job-l") <- lost
	if x := <-done; x != lost {
		t.Fatalf("exit %+v", x)
	}
	h.wantScancel(t, "101") // before the job is requeued elsewhere
}

func TestCancelPendingScancelsAtOnce(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CancelGrace = time.Hour })
	task := h.launch(t, "job-d", 1)
	done := wait(task)
	h.r.waitNote(t, "job-d: Slurm: PENDING (Resources)")
	if err := task.Command(context.Background(), plugins.CommandCheckpoint); !errors.Is(err, jobs.ErrUnreachable) ||
		!strings.Contains(err.Error(), "Slurm job 101 has not started yet (Slurm: PENDING (Resources))") {
		t.Fatalf("checkpoint while pending: %v", err)
	}
	if err := task.Command(context.Background(), plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	if x := <-done; x != (jobs.Exit{State: plugins.StateCancelled}) {
		t.Fatalf("exit %+v", x)
	}
	h.wantScancel(t, "101")
	if _, _, cmds := h.w.state(); len(cmds) != 0 {
		t.Fatalf("the worker (not started) was told %v", cmds)
	}
}

func TestCancelRunningTellsTheWorkerThenScancels(t *testing.T) {
	h := newHarness(t, nil)
	task, done := h.running(t, "job-e")
	if err := task.Command(context.Background(), plugins.CommandValidation); err != nil {
		t.Fatal(err)
	}
	if err := task.Command(context.Background(), plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	// The worker does not end the job: scancel after the grace, and the job is cancelled.
	if x := <-done; x != (jobs.Exit{State: plugins.StateCancelled}) {
		t.Fatalf("exit %+v", x)
	}
	if _, _, cmds := h.w.state(); !slices.Equal(cmds, []string{"job-e:validation", "job-e:cancel"}) {
		t.Fatalf("worker commands %v", cmds)
	}
	h.wantScancel(t, "101")
}

func TestCancelWithAnUnreachableWorkerScancels(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CancelGrace = time.Hour })
	h.w.cmdErr = fmt.Errorf("%w: worker not connected", jobs.ErrUnreachable)
	task, done := h.running(t, "job-f")
	if err := task.Command(context.Background(), plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	if x := <-done; x.State != plugins.StateCancelled {
		t.Fatalf("exit %+v", x)
	}
	h.wantScancel(t, "101")
}

func TestOneSqueueForAllJobs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Poll = time.Hour }) // polls only when kicked
	for _, id := range []string{"j1", "j2", "j3"} {
		h.launch(t, id, 0)
		h.r.waitNote(t, id+": Slurm: PENDING (Resources)")
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	last := slices.Clone(h.s.squeues[len(h.s.squeues)-1])
	slices.Sort(last)
	if !slices.Equal(last, []string{"101", "102", "103"}) || len(h.s.squeues) > 3 {
		t.Fatalf("squeue calls %q: want one per poll, each for every followed job", h.s.squeues)
	}
}

func TestRecover(t *testing.T) {
	h := newHarness(t, nil)
	h.s.set("555", "RUNNING", "None", "n7", "")
	hd, _ := jobs.NewHandle(jobs.KindSlurm, 1, handleData{SlurmJobID: "555", Output: "/j/x/slurm-555.out"})
	task, err := h.e.Recover(context.Background(), &store.Job{ID: "job-r", Handle: &hd}, h.r)
	if err != nil {
		t.Fatal(err)
	}
	done := wait(task)
	h.r.waitNote(t, "job-r: Slurm: RUNNING on n7")
	h.s.set("555", "TIMEOUT", "TimeLimit", "n7", "0:15")
	x := <-done
	if x.State != plugins.StateFailed || !strings.HasPrefix(x.Error, "Slurm job 555 ended TIMEOUT (TimeLimit, exit 0:15) without a final status; see /j/x/slurm-555.out") {
		t.Fatalf("exit %+v", x)
	}

	// No handle: sbatch ran but the id was never stored. The orphan is cancelled, the job requeued.
	if _, err := h.e.Launch(context.Background(), &store.Job{ID: "job-o"}, jobs.Placement{Outcome: jobs.PlaceStart}, newFakeReporter()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.e.Recover(context.Background(), &store.Job{ID: "job-o"}, h.r); !errors.Is(err, jobs.ErrRequeue) {
		t.Fatalf("Recover without a handle: %v", err)
	}
	h.wantScancel(t, "101")
	bad := store.TaskHandle{Kind: jobs.KindSlurm, Version: 2, Data: json.RawMessage(`{}`)}
	if _, err := h.e.Recover(context.Background(), &store.Job{ID: "job-v", Handle: &bad}, h.r); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("Recover with a newer handle: %v", err)
	}
}

func TestLaunchFailures(t *testing.T) {
	h := newHarness(t, nil)
	h.s.sbatchErr = errors.New("sbatch --parsable: exit status 1: sbatch: error: Invalid account or account/partition combination specified")
	_, err := h.e.Launch(context.Background(), &store.Job{ID: "job-x"}, jobs.Placement{Outcome: jobs.PlaceStart}, h.r)
	if err == nil || !strings.Contains(err.Error(), "Invalid account") {
		t.Fatalf("err = %v", err)
	}
	if bound, unbound, _ := h.w.state(); len(bound) != 0 || !slices.Equal(unbound, []string{"job-x"}) {
		t.Fatalf("bound %v unbound %v", bound, unbound)
	}
	h.s.sbatchErr = nil
	h.r.saveErr = errors.New("disk full")
	_, err = h.e.Launch(context.Background(), &store.Job{ID: "job-y"}, jobs.Placement{Outcome: jobs.PlaceStart}, h.r)
	if err == nil || !strings.Contains(err.Error(), "store the Slurm job id 101: disk full") {
		t.Fatalf("err = %v", err)
	}
	h.wantScancel(t, "101")
}

func TestAdmit(t *testing.T) {
	h := newHarness(t, func(c *Config) { *c = Config{} })
	err := h.e.Admit(context.Background(), &store.Job{ID: "a"})
	if !errors.Is(err, jobs.ErrNoExecutor) || !strings.Contains(err.Error(), "target=slurm: no Slurm cluster is configured on this server (start it with --slurm-partition") {
		t.Fatalf("err = %v", err)
	}
	h2 := newHarness(t, nil)
	if err := h2.e.Admit(context.Background(), &store.Job{ID: "a", NumGPUs: 8}); err != nil {
		t.Fatal(err)
	}
}

func TestEndExit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		info      JobInfo
		cancelled bool
		out, tail string
		want      jobs.Exit
	}{
		{name: "cancel asked for", info: JobInfo{ID: "1", State: "CANCELLED"}, cancelled: true, want: jobs.Exit{State: plugins.StateCancelled}},
		{name: "failed, reason and exit", info: JobInfo{ID: "1", State: "FAILED", Reason: "NonZeroExitCode", ExitCode: "1:0"}, out: "/o", tail: "boom",
			want: jobs.Exit{State: plugins.StateFailed, Error: "Slurm job 1 ended FAILED (NonZeroExitCode, exit 1:0) without a final status; see /o\nboom"}},
		{name: "completed but silent", info: JobInfo{ID: "2", State: "COMPLETED", ExitCode: "0:0"},
			want: jobs.Exit{State: plugins.StateFailed, Error: "Slurm job 2 ended COMPLETED (exit 0:0) without a final status"}},
		{name: "cancelled by an admin", info: JobInfo{ID: "3", State: "CANCELLED"}, out: "/o",
			want: jobs.Exit{State: plugins.StateFailed, Error: "Slurm job 3 ended CANCELLED without a final status; see /o"}},
		{name: "node failure is retried", info: JobInfo{ID: "4", State: "NODE_FAIL", Reason: "NodeDown"},
			want: jobs.Exit{Retry: true, Lost: true, Error: "Slurm job 4 ended NODE_FAIL (NodeDown) without a final status"}},
		{name: "preempted is retried", info: JobInfo{ID: "5", State: "PREEMPTED"},
			want: jobs.Exit{Retry: true, Lost: true, Error: "Slurm job 5 ended PREEMPTED without a final status"}},
		{name: "forgotten", info: JobInfo{ID: "6", State: "UNKNOWN"},
			want: jobs.Exit{State: plugins.StateFailed, Error: "Slurm job 6 is no longer known to Slurm without a final status"}},
	} {
		if got := endExit(tc.info, tc.cancelled, tc.out, tc.tail); got != tc.want {
			t.Errorf("%s: got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

func TestNoteFor(t *testing.T) {
	for _, tc := range []struct {
		info JobInfo
		want string
	}{
		{JobInfo{State: "PENDING", Reason: "Resources"}, "Slurm: PENDING (Resources)"},
		{JobInfo{State: "PENDING", Reason: "Priority"}, "Slurm: PENDING (Priority)"},
		{JobInfo{State: "PENDING"}, "Slurm: PENDING"},
		{JobInfo{State: "RUNNING", Nodes: "gpu[01-02]"}, "Slurm: RUNNING on gpu[01-02]"},
		{JobInfo{State: "COMPLETING", Nodes: "n1"}, "Slurm: COMPLETING"},
		{JobInfo{State: "FAILED", Reason: "NonZeroExitCode"}, "Slurm: FAILED (NonZeroExitCode)"},
	} {
		if got := noteFor(tc.info); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.info, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		c          Config
		configured bool
		err        string
	}{
		{name: "nothing set", c: Config{}},
		{name: "partition and URL", c: Config{Partition: "gpu", WorkerURL: "http://h:8001"}, configured: true},
		{name: "URL alone (default partition)", c: Config{WorkerURL: "https://h"}, configured: true},
		{name: "partition without URL", c: Config{Partition: "gpu"}, configured: true, err: "--slurm-partition needs --slurm-worker-url"},
		{name: "not a URL", c: Config{WorkerURL: "h:8001"}, configured: true, err: "want an http:// or https:// URL"},
		{name: "account alone", c: Config{Account: "lab"}, err: "need --slurm-worker-url"},
		{name: "bad env", c: Config{WorkerURL: "http://h", Env: []string{"1X=y"}}, configured: true, err: `--slurm-env "1X=y"`},
		{name: "env without =", c: Config{WorkerURL: "http://h", Env: []string{"X"}}, configured: true, err: "want KEY=VALUE"},
		{name: "token in env", c: Config{WorkerURL: "http://h", Env: []string{"SIMPLETUNER_WORKER_TOKEN=x"}}, configured: true, err: "one-time token"},
		{name: "negative poll", c: Config{WorkerURL: "http://h", Poll: -1}, configured: true, err: "must not be negative"},
	} {
		err := tc.c.Validate()
		if tc.c.Configured() != tc.configured {
			t.Errorf("%s: configured %v", tc.name, tc.c.Configured())
		}
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestTailFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out")
	if got := tailFile(p, 3, 100); got != "" {
		t.Fatalf("missing file: %q", got)
	}
	if err := os.WriteFile(p, []byte("a\nb\nc\nd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := tailFile(p, 3, 100); got != "b\nc\nd" {
		t.Fatalf("got %q", got)
	}
	if err := os.WriteFile(p, []byte(strings.Repeat("x", 50)+"\nlast line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := tailFile(p, 3, 20); got != "last line" {
		t.Fatalf("a line cut by the byte bound must be dropped: %q", got)
	}
}
