package hookrunner

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
)

type emitted struct {
	mu  sync.Mutex
	evs []string
}

func (e *emitted) emit(job, typ, sev, title, msg string, data any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, _ := json.Marshal(data)
	e.evs = append(e.evs, typ+" "+string(b))
}

func (e *emitted) count(prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, s := range e.evs {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func openDB(t *testing.T, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// script writes its argv, one NUL-terminated element each, and its environment to files.
func script(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func ckptEvent(seq uint64, path string, step int) plugins.Event {
	b, _ := json.Marshal(map[string]any{"path": path, "step": step})
	return plugins.Event{Seq: seq, Type: "training.checkpoint", Time: time.Now(), Data: b}
}

// uploadedEvent is a checkpoint event that reports the checkpoint uploaded to remote.
func uploadedEvent(seq uint64, path string, step int, remote string) plugins.Event {
	b, _ := json.Marshal(map[string]any{"path": path, "step": step, "uploaded": true, "remote_path": remote})
	return plugins.Event{Seq: seq, Type: "training.checkpoint", Time: time.Now(), Data: b}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEachHookRunsOncePerCheckpointAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "runs.log")
	sh := script(t, dir, `echo "$1 $2" >> `+log+"\n")
	cfg := map[string]any{"--output_dir": dir, "--post_checkpoint_script": sh + " {local_checkpoint_path} {global_step}", "--post_upload_script": sh + " upload{remote_checkpoint_path} {global_step}"}
	evs := []plugins.Event{uploadedEvent(3, "checkpoint-10", 10, "hub/checkpoint-10"), uploadedEvent(7, "checkpoint-20", 20, "hub/checkpoint-20")}
	state := filepath.Join(dir, "state")
	for round := range 3 {
		db := openDB(t, state)
		em := &emitted{}
		r := New(db, slog.New(slog.DiscardHandler), Options{Emit: em.emit})
		r.HandleEvents("j1", cfg, evs) // the same events, replayed after each "restart"
		if round == 0 {
			waitFor(t, func() bool { return em.count("hook.finished") == 4 })
		}
		time.Sleep(100 * time.Millisecond)
		r.Close()
		db.Close()
	}
	b, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d runs, want 4 (2 hooks × 2 checkpoints):\n%s", len(lines), b)
	}
	want := []string{filepath.Join(dir, "checkpoint-10") + " 10", "uploadhub/checkpoint-10 10", filepath.Join(dir, "checkpoint-20") + " 20", "uploadhub/checkpoint-20 20"}
	for _, w := range want {
		if !strings.Contains(string(b), w+"\n") {
			t.Errorf("no run %q in:\n%s", w, b)
		}
	}
}

// TestPostUploadHookWaitsForAnUpload: checkpoints saved only locally run
// post_checkpoint_script and never post_upload_script; the checkpoint event that reports
// an upload runs it, once.
func TestPostUploadHookWaitsForAnUpload(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "checkpoints.log")
	marker := filepath.Join(dir, "uploaded")
	ck := script(t, dir, `echo "$1" >> `+log+"\n")
	up := filepath.Join(dir, "upload.sh")
	if err := os.WriteFile(up, []byte("#!/bin/sh\necho \"$1\" >> "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"--output_dir": dir, "--post_checkpoint_script": ck + " {local_checkpoint_path}", "--post_upload_script": up + " {remote_checkpoint_path}"}
	db := openDB(t, filepath.Join(dir, "state"))
	defer db.Close()
	em := &emitted{}
	r := New(db, slog.New(slog.DiscardHandler), Options{Emit: em.emit})
	defer r.Close()
	r.HandleEvents("j", cfg, []plugins.Event{ckptEvent(1, "checkpoint-10", 10), ckptEvent(2, "checkpoint-20", 20)})
	// HandleEvents claims a run before it starts one: no claim, no run.
	for _, c := range []string{"checkpoint-10", "checkpoint-20"} {
		if rec, err := db.HookRuns().Get("j", PostUpload, filepath.Join(dir, c)); err == nil {
			t.Fatalf("post_upload_script claimed for %s, which was not uploaded: %+v", c, rec)
		}
	}
	waitFor(t, func() bool { return em.count("hook.finished") == 2 })
	em.mu.Lock()
	for _, e := range em.evs {
		if !strings.Contains(e, `"hook":"`+PostCheckpoint+`"`) {
			t.Errorf("not a post_checkpoint_script event: %s", e)
		}
	}
	em.mu.Unlock()
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("post_upload_script ran for a checkpoint that was not uploaded")
	}
	// The upload of checkpoint-10 completes: its post-upload hook runs with the remote
	// path; its post-checkpoint hook does not run again.
	r.HandleEvents("j", cfg, []plugins.Event{uploadedEvent(3, "checkpoint-10", 10, "hub/checkpoint-10")})
	waitFor(t, func() bool { return em.count("hook.finished") == 3 })
	if b, _ := os.ReadFile(marker); string(b) != "hub/checkpoint-10\n" {
		t.Fatalf("post_upload_script runs: %q", b)
	}
	if b, _ := os.ReadFile(log); strings.Count(string(b), "\n") != 2 {
		t.Fatalf("post_checkpoint_script runs: %q", b)
	}
}

func TestHostilePlaceholderValuesStayOneLiteralArgument(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "argv")
	sh := script(t, dir, `printf '%s\0' "$@" > `+out+"\nenv > "+out+".env\n")
	hostile := []string{"; rm -rf /", "$(touch " + filepath.Join(dir, "pwned") + ")", "`id`", "$HF_TOKEN", "~root", "a b", "it's", "x\ny", "--delete-all"}
	t.Setenv("HF_TOKEN", "sekrit")
	for _, v := range hostile {
		db := openDB(t, t.TempDir())
		em := &emitted{}
		r := New(db, slog.New(slog.DiscardHandler), Options{Emit: em.emit})
		cfg := map[string]any{"--output_dir": dir, "--tracker_run_name": v, "--post_checkpoint_script": sh + " --name={tracker_run_name} {tracker_run_name}"}
		r.HandleEvents("j", cfg, []plugins.Event{ckptEvent(1, "checkpoint-1", 1)})
		waitFor(t, func() bool { return em.count("hook.finished") == 1 })
		r.Close()
		db.Close()
		b, _ := os.ReadFile(out)
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if len(args) != 2 || args[0] != "--name="+v || args[1] != v {
			t.Errorf("value %q became argv %q", v, args)
		}
		env, _ := os.ReadFile(out + ".env")
		if strings.Contains(string(env), "sekrit") {
			t.Error("the daemon's environment leaked into the hook")
		}
		if !strings.Contains(string(env), "ST_TRACKER_RUN_NAME=") {
			t.Error("no ST_ variables")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("a placeholder value was run by a shell")
	}
}

func TestHungHookIsKilledWithItsChildren(t *testing.T) {
	dir := t.TempDir()
	pidf := filepath.Join(dir, "child.pid")
	sh := script(t, dir, "sleep 999 &\necho $! > "+pidf+"\nwait\n")
	db := openDB(t, t.TempDir())
	defer db.Close()
	em := &emitted{}
	r := New(db, slog.New(slog.DiscardHandler), Options{Emit: em.emit, Timeout: 300 * time.Millisecond})
	defer r.Close()
	r.HandleEvents("j", map[string]any{"--output_dir": dir, "--post_checkpoint_script": sh}, []plugins.Event{ckptEvent(1, "checkpoint-1", 1)})
	waitFor(t, func() bool { return em.count("hook.finished") == 1 })
	b, _ := os.ReadFile(pidf)
	pid := strings.TrimSpace(string(b))
	waitFor(t, func() bool {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		return err != nil || strings.Contains(string(st), ") Z ")
	})
	rec, err := db.HookRuns().Get("j", PostCheckpoint, filepath.Join(dir, "checkpoint-1"))
	if err != nil || rec.ExitCode == nil || *rec.ExitCode == 0 || rec.Error == "" {
		t.Fatalf("record %+v %v", rec, err)
	}
}

func TestUnknownPlaceholderIsReportedNotSkippedSilently(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, t.TempDir())
	defer db.Close()
	em := &emitted{}
	r := New(db, slog.New(slog.DiscardHandler), Options{Emit: em.emit})
	defer r.Close()
	r.HandleEvents("j", map[string]any{"--post_checkpoint_script": "/bin/true {no_such_thing}"}, []plugins.Event{ckptEvent(1, filepath.Join(dir, "c"), 1)})
	waitFor(t, func() bool { return em.count("hook.finished") == 1 })
	if em.count(`hook.finished {"checkpoint"`) != 1 || !strings.Contains(strings.Join(em.evs, " "), "no_such_thing") {
		t.Fatalf("events %v", em.evs)
	}
}

