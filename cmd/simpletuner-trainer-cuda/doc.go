// Command simpletuner-trainer-cuda is the trainer process for jobs the daemon gives GPUs: the
// same dit trainer as simpletuner-trainer (trainerproc/runner behind plugins/kit), on the
// CUDA engine backend (trainerproc/engine/cuda).
//
// It only exists when built with -tags cuda (make build-cuda): gorgonia.org/cu exits in its
// package init on a machine without a GPU, so the CUDA code lives in this separate binary
// and the daemon launches it only for jobs given GPUs, pinned with
// CUDA_VISIBLE_DEVICES=GPU-<uuid>. Without the tag the command builds to a stub that says so.
//
// Run by the daemon it speaks go-plugin on stdout. For debugging it runs a job on its own:
//
//	simpletuner-trainer-cuda run --config resolved.json --job-dir DIR
//
// Environment: SIMPLETUNER_CUDA_DEVICE picks the CUDA ordinal (default 0, the first visible
// GPU); SIMPLETUNER_CUBLAS and SIMPLETUNER_CUDA_LIB_DIRS steer the cuBLAS search (see
// package cuda). --mixed_precision=bf16 (the default) runs GEMMs in bf16 with fp32
// accumulation; --mixed_precision=no runs them in fp32. Exit statuses as simpletuner-trainer:
// 0 completed, 1 failed, 2 usage, 3 stopped, 4 cancelled.
package main
