// Package hookrunner runs the daemon's hook scripts: post_checkpoint_script after every
// checkpoint a trainer reports (scheduled, manual, final), and post_upload_script after
// each checkpoint the trainer reports uploaded, with its {remote_checkpoint_path}
// (SimpleTuner's placeholders). A checkpoint that was only saved locally runs no
// post-upload hook: SimpleTuner runs it then too, with an empty remote path, but a hook
// named for uploads that fires with nothing uploaded misleads whoever wrote it. The
// trainer uploads with --push_to_hub: each checkpoint with --push_checkpoints_to_hub
// (RemotePath is its folder in the repo), and the final model, reported as a final
// checkpoint at output_dir whose RemotePath is the repo (so post_checkpoint_script runs
// for it too); an upload that failed is reported without Uploaded and runs no
// post-upload hook. Each hook runs exactly once per
// checkpoint, even when the daemon restarts and the trainer's events are replayed: the
// run is claimed in the store before it starts.
//
// The scripts come from the job's resolved configuration; only users holding job.hooks
// can put them there, and only scripts that pass hooks.CheckExecutable (enforced at
// submission). Expansion and execution are package hooks: one argv element per
// placeholder value, no shell, the script checked again when it runs and executed by the
// descriptor so checked (a script swapped since submission is refused and its run
// recorded failed with the reason), a timeout that kills the process group, capped
// output, a minimal environment.
package hookrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"simpletuner/hooks"
	"simpletuner/plugins"
	"simpletuner/store"
)

// The hooks the daemon runs, in the order they run for one checkpoint.
const (
	PostCheckpoint = "post_checkpoint_script"
	PostUpload     = "post_upload_script"
)

// Event types of the hook runs this package reports through Options.Emit (the daemon's
// own; the trainer never sends them).
const (
	EventHookStarted  = "hook.started"
	EventHookFinished = "hook.finished"
)

// Options tune a Runner.
type Options struct {
	Timeout   time.Duration // per run (default hooks.DefaultTimeout)
	MaxOutput int           // bytes of output kept for the job log (default 64 KiB)
	Parallel  int           // hook processes at once, all jobs together (default 2)
	// Emit publishes hook.started / hook.finished events for a job.
	Emit func(jobID, typ, severity, title, message string, data any)
	// OnResult, when set, hears how each hook run ended: ResultSucceeded or ResultFailed
	// (exit status not 0, a timeout, or a command that could not start). The metrics
	// count them.
	OnResult func(result string)
}

// Outcomes reported to Options.OnResult.
const (
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
)

// Runner runs hooks. It is safe for concurrent use.
type Runner struct {
	db   *store.DB
	log  *slog.Logger
	opts Options
	sem  chan struct{} // one token per running hook process
	wg   sync.WaitGroup
	ctx  context.Context
	stop context.CancelFunc
}