// A script swapped after submission (its folder replaced by one holding another script)
// is refused when the hook runs; the run is recorded failed with the reason.
func TestSwappedScriptIsRefusedAndRecorded(t *testing.T) {
	dir := t.TempDir()
	hooksDir := filepath.Join(dir, "hooks")
	os.MkdirAll(filepath.Join(hooksDir, "sub"), 0o755)
	sh := script(t, filepath.Join(hooksDir, "sub"), "echo checked\n")
	marker := filepath.Join(dir, "evil-ran")
	evil := filepath.Join(dir, "evil")
	os.MkdirAll(evil, 0o755)
	os.Chmod(evil, 0o777) // anyone could have put anything in it
	os.WriteFile(filepath.Join(evil, "hook.sh"), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755)
	if err := os.Rename(filepath.Join(hooksDir, "sub"), filepath.Join(hooksDir, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(evil, filepath.Join(hooksDir, "sub")); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, t.TempDir())
	defer db.Close()
	em := &emitted{}
	r := New(db, slog.New(slog.DiscardHandler), Options{Emit: em.emit})
	defer r.Close()
	r.HandleEvents("j", map[string]any{"--output_dir": dir, "--post_checkpoint_script": sh}, []plugins.Event{ckptEvent(1, "checkpoint-1", 1)})
	waitFor(t, func() bool { return em.count("hook.finished") == 1 })
	rec, err := db.HookRuns().Get("j", PostCheckpoint, filepath.Join(dir, "checkpoint-1"))
	if err != nil || rec.ExitCode == nil || *rec.ExitCode != -1 || !strings.Contains(rec.Error, "is writable by group or others") {
		t.Fatalf("record %+v %v", rec, err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the swapped-in script ran")
	}
}

// TestOnResultHearsEachRun: Options.OnResult hears every run's outcome (the metrics count
// them) before its hook.finished event.
func TestOnResultHearsEachRun(t *testing.T) {
	dir := t.TempDir()
	sh := script(t, dir, `[ "$2" = 20 ] && exit 3
exit 0
`)
	db := openDB(t, filepath.Join(dir, "state"))
	defer db.Close()
	var mu sync.Mutex // guards results
	results := map[string]int{}
	em := &emitted{}
	r := New(db, slog.New(slog.DiscardHandler), Options{Emit: em.emit, OnResult: func(res string) {
		mu.Lock()
		defer mu.Unlock()
		results[res]++
	}})
	defer r.Close()
	cfg := map[string]any{"--output_dir": dir, "--post_checkpoint_script": sh + " {local_checkpoint_path} {global_step}"}
	r.HandleEvents("j1", cfg, []plugins.Event{ckptEvent(1, "checkpoint-10", 10), ckptEvent(2, "checkpoint-20", 20)})
	waitFor(t, func() bool { return em.count("hook.finished") == 2 })
	mu.Lock()
	defer mu.Unlock()
	if results[ResultSucceeded] != 1 || results[ResultFailed] != 1 || len(results) != 2 {
		t.Errorf("OnResult heard %v, want one success and one failure", results)
	}
}
