package events

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
)

// Event types of the daemon's own; the trainer's are the contract's (plugins.Event*).
const (
	// TypeTrainerStatus is a status report of the trainer process itself: a trainer's
	// plugins.EventJobStatus (seq > 0) is shown under it, so that only the daemon's own
	// (seq 0) is the authoritative status change of a job (queued, starting, running,
	// completed, failed, cancelled, stopped, lost).
	TypeTrainerStatus = "trainer.status"
	// TypeLog is a line of the trainer's log (rate-limited, sanitised).
	TypeLog = "log"
)

// Control frames of a stream; they are not stored and carry no index.
const (
	frameConnected   = "connection"
	frameHeartbeat   = "heartbeat"
	frameReset       = "reset"
	frameAuthRevoked = "auth_revoked"
)

// Event is one typed event as clients see it, over the JSON API, SSE and WebSocket.
type Event struct {
	// ID is Index as a string (SimpleTuner's typed payload has a string id).
	ID string `json:"id"`
	// Index is server-wide: 1, 2, 3, … across all jobs, without gaps. Clients resume
	// from it (since_index, Last-Event-ID).
	Index uint64 `json:"index"`
	// Seq is the trainer's per-job sequence number; 0 for events of daemon origin.
	Seq       uint64    `json:"seq"`
	JobID     string    `json:"job_id"`
	Type      string    `json:"type"`
	Severity  string    `json:"severity"`
	Timestamp time.Time `json:"timestamp"`
	Title     string    `json:"title"`
	Message   string    `json:"message"`
	// Progress is set on training.progress and per-step training.status events.
	Progress *Progress `json:"progress,omitempty"`
	// Stage is set on lifecycle.stage events.
	Stage *Stage `json:"stage,omitempty"`
	// Checkpoint is set on training.checkpoint events.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Validation is set on training.validation and validation.image events.
	Validation *Validation `json:"validation,omitempty"`
	// Images of validation events: {"src":"data:image/png;base64,…","mime_type":"image/png"}.
	Images []json.RawMessage `json:"images,omitempty"`
	// Data is the rest of the producer's payload.
	Data json.RawMessage `json:"data,omitempty"`

	// owner is the id of the job's owner, for visibility checks (never sent).
	owner int64
}

// Owner returns the user id of the job's owner (0 when unknown).
func (e *Event) Owner() int64 { return e.owner }

// Progress is training progress: the "progress" object of SimpleTuner's typed events.
type Progress struct {
	Label        string         `json:"label,omitempty"`
	Current      int64          `json:"current"`
	Total        int64          `json:"total"`
	Percent      float64        `json:"percent"`
	ETASeconds   *float64       `json:"eta_seconds"`
	Epoch        int64          `json:"epoch,omitempty"`
	TotalEpochs  int64          `json:"total_epochs,omitempty"`
	Loss         *float64       `json:"loss,omitempty"`
	LearningRate *float64       `json:"learning_rate,omitempty"`
	Metrics      map[string]any `json:"metrics,omitempty"`
}

// Stage is a start-up or lifecycle stage: the "stage" object of SimpleTuner's typed events.
type Stage struct {
	Key      string    `json:"key"`
	Label    string    `json:"label,omitempty"`
	Status   string    `json:"status,omitempty"`
	Progress *Progress `json:"progress,omitempty"`
}

// Checkpoint describes a saved checkpoint.
type Checkpoint struct {
	Path    string `json:"path"`
	Label   string `json:"label,omitempty"`
	IsFinal bool   `json:"is_final"`
	Step    int64  `json:"step,omitempty"`
}

// Validation describes a validation run or preview.
type Validation struct {
	Title          string `json:"title,omitempty"`
	Prompt         string `json:"prompt,omitempty"`
	Step           int64  `json:"step,omitempty"`
	StepLabel      string `json:"step_label,omitempty"`
	ValidationType string `json:"validation_type,omitempty"`
}

// FromStored turns a stored event into the typed event clients see.
func FromStored(se store.StoredEvent) (*Event, error) {
	var pe plugins.Event
	if err := json.Unmarshal(se.Event, &pe); err != nil {
		return nil, fmt.Errorf("event %d of job %s: %w", se.Index, se.JobID, err)
	}
	return typedEvent(se.Index, se.Seq, se.JobID, pe), nil
}

// shownType is the type an event is shown under. job.status is the daemon's alone (its
// events have seq 0): a trainer's own status report (seq > 0) becomes trainer.status
// and cannot pass for a status change of the job.
func shownType(seq uint64, t string) string {
	if seq > 0 && t == plugins.EventJobStatus {
		return TypeTrainerStatus
	}
	return t
}

