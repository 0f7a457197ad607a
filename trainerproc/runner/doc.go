// Package runner is the real trainer: the kit.Runner that turns a resolved configuration
// into a training run of a model family of Options.Families (the bundled trainers: dit),
// on the CPU engine backend unless Options.NewBackend supplies another
// (simpletuner-trainer-cuda passes its CUDA backend). The runner talks to its model only
// through the family seam (trainerproc/family): the plan it resolves for a job (sizes,
// caches, memory estimates) and the model it builds (loss, sampling, saving).
//
// One Run is: parse the configuration (settings.go) → resolve the family's plan and open
// the dataloader (trainerproc/data) → build the model, full or with LoRA/LoKr adapters
// (the family's Build) → optimizer and learning-rate schedule (trainerproc/optim) → resume
// from a checkpoint when asked (trainerproc/checkpoint) → the loop: micro-batches
// accumulated into optimizer steps, gradient clipping, scheduled checkpoints and
// validation, the daemon's commands after every gradient sync → final validation → the
// final model in output_dir.
//
// Events follow SimpleTuner's catalogue (docs/compatibility.md §7) so the daemon can relay
// them unchanged:
// lifecycle.stage for each start-up and shut-down stage, training.status and
// training.progress after every optimizer step, training.checkpoint, training.validation
// and validation.image, notification for warnings. Payload fields SimpleTuner puts at
// the top level of a webhook body (stage, progress, checkpoint, images) are carried in the
// event's data.
//
// Determinism: every random stream derives from --seed (model initialisation, adapters, data
// order, noise and caption dropout, optimizer rounding), all counter-based (Philox), and a
// checkpoint stores the sampler position, the noise stream offset, the optimizer state and
// the step, so N steps straight and K steps + resume + N−K steps end with bit-identical
// weights for the same thread count.
//
// Standalone runs a job without a daemon (simpletuner-trainer run), printing the event
// stream as JSON lines.
package runner
