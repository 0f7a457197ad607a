package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"simpletuner/client"
	"simpletuner/internal/clihelp"
	"simpletuner/plugins"
	"simpletuner/supervisor/foreground"
)

// subCommand is one subcommand of a command group (jobs, workers) as its usage shows it.
type subCommand struct {
	name, args, about string
}

// cmdGroup is a command made of subcommands that talk to a running server: `simpletuner
// jobs …`, `simpletuner workers …`. It prints their usages and picks the subcommand.
type cmdGroup struct {
	name string
	cmds []subCommand
	// note, when set, follows the server note in every usage (what a cron spec is).
	note string
}

// jobsGroup lists the jobs subcommands in the order the usage shows them.
func jobsGroup() cmdGroup {
	return cmdGroup{name: "jobs", cmds: []subCommand{
		{"submit", "NAME [flags]", "queue the stored environment NAME"},
		{"list", "[flags]", "list jobs, newest first"},
		{"status", "ID", "show one job"},
		{"cancel", "ID", "cancel a queued or running job"},
		{"logs", "ID [flags]", "print a job's events (--follow: until it ends)"},
	}}
}

// usage prints the usage of `simpletuner <group>`.
func (g cmdGroup) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: simpletuner %s <command> [flags]\n\n%s\n%s\nCommands:\n", g.name, jobsServerNote, g.noteBlock())
	for _, c := range g.cmds {
		fmt.Fprintf(w, "  %-22s %s\n", c.name+" "+c.args, c.about)
	}
	fmt.Fprintf(w, "\nRun 'simpletuner %s <command> --help' for a command's flags.\n", g.name)
}

// noteBlock is the group's note as a paragraph of the usage ("" when it has none).
func (g cmdGroup) noteBlock() string {
	if g.note == "" {
		return ""
	}
	return "\n" + g.note + "\n"
}

// subUsage prints the usage of one subcommand with the flags defined on fs.
func (g cmdGroup) subUsage(w io.Writer, c subCommand, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: simpletuner %s %s %s\n\n%s%s.\n\n%s\n%s", g.name, c.name, c.args, strings.ToUpper(c.about[:1]), c.about[1:], jobsServerNote, g.noteBlock())
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs)
	}
}

