package slurm

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSqueue(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      map[string]JobInfo
		err       string
	}{
		{name: "empty", out: "", want: map[string]JobInfo{}},
		{name: "pending with a reason", out: "12|PENDING|Resources|\n",
			want: map[string]JobInfo{"12": {ID: "12", State: "PENDING", Reason: "Resources"}}},
		{name: "running on a node, reason None dropped", out: "12|RUNNING|None|n1\n",
			want: map[string]JobInfo{"12": {ID: "12", State: "RUNNING", Nodes: "n1"}}},
		{name: "several, ended ones too", out: "6|CANCELLED|None|n1\n2|COMPLETED|None|n1\n1|FAILED|NonZeroExitCode|n1\n",
			want: map[string]JobInfo{
				"6": {ID: "6", State: "CANCELLED", Nodes: "n1"},
				"2": {ID: "2", State: "COMPLETED", Nodes: "n1"},
				"1": {ID: "1", State: "FAILED", Reason: "NonZeroExitCode", Nodes: "n1"}}},
		{name: "timeout and node fail", out: "7|TIMEOUT|TimeLimit|gpu[01-02]\n8|NODE_FAIL|NodeDown|gpu03\n",
			want: map[string]JobInfo{
				"7": {ID: "7", State: "TIMEOUT", Reason: "TimeLimit", Nodes: "gpu[01-02]"},
				"8": {ID: "8", State: "NODE_FAIL", Reason: "NodeDown", Nodes: "gpu03"}}},
		{name: "format drift", out: "12 RUNNING None n1\n", err: "want id|state|reason|nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkParse(t, parseSqueue, tc.out, tc.want, tc.err) })
	}
}

// checkParse runs a parser on out and wants want, or an error containing wantErr.
func checkParse(t *testing.T, parse func([]byte) (map[string]JobInfo, error), out string, want map[string]JobInfo, wantErr string) {
	t.Helper()
	got, err := parse([]byte(out))
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want %q", err, wantErr)
		}
		return
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
}

func TestParseSacct(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      map[string]JobInfo
		err       string
	}{
		{name: "header only (jobcomp knows nothing yet)", out: "JobID|State|ExitCode|Reason\n", want: map[string]JobInfo{}},
		{name: "failed with exit code", out: "JobID|State|ExitCode|Reason\n1|FAILED|3:0|\n",
			want: map[string]JobInfo{"1": {ID: "1", State: "FAILED", ExitCode: "3:0"}}},
		{name: "cancelled by uid, steps skipped", out: "JobID|State|ExitCode|Reason\n6|CANCELLED by 0|0:15|None\n6.batch|CANCELLED|0:15|\n6.extern|COMPLETED|0:0|\n",
			want: map[string]JobInfo{"6": {ID: "6", State: "CANCELLED", ExitCode: "0:15"}}},
		{name: "columns in another order, no Reason column", out: "State|JobID|ExitCode\nOUT_OF_MEMORY|9|0:125\n",
			want: map[string]JobInfo{"9": {ID: "9", State: "OUT_OF_MEMORY", ExitCode: "0:125"}}},
		{name: "later record of a reused id wins", out: "JobID|State|ExitCode\n4|FAILED|1:0\n4|COMPLETED|0:0\n",
			want: map[string]JobInfo{"4": {ID: "4", State: "COMPLETED", ExitCode: "0:0"}}},
		{name: "no header", out: "1|FAILED|3:0\n", err: "want a header with JobID"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkParse(t, parseSacct, tc.out, tc.want, tc.err) })
	}
}

func TestParseScontrol(t *testing.T) {
	line := "JobId=1 JobName=simpletuner-x UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 RunTime=00:00:03 NodeList=n1 BatchHost=n1 ReqNodeList=(null)"
	got, ok := parseScontrol([]byte(line))
	want := JobInfo{ID: "1", State: "FAILED", Reason: "NonZeroExitCode", ExitCode: "3:0", Nodes: "n1"}
	if !ok || got != want {
		t.Fatalf("got %+v %v, want %+v", got, ok, want)
	}
	if _, ok := parseScontrol([]byte("slurm_load_jobs error: Invalid job id specified")); ok {
		t.Fatal("an error line parsed as a job")
	}
}

func TestParseSbatch(t *testing.T) {
	for _, tc := range []struct{ out, want, err string }{
		{out: "123\n", want: "123"},
		{out: "123;cluster2\n", want: "123"},
		{out: "sbatch: warning: something\n77\n", want: "77"},
		{out: "Submitted batch job 5\n", err: "want a job id"},
		{out: "", err: "want a job id"},
	} {
		got, err := parseSbatch([]byte(tc.out))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.out, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.out, got, err, tc.want)
		}
	}
}

