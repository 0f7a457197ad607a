package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"simpletuner/internal/buildtest"
	"simpletuner/options"
	"simpletuner/plugins/kit/kittest"
)

// buildRealTrainer builds cmd/simpletuner-trainer: the memory check is the trainer's, so
// these tests need the real binary, not the fake.
func buildRealTrainer(t *testing.T) string {
	t.Helper()
	return buildtest.Binary(t, "simpletuner/cmd/simpletuner-trainer")
}

// TestTutorialMemoryWithTheRealTrainer runs the daemon with the real trainer (the memory
// check is the trainer's: the daemon asks it).
//
// The tutorial's fast-path dataloader (1024 px, pixel_area) on dit/tiny, and
// --validation_resolution=1024x1024, are refused by validate (HTML and JSON) and by start
// (422, status invalid) with the memory the job needs and the memory the machine has, and
// no job is created; the same job at the fast path's 32 px is valid. A new dit
// environment starts at the family's resolution, which validate accepts on this machine.
func TestTutorialMemoryWithTheRealTrainer(t *testing.T) {
	trainer := buildRealTrainer(t)
	home := t.TempDir()
	d := start(t, home, "--trainer", trainer)
	c := adminClient(t, d)
	fields := fastPathFields(t, home)
	t.Run("tutorial resolution refused", func(t *testing.T) { tutorialResolutionRefused(t, d, c, home, fields) })
	t.Run("new dit environment fits", func(t *testing.T) { newDitEnvironmentFits(t, d, c, home) })
}

func tutorialResolutionRefused(t *testing.T, d *proc, c *http.Client, home string, fields [][2]string) {

	code, body := form(t, c, d.base+"/api/training/validate", fields, "")
	if code != 200 || !strings.Contains(body, "Configuration Valid") {
		t.Fatalf("32 px with the real trainer: %d %s", code, body)
	}

	dl, err := os.ReadFile(filepath.Join(home, "config", "multidatabackend-once.json"))
	if err != nil {
		t.Fatal(err)
	}
	tutorial := strings.Replace(string(dl), `"resolution":32,"resolution_type":"pixel"`, `"resolution": 1024, "resolution_type": "pixel_area"`, 1)
	if err := os.WriteFile(filepath.Join(home, "config", "multidatabackend-tutorial.json"), []byte(tutorial), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, option string
		fields       [][2]string
		want         []string
	}{
		{"tutorial dataloader", "--data_backend_config", withField(fields, "--data_backend_config", "config/multidatabackend-tutorial.json"),
			[]string{`dataset "demo-images" (resolution 1024 pixel_area) at 1024x1024, batch 1`, "attention scratch 512 GiB"}},
		{"validation resolution", "--validation_resolution",
			withField(withField(fields, "--validation_prompt", "test shot of <token>"), "--validation_resolution", "1024x1024"),
			[]string{"validation images at 1024x1024", "attention scratch 256 GiB"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what, msg string) {
				t.Helper()
				for _, w := range append([]string{"this job needs about", "GiB of memory", "but the machine has", "GiB of RAM"}, tc.want...) {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: message lacks %q:\n%s", what, w, msg)
					}
				}
			}
			code, body := form(t, c, d.base+"/api/training/validate", tc.fields, "")
			if code != 200 || !strings.Contains(body, "Validation Failed") || strings.Contains(body, "Configuration Valid") {
				t.Fatalf("validate (HTML): %d %s", code, body)
			}
			code, body = form(t, c, d.base+"/api/training/validate", tc.fields, "application/json")
			var rep struct {
				Valid  bool `json:"valid"`
				Errors []struct{ Option, Message string }
			}
			if err := json.Unmarshal([]byte(body), &rep); err != nil || code != 200 || rep.Valid || len(rep.Errors) != 1 || rep.Errors[0].Option != tc.option {
				t.Fatalf("validate (JSON): %d %s", code, body)
			}
			check("validate", rep.Errors[0].Message)

			code, body = form(t, c, d.base+"/api/training/start", tc.fields, "application/json")
			var st struct {
				Success    bool    `json:"success"`
				Status     string  `json:"status"`
				JobID      *string `json:"job_id"`
				Validation struct {
					Errors []struct{ Option, Message string }
				}
			}
			if err := json.Unmarshal([]byte(body), &st); err != nil || code != 422 || st.Success || st.Status != "invalid" || st.JobID != nil || len(st.Validation.Errors) != 1 {
				t.Fatalf("start: %d %s", code, body)
			}
			check("start", st.Validation.Errors[0].Message)
		})
	}
	if code, q := call(t, c, "GET", d.base+"/api/queue", nil, nil); code != 200 || len(q["entries"].([]any)) != 0 {
		t.Fatalf("refused starts left a job: %d %v", code, q)
	}
}

