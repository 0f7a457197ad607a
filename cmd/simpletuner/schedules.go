package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"simpletuner/client"
)

// schedulesGroup lists the `simpletuner schedules` subcommands in usage order.
func schedulesGroup() cmdGroup {
	return cmdGroup{name: "schedules", note: specNote, cmds: []subCommand{
		{"list", "[flags]", "list your schedules (every one, built-in maintenance included, for an administrator)"},
		{"create", "NAME --cron SPEC (--submit ENV | --checkpoint JOB | --validate JOB | --cleanup WHAT) [flags]", "create a schedule"},
		{"delete", "ID", "delete a schedule"},
		{"run", "ID", "run a schedule now, as its owner"},
	}}
}

// specNote says what a cron spec looks like.
const specNote = `A cron spec is five fields (minute hour day-of-month month day-of-week, e.g. "0 22 * * *"),
or @hourly, @daily, @weekly, @monthly, "@every 6h"; prefix "CRON_TZ=Europe/Berlin " for a
time zone (default: the server's).`

// scheduleRow is a schedule as GET /api/schedules shows it, the fields the CLI prints.
type scheduleRow struct {
	ID           string         `json:"id"`
	Name         string         `json:"name"`
	Spec         string         `json:"spec"`
	Action       string         `json:"action"`
	Params       map[string]any `json:"params"`
	Enabled      bool           `json:"enabled"`
	MissedPolicy string         `json:"missed_policy"`
	Owner        string         `json:"owner"`
	System       bool           `json:"system"`
	NextRunAt    *string        `json:"next_run_at"`
	LastRunAt    *string        `json:"last_run_at"`
	LastOutcome  string         `json:"last_outcome"`
	LastError    string         `json:"last_error"`
	LastJobID    string         `json:"last_job_id"`
}

func schedulesCmd(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return schedulesGroup().run(args, stdout, stderr, getenv, runSchedules)
}

// runSchedules runs one schedules subcommand.
func runSchedules(x *groupCall) error {
	fs, c, ctx, stdout := x.fs, x.c, x.ctx, x.stdout
	var err error
	switch x.name {
	case "list":
		format := fs.String("format", "table", "table or json")
		if _, aerr := x.arg(""); aerr != nil {
			return aerr
		}
		var out struct {
			Schedules []scheduleRow `json:"schedules"`
		}
		if err = c.Do(ctx, "GET", "/api/schedules", nil, &out); err == nil {
			err = printSchedules(stdout, out.Schedules, *format)
		}
	case "create":
		spec := fs.String("cron", "", "when it runs: a cron spec (required)")
		submit := fs.String("submit", "", "queue this stored environment")
		target := fs.String("target", "", "where a submitted job runs: auto, local, worker or slurm (default auto)")
		priority := fs.Int("priority", -1, "priority of a submitted job, 0–50 (default 10; above 20 needs job.priority.high)")
		labels := labelFlag{}
		fs.Var(labels, "label", "worker label selector KEY=PATTERN of a submitted job (repeatable)")
		checkpoint := fs.String("checkpoint", "", "ask this job (or \"current\": your running one) for a checkpoint")
		validate := fs.String("validate", "", "ask this job (or \"current\") for a validation run")
		cleanup := fs.String("cleanup", "", "delete old jobs, events or checkpoints (with --keep-days, --keep-last)")
		keepDays := fs.Int("keep-days", 0, "cleanup: keep what is younger than this many days")
		keepLast := fs.Int("keep-last", 0, "cleanup: keep this many newest")
		missed := fs.String("missed", "skip", "a run missed while the server was down: skip or run_once")
		disabled := fs.Bool("disabled", false, "create it disabled")
		name, aerr := x.arg("schedule name")
		if aerr != nil {
			return aerr
		}
		req, rerr := scheduleRequest(name, *spec, *missed, !*disabled, *submit, *target, *priority, labels, *checkpoint, *validate, *cleanup, *keepDays, *keepLast)
		if rerr != nil {
			return &usageError{rerr}
		}
		var sc scheduleRow
		if err = c.Do(ctx, "POST", "/api/schedules", req, &sc); err == nil {
			fmt.Fprintf(stdout, "Schedule created\n  ID:       %s\n  Name:     %s\n  Spec:     %s\n  Action:   %s\n  Next run: %s\n", sc.ID, sc.Name, sc.Spec, sc.Action, deref(sc.NextRunAt))
		}
	case "delete":
		id, aerr := x.arg("schedule id")
		if aerr != nil {
			return aerr
		}
		if err = c.Do(ctx, "DELETE", "/api/schedules/"+id, nil, nil); err == nil {
			fmt.Fprintf(stdout, "Schedule %s deleted\n", id)
		}
	case "run":
		id, aerr := x.arg("schedule id")
		if aerr != nil {
			return aerr
		}
		var out struct {
			Result struct {
				Outcome, Error, Detail string
				JobID                  string `json:"job_id"`
			} `json:"result"`
		}
		if err = c.Do(ctx, "POST", "/api/schedules/"+id+"/run", nil, &out); err == nil {
			r := out.Result
			fmt.Fprintf(stdout, "Schedule %s ran: %s\n", id, r.Outcome)
			if r.Detail != "" {
				fmt.Fprintf(stdout, "  %s\n", r.Detail)
			}
			if r.JobID != "" {
				fmt.Fprintf(stdout, "  Job ID: %s\n", r.JobID)
			}
			if r.Error != "" {
				err = errors.New(r.Error)
			}
		}
	}
	// A refused field names itself ("spec: …"), not the raw validation body.
	var ce *client.Error
	if errors.As(err, &ce) {
		return &client.Error{Status: ce.Status, Detail: fieldMessages(ce.Detail)}
	}
	return err
}

