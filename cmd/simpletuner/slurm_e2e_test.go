package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"simpletuner/plugins/kit/kittest"
	"simpletuner/supervisor/slurm"
	"simpletuner/supervisor/slurm/slurmtest"
)

// freePort returns a loopback port that was free a moment ago. The Slurm jobs' workers
// must be told the daemon's URL before it starts, so this test cannot let the daemon
// pick its port.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// slurmState is Slurm's state of the job named simpletuner-<jobID>.
func slurmState(t *testing.T, env []string, jobID string) string {
	t.Helper()
	cmd := exec.Command("squeue", "-h", "-t", "all", "-n", "simpletuner-"+jobID, "-o", "%T")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("squeue: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestSlurmRunsCancelsAndFailsJobs runs the daemon against a real one-node Slurm with
// target=slurm: each job is a Slurm batch job whose script runs `simpletuner worker
// --job` (this test binary, which makes the fake trainer its trainer). A job that waits
// behind another Slurm job shows Slurm's pending reason and is cancelled through the API
// (scancel: Slurm says CANCELLED); a job runs to completion with its events; a running
// job is cancelled through the API by its worker; a running job outlives a daemon
// restart and is cancelled after it; a job whose worker never starts fails with Slurm's
// state, reason and exit code and its output.
func TestSlurmRunsCancelsAndFailsJobs(t *testing.T) {
	_, slurmEnv := slurmtest.Up(t)
	cmdEnv := slurm.CommandEnv(os.Environ(), slurmEnv...)
	home := t.TempDir()
	writeEnv(t, home, "demo")
	port := freePort(t)
	tmp := filepath.Join(home, "node-tmp") // the workers' state lies here, so it goes with the test
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	// The worker command: the test binary as `simpletuner worker`, with the fake trainer.
	// Marker files (each consumed by the job that finds it) make one worker fail to start
	// or one trainer train for good.
	failNext, slowNext := filepath.Join(home, "fail-next-worker"), filepath.Join(home, "slow-next-worker")
	wrapper := filepath.Join(home, "slurm-worker")
	script := fmt.Sprintf("#!/bin/sh\nif mv %q %q.taken 2>/dev/null; then echo 'the worker cannot start here (test)'; exit 3; fi\n"+
		"steps=30\nif mv %q %q.taken 2>/dev/null; then steps=1000000; fi\n"+
		"exec %q \"$@\" --trainer %q --trainer-env %s=1 --trainer-env %s=$steps --trainer-env %s=20\n",
		failNext, failNext, slowNext, slowNext, os.Args[0], os.Args[0], asTrainer, kittest.EnvSteps, kittest.EnvStepMS)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	args := append(fakeTrainerArgs(30, 20), "--port", port, "--slurm-worker-url", "http://127.0.0.1:"+port,
		"--slurm-worker-command", wrapper, "--slurm-env", asDaemon+"=1", "--slurm-env", "SIMPLETUNER_HOME="+filepath.Join(home, "worker-home"),
		"--slurm-env", "TMPDIR="+tmp,
		"--slurm-poll", "200ms", "--slurm-sbatch-arg", "--export=ALL")
	d := startEnv(t, home, slurmEnv, args...)
	if d.base == "" {
		t.Fatalf("daemon did not start: %s", d.stderr.String())
	}
	defer func() { d.stop() }() // the daemon running at the end (it is restarted below)
	defer killTrainersUnder(home)
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.stderr.String())
			out, _ := filepath.Glob(filepath.Join(home, "jobs", "*", "slurm-*.out"))
			for _, f := range out {
				b, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", f, b)
			}
		}
	}()
	c := adminClient(t, d)
	submit := func() (string, time.Time) {
		t.Helper()
		at := time.Now()
		code, r := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "demo", "target": "slurm"}, nil)
		id, _ := r["job_id"].(string)
		if code != 200 || r["success"] != true || id == "" {
			t.Fatalf("submit target=slurm: %d %v\n%s", code, r, d.stderr.String())
		}
		return id, at
	}

	// 1. Both CPUs of the node are taken by another Slurm job: ours waits, and says why.
	drv := slurm.NewDriver(slurm.ExecRunner{Env: cmdEnv})
	blocker, err := drv.Submit(context.Background(), slurm.SubmitSpec{JobName: "blocker", Output: "/dev/null",
		ExtraArgs: []string{"-c", "2", "--export=ALL"}, Script: "#!/bin/sh\nexec sleep 300\n"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the blocker Slurm job runs", func() bool {
		jobs, err := drv.Query(context.Background(), []string{blocker})
		return err == nil && jobs[blocker].State == "RUNNING"
	})
	pending, _ := submit()
	waitFor(t, 30*time.Second, "the queue shows Slurm's pending reason", func() bool {
		j := jobState(t, c, d.base, pending)
		return j["note"] == "Slurm: PENDING (Resources)" && j["executor"] == "slurm"
	})
	if code, r := call(t, c, "POST", d.base+"/api/queue/"+pending+"/cancel", nil, nil); code != 200 {
		t.Fatalf("cancel: %d %v", code, r)
	}
	waitJob(t, c, d.base, pending, 30*time.Second, "cancelled")
	if s := slurmState(t, cmdEnv, pending); s != "CANCELLED" {
		t.Fatalf("Slurm says %q of the cancelled job, want CANCELLED", s)
	}
	if err := drv.Cancel(context.Background(), blocker); err != nil {
		t.Fatal(err)
	}

	// 2. A job runs on Slurm to completion; its events arrive through the worker.
	done, submitted := submit()
	waitFor(t, 60*time.Second, "the first trainer event of the Slurm job", func() bool {
		_, evs := call(t, c, "GET", d.base+"/api/jobs/"+done+"/events", nil, nil)
		list, _ := evs["events"].([]any)
		return len(list) > 0
	})
	t.Logf("target=slurm: submit → first trainer event %v", time.Since(submitted).Round(time.Millisecond))
	j := waitJob(t, c, d.base, done, 60*time.Second, "completed", "failed", "cancelled")
	if j["status"] != "completed" || j["executor"] != "slurm" {
		t.Fatalf("slurm job: %v\n%s", j, d.stderr.String())
	}
	_, evs := call(t, c, "GET", d.base+"/api/jobs/"+done+"/events", nil, nil)
	if kinds := fmt.Sprint(evs["events"]); !strings.Contains(kinds, "completed") {
		t.Fatalf("events of the completed job lack its end: %.2000s", kinds)
	}
	waitFor(t, 30*time.Second, "Slurm ends the job's batch job", func() bool { return slurmState(t, cmdEnv, done) == "COMPLETED" })

	// 3. A running job is cancelled through the API: its worker cancels the trainer and
	// reports it, and the worker's Slurm job ends by itself (COMPLETED).
	slowJob := func() string {
		t.Helper()
		if err := os.WriteFile(slowNext, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		id, _ := submit()
		waitFor(t, 60*time.Second, "the long job trains on Slurm", func() bool {
			j := jobState(t, c, d.base, id)
			if j["status"] != "running" || !strings.HasPrefix(fmt.Sprint(j["note"]), "Slurm: RUNNING on ") {
				return false
			}
			_, evs := call(t, c, "GET", d.base+"/api/jobs/"+id+"/events", nil, nil)
			list, _ := evs["events"].([]any)
			return len(list) > 0 // the worker follows its trainer
		})
		return id
	}
	cancel := func(id string) {
		t.Helper()
		if code, r := call(t, c, "POST", d.base+"/api/queue/"+id+"/cancel", nil, nil); code != 200 {
			t.Fatalf("cancel: %d %v", code, r)
		}
		waitJob(t, c, d.base, id, 30*time.Second, "cancelled")
	}
	running := slowJob()
	cancel(running)
	waitFor(t, 30*time.Second, "the cancelled job's Slurm job ends", func() bool { return slurmState(t, cmdEnv, running) == "COMPLETED" })

	// 3b. The daemon restarts while a job trains on Slurm: it follows the Slurm job again
	// from the stored handle, and the job's worker registers again; the job can still be
	// cancelled. (Whether the worker's stream is back yet decides who ends the Slurm job:
	// the worker, or scancel at once.)
	running = slowJob()
	if err, _ := d.stop(); err != nil {
		t.Fatalf("daemon stop: %v", err)
	}
	d = startEnv(t, home, slurmEnv, args...)
	d.waitReady(c)
	waitFor(t, 60*time.Second, "the restarted daemon follows the Slurm job and its worker again", func() bool {
		j := jobState(t, c, d.base, running)
		return j["status"] == "running" && strings.HasPrefix(fmt.Sprint(j["note"]), "Slurm: RUNNING on ") &&
			strings.Contains(d.stderr.String(), "worker registered")
	})
	cancel(running)
	waitFor(t, 30*time.Second, "the cancelled job's Slurm job ends", func() bool {
		s := slurmState(t, cmdEnv, running)
		return s == "COMPLETED" || s == "CANCELLED"
	})

	// 4. A job whose worker never starts fails with Slurm's reason and the output's end.
	if err := os.WriteFile(failNext, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	failed, _ := submit()
	j = waitJob(t, c, d.base, failed, 60*time.Second, "completed", "failed", "cancelled")
	msg := fmt.Sprint(j["error"])
	if j["status"] != "failed" || !strings.Contains(msg, "ended FAILED (NonZeroExitCode, exit 3:0) without a final status; see "+filepath.Join(home, "jobs", failed, "slurm-")) ||
		!strings.Contains(msg, "the worker cannot start here (test)") {
		t.Fatalf("failed slurm job: %v", j)
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSlurmTrainsDitTinyWithTheRealTrainer: a dit/tiny job with target=slurm runs the real
// trainer on a real one-node Slurm (inside the batch job's one-job worker) on four
// captioned images to completion: checkpoints and the final model land in its output
// directory, and its events reach the daemon through the worker.
func TestSlurmTrainsDitTinyWithTheRealTrainer(t *testing.T) {
	_, slurmEnv := slurmtest.Up(t)
	trainer := buildRealTrainer(t)
	home := t.TempDir()
	data := filepath.Join(home, "datasets", "shapes")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, c := range []color.RGBA{{255, 0, 0, 255}, {0, 0, 255, 255}, {0, 200, 0, 255}, {250, 220, 0, 255}} {
		img := image.NewRGBA(image.Rect(0, 0, 32, 32))
		for p := range img.Pix {
			img.Pix[p] = [4]uint8{c.R, c.G, c.B, c.A}[p%4]
		}
		var b bytes.Buffer
		png.Encode(&b, img)
		os.WriteFile(filepath.Join(data, fmt.Sprintf("%d.png", i)), b.Bytes(), 0o644)
		os.WriteFile(filepath.Join(data, fmt.Sprintf("%d.txt", i)), []byte(fmt.Sprintf("a square of colour %d", i)), 0o644)
	}
	cdir := filepath.Join(home, "config", "tiny")
	os.MkdirAll(cdir, 0o755)
	out := filepath.Join(home, "output", "tiny")
	dl := fmt.Sprintf(`[{"id":"img","type":"local","dataset_type":"image","instance_data_dir":%q,"caption_strategy":"textfile","resolution":32,"resolution_type":"pixel","minimum_image_size":16},{"id":"txt","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":%q}]`,
		data, filepath.Join(home, "cache", "text"))
	os.WriteFile(filepath.Join(cdir, "multidatabackend.json"), []byte(dl), 0o644)
	cfg := fmt.Sprintf(`{"--model_family":"dit","--model_flavour":"tiny","--model_type":"full","--output_dir":%q,"--data_backend_config":%q,"--max_train_steps":20,"--num_train_epochs":0,"--train_batch_size":1,"--checkpointing_steps":10}`,
		out, filepath.Join(cdir, "multidatabackend.json"))
	os.WriteFile(filepath.Join(cdir, "config.json"), []byte(cfg), 0o644)

	port := freePort(t)
	wrapper := filepath.Join(home, "slurm-worker")
	if err := os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nexec %q \"$@\" --trainer %q\n", os.Args[0], trainer)), 0o755); err != nil {
		t.Fatal(err)
	}
	d := startEnv(t, home, slurmEnv, "--trainer", trainer, "--port", port, "--slurm-worker-url", "http://127.0.0.1:"+port,
		"--slurm-worker-command", wrapper, "--slurm-env", asDaemon+"=1", "--slurm-env", "SIMPLETUNER_HOME="+filepath.Join(home, "worker-home"),
		"--slurm-env", "TMPDIR="+filepath.Join(home), "--slurm-poll", "200ms", "--slurm-sbatch-arg", "--export=ALL")
	if d.base == "" {
		t.Fatalf("daemon did not start: %s", d.stderr.String())
	}
	defer killTrainersUnder(home)
	c := adminClient(t, d)
	code, r := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "tiny", "target": "slurm"}, nil)
	id, _ := r["job_id"].(string)
	if code != 200 || id == "" {
		t.Fatalf("submit target=slurm: %d %v", code, r)
	}
	j := waitJob(t, c, d.base, id, 240*time.Second, "completed", "failed", "cancelled")
	if j["status"] != "completed" || j["executor"] != "slurm" {
		logs, _ := filepath.Glob(filepath.Join(home, "jobs", id, "slurm-*.out"))
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			t.Logf("%s:\n%s", f, b)
		}
		t.Fatalf("the Slurm job ended %v on %v: %v\n%s", j["status"], j["executor"], j["error"], d.stderr.String())
	}
	for _, want := range []string{"checkpoint-10", "checkpoint-20", "model_index.json", "transformer"} {
		if _, err := os.Stat(filepath.Join(out, want)); err != nil {
			t.Errorf("the real trainer's output lacks %s: %v", want, err)
		}
	}
	checkSeqs(t, jobEvents(t, c, d.base, id), 20)
}
