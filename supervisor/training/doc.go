// Package training turns what a user submits — a training form, or the name of a stored
// environment — into a validated, resolved configuration and a queued job: the "config
// bundle" of docs/compatibility.md §5 (registry defaults ← active environment ← submitted
// fields), path resolution, validation with SimpleTuner's messages, the dataloader check a
// start needs, and the GPU request. It knows no HTTP; supervisor/api renders its results.
package training