func TestStates(t *testing.T) {
	for _, tc := range []struct {
		raw, norm string
		ended     bool
	}{
		{"PENDING", "PENDING", false}, {"RUNNING", "RUNNING", false}, {"COMPLETING", "COMPLETING", false},
		{"CONFIGURING", "CONFIGURING", false}, {"REQUEUED", "REQUEUED", false}, {"SUSPENDED", "SUSPENDED", false},
		{"COMPLETED", "COMPLETED", true}, {"FAILED", "FAILED", true}, {"CANCELLED by 1000", "CANCELLED", true},
		{"TIMEOUT", "TIMEOUT", true}, {"NODE_FAIL", "NODE_FAIL", true}, {"OUT_OF_MEMORY", "OUT_OF_MEMORY", true},
		{"PREEMPTED", "PREEMPTED", true}, {"BOOT_FAIL", "BOOT_FAIL", true}, {"DEADLINE", "DEADLINE", true},
		{"cancelled+", "CANCELLED", true}, {"SOME_NEW_STATE", "SOME_NEW_STATE", false},
	} {
		n := normState(tc.raw)
		if n != tc.norm || terminalState(n) != tc.ended {
			t.Errorf("%q: norm %q ended %v; want %q %v", tc.raw, n, terminalState(n), tc.norm, tc.ended)
		}
	}
}

func TestSbatchArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    SubmitSpec
		want []string
	}{
		{name: "CPU job, cluster defaults", s: SubmitSpec{JobName: "simpletuner-a", Output: "/j/a/slurm-%j.out"},
			want: []string{"--parsable", "--export=NONE", "--job-name=simpletuner-a", "-o", "/j/a/slurm-%j.out"}},
		{name: "everything", s: SubmitSpec{JobName: "simpletuner-b", Output: "/o", Partition: "gpu", Account: "lab", GPUs: 2,
			ExtraArgs: []string{"--time=1:00:00", "--qos=high"}},
			want: []string{"--parsable", "--export=NONE", "--job-name=simpletuner-b", "-o", "/o", "--partition=gpu", "--account=lab",
				"--gres=gpu:2", "--time=1:00:00", "--qos=high"}},
	} {
		if got := sbatchArgs(tc.s); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestWorkerScriptRunsTheWorker runs the script with sh against a stand-in worker that
// prints its arguments and environment: quoting holds for values with quotes and spaces.
func TestWorkerScriptRunsTheWorker(t *testing.T) {
	dir := t.TempDir()
	worker := filepath.Join(dir, "simple tuner")
	if err := os.WriteFile(worker, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"arg=$a\"; done\necho \"tok=$SIMPLETUNER_WORKER_TOKEN\"\necho \"odd=$ODD\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := workerScript(workerSpec{Command: worker, URL: "http://10.0.0.1:8001", JobID: "job-1", Token: "t0k'en",
		Env: []string{"ODD=it's $HOME; `x`"}})
	cmd := exec.Command("sh", "-s")
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = []string{"SLURM_JOB_ID=42", "TMPDIR=/scratch"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s\nscript:\n%s", err, out, script)
	}
	want := "arg=worker\narg=--orchestrator-url\narg=http://10.0.0.1:8001\narg=--job\narg=job-1\narg=--name\narg=slurm-job-1\n" +
		"arg=--state-dir\narg=/scratch/simpletuner-worker-job-1-42\ntok=t0k'en\nodd=it's $HOME; `x`\n"
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s\nscript:\n%s", out, want, script)
	}
}

// scriptRunner is a Runner whose commands are given as Go functions, recording each call.
type scriptRunner struct {
	calls []string
	cmds  map[string]func(args []string) (string, error)
}

func (r *scriptRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	r.calls = append(r.calls, name+" "+strings.Join(args, " "))
	f, ok := r.cmds[name]
	if !ok {
		return nil, errors.New(name + ": not found")
	}
	out, err := f(args)
	return []byte(out), err
}

