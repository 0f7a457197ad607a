// Package trainerproc is the root of the trainer process: the engine, the model, the data
// pipeline, checkpoints and validation. It never imports the supervisor.
package trainerproc
