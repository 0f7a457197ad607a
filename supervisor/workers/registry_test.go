package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

func TestTokensAreStoredHashedAndRotate(t *testing.T) {
	e := newEnv(t)
	w, tok, err := e.reg.Create(CreateRequest{Name: "gpu-worker-1", Labels: map[string]string{"gpu_type": "a100"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.ID, "worker-") || len(w.ID) != len("worker-")+11 || w.Status != workerproto.StatusConnecting || w.Type != TypePersistent {
		t.Fatalf("new worker %+v", w)
	}
	stored, err := e.db.Workers().Get(w.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(stored)
	if strings.Contains(string(b), tok) || stored.TokenHash != hashToken(tok) {
		t.Fatalf("stored record %s: token in clear, or hash not SHA-256 of it", b)
	}
	if id, err := e.reg.Authenticate(tok); err != nil || id != w.ID {
		t.Fatalf("Authenticate = %q, %v", id, err)
	}
	for _, bad := range []string{"", "x", tok + "x", stored.TokenHash} {
		if _, err := e.reg.Authenticate(bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Authenticate(%.12q) = %v, want ErrInvalidToken", bad, err)
		}
	}
	tok2, err := e.reg.RotateToken(w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Authenticate(tok); !errors.Is(err, ErrInvalidToken) {
		t.Error("the rotated-out token still works")
	}
	if id, _ := e.reg.Authenticate(tok2); id != w.ID {
		t.Error("the new token does not work")
	}
	if _, _, err := e.reg.Create(CreateRequest{Name: "gpu-worker-1"}); !errors.Is(err, ErrExists) {
		t.Errorf("second worker of one name: %v", err)
	}
	for _, bad := range []CreateRequest{{}, {Name: "x", WorkerType: "forever"}, {Name: "x", Labels: map[string]string{"": "v"}}} {
		if _, _, err := e.reg.Create(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestDispatchRunsAJobToTheEnd(t *testing.T) {
	e := newEnv(t)
	// With no worker registered, the refusal names the target and where workers are
	// registered and listed.
	err := e.reg.Executor().Admit(context.Background(), &store.Job{ID: "early", NumGPUs: 1})
	if msg := fmt.Sprint(err); !errors.Is(err, jobs.ErrNoExecutor) || !strings.Contains(msg, "target=worker") ||
		!strings.Contains(msg, "POST /api/admin/workers") || strings.Count(msg, "GET /api/admin/workers") != 1 {
		t.Fatalf("Admit with no worker registered = %v", err)
	}
	id, _ := e.worker("w1", 2, map[string]string{"gpu_type": "a100-80gb"})
	other, _ := e.worker("w2", 1, map[string]string{"gpu_type": "h100"})
	s := e.stream(id)
	j := e.src.Add(&store.Job{ID: "job1", NumGPUs: 1, EnvName: "demo", WorkerLabels: map[string]string{"gpu_type": "a100*"}})

	// A job that no worker could run is refused at submission, naming its labels.
	never := &store.Job{ID: "nope", NumGPUs: 1, WorkerLabels: map[string]string{"gpu_type": "tpu*"}}
	err = e.reg.Executor().Admit(context.Background(), never)
	if !errors.Is(err, jobs.ErrNoExecutor) || !strings.Contains(err.Error(), `{"gpu_type":"tpu*"}`) {
		t.Fatalf("Admit of an unmatched job = %v", err)
	}
	big := &store.Job{ID: "big", NumGPUs: 4, WorkerLabels: map[string]string{"gpu_type": "a100*"}}
	if err := e.reg.Executor().Admit(context.Background(), big); !errors.Is(err, jobs.ErrNoExecutor) || !strings.Contains(err.Error(), "with at least 4 GPUs") {
		t.Fatalf("Admit of a job wanting more GPUs than any worker has = %v", err)
	}
	// w2 has labels that do not match and no stream; w1 is the place.
	task := e.launch(j)
	ev := s.next(t)
	var sub workerproto.JobSubmit
	if err := json.Unmarshal(ev.data, &sub); err != nil || ev.typ != workerproto.EventJobSubmit || sub.JobID != "job1" || sub.ConfigName != "demo" || string(sub.Config) != string(j.Config) {
		t.Fatalf("first event %s %s", ev.typ, ev.data)
	}
	var hd handleData
	if h := e.src.Handle("job1"); h.Kind != jobs.KindWorker || json.Unmarshal(h.Data, &hd) != nil || hd.WorkerID != id {
		t.Fatalf("handle %+v", h)
	}
	if v := e.reg.List(workerproto.StatusBusy); len(v) != 1 || v[0].WorkerID != id || v[0].CurrentJobID == nil || *v[0].CurrentJobID != "job1" {
		t.Fatalf("busy workers %+v", v)
	}
	// A second job waits: the only matching worker is busy.
	j2 := e.src.Add(&store.Job{ID: "job2", NumGPUs: 1, WorkerLabels: map[string]string{"gpu_type": "a100*"}})
	if p, _ := e.reg.Executor().Place(context.Background(), j2); p.Outcome != jobs.PlaceWait || !strings.Contains(p.Reason, "idle worker") {
		t.Fatalf("second placement %+v", p)
	}

	// Another worker cannot report on it; nobody can report on a job that does not exist.
	if err := e.reg.JobStatus(other, "job1", workerproto.JobStatus{Status: "running"}); !errors.Is(err, ErrNotAssigned) {
		t.Errorf("status from another worker: %v", err)
	}
	if _, err := e.reg.Events(other, "job1", workerproto.EventBatch{Events: evs(1, 1)}); !errors.Is(err, ErrNotAssigned) {
		t.Errorf("events from another worker: %v", err)
	}
	if err := e.reg.JobStatus(id, "ghost", workerproto.JobStatus{Status: "running"}); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("status of a missing job: %v", err)
	}

	if err := e.reg.JobStatus(id, "job1", workerproto.JobStatus{Status: "training"}); err != nil || e.src.RunningCalls("job1") != 1 {
		t.Fatalf("training status: %v (running %d)", err, e.src.RunningCalls("job1"))
	}
	if ack, err := e.reg.Events(id, "job1", workerproto.EventBatch{Events: evs(1, 5)}); err != nil || ack.LastSeq != 5 {
		t.Fatalf("events 1..5: %+v %v", ack, err)
	}
	var behind *BehindError
	if _, err := e.reg.Events(id, "job1", workerproto.EventBatch{Events: evs(8, 9)}); !errors.As(err, &behind) || behind.LastSeq != 5 {
		t.Fatalf("a batch with a gap: %v", err)
	}
	if ack, err := e.reg.Events(id, "job1", workerproto.EventBatch{Events: evs(4, 7)}); err != nil || ack.LastSeq != 7 {
		t.Fatalf("an overlapping batch: %+v %v", ack, err)
	}
	// Commands reach the worker over the stream.
	if err := task.Command(context.Background(), plugins.CommandCheckpoint); err != nil {
		t.Fatal(err)
	}
	if ev := s.next(t); ev.typ != workerproto.EventJobCommand || !strings.Contains(string(ev.data), `"command":"checkpoint"`) {
		t.Fatalf("command event %s %s", ev.typ, ev.data)
	}
	// The final status waits for the events it follows.
	if err := e.reg.JobStatus(id, "job1", workerproto.JobStatus{Status: "completed", LastSeq: 9}); !errors.As(err, &behind) || behind.LastSeq != 7 {
		t.Fatalf("final status ahead of the events: %v", err)
	}
	if _, err := e.reg.Events(id, "job1", workerproto.EventBatch{Events: evs(8, 9)}); err != nil {
		t.Fatal(err)
	}
	kicks := e.src.Kicks()
	if err := e.reg.JobStatus(id, "job1", workerproto.JobStatus{Status: "completed", LastSeq: 9}); err != nil {
		t.Fatal(err)
	}
	if x := waitExit(t, task); x != (jobs.Exit{State: "completed"}) {
		t.Fatalf("exit %+v", x)
	}
	if got := len(e.src.Stored("job1")); got != 9 {
		t.Errorf("%d events stored, want 9 (no gap, no double)", got)
	}
	if e.src.Kicks() <= kicks {
		t.Error("a freed worker did not kick the queue")
	}
	if v := e.reg.List(workerproto.StatusIdle); len(v) != 2 {
		t.Errorf("idle workers after the job %+v", v)
	}
	if err := task.Command(context.Background(), plugins.CommandStop); !errors.Is(err, jobs.ErrEnded) {
		t.Errorf("command to an ended job: %v", err)
	}
	if err := e.reg.JobStatus(id, "job1", workerproto.JobStatus{Status: "failed"}); !errors.Is(err, ErrNotAssigned) {
		t.Errorf("status after the end: %v", err)
	}
}

func TestSilentWorkerLosesItsJob(t *testing.T) {
	e := newEnv(t)
	id, _ := e.worker("w1", 1, nil)
	e.stream(id)
	task := e.launch(e.src.Add(&store.Job{ID: "job1", NumGPUs: 1}))
	e.clk.add(time.Minute)
	if err := e.reg.Heartbeat(id, workerproto.Heartbeat{WorkerID: id, Status: "busy", CurrentJobID: strp("job1")}); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Heartbeat(id, workerproto.Heartbeat{WorkerID: "worker-someoneelse"}); !errors.Is(err, ErrMismatch) {
		t.Errorf("heartbeat naming another worker: %v", err)
	}
	e.clk.add(119 * time.Second)
	e.reg.Check()
	if v := e.reg.List(workerproto.StatusOffline); len(v) != 0 {
		t.Fatal("offline within the timeout")
	}
	e.clk.add(2 * time.Second)
	e.reg.Check()
	x := waitExit(t, task)
	if !x.Retry || !x.Lost || x.Error != "worker w1 went offline: no heartbeat for 2m1s" {
		t.Fatalf("exit %+v", x)
	}
	if v := e.reg.List(workerproto.StatusOffline); len(v) != 1 || v[0].Connected || v[0].CurrentJobID != nil {
		t.Fatalf("offline workers %+v", v)
	}
	// The worker comes back still running the job, which was requeued meanwhile: it is
	// told to abandon it, and takes new work.
	resp, err := e.reg.Register(id, workerproto.RegisterRequest{Name: "w1", Persistent: true, CurrentJobID: strp("job1"), GPUInfo: workerproto.GPUInfo{Count: 1}})
	if err != nil || resp.AbandonJob == nil || *resp.AbandonJob != "job1" || resp.ResumeJob != nil {
		t.Fatalf("register after loss: %+v %v", resp, err)
	}
	if v := e.reg.List(workerproto.StatusIdle); len(v) != 1 {
		t.Fatalf("idle after re-register %+v", v)
	}
}

func TestRestartRecoversWorkerJobs(t *testing.T) {
	e := newEnv(t)
	id, _ := e.worker("w1", 1, nil)
	id2, _ := e.worker("w2", 1, nil)
	e.stream(id)
	j := e.src.Add(&store.Job{ID: "job1", NumGPUs: 1})
	e.launch(j)
	if err := e.reg.JobStatus(id, "job1", workerproto.JobStatus{Status: "running"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Events(id, "job1", workerproto.EventBatch{Events: evs(1, 3)}); err != nil {
		t.Fatal(err)
	}
	e.src.Add(&store.Job{ID: "job2", NumGPUs: 1, Status: jobs.StatusRunning, Executor: jobs.KindWorker})
	h2, _ := jobs.NewHandle(jobs.KindWorker, 1, handleData{WorkerID: id2})
	e.src.SaveHandle("job2", h2)

	e.reopen() // the daemon restarts
	if v := e.reg.List(""); len(v) != 2 || v[0].Status != workerproto.StatusOffline || v[1].Status != workerproto.StatusOffline {
		t.Fatalf("workers after restart %+v", v)
	}
	ex := e.reg.Executor()
	j1, _ := e.src.Get("job1")
	t1, err := ex.Recover(context.Background(), j1, e.src)
	if err != nil {
		t.Fatal(err)
	}
	j2, _ := e.src.Get("job2")
	t2, err := ex.Recover(context.Background(), j2, e.src)
	if err != nil {
		t.Fatal(err)
	}
	// w1 returns with its job: resumed from the stored seq. w2 never does: lost.
	e.clk.add(time.Minute)
	resp, err := e.reg.Register(id, workerproto.RegisterRequest{Name: "w1", Persistent: true, CurrentJobID: strp("job1"), GPUInfo: workerproto.GPUInfo{Count: 1}})
	if err != nil || resp.ResumeJob == nil || resp.ResumeJob.JobID != "job1" || resp.ResumeJob.LastSeq != 3 || resp.AbandonJob != nil {
		t.Fatalf("register after restart: %+v %v", resp, err)
	}
	if _, err := e.reg.Events(id, "job1", workerproto.EventBatch{Events: evs(4, 4)}); err != nil {
		t.Fatal(err)
	}
	e.clk.add(61 * time.Second)
	e.reg.Check()
	if x := waitExit(t, t2); !x.Lost || !strings.Contains(x.Error, "worker w2 went offline") {
		t.Fatalf("job2 exit %+v", x)
	}
	if err := e.reg.JobStatus(id, "job1", workerproto.JobStatus{Status: "failed", Error: "boom", LastSeq: 4}); err != nil {
		t.Fatal(err)
	}
	if x := waitExit(t, t1); x != (jobs.Exit{State: "failed", Error: "boom"}) {
		t.Fatalf("job1 exit %+v", x)
	}
}

func TestRegisterResendsAJobTheWorkerNeverGot(t *testing.T) {
	e := newEnv(t)
	id, _ := e.worker("w1", 1, nil)
	s := e.stream(id)
	task := e.launch(e.src.Add(&store.Job{ID: "job1", NumGPUs: 1}))
	s.next(t) // job_submit, lost with the connection
	s.cancel()
	<-s.done
	s.done <- nil // for the cleanup
	resp, err := e.reg.Register(id, workerproto.RegisterRequest{Name: "w1", Persistent: true, GPUInfo: workerproto.GPUInfo{Count: 1}})
	if err != nil || resp.ResumeJob != nil || resp.AbandonJob != nil {
		t.Fatalf("register %+v %v", resp, err)
	}
	s2 := e.stream(id)
	if ev := s2.next(t); ev.typ != workerproto.EventJobSubmit || !strings.Contains(string(ev.data), `"job_id":"job1"`) {
		t.Fatalf("resent %s %s", ev.typ, ev.data)
	}
	// Once the worker acknowledged the job, coming back without it loses it.
	if err := e.reg.JobStatus(id, "job1", workerproto.JobStatus{Status: "starting"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Register(id, workerproto.RegisterRequest{Name: "w1", Persistent: true, GPUInfo: workerproto.GPUInfo{Count: 1}}); err != nil {
		t.Fatal(err)
	}
	if x := waitExit(t, task); !x.Lost || !strings.Contains(x.Error, "without job job1") {
		t.Fatalf("exit %+v", x)
	}
}

func TestDeleteDrainAndStreamMismatch(t *testing.T) {
	e := newEnv(t)
	id, tok := e.worker("w1", 1, nil)
	if _, err := e.reg.OpenStream(id, "worker-AAAAAAAAAAA"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("stream for another id: %v", err)
	}
	s := e.stream(id)
	task := e.launch(e.src.Add(&store.Job{ID: "job1", NumGPUs: 1}))
	s.next(t)
	if err := e.reg.Delete(id, false); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "job1") {
		t.Fatalf("delete busy: %v", err)
	}
	w, err := e.reg.Drain(id)
	if err != nil || w.Status != workerproto.StatusDraining {
		t.Fatalf("drain: %+v %v", w, err)
	}
	if ev := s.next(t); ev.typ != workerproto.EventDrain || string(ev.data) != `{"type":"drain","data":{}}` {
		t.Fatalf("drain event %s %s", ev.typ, ev.data)
	}
	if err := e.reg.Delete(id, true); err != nil {
		t.Fatal(err)
	}
	if ev := s.next(t); ev.typ != workerproto.EventShutdown || !strings.Contains(string(ev.data), "worker_deleted") {
		t.Fatalf("shutdown event %s %s", ev.typ, ev.data)
	}
	if x := waitExit(t, task); !x.Lost || !x.Retry {
		t.Fatalf("exit of a force-deleted worker's job %+v", x)
	}
	if _, err := e.reg.Authenticate(tok); !errors.Is(err, ErrInvalidToken) {
		t.Error("a deleted worker's token still works")
	}
	if _, err := e.db.Workers().Get(id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted worker still stored: %v", err)
	}
	if err := e.reg.Delete(id, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}

func TestBoundWorkerRunsOnlyItsJob(t *testing.T) {
	e := newEnv(t)
	j := e.src.Add(&store.Job{ID: "sjob", NumGPUs: 1, Executor: jobs.KindSlurm, Target: jobs.TargetSlurm})
	tok, err := e.reg.BindJob(j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Command(context.Background(), j.ID, plugins.CommandStop); !errors.Is(err, jobs.ErrUnreachable) {
		t.Fatalf("command before the worker came: %v", err)
	}
	id, err := e.reg.Authenticate(tok)
	if err != nil {
		t.Fatal(err)
	}
	// Pending in Slurm for hours: not lost, not removed.
	e.clk.add(5 * time.Hour)
	e.reg.Check()
	if _, err := e.reg.Register(id, workerproto.RegisterRequest{Name: "node1", GPUInfo: workerproto.GPUInfo{Count: 1}}); err != nil {
		t.Fatal(err)
	}
	s := e.stream(id)
	if ev := s.next(t); ev.typ != workerproto.EventJobSubmit || !strings.Contains(string(ev.data), `"job_id":"sjob"`) {
		t.Fatalf("bound worker's first event %s %s", ev.typ, ev.data)
	}
	// The bound worker is never placed for other jobs, nor admits them.
	other := e.src.Add(&store.Job{ID: "other", NumGPUs: 1})
	if err := e.reg.Executor().Admit(context.Background(), other); !errors.Is(err, jobs.ErrNoExecutor) {
		t.Errorf("admit with only a bound worker: %v", err)
	}
	if p, _ := e.reg.Executor().Place(context.Background(), other); p.Outcome != jobs.PlaceWait {
		t.Errorf("placed on a bound worker: %+v", p)
	}
	if err := e.reg.Command(context.Background(), j.ID, plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	if ev := s.next(t); ev.typ != workerproto.EventJobCancel {
		t.Fatalf("cancel event %s %s", ev.typ, ev.data)
	}
	if err := e.reg.JobStatus(id, j.ID, workerproto.JobStatus{Status: "cancelled"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if x, err := e.reg.Wait(ctx, j.ID); err != nil || x.State != "cancelled" {
		t.Fatalf("Wait = %+v %v", x, err)
	}
	e.reg.Unbind(j.ID)
	if _, err := e.reg.Authenticate(tok); !errors.Is(err, ErrInvalidToken) {
		t.Error("token of an unbound job still works")
	}
	if ws, _ := e.db.Workers().List(); len(ws) != 0 {
		t.Errorf("bound worker record left: %+v", ws)
	}
	if _, err := e.reg.Wait(ctx, j.ID); !errors.Is(err, ErrNotBound) {
		t.Errorf("Wait after Unbind: %v", err)
	}
}

func TestBoundJobSurvivesRestartAndIsLostWhenSilent(t *testing.T) {
	e := newEnv(t)
	e.src.Add(&store.Job{ID: "sjob", NumGPUs: 1, Executor: jobs.KindSlurm})
	tok, err := e.reg.BindJob("sjob")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := e.reg.Authenticate(tok)
	if _, err := e.reg.Register(id, workerproto.RegisterRequest{Name: "node1", CurrentJobID: strp("sjob")}); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if _, err := e.reg.Authenticate(tok); err != nil {
		t.Fatalf("bound token after restart: %v", err)
	}
	e.clk.add(3 * time.Minute)
	e.reg.Check()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if x, err := e.reg.Wait(ctx, "sjob"); err != nil || !x.Lost || !x.Retry {
		t.Fatalf("Wait = %+v %v", x, err)
	}
}

func TestStreamPingsAndEndsOnClose(t *testing.T) {
	e := newEnv(t)
	reg, err := New(Config{PingEvery: 10 * time.Millisecond, Now: e.clk.now}, e.db, e.src, discard())
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := reg.Create(CreateRequest{Name: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := reg.OpenStream(w.ID, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	pings := make(chan string, 4)
	done := make(chan error, 1)
	go func() {
		done <- st.Run(context.Background(), func(typ string, data []byte) error {
			if typ == workerproto.EventPing {
				select {
				case pings <- string(data):
				default:
				}
			}
			return nil
		})
	}()
	select {
	case p := <-pings:
		if p != `{"type":"ping"}` {
			t.Errorf("ping data %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ping")
	}
	if v := reg.List(""); !v[0].Connected {
		t.Error("a streaming worker is not shown connected")
	}
	reg.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the stream")
	}
	if _, err := reg.OpenStream(w.ID, w.ID); !errors.Is(err, ErrClosed) {
		t.Errorf("OpenStream after Close: %v", err)
	}
}