func newDitEnvironmentFits(t *testing.T, d *proc, c *http.Client, home string) {
	dir := newEnv(t, c, d, home, "fresh")
	want := options.Default().DefaultResolution("dit")
	cfg := storedConfig(t, c, d, "fresh", nil)
	if fmt.Sprint(cfg["--resolution"]) != fmt.Sprint(want) || want >= 1024 {
		t.Fatalf("a new dit environment has --resolution %v, want the family's %g", cfg["--resolution"], want)
	}
	dlPath := filepath.Join(dir, "multidatabackend.json")
	raw, err := os.ReadFile(dlPath)
	if err != nil {
		t.Fatal(err)
	}
	var dl []map[string]any
	if err := json.Unmarshal(raw, &dl); err != nil || len(dl) != 2 {
		t.Fatalf("starter dataloader %s: %v", raw, err)
	}
	if fmt.Sprint(dl[0]["resolution"]) != fmt.Sprint(want) {
		t.Fatalf("starter dataset resolution %v, want %g", dl[0]["resolution"], want)
	}
	// Point the starter dataloader at data, as a person would, and validate the
	// environment as it stands.
	dl[0]["instance_data_dir"] = filepath.Join(home, "datasets", "demo")
	dl[1]["cache_dir"] = filepath.Join(home, "cache", "text", "fresh")
	raw, _ = json.Marshal(dl)
	if err := os.WriteFile(dlPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := call(t, c, "POST", d.base+"/api/configs/fresh/activate", nil, nil); code != 200 {
		t.Fatalf("activate: %d %v", code, body)
	}
	code, body := form(t, c, d.base+"/api/training/validate", [][2]string{{"__active_tab__", "model"}}, "application/json")
	var rep struct {
		Valid  bool `json:"valid"`
		Errors []struct{ Option, Message string }
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != 200 || !rep.Valid {
		t.Fatalf("validate the new environment: %d %s", code, body)
	}
}

// jobStatusEvents returns the stored job.status events of a job (daemon events: the
// training events endpoint has them, the job's own trainer events do not).
func jobStatusEvents(t *testing.T, d *proc, c *http.Client, id string) []map[string]any {
	t.Helper()
	code, body := call(t, c, "GET", d.base+"/api/training/events?types=job.status&job_id="+id, nil, nil)
	if code != 200 {
		t.Fatalf("events of %s: %d %v", id, code, body)
	}
	var out []map[string]any
	for _, e := range body["events"].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// crashReport waits for job id to fail and returns its error as the training status, the
// job and its terminal job.status event report it.
func crashReport(t *testing.T, d *proc, c *http.Client, id string) (status, job, event string) {
	t.Helper()
	j := waitJob(t, c, d.base, id, 30*time.Second, "failed")
	job = fmt.Sprint(j["error"])
	code, st := call(t, c, "GET", d.base+"/api/training/status", nil, nil)
	if code != 200 || st["status"] != "error" {
		t.Fatalf("training status: %d %v", code, st)
	}
	status = fmt.Sprint(st["job_info"].(map[string]any)["message"])
	deadline := time.Now().Add(20 * time.Second)
	for event == "" {
		for _, e := range jobStatusEvents(t, d, c, id) {
			if e["severity"] == "error" && strings.Contains(fmt.Sprint(e["title"]), "failed") {
				event = fmt.Sprint(e["message"])
			}
		}
		if event == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no terminal job.status event in %v", jobStatusEvents(t, d, c, id))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return status, job, event
}

// TestKilledTrainerSaysKilledAndQuotesItsStderr: a trainer killed with SIGKILL fails its job
// with "killed (signal 9)" and the last lines it wrote on stderr, in the training status,
// the job and its terminal event.
func TestKilledTrainerSaysKilledAndQuotesItsStderr(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, append(fakeTrainerArgs(100000, 20), "--trainer-env", kittest.EnvStderr+"=reading shard 7 of 9|allocating 3 GiB for the optimizer")...)
	c := adminClient(t, d)
	id := startRunning(t, d, c, fastPathFields(t, home))
	code, st := call(t, c, "GET", d.base+"/api/training/status", nil, nil)
	pid, _ := st["job_info"].(map[string]any)["pid"].(float64)
	if code != 200 || pid <= 1 {
		t.Fatalf("status of a running job: %d %v", code, st)
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	status, job, event := crashReport(t, d, c, id)
	for what, msg := range map[string]string{"status": status, "job": job, "event": event} {
		for _, w := range []string{"killed (signal 9)", "reading shard 7 of 9\nallocating 3 GiB for the optimizer"} {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error lacks %q:\n%s", what, w, msg)
			}
		}
	}
}

// TestPanickedTrainerShowsThePanic: a trainer whose process dies of a panic (exit status 2,
// no exit record) fails its job with the exit status, the panic and its stack's last lines.
func TestPanickedTrainerShowsThePanic(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, append(fakeTrainerArgs(100000, 20), "--trainer-env", kittest.EnvPanicAt+"=3")...)
	c := adminClient(t, d)
	id := startJob(t, d, c, fastPathFields(t, home))
	status, job, event := crashReport(t, d, c, id)
	for what, msg := range map[string]string{"status": status, "job": job, "event": event} {
		for _, w := range []string{"exited with status 2", "panic: simulated panic at step 3", "goroutine", "kittest"} {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error lacks %q:\n%s", what, w, msg)
			}
		}
	}
}