// pick finds the subcommand args[0] names and a flag set for it whose usage is the
// subcommand's. ok is false when there is none: the group's usage was printed (help
// asked: exit 0; missing or unknown command: exit 2) and code is the exit status.
func (g cmdGroup) pick(args []string, stdout, stderr io.Writer) (sub subCommand, fs *flag.FlagSet, code int, ok bool) {
	if len(args) == 0 {
		g.usage(stderr)
		return sub, nil, 2, false
	}
	for _, c := range g.cmds {
		if c.name == args[0] {
			sub = c
		}
	}
	if sub.name == "" && (args[0] == "help" || clihelp.Asked(args)) {
		g.usage(stdout)
		return sub, nil, 0, false
	}
	if sub.name == "" {
		fmt.Fprintf(stderr, "simpletuner %s: unknown command %q\n\n", g.name, args[0])
		g.usage(stderr)
		return sub, nil, 2, false
	}
	fs = flag.NewFlagSet(g.name+" "+sub.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { g.subUsage(fs.Output(), sub, fs) }
	return sub, fs, 0, true
}

// groupCall is one run of a subcommand: what its body needs.
type groupCall struct {
	ctx    context.Context
	c      *client.Client
	fs     *flag.FlagSet
	name   string   // the subcommand
	rest   []string // its arguments
	stdout io.Writer
}

// usageError is a bad command line (or help asked): run answers it with exit 2 (0 for help).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }

// arg parses the subcommand's flags and its one positional argument (none when what is
// ""); a failure is a *usageError.
func (x *groupCall) arg(what string) (string, error) {
	v, err := parseWithArg(x.fs, x.rest, what, x.stdout)
	if err != nil {
		return "", &usageError{err}
	}
	return v, nil
}

// run picks the subcommand, runs body with a client of the server in the environment,
// and turns its error into the exit status: usage 2 (help 0), anything else 1 with the
// server's detail or that it could not be reached.
func (g cmdGroup) run(args []string, stdout, stderr io.Writer, getenv func(string) string, body func(*groupCall) error) int {
	_, fs, code, ok := g.pick(args, stdout, stderr)
	if !ok {
		return code
	}
	c := client.FromEnv(getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := body(&groupCall{ctx: ctx, c: c, fs: fs, name: args[0], rest: args[1:], stdout: stdout})
	var ue *usageError
	var ce *client.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue) && errors.Is(ue.err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		if !errors.Is(ue.err, errFlagSaid) {
			fmt.Fprintln(stderr, "Error:", ue.err)
		}
		return 2
	case errors.As(err, &ce):
		fmt.Fprintln(stderr, "Error:", ce.Detail)
	case errors.Is(err, client.ErrUnreachable):
		fmt.Fprintf(stderr, "Error: Could not connect to server at %s\n", c.Base)
	default:
		fmt.Fprintln(stderr, "Error:", err)
	}
	return 1
}

// jobsServerNote says which server the jobs and workers commands talk to.
const jobsServerNote = `Talks to the server at SIMPLETUNER_HOST:SIMPLETUNER_PORT (default localhost:8001) with
the API key in SIMPLETUNER_API_KEY.`

func jobsCmd(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return jobsGroup().run(args, stdout, stderr, getenv, runJobs)
}

// runJobs runs one jobs subcommand.
func runJobs(x *groupCall) error {
	fs, c, ctx, stdout := x.fs, x.c, x.ctx, x.stdout
	switch x.name {
	case "submit":
		noWait := fs.Bool("no-wait", false, "refuse instead of queueing when no GPU is free")
		anyGPU := fs.Bool("any-gpu", false, "take any free GPUs, ignoring --accelerate_visible_devices")
		dry := fs.Bool("dry-run", false, "show what would be submitted without submitting")
		fs.BoolVar(dry, "n", false, "short for --dry-run")
		target := fs.String("target", "auto", "where the job runs: auto (an idle worker whose labels match, else this server), local, worker or slurm")
		fs.StringVar(target, "t", "auto", "short for --target")
		labels := labelFlag{}
		fs.Var(labels, "label", "only workers whose label `KEY=GLOB` matches (e.g. gpu_type=a100*); repeatable")
		var prio optionalInt
		fs.Var(&prio, "priority", "queue priority `N`, 0–50 (default 10; above 20 needs job.priority.high)")
		name, err := x.arg("environment name")
		if err != nil {
			return err
		}
		if *dry {
			return dryRun(ctx, c, stdout, name, *target)
		}
		where := map[string]string{"local": " locally", "worker": " to worker", "slurm": " to Slurm"}[*target]
		fmt.Fprintf(stdout, "Submitting job '%s'%s...\n", name, where)
		res, err := c.Submit(ctx, name, client.SubmitOptions{NoWait: *noWait, AnyGPU: *anyGPU, Target: *target, WorkerLabels: labels, Priority: prio.v})
		if err != nil {
			return err
		}
		if !res.Success {
			msg := "Unknown error"
			if res.Error != nil {
				msg = *res.Error
			} else if res.Reason != nil {
				msg = *res.Reason
			}
			return errors.New(msg)
		}
		printSubmitted(stdout, res)
	case "list":
		status := fs.String("status", "", "only jobs with this status")
		format := fs.String("format", "table", "table or json")
		if _, err := x.arg(""); err != nil {
			return err
		}
		list, err := c.Jobs(ctx, *status)
		if err != nil {
			return err
		}
		return printJobs(stdout, list, *format)
	case "status":
		id, err := x.arg("job id")
		if err != nil {
			return err
		}
		j, err := c.Job(ctx, id)
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(j, "", "  ")
		fmt.Fprintln(stdout, string(b))
	case "cancel":
		id, err := x.arg("job id")
		if err != nil {
			return err
		}
		if err := c.Cancel(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Cancel requested for job %s\n", id)
	case "logs":
		follow := fs.Bool("follow", false, "keep printing until the job ends")
		fs.BoolVar(follow, "f", false, "short for --follow")
		id, err := x.arg("job id")
		if err != nil {
			return err
		}
		print := func(e client.Event) { fmt.Fprintln(stdout, formatEvent(e)) }
		if *follow {
			return c.Follow(ctx, id, 0, time.Second, print)
		}
		var since int64
		for {
			var evs []client.Event
			evs, since, err = c.Events(ctx, id, since)
			if err != nil || len(evs) == 0 {
				return err
			}
			for _, e := range evs {
				print(e)
			}
		}
	}
	return nil
}

// errFlagSaid is a parse error the flag package has already printed.
var errFlagSaid = errors.New("bad flag")

// parseWithArg parses flags given before or after the one positional argument (none when
// what is empty). Help asked anywhere is shown on stdout before anything is parsed, and
// answers flag.ErrHelp.
func parseWithArg(fs *flag.FlagSet, args []string, what string, stdout io.Writer) (string, error) {
	if showHelp(fs, args, stdout) {
		return "", flag.ErrHelp
	}
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return "", errFlagSaid
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	switch {
	case what == "" && len(pos) > 0:
		return "", fmt.Errorf("unexpected argument %q", pos[0])
	case what != "" && len(pos) != 1:
		return "", fmt.Errorf("want exactly one %s", what)
	}
	if what == "" {
		return "", nil
	}
	return pos[0], nil
}

// printSubmitted prints an accepted submission, a line for each thing the server said.
func printSubmitted(w io.Writer, res *client.SubmitResult) {
	fmt.Fprintln(w, "Job submitted successfully!")
	fmt.Fprintf(w, "  Job ID: %s\n  Status: %s\n", *res.JobID, res.Status)
	if len(res.AllocatedGPUs) > 0 {
		fmt.Fprintf(w, "  GPUs:   %v\n", res.AllocatedGPUs)
	}
	if res.AllocatedWorkerID != nil {
		fmt.Fprintf(w, "  Worker: %s\n", *res.AllocatedWorkerID)
	}
	if res.QueuePosition != nil {
		fmt.Fprintf(w, "  Queue Position: %d\n", *res.QueuePosition)
	}
	if res.Status == "queued" && res.Reason != nil {
		fmt.Fprintf(w, "  Waiting: %s\n", *res.Reason)
	}
	if res.RequiresApproval {
		fmt.Fprintln(w, "  Note:   Job requires admin approval before running")
	}
}

// labelFlag collects repeated KEY=VALUE flags into a map; a key given twice is refused.
type labelFlag map[string]string

func (l labelFlag) String() string { return "" }

func (l labelFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	if _, dup := l[k]; dup {
		return fmt.Errorf("label %q given twice", k)
	}
	l[k] = val
	return nil
}

// optionalInt is an integer flag that remembers whether it was given (v nil if not).
type optionalInt struct{ v *int }

func (o *optionalInt) String() string {
	if o == nil || o.v == nil {
		return ""
	}
	return strconv.Itoa(*o.v)
}

func (o *optionalInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("want an integer, got %q", s)
	}
	o.v = &n
	return nil
}

// printAsJSON handles --format for a listing: with json it prints list and reports done;
// anything but json or table is an error; with table the caller prints its table.
func printAsJSON(w io.Writer, list any, format string) (done bool, err error) {
	switch format {
	case "json":
		b, _ := json.MarshalIndent(list, "", "  ")
		_, err := fmt.Fprintln(w, string(b))
		return true, err
	case "table":
		return false, nil
	}
	return true, fmt.Errorf("--format %q: want table or json", format)
}

func printJobs(w io.Writer, list []client.Job, format string) error {
	if done, err := printAsJSON(w, list, format); done {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB ID\tSTATUS\tENVIRONMENT\tOWNER\tPROGRESS\tCREATED")
	for _, j := range list {
		prog := "-"
		var pp struct {
			Step       int64 `json:"step"`
			TotalSteps int64 `json:"total_steps"`
		}
		if json.Unmarshal(j.Progress, &pp) == nil && pp.TotalSteps > 0 {
			prog = fmt.Sprintf("%d/%d", pp.Step, pp.TotalSteps)
		}
		env := j.Environment
		if env == "" {
			env = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.JobID, j.Status, env, j.Owner, prog, j.CreatedAt)
	}
	return tw.Flush()
}

func formatEvent(e client.Event) string {
	ts := e.Time
	if t, err := time.Parse(time.RFC3339Nano, e.Time); err == nil {
		ts = t.Local().Format("15:04:05")
	}
	text := foreground.EventText(e.Title, e.Message)
	if e.Type == plugins.EventTrainingProgress {
		var p struct {
			Step         int64   `json:"step"`
			TotalSteps   int64   `json:"total_steps"`
			Loss         float64 `json:"loss"`
			LearningRate float64 `json:"learning_rate"`
		}
		if json.Unmarshal(e.Data, &p) == nil {
			text = fmt.Sprintf("step %d/%d loss %.4f lr %.3g", p.Step, p.TotalSteps, p.Loss, p.LearningRate)
		}
	}
	if text == "" && len(e.Data) > 0 {
		text = string(e.Data)
	}
	return fmt.Sprintf("%s [%d] %-20s %s", ts, e.Seq, e.Type, text)
}

// printWorkerPool counts the registered workers by status for a dry run, and says
// whether a worker could take the job now.
func printWorkerPool(w io.Writer, list []client.Worker) {
	by := map[string]int{}
	for _, wk := range list {
		by[wk.Status]++
	}
	fmt.Fprintf(w, "Worker Pool:\n  Total: %d, idle: %d, busy: %d, offline: %d, draining: %d, connecting: %d\n",
		len(list), by["idle"], by["busy"], by["offline"], by["draining"], by["connecting"])
	switch {
	case by["idle"] > 0:
		fmt.Fprintln(w, "  [+] Idle workers can take the job (if their labels match)")
	case len(list) > 0:
		fmt.Fprintln(w, "  [.] No idle worker: a worker job waits in the queue until one is")
	default:
		fmt.Fprintln(w, "  [.] No worker is registered (simpletuner workers create NAME)")
	}
	fmt.Fprintln(w)
}

// dryRun previews a submission: the environment's validation and the GPU situation.
func dryRun(ctx context.Context, c *client.Client, w io.Writer, name, target string) error {
	fmt.Fprintf(w, "[DRY RUN] Previewing job submission for config '%s'...\n\n", name)
	var raw map[string]any
	if err := c.Do(ctx, "POST", "/api/configs/"+name+"/validate", nil, &raw); err != nil {
		return err
	}
	fmt.Fprintf(w, "Execution Target:\n  %s\n\n", target)
	var stats struct {
		Local struct {
			AvailableGPUs []int `json:"available_gpus"`
			TotalGPUs     int   `json:"total_gpus"`
			RunningJobs   int   `json:"running_jobs"`
			PendingJobs   int   `json:"pending_jobs"`
		} `json:"local"`
	}
	if err := c.Do(ctx, "GET", "/api/queue/stats", nil, &stats); err == nil {
		fmt.Fprintf(w, "GPU Status:\n  Total GPUs: %d, available: %v\n", stats.Local.TotalGPUs, stats.Local.AvailableGPUs)
		if stats.Local.TotalGPUs == 0 {
			fmt.Fprintln(w, "  [+] No GPUs on this host: the job runs on the CPU trainer")
		}
		fmt.Fprintf(w, "\nQueue Status:\n  Running: %d, pending: %d\n\n", stats.Local.RunningJobs, stats.Local.PendingJobs)
	}
	if target != "local" {
		// Only users with admin.workers may list workers; others see no pool section.
		if list, _, err := c.Workers(ctx, ""); err == nil {
			printWorkerPool(w, list)
		}
	}
	fmt.Fprintln(w, "Validation:")
	pretty, _ := json.MarshalIndent(raw, "  ", "  ")
	fmt.Fprintf(w, "  %s\n\nTo submit this job, run without --dry-run:\n  simpletuner jobs submit %s\n", pretty, name)
	return nil
}
