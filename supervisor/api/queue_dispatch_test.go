package api

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/configs/configstest"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// fakeWorkers is a worker executor over a scripted set of workers: each worker id has
// labels; a job goes to the first whose labels match its worker_labels.
type fakeWorkers struct {
	workers map[string]map[string]string // worker id → labels; read-only after construction

	mu   sync.Mutex // guards seen
	seen []map[string]string
}

// fakeWorkerTask is a job handed to a fake worker: it runs until the test ends.
type fakeWorkerTask struct{ h jobs.Handle }

func (t fakeWorkerTask) Handle() jobs.Handle                            { return t.h }
func (t fakeWorkerTask) Command(context.Context, plugins.Command) error { return nil }
func (t fakeWorkerTask) Wait(ctx context.Context) (jobs.Exit, error) {
	<-ctx.Done()
	return jobs.Exit{}, ctx.Err()
}

func (f *fakeWorkers) Kind() string { return jobs.KindWorker }

// match is the first worker whose labels match j's selector ("" when none).
func (f *fakeWorkers) match(j *store.Job) string {
	for id, labels := range f.workers {
		if jobs.LabelsMatch(j.WorkerLabels, labels) {
			return id
		}
	}
	return ""
}

func (f *fakeWorkers) Admit(_ context.Context, j *store.Job) error {
	f.mu.Lock()
	f.seen = append(f.seen, j.WorkerLabels)
	f.mu.Unlock()
	if f.match(j) == "" {
		return fmt.Errorf("%w: no registered worker matches worker_labels %v; see GET /api/admin/workers", jobs.ErrNoExecutor, j.WorkerLabels)
	}
	return nil
}

func (f *fakeWorkers) Place(_ context.Context, j *store.Job) (jobs.Placement, error) {
	if id := f.match(j); id != "" {
		return jobs.Placement{Outcome: jobs.PlaceStart, Where: id}, nil
	}
	return jobs.Placement{Outcome: jobs.PlaceWait, Reason: "no idle worker matches"}, nil
}

func (f *fakeWorkers) Release(*store.Job, jobs.Placement) {}

func (f *fakeWorkers) Launch(_ context.Context, j *store.Job, p jobs.Placement, r jobs.Reporter) (jobs.Task, error) {
	h, err := jobs.NewHandle(jobs.KindWorker, 1, map[string]string{"worker_id": p.Where})
	if err != nil {
		return nil, err
	}
	if err := r.SaveHandle(j.ID, h); err != nil {
		return nil, err
	}
	r.Running(j.ID)
	return fakeWorkerTask{h}, nil
}

func (f *fakeWorkers) Recover(context.Context, *store.Job, jobs.Reporter) (jobs.Task, error) {
	return nil, jobs.ErrRequeue
}

// dispatchHarness is an API harness whose job manager has the local executor (no GPUs,
// no trainer: a local launch would fail) and the fake worker executor, and a stored
// environment "demo".
func dispatchHarness(t *testing.T, workers *fakeWorkers) (*harness, string) {
	t.Helper()
	root := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	cdir := filepath.Join(root, "config")
	data := filepath.Join(root, "datasets", "demo")
	for _, d := range []string{filepath.Join(cdir, "demo"), data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(data, "x.txt"), []byte("caption"), 0o644)
	dl := fmt.Sprintf(`[{"id":"img","type":"local","dataset_type":"image","instance_data_dir":%q,"caption_strategy":"textfile","resolution":32,"resolution_type":"pixel"},{"id":"txt","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":%q}]`, data, filepath.Join(root, "cache"))
	os.WriteFile(filepath.Join(cdir, "demo", "multidatabackend.json"), []byte(dl), 0o644)
	cfg := fmt.Sprintf(`{"--model_family":"dit","--model_flavour":"tiny","--model_type":"full","--output_dir":%q,"--data_backend_config":%q,"--max_train_steps":10,"--num_train_epochs":0}`,
		filepath.Join(root, "out"), filepath.Join(cdir, "demo", "multidatabackend.json"))
	os.WriteFile(filepath.Join(cdir, "demo", "config.json"), []byte(cfg), 0o644)
	cs, err := configs.New(configs.Options{Dir: cdir, Registry: options.Default(), Settings: &configstest.MemSettings{}, OutputRoot: filepath.Join(root, "out")})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{Configs: cs})
	_, adminKey := h.setup()
	alloc := gpu.NewAllocator(gpu.NewFake(), gpu.Limits{})
	jm, err := jobs.New(jobs.Config{JobsDir: filepath.Join(root, "jobs"), RunDir: filepath.Join(root, "run"), Executors: []jobs.Executor{workers}}, h.db, alloc, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jm.Close)
	if err := jm.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.srv.cfg.Jobs, h.srv.cfg.GPUs = jm, alloc
	h.srv.cfg.Training = training.New(options.Default(), cs, jm, filepath.Join(root, "out"), log)
	return h, adminKey
}

