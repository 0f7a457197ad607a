// Package checkpoint owns the on-disk checkpoint lifecycle of a training run: crash-safe
// saves of output_dir/checkpoint-<step>/ (staged in a temp dir, every file fsynced, a
// manifest of sizes and SHA-256 sums, a .guard written last, then an atomic rename and a
// parent fsync), retention that only prunes after a save is durable and never prunes a
// leased checkpoint, garbage collection of temp and trash dirs left by a crash, and resume
// selection that verifies every candidate and quarantines (never deletes) damaged ones.
//
// The layout follows SimpleTuner (training_state.json, checkpoint_manifest.json, .guard,
// pytorch_lora_weights.safetensors or transformer/diffusion_pytorch_model.safetensors,
// checkpoint-<n>-rolling) so its tooling recognises our checkpoints; the durability rules
// are those of docs/security.md rows C1–C7, which SimpleTuner itself does not implement.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"

	"simpletuner/plugins"
)

// Sentinel errors at the package boundary.
var (
	// ErrCorrupt: a checkpoint's bytes disagree with its manifest or cannot be parsed.
	ErrCorrupt = errors.New("checkpoint: corrupt")
	// ErrIncomplete: a checkpoint lacks its guard, manifest or a listed file (a save that
	// never finished).
	ErrIncomplete = errors.New("checkpoint: incomplete")
	// ErrNotFound: there is no checkpoint to resume from, or no such checkpoint or file.
	ErrNotFound = errors.New("checkpoint: not found")
	// ErrInvalid: the caller asked for something malformed (a bad path, step or spec).
	ErrInvalid = errors.New("checkpoint: invalid request")
	// ErrSaveFailed: a save was aborted; the underlying cause (e.g. ENOSPC) is wrapped too.
	ErrSaveFailed = errors.New("checkpoint: save failed")
)

// File names inside a checkpoint, spelled as SimpleTuner spells them.
const (
	// NamePrefix starts every checkpoint directory name (the contract names the
	// folders: plugins.CheckpointName, plugins.ParseCheckpointName).
	NamePrefix = plugins.CheckpointPrefix
	// RollingSuffix ends rolling checkpoint names (checkpoint-300-rolling).
	RollingSuffix = plugins.CheckpointRollingSuffix
	// TrainingStateFile holds TrainingState.
	TrainingStateFile = plugins.CheckpointStateFile
	// ManifestFile lists every other file with its size and SHA-256.
	ManifestFile = "checkpoint_manifest.json"
	// GuardFile is written last; without it a checkpoint is incomplete.
	GuardFile = plugins.CheckpointGuardFile
	// GuardContent is the guard's content.
	GuardContent = "complete\n"
	// LoRAWeightsFile is where LoRA/LyCORIS weights go.
	LoRAWeightsFile = "pytorch_lora_weights.safetensors"
	// TransformerWeightsFile is where a full fine-tune's transformer goes (diffusers layout).
	TransformerWeightsFile = "transformer/diffusion_pytorch_model.safetensors"
	// TransformerConfigFile is the diffusers config beside TransformerWeightsFile.
	TransformerConfigFile = "transformer/config.json"
	// OptimizerFile holds the optimizer's tensors (moments, ...).
	OptimizerFile = "optimizer.safetensors"
	// OptimizerStateFile holds the optimizer's scalar state and hyper-parameters.
	OptimizerStateFile = "optimizer_state.json"
)

// Names of transient entries in output_dir. They all start with a dot so that SimpleTuner's
// own scan (any name starting with "checkpoint") never mistakes them for checkpoints.
const (
	tmpPrefix      = ".tmp-checkpoint-"
	trashPrefix    = ".trash-"
	replacedPrefix = ".trash-replaced-"
	corruptSuffix  = ".corrupt"
	manifestFormat = "simpletuner-go/1"
)