// New returns a Runner.
func New(db *store.DB, log *slog.Logger, o Options) *Runner {
	if o.Timeout == 0 {
		o.Timeout = hooks.DefaultTimeout
	}
	if o.MaxOutput == 0 {
		o.MaxOutput = 64 << 10
	}
	if o.Parallel == 0 {
		o.Parallel = 2
	}
	if o.Emit == nil {
		o.Emit = func(string, string, string, string, string, any) {}
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Runner{db: db, log: log, opts: o, sem: make(chan struct{}, o.Parallel), ctx: ctx, stop: stop}
}

// Close stops accepting work and kills running hooks' process groups (their runs stay
// claimed: a hook is never run twice).
func (r *Runner) Close() {
	r.stop()
	r.wg.Wait()
}

// HandleEvents looks for checkpoint events of a job and starts its hooks. config is the
// job's resolved configuration ("--flag" keys). It never blocks on a hook.
func (r *Runner) HandleEvents(jobID string, config map[string]any, evs []plugins.Event) {
	for _, e := range evs {
		if e.Type != plugins.EventTrainingCheckpoint {
			continue
		}
		var cd plugins.CheckpointData
		if err := json.Unmarshal(e.Data, &cd); err != nil || cd.Path == "" {
			r.log.Warn("checkpoint event without a path; hooks skipped", "job_id", jobID, "seq", e.Seq)
			continue
		}
		path := cd.Path
		if !filepath.IsAbs(path) {
			if out, _ := config["--output_dir"].(string); out != "" {
				path = filepath.Join(out, path)
			}
		}
		step := strconv.FormatInt(cd.Step, 10)
		for _, name := range []string{PostCheckpoint, PostUpload} {
			tmpl, _ := config["--"+name].(string)
			if hooks.Disabled(tmpl) || (name == PostUpload && !cd.Uploaded) {
				continue
			}
			values := Values(config, path, step, cd.RemotePath)
			r.start(jobID, name, tmpl, path, values)
		}
	}
}

// Values are the placeholder values (SimpleTuner's names) for one checkpoint.
func Values(config map[string]any, checkpoint, step, remote string) map[string]string {
	str := func(k string) string {
		switch v := config["--"+k].(type) {
		case nil:
			return ""
		case string:
			if v == "None" {
				return ""
			}
			return v
		case float64:
			return strconv.FormatFloat(v, 'g', -1, 64)
		case bool:
			if !v {
				return ""
			}
			return "true"
		default:
			return fmt.Sprint(v)
		}
	}
	v := map[string]string{
		"local_checkpoint_path": checkpoint, "remote_checkpoint_path": remote, "global_step": step,
		"tracker_run_name": str("tracker_run_name"), "tracker_project_name": str("tracker_project_name"),
		"model_family": str("model_family"), "model_type": str("model_type"), "lora_type": str("lora_type"),
		"huggingface_path": str("hub_model_id"),
	}
	for k := range config {
		name := k[min(2, len(k)):]
		if len(name) > len("validation_") && name[:len("validation_")] == "validation_" {
			v[name] = str(name)
		}
	}
	return v
}

func (r *Runner) start(jobID, name, tmpl, checkpoint string, values map[string]string) {
	claimed, err := r.db.HookRuns().Claim(jobID, name, checkpoint)
	if err != nil {
		r.log.Error("record hook run", "job_id", jobID, "hook", name, "err", err)
		return
	}
	if !claimed {
		return // already ran (or is running) for this checkpoint: replays do not repeat it
	}
	argv, err := hooks.Expand(tmpl, values)
	if err != nil {
		r.finish(jobID, name, checkpoint, -1, 0, err.Error(), nil)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case r.sem <- struct{}{}:
		case <-r.ctx.Done():
			return
		}
		defer func() { <-r.sem }()
		r.opts.Emit(jobID, EventHookStarted, "info", "Hook "+name+" started", "", map[string]any{"hook": name, "checkpoint": checkpoint})
		res, err := hooks.Run(r.ctx, argv, hooks.RunOptions{Timeout: r.opts.Timeout, MaxOutput: r.opts.MaxOutput, Values: values, Dir: filepath.Dir(checkpoint)})
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		r.finish(jobID, name, checkpoint, res.ExitCode, res.Duration, msg, res.Output)
	}()
}

func (r *Runner) finish(jobID, name, checkpoint string, code int, took time.Duration, errMsg string, output []byte) {
	if err := r.db.HookRuns().Finish(jobID, name, checkpoint, code, errMsg); err != nil {
		r.log.Error("record hook result", "job_id", jobID, "hook", name, "err", err)
	}
	sev, result := "info", ResultSucceeded
	if code != 0 || errMsg != "" {
		sev, result = "warning", ResultFailed
	}
	if r.opts.OnResult != nil {
		r.opts.OnResult(result)
	}
	data := map[string]any{"hook": name, "checkpoint": checkpoint, "exit_code": code, "duration_seconds": took.Seconds()}
	if errMsg != "" {
		data["error"] = errMsg
	}
	if len(output) > 0 {
		data["output"] = string(output)
	}
	r.opts.Emit(jobID, EventHookFinished, sev, fmt.Sprintf("Hook %s finished (exit %d)", name, code), errMsg, data)
	r.log.Info("hook finished", "job_id", jobID, "hook", name, "exit_code", code, "duration", took, "err", errMsg)
}