// TestQueueSubmitDispatchesToWorkers: target worker and auto go to a matching worker,
// whose id the answer's allocated_worker_id and the job views carry; the tutorial's glob
// labels reach the executor; a selector no worker matches, or target slurm on a server
// without Slurm, is a 400 that says why.
func TestQueueSubmitDispatchesToWorkers(t *testing.T) {
	workers := &fakeWorkers{workers: map[string]map[string]string{
		"worker-A100aaaaaaa": {"gpu_type": "a100-80gb", "team": "nlp"},
	}}
	h, key := dispatchHarness(t, workers)
	submit := func(body map[string]any) (resp, submitBody) {
		t.Helper()
		body["config_name"] = "demo"
		res := h.do(req{method: "POST", path: "/api/queue/submit", key: key, body: body})
		var sb submitBody
		if res.code == 200 {
			res.json(t, &sb)
		}
		return res, sb
	}

	for _, target := range []string{"worker", "auto"} {
		res, sb := submit(map[string]any{"target": target, "worker_labels": map[string]any{"gpu_type": "a100*", "team": "nlp"}})
		if res.code != 200 || !sb.Success || sb.Status != "running" || sb.AllocatedWorkerID == nil || *sb.AllocatedWorkerID != "worker-A100aaaaaaa" || sb.JobID == nil {
			t.Fatalf("target %s: %d %s, want running on worker-A100aaaaaaa", target, res.code, res.body)
		}
		var j jobBody
		h.do(req{method: "GET", path: "/api/jobs/" + *sb.JobID, key: key}).json(t, &j)
		if j.Target != target || j.Executor == nil || *j.Executor != jobs.KindWorker || j.WorkerID == nil || *j.WorkerID != "worker-A100aaaaaaa" {
			t.Errorf("target %s: job view %+v", target, j)
		}
	}
	workers.mu.Lock()
	got := fmt.Sprint(workers.seen[0])
	workers.mu.Unlock()
	if got != "map[gpu_type:a100* team:nlp]" {
		t.Errorf("the executor saw worker_labels %s, want the tutorial's globs", got)
	}

	res, _ := submit(map[string]any{"target": "worker", "worker_labels": map[string]any{"gpu_type": "h100*"}})
	if res.code != 400 || !strings.Contains(res.detail(), "no registered worker matches worker_labels") || !strings.Contains(res.detail(), "GET /api/admin/workers") {
		t.Errorf("target worker, no match: %d %s, want 400 naming GET /api/admin/workers", res.code, res.body)
	}
	res, _ = submit(map[string]any{"target": "slurm"})
	if res.code != 400 || !strings.Contains(res.detail(), "target=slurm") || strings.Contains(res.detail(), jobs.ErrNoExecutor.Error()) {
		t.Errorf("target slurm without Slurm: %d %s, want 400 with the manager's message", res.code, res.body)
	}
}
