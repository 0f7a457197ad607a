package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"simpletuner/client"
	"simpletuner/internal/clihelp"
	"simpletuner/plugins"
	"simpletuner/supervisor/foreground"
)

// jobsCommand is one `simpletuner jobs` subcommand as its usage shows it.
type jobsCommand struct {
	name, args, about string
}

// jobsCommands lists the subcommands in the order the usage shows them.
func jobsCommands() []jobsCommand {
	return []jobsCommand{
		{"submit", "NAME [flags]", "queue the stored environment NAME"},
		{"list", "[flags]", "list jobs, newest first"},
		{"status", "ID", "show one job"},
		{"cancel", "ID", "cancel a queued or running job"},
		{"logs", "ID [flags]", "print a job's events (--follow: until it ends)"},
	}
}

// jobsUsage prints the usage of `simpletuner jobs`.
func jobsUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: simpletuner jobs <command> [flags]\n\n"+jobsServerNote+"\n\nCommands:\n")
	for _, c := range jobsCommands() {
		fmt.Fprintf(w, "  %-22s %s\n", c.name+" "+c.args, c.about)
	}
	fmt.Fprint(w, "\nRun 'simpletuner jobs <command> --help' for a command's flags.\n")
}

// jobUsage prints the usage of one subcommand with the flags defined on fs.
func jobUsage(w io.Writer, c jobsCommand, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: simpletuner jobs %s %s\n\n%s%s.\n\n%s\n", c.name, c.args, strings.ToUpper(c.about[:1]), c.about[1:], jobsServerNote)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs)
	}
}

// jobsServerNote says which server the jobs commands talk to.
const jobsServerNote = `Talks to the server at SIMPLETUNER_HOST:SIMPLETUNER_PORT (default localhost:8001) with
the API key in SIMPLETUNER_API_KEY.`

func jobsCmd(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		jobsUsage(stderr)
		return 2
	}
	var sub jobsCommand
	for _, c := range jobsCommands() {
		if c.name == args[0] {
			sub = c
		}
	}
	if sub.name == "" && (args[0] == "help" || clihelp.Asked(args)) {
		jobsUsage(stdout)
		return 0
	}
	if sub.name == "" {
		fmt.Fprintf(stderr, "simpletuner jobs: unknown command %q\n\n", args[0])
		jobsUsage(stderr)
		return 2
	}
	c := client.FromEnv(getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("jobs "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { jobUsage(fs.Output(), sub, fs) }
	// usageErr ends the command after parseWithArg failed: help was shown (exit 0) or a
	// usage error (exit 2).
	usageErr := func(err error) int {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if !errors.Is(err, errFlagSaid) {
			fmt.Fprintln(stderr, "Error:", err)
		}
		return 2
	}
	var err error
	switch cmd {
	case "submit":
		noWait := fs.Bool("no-wait", false, "refuse instead of queueing when no GPU is free")
		anyGPU := fs.Bool("any-gpu", false, "take any free GPUs, ignoring --accelerate_visible_devices")
		dry := fs.Bool("dry-run", false, "show what would be submitted without submitting")
		fs.BoolVar(dry, "n", false, "short for --dry-run")
		target := fs.String("target", "auto", "local, worker or auto")
		fs.StringVar(target, "t", "auto", "short for --target")
		name, perr := parseWithArg(fs, rest, "environment name", stdout)
		if perr != nil {
			return usageErr(perr)
		}
		if *dry {
			err = dryRun(ctx, c, stdout, name, *target)
			break
		}
		where := map[string]string{"local": " locally", "worker": " to worker"}[*target]
		fmt.Fprintf(stdout, "Submitting job '%s'%s...\n", name, where)
		var res *client.SubmitResult
		res, err = c.Submit(ctx, name, *noWait, *anyGPU, *target)
		if err == nil && !res.Success {
			msg := "Unknown error"
			if res.Error != nil {
				msg = *res.Error
			} else if res.Reason != nil {
				msg = *res.Reason
			}
			err = errors.New(msg)
		}
		if err == nil {
			fmt.Fprintln(stdout, "Job submitted successfully!")
			fmt.Fprintf(stdout, "  Job ID: %s\n  Status: %s\n", *res.JobID, res.Status)
			if len(res.AllocatedGPUs) > 0 {
				fmt.Fprintf(stdout, "  GPUs:   %v\n", res.AllocatedGPUs)
			}
			if res.QueuePosition != nil {
				fmt.Fprintf(stdout, "  Queue Position: %d\n", *res.QueuePosition)
			}
		}
	case "list":
		status := fs.String("status", "", "only jobs with this status")
		format := fs.String("format", "table", "table or json")
		if _, perr := parseWithArg(fs, rest, "", stdout); perr != nil {
			return usageErr(perr)
		}
		var list []client.Job
		list, err = c.Jobs(ctx, *status)
		if err == nil {
			err = printJobs(stdout, list, *format)
		}
	case "status":
		id, perr := parseWithArg(fs, rest, "job id", stdout)
		if perr != nil {
			return usageErr(perr)
		}
		var j *client.Job
		if j, err = c.Job(ctx, id); err == nil {
			b, _ := json.MarshalIndent(j, "", "  ")
			fmt.Fprintln(stdout, string(b))
		}
	case "cancel":
		id, perr := parseWithArg(fs, rest, "job id", stdout)
		if perr != nil {
			return usageErr(perr)
		}
		if err = c.Cancel(ctx, id); err == nil {
			fmt.Fprintf(stdout, "Cancel requested for job %s\n", id)
		}
	case "logs":
		follow := fs.Bool("follow", false, "keep printing until the job ends")
		fs.BoolVar(follow, "f", false, "short for --follow")
		id, perr := parseWithArg(fs, rest, "job id", stdout)
		if perr != nil {
			return usageErr(perr)
		}
		print := func(e client.Event) { fmt.Fprintln(stdout, formatEvent(e)) }
		if *follow {
			err = c.Follow(ctx, id, 0, time.Second, print)
		} else {
			var since int64
			for {
				var evs []client.Event
				evs, since, err = c.Events(ctx, id, since)
				if err != nil || len(evs) == 0 {
					break
				}
				for _, e := range evs {
					print(e)
				}
			}
		}
	}
	if err != nil {
		var ce *client.Error
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, "Error:", ce.Detail)
		} else if errors.Is(err, client.ErrUnreachable) {
			fmt.Fprintf(stderr, "Error: Could not connect to server at %s\n", c.Base)
		} else {
			fmt.Fprintln(stderr, "Error:", err)
		}
		return 1
	}
	return 0
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

func printJobs(w io.Writer, list []client.Job, format string) error {
	if format == "json" {
		b, _ := json.MarshalIndent(list, "", "  ")
		_, err := fmt.Fprintln(w, string(b))
		return err
	}
	if format != "table" {
		return fmt.Errorf("--format %q: want table or json", format)
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
	fmt.Fprintln(w, "Validation:")
	pretty, _ := json.MarshalIndent(raw, "  ", "  ")
	fmt.Fprintf(w, "  %s\n\nTo submit this job, run without --dry-run:\n  simpletuner jobs submit %s\n", pretty, name)
	return nil
}