// Ref identifies a checkpoint directory found in output_dir.
type Ref struct {
	Name    string
	Path    string
	Step    int
	Rolling bool
	// Complete: the guard and the manifest exist (a cheap check; Load verifies fully).
	Complete bool
}

// TrainingState is training_state.json: SimpleTuner's keys plus what bit-identical
// continuation needs. RNG state is stored as uint64 words (JSON integers, exact in Go and
// Python) and opaque sub-states as raw JSON, so everything round-trips exactly.
type TrainingState struct {
	GlobalStep        int            `json:"global_step"`
	EpochStep         int            `json:"epoch_step"`
	Epoch             int            `json:"epoch"`
	ExhaustedBackends []string       `json:"exhausted_backends"`
	Repeats           map[string]int `json:"repeats"`
	// LearningRate is the scheduler's current rate (float64 JSON round-trips exactly).
	LearningRate float64 `json:"learning_rate"`
	// LRScheduler is the scheduler's own state, opaque to this package.
	LRScheduler json.RawMessage `json:"lr_scheduler,omitempty"`
	// RNG maps a generator name (e.g. "noise", "sampler") to its state words.
	RNG map[string][]uint64 `json:"rng_state,omitempty"`
	// SamplerStates maps a dataset id to its sampler position (buckets, seen images, ...).
	SamplerStates map[string]json.RawMessage `json:"sampler_states,omitempty"`
	// Extra carries any further trainer state.
	Extra map[string]json.RawMessage `json:"extra,omitempty"`
}

// Manifest is checkpoint_manifest.json. Version, Checkpoint, Files and Metadata are the
// keys SimpleTuner writes; Entries adds what crash-safety needs (size and SHA-256).
type Manifest struct {
	Version    int              `json:"version"`
	Checkpoint string           `json:"checkpoint"`
	Files      []string         `json:"files"`
	Metadata   ManifestMetadata `json:"metadata"`
	Entries    []ManifestEntry  `json:"entries"`
}

// ManifestMetadata describes the checkpoint as a whole.
type ManifestMetadata struct {
	GlobalStep int    `json:"global_step"`
	Rolling    bool   `json:"rolling"`
	Format     string `json:"format"`
}

// ManifestEntry is one file of a checkpoint (slash-separated relative path).
type ManifestEntry struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// WarningKind classifies a Warning.
type WarningKind string

// Warning kinds.
const (
	// WarnIgnoredEntry: an output_dir entry that looks like a checkpoint but is not one
	// (bad name, symlink, plain file) was ignored.
	WarnIgnoredEntry WarningKind = "ignored_entry"
	// WarnInvalidCheckpoint: a resume candidate failed verification and was skipped.
	WarnInvalidCheckpoint WarningKind = "invalid_checkpoint"
	// WarnQuarantined: an invalid checkpoint was renamed to <name>.corrupt.
	WarnQuarantined WarningKind = "quarantined"
	// WarnRestored: Cleanup put back a checkpoint that a crashed same-step save had moved aside.
	WarnRestored WarningKind = "restored"
	// WarnCleanupFailed: a temp or trash dir could not be removed.
	WarnCleanupFailed WarningKind = "cleanup_failed"
	// WarnPruneFailed: retention could not remove an old checkpoint.
	WarnPruneFailed WarningKind = "prune_failed"
)

// Warning is reported through Options.OnWarning so the trainer can emit a warning event.
type Warning struct {
	Kind    WarningKind
	Name    string
	Path    string
	Message string
	Err     error
}

// String renders the warning for a log line or an event message.
func (w Warning) String() string {
	s := string(w.Kind) + ": " + w.Name + ": " + w.Message
	if w.Err != nil {
		s += ": " + w.Err.Error()
	}
	return s
}

// Retention is checkpoints_total_limit and checkpoints_rolling_total_limit; 0 (or less)
// means unlimited. Standard and rolling checkpoints are counted separately, as SimpleTuner
// counts them.
type Retention struct {
	TotalLimit        int
	RollingTotalLimit int
}

func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
