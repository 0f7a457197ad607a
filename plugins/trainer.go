package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/hashicorp/go-plugin"

	"simpletuner/options"
)

// ProtocolVersion is the version of the trainer protocol (see proto/trainer.proto for the
// history). A daemon refuses trainers that speak another version.
const ProtocolVersion = 1

// PluginName is the name the trainer is dispensed under.
const PluginName = "trainer"

// Handshake is shared by the daemon and every trainer binary. The cookie only keeps a
// person from running a trainer by hand by mistake; it is not a secret.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   "SIMPLETUNER_TRAINER_PLUGIN",
		MagicCookieValue: "7c1d0f8e-simpletuner-trainer",
	}
}

// Sentinel errors of the contract. The gRPC shims turn them into status codes and back,
// so callers on either side test them with errors.Is.
var (
	// ErrTrainerGone: the trainer process cannot be reached (exited, or its socket is gone).
	ErrTrainerGone = errors.New("trainer process is gone")
	// ErrAlreadyStarted: Start was called on a trainer that already runs a job.
	ErrAlreadyStarted = errors.New("trainer already runs a job")
	// ErrNotStarted: a command came before Start.
	ErrNotStarted = errors.New("no job started")
	// ErrJobEnded: a command came after the job ended.
	ErrJobEnded = errors.New("job already ended")
	// ErrInvalidConfig: the configuration cannot be trained; the message says why.
	ErrInvalidConfig = errors.New("invalid training configuration")
	// ErrUnsupported: the trainer does not implement the request.
	ErrUnsupported = errors.New("not supported by this trainer")
)

// Job states reported by Status and recorded in the exit record.
const (
	StateIdle      = "idle"
	StateStarting  = "starting"
	StateRunning   = "running"
	StateCompleted = "completed"
	StateFailed    = "failed"
	StateCancelled = "cancelled"
	StateStopped   = "stopped"
)

// Terminal reports whether a state is final.
func Terminal(state string) bool {
	switch state {
	case StateCompleted, StateFailed, StateCancelled, StateStopped:
		return true
	}
	return false
}

// Family is a model family a trainer can train.
type Family struct {
	Name           string   `json:"name"`
	Flavours       []string `json:"flavours"`
	DefaultFlavour string   `json:"default_flavour"`
	// MinResolution is the smallest numeric --resolution (pixels) the family trains at;
	// 0 means no minimum.
	MinResolution int `json:"min_resolution,omitempty"`
	// DefaultResolution is the --resolution a new environment of the family starts with;
	// 0 means the option's own default.
	DefaultResolution int `json:"default_resolution,omitempty"`
}

// OptionFamilies converts Info's families into the options registry's, so the trainer
// (for its own parsing) and the daemon (for every form and environment) validate a
// configuration against what this trainer reported.
func OptionFamilies(fams []Family) []options.Family {
	out := make([]options.Family, 0, len(fams))
	for _, f := range fams {
		out = append(out, options.Family{Name: f.Name, Flavours: slices.Clone(f.Flavours), DefaultFlavour: f.DefaultFlavour,
			MinResolution: f.MinResolution, DefaultResolution: f.DefaultResolution})
	}
	return out
}

// Info describes a trainer binary.
type Info struct {
	Version         string   `json:"version"`
	Backend         string   `json:"backend"` // "cpu" or "cuda"
	Devices         []string `json:"devices"`
	Families        []Family `json:"families"`
	ProtocolVersion int      `json:"protocol_version"`
}

// Issue is one validation finding.
type Issue struct {
	Option   string `json:"option"`
	Severity string `json:"severity"` // "error" or "warning"
	Message  string `json:"message"`
	// Origin is IssueOriginTrainer for a finding only the trainer can make; empty for the
	// options registry's findings, which the daemon reports itself.
	Origin string `json:"origin,omitempty"`
}

// IssueOriginTrainer marks an Issue the trainer found itself (weights it cannot find, a
// component it ignores, a dataloader it cannot read, a job that does not fit), as opposed
// to the options registry's findings run again over the resolved configuration.
const IssueOriginTrainer = "trainer"

// StartRequest starts a job.
type StartRequest struct {
	JobID  string
	Config json.RawMessage // resolved configuration, "--flag" keys
	JobDir string          // trainer log, event spool and exit record go here
	Nonce  string          // echoed by Status to prove identity
}

// Event is one entry of a job's event stream. Seq starts at 1 and has no gaps.
type Event struct {
	Seq      uint64          `json:"seq"`
	Type     string          `json:"type"`
	Severity string          `json:"severity"`
	Time     time.Time       `json:"timestamp"`
	Title    string          `json:"title,omitempty"`
	Message  string          `json:"message,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Command is an action requested of a running job.
type Command int

// Commands; the trainer acts after its next gradient sync.
const (
	CommandCheckpoint Command = iota + 1
	CommandValidation
	CommandStop   // save a checkpoint, then end as "stopped"
	CommandCancel // end as "cancelled" without saving
)

func (c Command) String() string {
	switch c {
	case CommandCheckpoint:
		return "checkpoint"
	case CommandValidation:
		return "validation"
	case CommandStop:
		return "stop"
	case CommandCancel:
		return "cancel"
	}
	return "unknown"
}

// Progress is the last reported training progress.
type Progress struct {
	Step         int64   `json:"step"`
	TotalSteps   int64   `json:"total_steps"`
	Epoch        int64   `json:"epoch"`
	TotalEpochs  int64   `json:"total_epochs"`
	Loss         float64 `json:"loss"`
	LearningRate float64 `json:"learning_rate"`
}

// Status is a trainer's answer to "who are you and how is it going".
type Status struct {
	JobID    string
	State    string
	PID      int
	Nonce    string
	Progress Progress
	LastSeq  uint64
	Error    string
}

// Trainer is the interface a trainer plugin implements, and which the daemon's client shim
// implements by calling the plugin. See proto/trainer.proto for each call's contract.
type Trainer interface {
	Info(ctx context.Context) (Info, error)
	Validate(ctx context.Context, config json.RawMessage) ([]Issue, error)
	Start(ctx context.Context, req StartRequest) (pid int, err error)
	// Events calls fn with every event with Seq > sinceSeq, in order, in batches of
	// what is ready (never empty), until the stream ends (after the terminal event), ctx
	// is done, or fn returns an error. fn must not keep the slice.
	Events(ctx context.Context, sinceSeq uint64, fn func([]Event) error) error
	Command(ctx context.Context, c Command) error
	Status(ctx context.Context) (Status, error)
}

// EachEvent adapts a per-event callback to Trainer.Events.
func EachEvent(fn func(Event) error) func([]Event) error {
	return func(evs []Event) error {
		for _, e := range evs {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}
}
