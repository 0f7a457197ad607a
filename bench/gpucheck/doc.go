// Command gpucheck is the Go side of scripts/gpu-check.sh, the one script that checks the
// CUDA backend on a GPU machine. It is built with -tags cuda by `make gpu-check-bundle` (the
// GPU machine has no Go) and has four subcommands, each printing TSV result lines that the
// script gathers into its final table:
//
//	gpucheck parity                 op-by-op parity with the CPU backend, fp32 and bf16
//	gpucheck bench -flavour base    training step time, tokens/s, MFU and peak GPU memory
//	gpucheck learn -trainer BIN     the two-class learning run through the real trainer binary
//	gpucheck api -daemon BIN        the daemon's NVML inventory and a job pinned to the GPU
//
// Without -tags cuda it builds to a stub that explains how to build it.
package main
