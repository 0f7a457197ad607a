package plugins

// Event types: the names of Event.Type. A trainer emits them and the daemon reads them
// (event store, stream, webhooks, hooks, the CLI), so both spell them from here. They are
// SimpleTuner's catalogue, which its clients already know.
const (
	// EventJobStatus is a job's state change: the trainer host reports starting and its
	// terminal state; the daemon reports its own (queued, running, lost, …).
	EventJobStatus = "job.status"
	// EventLifecycleStage is a startup or checkpoint stage (model load, resume, save)
	// with its status: running, completed or failed.
	EventLifecycleStage = "lifecycle.stage"
	// EventTrainingStatus is training's own status: the run summary, a per-step
	// "running" report, a failure.
	EventTrainingStatus = "training.status"
	// EventTrainingProgress is one step's progress (Progress plus percent, ETA, metrics).
	EventTrainingProgress = "training.progress"
	// EventTrainingCheckpoint is a durable checkpoint; its data is CheckpointData.
	EventTrainingCheckpoint = "training.checkpoint"
	// EventTrainingValidation is a finished validation run (its images, or an external
	// script's result).
	EventTrainingValidation = "training.validation"
	// EventValidationImage is one validation image as it is made.
	EventValidationImage = "validation.image"
	// EventNotification is a message for the person watching (warnings among them).
	EventNotification = "notification"
	// EventError is an error outside the other types.
	EventError = "error"
	// EventDownloadProgress reports base weights being fetched from the Hugging Face Hub
	// before training starts; its data is DownloadProgress. It is not SimpleTuner's (its
	// downloads only print to the console), so clients that do not know it show its title.
	EventDownloadProgress = "download.progress"
	// EventTrainingSummary and EventGPUFault are SimpleTuner's; no trainer here emits
	// them yet, and webhooks already treat them as events a full queue must keep.
	EventTrainingSummary = "training.summary"
	EventGPUFault        = "gpu.fault"
)

// DownloadProgress is the data of an EventDownloadProgress event: how far one file of a
// Hub repo has been fetched into the local cache.
type DownloadProgress struct {
	// Repo is the Hub repo id (org/name) and File the path inside it.
	Repo string `json:"repo"`
	File string `json:"file"`
	// Done is the bytes on disk so far (including those kept from an interrupted earlier
	// attempt, so a resumed download starts above 0) and Total the file's size.
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Percent is Done of Total in percent, rounded to two decimals.
	Percent float64 `json:"percent"`
}
