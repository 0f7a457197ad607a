// Package workerproto is the wire format between the daemon (the orchestrator) and a
// remote `simpletuner worker`: the bodies of /api/workers/* and the events of the
// dispatch stream. Both sides read it, so it lives with the other contracts in plugins/.
// Shapes follow SimpleTuner's worker protocol where it has one (docs/compatibility.md
// §17); event upload and its acknowledgement are this server's own.
package workerproto

import (
	"encoding/json"

	"simpletuner/plugins"
)

// HeaderToken carries a worker's token on every /api/workers request.
const HeaderToken = "X-Worker-Token"

// Worker statuses, as GET /api/admin/workers reports them.
const (
	StatusConnecting = "connecting"
	StatusIdle       = "idle"
	StatusBusy       = "busy"
	StatusOffline    = "offline"
	StatusDraining   = "draining"
)

// GPUInfo is a worker's GPU inventory.
type GPUInfo struct {
	Name        string  `json:"name"`
	VRAMGB      float64 `json:"vram_gb"`
	Count       int     `json:"count"`
	Driver      string  `json:"driver,omitempty"`
	Accelerator string  `json:"accelerator"`
	// UUIDs are the worker's GPUs by NVML UUID (this server's addition).
	UUIDs []string `json:"uuids,omitempty"`
}

// RegisterRequest is POST /api/workers/register.
type RegisterRequest struct {
	Name         string            `json:"name"`
	GPUInfo      GPUInfo           `json:"gpu_info"`
	Persistent   bool              `json:"persistent"`
	Provider     *string           `json:"provider"`
	Labels       map[string]string `json:"labels"`
	CurrentJobID *string           `json:"current_job_id"`
}

// ResumeJob tells a re-registering worker to keep the job it still runs, and from which
// seq the orchestrator needs its events.
type ResumeJob struct {
	JobID      string `json:"job_id"`
	ConfigName string `json:"config_name"`
	Status     string `json:"status"`
	// LastSeq is the last event seq the orchestrator has stored for the job.
	LastSeq uint64 `json:"last_seq"`
}

// RegisterResponse answers RegisterRequest.
type RegisterResponse struct {
	WorkerID  string     `json:"worker_id"`
	SSEURL    string     `json:"sse_url"`
	ResumeJob *ResumeJob `json:"resume_job"`
	// AbandonJob names a job the worker reported that the orchestrator no longer wants
	// run there (it ended, or went elsewhere): the worker cancels it.
	AbandonJob *string `json:"abandon_job"`
}

// Dispatch stream event types (GET /api/workers/stream, SSE "event:" names).
const (
	EventJobSubmit  = "job_submit"
	EventJobCancel  = "job_cancel"
	EventJobCommand = "job_command"
	EventDrain      = "drain"
	EventShutdown   = "shutdown"
	EventPing       = "ping"
)

// JobSubmit is the job_submit event: run this job.
type JobSubmit struct {
	Type  string `json:"type"`
	JobID string `json:"job_id"`
	// Config is the job's resolved configuration ("--flag" keys), as the local trainer
	// gets it; paths in it are as the worker sees them.
	Config     json.RawMessage `json:"config"`
	Dataloader json.RawMessage `json:"dataloader,omitempty"`
	ConfigName string          `json:"config_name,omitempty"`
	NumGPUs    int             `json:"num_gpus"`
	AnyGPU     bool            `json:"any_gpu,omitempty"`
	Provider   *string         `json:"provider"`
	// LastSeq is the last event seq the orchestrator has stored for the job (a requeued
	// job's earlier attempts): the worker numbers the job's events after it.
	LastSeq uint64 `json:"last_seq,omitempty"`
}

// JobControl is the job_cancel and job_command events; Command is a plugins.Command's
// String ("checkpoint", "validation", "stop", "cancel"); ParseCommand reads it back.
type JobControl struct {
	Type    string `json:"type"`
	JobID   string `json:"job_id"`
	Command string `json:"command,omitempty"`
}

// ParseCommand is the plugins.Command a JobControl names; ok is false for an unknown one.
func ParseCommand(s string) (c plugins.Command, ok bool) {
	for _, c := range []plugins.Command{plugins.CommandCheckpoint, plugins.CommandValidation, plugins.CommandStop, plugins.CommandCancel} {
		if c.String() == s {
			return c, true
		}
	}
	return 0, false
}

// Notice is the drain and shutdown events.
type Notice struct {
	Type string            `json:"type"`
	Data map[string]string `json:"data"`
}

// Heartbeat is POST /api/workers/heartbeat (every 30 s).
type Heartbeat struct {
	WorkerID       string          `json:"worker_id"`
	Status         string          `json:"status"`
	CurrentJobID   *string         `json:"current_job_id"`
	JobProgress    json.RawMessage `json:"job_progress,omitempty"`
	GPUUtilization *float64        `json:"gpu_utilization,omitempty"`
	VRAMUsedGB     *float64        `json:"vram_used_gb,omitempty"`
}

// JobStatus is POST /api/workers/job/{job_id}/status. Status is starting, running,
// training (SimpleTuner's word for running), or a terminal state.
type JobStatus struct {
	Status   string          `json:"status"`
	Progress json.RawMessage `json:"progress,omitempty"`
	Error    string          `json:"error,omitempty"`
	// LastSeq is the seq of the last event the worker holds for the job; with a terminal
	// status the orchestrator refuses (409) until it has stored that many.
	LastSeq uint64 `json:"last_seq,omitempty"`
}

// EventBatch is POST /api/workers/job/{job_id}/events: trainer events in seq order.
type EventBatch struct {
	Events []plugins.Event `json:"events"`
}

// EventAck answers EventBatch (and a 409 that refuses a batch with a gap): the last seq
// the orchestrator has stored; the worker sends from LastSeq+1.
type EventAck struct {
	LastSeq uint64 `json:"last_seq"`
}

// Success is the {"success":true} answer of heartbeat and job status.
type Success struct {
	Success bool `json:"success"`
}
