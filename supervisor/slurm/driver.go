// Package slurm runs training jobs as Slurm batch jobs (target=slurm): each job is one
// `sbatch` whose script runs an ephemeral `simpletuner worker` bound to that job with a
// one-time token, so control and events travel over the worker protocol while Slurm does
// the queueing and the GPUs (docs/architecture.md §4, executors).
//
// Slurm is driven through its command-line tools only (sbatch, squeue, sacct, scontrol,
// scancel): their flags and text formats have stayed the same across Slurm releases,
// where slurmrestd's schema changes with every one. Commands run through a Runner, so the
// parsers and the executor are tested without a cluster, and scripts/slurm-ci.sh brings up
// a real one-node cluster for the tests that need one.
package slurm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A Runner runs one Slurm command and returns its standard output. A command that fails
// (cannot start, or exits non-zero) returns an error that carries its standard error.
type Runner interface {
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// ExecRunner runs the commands found on PATH with exactly the environment Env.
type ExecRunner struct {
	// Env is the commands' whole environment; build it with CommandEnv so that nothing
	// of the daemon's environment but what Slurm's tools need reaches them (or, through
	// an `--export=ALL` in the sbatch arguments, a job).
	Env []string
}

// Run implements Runner.
func (r ExecRunner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	path, err := lookPath(name, r.Env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = r.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // not the daemon's whole environment
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), commandError(name, args, err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// lookPath finds a command on the PATH of env (exec.LookPath would search the daemon's).
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s is not on PATH %q (is Slurm's client installed?)", exec.ErrNotFound, name, path)
}

// commandPassthrough are the variables of the daemon's environment Slurm's commands get:
// where to find them and the cluster's configuration (SLURM_CONF), who runs them, and
// the locale. Credentials and the daemon's settings stay out: with `--export=ALL` sbatch
// would copy its whole environment into the job.
var commandPassthrough = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SLURM_CONF"}

// CommandEnv is the environment of Slurm's commands: the passthrough variables of
// environ (os.Environ's form), then extra.
func CommandEnv(environ []string, extra ...string) []string {
	env := []string{}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(commandPassthrough, k) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// commandError wraps a failed command's error with its name, arguments and standard error
// (bounded), which is where Slurm says what went wrong.
func commandError(name string, args []string, err error, stderr []byte) error {
	msg := strings.TrimSpace(string(stderr))
	if len(msg) > 2000 {
		msg = msg[:2000] + "…"
	}
	if msg == "" {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
}

// SubmitSpec is one sbatch submission.
type SubmitSpec struct {
	// JobName is sbatch's --job-name.
	JobName string
	// Partition and Account are sbatch's --partition and --account (omitted when empty).
	Partition string
	Account   string
	// GPUs asks for --gres=gpu:GPUs when above 0.
	GPUs int
	// Output is the -o file (%j is Slurm's job id).
	Output string
	// ExtraArgs are added as given, after the others (so they may override them).
	ExtraArgs []string
	// Script is the batch script, given on standard input.
	Script string
}

// sbatchArgs are the arguments of sbatch for s. --export=NONE starts the job from the
// user's login environment on its node, not the submitter's: the script sets what the
// job needs. (That login costs seconds per job; a site may pass --export=ALL in
// ExtraArgs, which come last and so win, and the job then gets CommandEnv's variables.)
func sbatchArgs(s SubmitSpec) []string {
	args := []string{"--parsable", "--export=NONE", "--job-name=" + s.JobName}
	if s.Output != "" {
		args = append(args, "-o", s.Output)
	}
	if s.Partition != "" {
		args = append(args, "--partition="+s.Partition)
	}
	if s.Account != "" {
		args = append(args, "--account="+s.Account)
	}
	if s.GPUs > 0 {
		args = append(args, "--gres=gpu:"+strconv.Itoa(s.GPUs))
	}
	return append(args, s.ExtraArgs...)
}

// JobInfo is what Slurm says about one of its jobs.
type JobInfo struct {
	// ID is Slurm's job id.
	ID string
	// State is Slurm's job state in capitals (PENDING, RUNNING, COMPLETED, FAILED, …),
	// without sacct's "by <uid>" suffix.
	State string
	// Reason is Slurm's reason for the state (Resources, Priority, NonZeroExitCode, …);
	// empty for Slurm's "None".
	Reason string
	// Nodes is the job's node list, once it has nodes.
	Nodes string
	// ExitCode is "exit:signal" (e.g. "1:0") once the job has ended, when Slurm said.
	ExitCode string
}

// Ended reports whether Slurm considers the job finished for good.
func (i JobInfo) Ended() bool { return terminalState(i.State) }

// terminalState reports whether a Slurm job state is final. States not listed (PENDING,
// RUNNING, COMPLETING, CONFIGURING, REQUEUED, SUSPENDED, … and any a newer Slurm adds)
// are not: the job is followed until Slurm names an end.
func terminalState(s string) bool {
	switch s {
	case "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
		"OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "REVOKED", "SPECIAL_EXIT":
		return true
	}
	return false
}

// normState is a state as squeue or sacct prints it, reduced to the bare state:
// "CANCELLED by 0" → "CANCELLED", "cancelled+" → "CANCELLED".
func normState(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	return strings.ToUpper(strings.TrimRight(s, "+"))
}

// normReason drops Slurm's placeholder reasons.
func normReason(s string) string {
	s = strings.TrimSpace(s)
	if s == "None" || s == "(null)" {
		return ""
	}
	return s
}

// squeueFormat is the -o format parseSqueue reads: id, state, reason, nodes.
const squeueFormat = "%i|%T|%r|%N"

// parseSqueue reads `squeue -h -o '%i|%T|%r|%N'` output.
func parseSqueue(out []byte) (map[string]JobInfo, error) {
	jobs := map[string]JobInfo{}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 4 || f[0] == "" || f[1] == "" {
			return nil, fmt.Errorf("squeue printed %q; want id|state|reason|nodes", line)
		}
		nodes := strings.TrimSpace(f[3])
		if nodes == "(null)" {
			nodes = ""
		}
		jobs[f[0]] = JobInfo{ID: f[0], State: normState(f[1]), Reason: normReason(f[2]), Nodes: nodes}
	}
	return jobs, nil
}

// parseSacct reads `sacct --parsable2 -o JobID,State,ExitCode[,Reason]` output, header
// included: the header names the columns, so a Slurm whose sacct lacks a column still
// parses. Job steps (123.batch, 123.extern) are skipped; the job's own line has its state
// and exit code.
func parseSacct(out []byte) (map[string]JobInfo, error) {
	jobs := map[string]JobInfo{}
	col := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(col) == 0 {
			for i, name := range f {
				col[strings.ToLower(name)] = i
			}
			if _, ok := col["jobid"]; !ok {
				return nil, fmt.Errorf("sacct printed %q; want a header with JobID", line)
			}
			if _, ok := col["state"]; !ok {
				return nil, fmt.Errorf("sacct printed %q; want a header with State", line)
			}
			continue
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(f) {
				return strings.TrimSpace(f[i])
			}
			return ""
		}
		id := get("jobid")
		if id == "" || strings.ContainsAny(id, ".+") {
			continue
		}
		jobs[id] = JobInfo{ID: id, State: normState(get("state")), Reason: normReason(get("reason")),
			Nodes: normReason(get("nodelist")), ExitCode: get("exitcode")}
	}
	return jobs, nil
}

// scontrolField matches one key=value of `scontrol show job -o`.
var scontrolField = regexp.MustCompile(`(?:^|\s)(JobId|JobState|Reason|ExitCode|NodeList)=(\S*)`)

// parseScontrol reads one job's `scontrol show job -o` line.
func parseScontrol(out []byte) (JobInfo, bool) {
	var info JobInfo
	for _, m := range scontrolField.FindAllStringSubmatch(string(out), -1) {
		switch m[1] {
		case "JobId":
			info.ID = m[2]
		case "JobState":
			info.State = normState(m[2])
		case "Reason":
			info.Reason = normReason(m[2])
		case "ExitCode":
			info.ExitCode = m[2]
		case "NodeList":
			info.Nodes = normReason(m[2])
		}
	}
	return info, info.ID != "" && info.State != ""
}

// parseSbatch reads `sbatch --parsable` output: "id" or "id;cluster".
func parseSbatch(out []byte) (string, error) {
	s := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 { // warnings may come first
		s = strings.TrimSpace(s[i+1:])
	}
	id, _, _ := strings.Cut(s, ";")
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return "", fmt.Errorf("sbatch --parsable printed %q; want a job id", s)
	}
	return id, nil
}

// invalidJobID is how squeue and scontrol say none of the ids asked about exists (any more).
const invalidJobID = "Invalid job id specified"

// Driver speaks to Slurm through its command-line tools.
type Driver struct {
	run Runner
}

// NewDriver returns a driver that runs Slurm's commands through r.
func NewDriver(r Runner) *Driver { return &Driver{run: r} }

// Submit runs sbatch with s's script on standard input (so the script, and the one-time
// token in it, lands in no file of ours) and returns Slurm's job id.
func (d *Driver) Submit(ctx context.Context, s SubmitSpec) (string, error) {
	out, err := d.run.Run(ctx, []byte(s.Script), "sbatch", sbatchArgs(s)...)
	if err != nil {
		return "", err
	}
	return parseSbatch(out)
}

// Cancel cancels a Slurm job: SIGTERM to the batch script (which exec'd the worker), then
// SIGKILL after the cluster's KillWait.
func (d *Driver) Cancel(ctx context.Context, id string) error {
	_, err := d.run.Run(ctx, nil, "scancel", id)
	return err
}

// Signal sends sig (e.g. "USR1") to every process of the job's batch step.
func (d *Driver) Signal(ctx context.Context, id, sig string) error {
	_, err := d.run.Run(ctx, nil, "scancel", "--full", "--signal="+sig, id)
	return err
}

// FindByName returns the ids of the jobs named name that Slurm still knows.
func (d *Driver) FindByName(ctx context.Context, name string) ([]string, error) {
	out, err := d.run.Run(ctx, nil, "squeue", "-h", "-t", "all", "-n", name, "-o", squeueFormat)
	if err != nil {
		return nil, err
	}
	jobs, err := parseSqueue(out)
	if err != nil {
		return nil, err
	}
	var ids []string
	for id, j := range jobs {
		if !j.Ended() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Query says what Slurm knows of the given jobs, with one squeue for all of them. Jobs
// squeue no longer lists (it forgets them MinJobAge after they end) are looked up with
// `sacct -c` (the job completion log), then plain sacct (the accounting database); ended
// jobs get their exit code the same way, or from scontrol. Jobs no tool knows are absent
// from the result. The error is squeue's (the controller is unreachable, say).
func (d *Driver) Query(ctx context.Context, ids []string) (map[string]JobInfo, error) {
	if len(ids) == 0 {
		return map[string]JobInfo{}, nil
	}
	list := strings.Join(ids, ",")
	out, err := d.run.Run(ctx, nil, "squeue", "-h", "-t", "all", "-j", list, "-o", squeueFormat)
	var jobs map[string]JobInfo
	switch {
	case err != nil && strings.Contains(err.Error(), invalidJobID):
		jobs = map[string]JobInfo{} // squeue knows none of them any more
	case err != nil:
		return nil, err
	default:
		if jobs, err = parseSqueue(out); err != nil {
			return nil, err
		}
	}
	var ask []string // missing, or ended without an exit code
	for _, id := range ids {
		if j, ok := jobs[id]; !ok || (j.Ended() && j.ExitCode == "") {
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 {
		return jobs, nil
	}
	for _, acct := range d.sacct(ctx, ask) {
		j, ok := jobs[acct.ID]
		if !ok {
			jobs[acct.ID] = acct
			continue
		}
		if j.State == acct.State {
			j.ExitCode = acct.ExitCode
			jobs[acct.ID] = j
		}
	}
	for _, id := range ask {
		if j, ok := jobs[id]; ok && j.Ended() && j.ExitCode == "" {
			out, err := d.run.Run(ctx, nil, "scontrol", "show", "job", "-o", id)
			if sc, ok := parseScontrol(out); err == nil && ok && sc.ID == id {
				j.ExitCode = sc.ExitCode
				jobs[id] = j
			}
		}
	}
	return jobs, nil
}

// sacct asks the job completion log (`sacct -c`, which needs no database), then the
// accounting database (plain sacct), about ids; either may be missing on a cluster, so
// their errors only mean "no answer there".
func (d *Driver) sacct(ctx context.Context, ids []string) map[string]JobInfo {
	found := map[string]JobInfo{}
	list := strings.Join(ids, ",")
	for _, args := range [][]string{
		{"-c", "--parsable2", "-o", "JobID,State,ExitCode,Reason", "-j", list},
		{"--parsable2", "-o", "JobID,State,ExitCode,Reason", "-j", list},
	} {
		out, err := d.run.Run(ctx, nil, "sacct", args...)
		if err != nil {
			continue
		}
		jobs, err := parseSacct(out)
		if err != nil {
			continue
		}
		for id, j := range jobs {
			if _, ok := found[id]; !ok && slices.Contains(ids, id) {
				found[id] = j
			}
		}
		if len(found) == len(ids) {
			break
		}
	}
	return found
}
