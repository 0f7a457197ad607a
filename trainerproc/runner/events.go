package runner

import (
	"errors"
	"math"
	"strings"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
)

// emitter shapes SimpleTuner's events (docs/compatibility.md §7) onto the kit's event stream.
type emitter struct {
	job *kit.Job
}

// stageProgress is the "progress" object of a stage or status event.
type stageProgress struct {
	Label      *string        `json:"label"`
	Current    int64          `json:"current"`
	Total      int64          `json:"total"`
	Percent    float64        `json:"percent"`
	ETASeconds *float64       `json:"eta_seconds"`
	Metrics    map[string]any `json:"metrics,omitempty"`
}

// stage is the "stage" object of a lifecycle.stage event.
type stage struct {
	Key      string         `json:"key"`
	Label    string         `json:"label"`
	Status   string         `json:"status"`
	Progress *stageProgress `json:"progress,omitempty"`
}

// Stage labels as SimpleTuner's webhooks spell them.
var stageLabels = map[string]string{
	"init_data_backend":      "Configuring data backends",
	"init_fetch_weights":     "Fetching base model weights",
	"init_load_base_model":   "Loading base model",
	"init_prepare_models":    "Preparing models",
	"init_text_embed_cache":  "Loading text embedding cache",
	"init_vae_cache":         "VAE Cache initialising",
	"init_resume_checkpoint": "Resuming checkpoint",
	"checkpoint_save":        "Saving checkpoint",
	"final_validation":       "Final validation",
	"validation":             "Validation",
	"model_save":             "Saving final model",
	"training_abort":         "Training aborted",
	"training_complete":      "Training complete",
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// stage emits lifecycle.stage with status running|completed|failed.
func (e *emitter) stage(key, status, message string, progress *stageProgress, extra map[string]any) {
	sev := "info"
	if status == "failed" {
		sev = "error"
	}
	d := map[string]any{"stage": stage{Key: key, Label: stageLabels[key], Status: status, Progress: progress}}
	for k, v := range extra {
		d[k] = v
	}
	title := firstLine(message)
	if title == "" {
		title = stageLabels[key]
	}
	e.job.Emit(plugins.EventLifecycleStage, sev, title, message, d)
	if e.job.Log != nil { // the job dir's trainer.log mirrors the stages
		e.job.Log.Info("stage", "key", key, "status", status, "message", message)
	}
}

// warn emits a warning notification (skipped checkpoints, skipped images, …).
func (e *emitter) warn(title, message string, extra map[string]any) {
	e.job.Emit(plugins.EventNotification, "warning", title, message, extra)
	if e.job.Log != nil {
		e.job.Log.Warn(title, "message", message)
	}
}

// failed emits training.status failed as SimpleTuner does before the job ends.
func (e *emitter) failed(err error) {
	msg := "Training failed: " + err.Error()
	e.job.Emit(plugins.EventTrainingStatus, "error", "Training failed", msg, map[string]any{"status": "failed", "error": err.Error()})
}

// statusData is the data of a per-step training.status event.
type statusData struct {
	Status       string        `json:"status"`
	GlobalStep   int           `json:"global_step"`
	CurrentEpoch int           `json:"current_epoch"`
	FinalEpoch   int           `json:"final_epoch"`
	Progress     stageProgress `json:"progress"`
}

// progressData is the data of a training.progress event (the SSE broadcast shape).
type progressData struct {
	plugins.Progress
	Percent    float64        `json:"percent"`
	ETASeconds *float64       `json:"eta_seconds"`
	Metrics    map[string]any `json:"metrics"`
}

// stepReport is what the loop knows after an optimizer step.
type stepReport struct {
	step, total, epoch, totalEpochs int
	loss, lr, gradNorm, itPerSec    float64
	effectiveBatch                  int
}

func (e *emitter) step(r stepReport) {
	pct := 0.0
	if r.total > 0 {
		pct = math.Round(10000*float64(r.step)/float64(r.total)) / 100
	}
	var eta *float64
	if r.itPerSec > 0 {
		v := float64(r.total-r.step) / r.itPerSec
		eta = &v
	}
	metrics := map[string]any{"loss": r.loss, "parent_loss": nil, "learning_rate": r.lr, "epoch": r.epoch,
		"effective_batch_size": r.effectiveBatch, "total_batch_size": r.effectiveBatch,
		"grad_norm": r.gradNorm, "iteration_speed": r.itPerSec}
	p := plugins.Progress{Step: int64(r.step), TotalSteps: int64(r.total), Epoch: int64(r.epoch), TotalEpochs: int64(r.totalEpochs),
		Loss: r.loss, LearningRate: r.lr}
	e.job.SetProgress(p)
	e.job.Emit(plugins.EventTrainingStatus, "info", "Running", "", statusData{Status: "running", GlobalStep: r.step, CurrentEpoch: r.epoch,
		FinalEpoch: r.totalEpochs, Progress: stageProgress{Current: int64(r.step), Total: int64(r.total), Percent: pct, ETASeconds: eta, Metrics: metrics}})
	e.job.Emit(plugins.EventTrainingProgress, "info", "", "", progressData{Progress: p, Percent: pct, ETASeconds: eta, Metrics: metrics})
}

// isUserEnding reports a stop or cancel (not a failure).
func isUserEnding(err error) bool {
	return errors.Is(err, kit.ErrStopped) || errors.Is(err, kit.ErrCancelled)
}