// typedEvent builds the typed event of a producer's event stored under index: the
// fields clients look for (progress, stage, checkpoint, validation, images) are lifted
// out of its data.
func typedEvent(index, seq uint64, jobID string, pe plugins.Event) *Event {
	e := &Event{ID: strconv.FormatUint(index, 10), Index: index, Seq: seq, JobID: jobID,
		Type: shownType(seq, safeName(pe.Type)), Severity: pe.Severity, Timestamp: pe.Time, Title: pe.Title, Message: pe.Message, Data: pe.Data}
	if e.Severity == "" {
		e.Severity = "info"
	}
	if len(e.Data) == 0 || e.Data[0] != '{' {
		return e
	}
	switch e.Type {
	case plugins.EventTrainingProgress:
		e.Progress = progressOf(e.Data)
	case plugins.EventTrainingStatus:
		var d struct {
			Progress *progressData `json:"progress"`
		}
		if json.Unmarshal(e.Data, &d) == nil && d.Progress != nil {
			e.Progress = d.Progress.typed()
		}
	case plugins.EventLifecycleStage:
		var d struct {
			Stage  json.RawMessage `json:"stage"`
			Key    string          `json:"key"`
			Status string          `json:"status"`
		}
		if json.Unmarshal(e.Data, &d) == nil {
			var st struct {
				Key      string        `json:"key"`
				Label    string        `json:"label"`
				Status   string        `json:"status"`
				Progress *progressData `json:"progress"`
			}
			switch {
			case len(d.Stage) > 0 && d.Stage[0] == '{' && json.Unmarshal(d.Stage, &st) == nil:
			case len(d.Stage) > 0 && d.Stage[0] == '"':
				_ = json.Unmarshal(d.Stage, &st.Key)
				st.Status = d.Status
			default:
				st.Key, st.Status = d.Key, d.Status
			}
			e.Stage = &Stage{Key: st.Key, Label: st.Label, Status: st.Status}
			if st.Progress != nil {
				e.Stage.Progress = st.Progress.typed()
			}
		}
	case plugins.EventTrainingCheckpoint:
		var d plugins.CheckpointData
		if json.Unmarshal(e.Data, &d) == nil {
			c := &Checkpoint{Path: d.Path, Label: e.Title, IsFinal: d.IsFinal, Step: d.Step}
			if d.Checkpoint != nil {
				c.Path, c.IsFinal = d.Checkpoint.Path, d.Checkpoint.IsFinal
				if d.Checkpoint.Label != "" {
					c.Label = d.Checkpoint.Label
				}
			}
			e.Checkpoint = c
		}
	case plugins.EventTrainingValidation, plugins.EventValidationImage:
		var m map[string]json.RawMessage
		if json.Unmarshal(e.Data, &m) == nil {
			var v Validation
			v.Title = e.Title
			_ = json.Unmarshal(m["prompt"], &v.Prompt)
			_ = json.Unmarshal(m["step"], &v.Step)
			_ = json.Unmarshal(m["step_label"], &v.StepLabel)
			_ = json.Unmarshal(m["validation_type"], &v.ValidationType)
			e.Validation = &v
			// Images move to the top level (as the seed shows them); the rest stays data.
			if imgs, ok := m["images"]; ok {
				if json.Unmarshal(imgs, &e.Images) == nil {
					delete(m, "images")
					if b, err := json.Marshal(m); err == nil {
						e.Data = b
					}
				}
			}
		}
	}
	return e
}

// progressData is what trainers put in a progress payload: plugins.Progress (step,
// total_steps, …) and, from the real trainer, percent, eta and metrics; stage progress
// uses current/total.
type progressData struct {
	Label        string         `json:"label"`
	Step         *int64         `json:"step"`
	TotalSteps   *int64         `json:"total_steps"`
	Current      *int64         `json:"current"`
	Total        *int64         `json:"total"`
	Epoch        int64          `json:"epoch"`
	TotalEpochs  int64          `json:"total_epochs"`
	Loss         *float64       `json:"loss"`
	LearningRate *float64       `json:"learning_rate"`
	Percent      *float64       `json:"percent"`
	ETASeconds   *float64       `json:"eta_seconds"`
	Metrics      map[string]any `json:"metrics"`
}

func progressOf(data json.RawMessage) *Progress {
	var d progressData
	if json.Unmarshal(data, &d) != nil {
		return nil
	}
	return d.typed()
}

func (d *progressData) typed() *Progress {
	p := &Progress{Label: d.Label, Epoch: d.Epoch, TotalEpochs: d.TotalEpochs, Loss: d.Loss, LearningRate: d.LearningRate,
		ETASeconds: d.ETASeconds, Metrics: d.Metrics}
	switch {
	case d.Step != nil:
		p.Current = *d.Step
	case d.Current != nil:
		p.Current = *d.Current
	}
	switch {
	case d.TotalSteps != nil:
		p.Total = *d.TotalSteps
	case d.Total != nil:
		p.Total = *d.Total
	}
	switch {
	case d.Percent != nil:
		p.Percent = *d.Percent
	case p.Total > 0:
		p.Percent = math.Round(10000*float64(p.Current)/float64(p.Total)) / 100
	}
	return p
}
