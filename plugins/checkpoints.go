package plugins

import (
	"strconv"
	"strings"
)

// The checkpoint folders a trainer leaves in --output_dir, named as SimpleTuner names
// them so its tooling recognises them. The trainer writes them (trainerproc/checkpoint);
// the daemon lists them (GET /api/training/checkpoints) when the trainer may be gone.
const (
	// CheckpointPrefix starts every checkpoint folder name: checkpoint-<step>.
	CheckpointPrefix = "checkpoint-"
	// CheckpointRollingSuffix ends a rolling checkpoint's name: checkpoint-<step>-rolling.
	CheckpointRollingSuffix = "-rolling"
	// CheckpointGuardFile is written last inside a checkpoint; without it the checkpoint
	// is incomplete.
	CheckpointGuardFile = ".guard"
	// CheckpointStateFile is the training state inside a checkpoint; its keys
	// global_step, epoch and learning_rate are SimpleTuner's.
	CheckpointStateFile = "training_state.json"
)

// CheckpointName returns the folder name of the checkpoint of step.
func CheckpointName(step int, rolling bool) string {
	n := CheckpointPrefix + strconv.Itoa(step)
	if rolling {
		n += CheckpointRollingSuffix
	}
	return n
}

// ParseCheckpointName parses checkpoint-<step> and checkpoint-<step>-rolling. The step
// must be canonical decimal (no sign, no leading zeros) so that exactly one name maps to
// a step; anything else is not a checkpoint (ok false).
func ParseCheckpointName(name string) (step int, rolling bool, ok bool) {
	rest, found := strings.CutPrefix(name, CheckpointPrefix)
	if !found {
		return 0, false, false
	}
	if r, cut := strings.CutSuffix(rest, CheckpointRollingSuffix); cut {
		rest, rolling = r, true
	}
	if rest == "" || len(rest) > 1 && rest[0] == '0' {
		return 0, false, false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return 0, false, false
		}
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return 0, false, false
	}
	return n, rolling, true
}

// CheckpointData is the data of an EventTrainingCheckpoint event, sent once the
// checkpoint is durable. The daemon shows it on the event stream and runs the
// post-checkpoint hooks from it.
type CheckpointData struct {
	// Path is the checkpoint folder: absolute, or relative to --output_dir.
	Path string `json:"path"`
	// Step is the global step the checkpoint holds.
	Step int64 `json:"step"`
	// Rolling marks a checkpoint-<step>-rolling folder.
	Rolling bool `json:"rolling"`
	// Pruned are the folders retention removed after this save.
	Pruned []string `json:"pruned"`
	// IsFinal marks the checkpoint saved at the end of training.
	IsFinal bool `json:"is_final,omitempty"`
	// Checkpoint is the form SimpleTuner's clients read: {path, label, is_final}.
	Checkpoint *CheckpointInfo `json:"checkpoint,omitempty"`
	// RemotePath is where an upload put the checkpoint (its folder's URL on the Hub);
	// empty when it was not uploaded.
	RemotePath string `json:"remote_path,omitempty"`
	// Uploaded reports that the checkpoint was uploaded (to RemotePath).
	Uploaded bool `json:"uploaded,omitempty"`
}

// CheckpointInfo is SimpleTuner's checkpoint object inside CheckpointData.
type CheckpointInfo struct {
	Path    string `json:"path"`
	Label   string `json:"label"`
	IsFinal bool   `json:"is_final"`
}