func TestQueryFallsBack(t *testing.T) {
	r := &scriptRunner{cmds: map[string]func([]string) (string, error){
		// squeue still knows 1 (ended, no exit code there) and 2; 3 and 4 are gone.
		"squeue": func([]string) (string, error) { return "1|FAILED|NonZeroExitCode|n1\n2|RUNNING|None|n1\n", nil },
		"sacct": func(args []string) (string, error) {
			if args[0] == "-c" { // the completion log knows 1 and 3
				return "JobID|State|ExitCode|Reason\n1|FAILED|3:0|\n3|TIMEOUT|0:0|\n", nil
			}
			return "", errors.New("Slurm accounting storage is disabled")
		},
		"scontrol": func([]string) (string, error) { return "", errors.New(invalidJobID) },
	}}
	got, err := NewDriver(r).Query(context.Background(), []string{"1", "2", "3", "4"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]JobInfo{
		"1": {ID: "1", State: "FAILED", Reason: "NonZeroExitCode", Nodes: "n1", ExitCode: "3:0"},
		"2": {ID: "2", State: "RUNNING", Nodes: "n1"},
		"3": {ID: "3", State: "TIMEOUT", ExitCode: "0:0"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	wantCalls := []string{
		"squeue -h -t all -j 1,2,3,4 -o %i|%T|%r|%N",
		"sacct -c --parsable2 -o JobID,State,ExitCode,Reason -j 1,3,4",
		"sacct --parsable2 -o JobID,State,ExitCode,Reason -j 1,3,4",
	}
	if !reflect.DeepEqual(r.calls, wantCalls) {
		t.Fatalf("calls %q\nwant %q", r.calls, wantCalls)
	}
}

func TestQueryScontrolGivesTheExitCode(t *testing.T) {
	r := &scriptRunner{cmds: map[string]func([]string) (string, error){
		"squeue": func([]string) (string, error) { return "5|OUT_OF_MEMORY|OutOfMemory|n2\n", nil },
		"sacct":  func([]string) (string, error) { return "", errors.New("Slurm accounting storage is disabled") },
		"scontrol": func([]string) (string, error) {
			return "JobId=5 JobState=OUT_OF_MEMORY Reason=OutOfMemory ExitCode=0:125 NodeList=n2", nil
		},
	}}
	got, err := NewDriver(r).Query(context.Background(), []string{"5"})
	if err != nil {
		t.Fatal(err)
	}
	if got["5"].ExitCode != "0:125" {
		t.Fatalf("got %+v", got)
	}
}

func TestQueryInvalidJobIDMeansUnknown(t *testing.T) {
	r := &scriptRunner{cmds: map[string]func([]string) (string, error){
		"squeue": func([]string) (string, error) {
			return "", errors.New("squeue: exit status 1: slurm_load_jobs error: " + invalidJobID)
		},
		"sacct": func([]string) (string, error) { return "JobID|State|ExitCode|Reason\n", nil },
	}}
	got, err := NewDriver(r).Query(context.Background(), []string{"9"})
	if err != nil || len(got) != 0 {
		t.Fatalf("got %+v, %v; want no job and no error", got, err)
	}
	r.cmds["squeue"] = func([]string) (string, error) {
		return "", errors.New("squeue: exit status 1: slurm_load_jobs error: Unable to contact slurm controller")
	}
	if _, err := NewDriver(r).Query(context.Background(), []string{"9"}); err == nil || !strings.Contains(err.Error(), "Unable to contact") {
		t.Fatalf("err = %v, want squeue's", err)
	}
}

// TestExecRunnerCarriesStderr runs real commands: a failing one's error names it and
// carries what it wrote to standard error.
func TestExecRunnerCarriesStderr(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "sbatch")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\ncat >/dev/null\necho \"sbatch: error: Batch job submission failed: Invalid partition name specified ($SLURM_CONF)\" >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := NewDriver(ExecRunner{Env: []string{"PATH=" + dir + ":/usr/bin:/bin", "SLURM_CONF=/c/slurm.conf"}})
	_, err := d.Submit(context.Background(), SubmitSpec{JobName: "x", Partition: "nope", Script: "#!/bin/sh\n"})
	if err == nil || !strings.Contains(err.Error(), "Invalid partition name specified (/c/slurm.conf)") ||
		!strings.Contains(err.Error(), "sbatch --parsable") {
		t.Fatalf("err = %v", err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("err %v does not wrap the exit error", err)
	}
}

func TestCommandEnv(t *testing.T) {
	got := CommandEnv([]string{"PATH=/bin", "AWS_SECRET_ACCESS_KEY=x", "HOME=/root", "SLURM_CONF=/etc/s.conf", "SLURM_JOB_ID=3",
		"SIMPLETUNER_WORKER_TOKEN=t", "HF_TOKEN=h", "LANG=C.UTF-8"}, "EXTRA=1")
	want := []string{"PATH=/bin", "HOME=/root", "SLURM_CONF=/etc/s.conf", "LANG=C.UTF-8", "EXTRA=1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