// scheduleRequest is the body of POST /api/schedules for the create flags: exactly one
// action flag.
func scheduleRequest(name, spec, missed string, enabled bool, submit, target string, priority int, labels map[string]string,
	checkpoint, validate, cleanup string, keepDays, keepLast int) (map[string]any, error) {
	if spec == "" {
		return nil, errors.New("--cron SPEC is required, e.g. --cron \"0 22 * * *\" or --cron @daily")
	}
	params := map[string]any{}
	var actions []string
	if submit != "" {
		actions = append(actions, "submit")
		params["config_name"] = submit
		if target != "" {
			params["target"] = target
		}
		if priority >= 0 {
			params["priority"] = priority
		}
		if len(labels) > 0 {
			params["worker_labels"] = labels
		}
	}
	if checkpoint != "" {
		actions = append(actions, "checkpoint")
		params["job_id"] = checkpoint
	}
	if validate != "" {
		actions = append(actions, "validate")
		params["job_id"] = validate
	}
	if cleanup != "" {
		actions = append(actions, "cleanup")
		params["what"], params["keep_days"], params["keep_last"] = cleanup, keepDays, keepLast
	}
	if len(actions) != 1 {
		return nil, errors.New("give exactly one of --submit ENV, --checkpoint JOB, --validate JOB, --cleanup WHAT")
	}
	return map[string]any{"name": name, "spec": spec, "action": actions[0], "params": params, "missed_policy": missed, "enabled": enabled}, nil
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func printSchedules(w io.Writer, list []scheduleRow, format string) error {
	if done, err := printAsJSON(w, list, format); done {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSPEC\tACTION\tENABLED\tNEXT RUN\tLAST RUN\tOUTCOME\tOWNER")
	for _, s := range list {
		outcome := s.LastOutcome
		if outcome == "" {
			outcome = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\n", s.ID, s.Name, s.Spec, s.Action, s.Enabled, deref(s.NextRunAt), deref(s.LastRunAt), outcome, s.Owner)
	}
	return tw.Flush()
}

// fieldMessages turns a 422's list of field errors into "field: message" lines; any other
// detail is returned as is.
func fieldMessages(detail string) string {
	var fes []struct {
		Loc []string `json:"loc"`
		Msg string   `json:"msg"`
	}
	if !strings.HasPrefix(detail, "[") || json.Unmarshal([]byte(detail), &fes) != nil || len(fes) == 0 {
		return detail
	}
	lines := make([]string, len(fes))
	for i, fe := range fes {
		loc := fe.Loc
		if len(loc) > 0 && loc[0] == "body" {
			loc = loc[1:]
		}
		lines[i] = strings.Join(loc, ".") + ": " + fe.Msg
	}
	return strings.Join(lines, "\n  ")
}
