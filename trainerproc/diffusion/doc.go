// Package diffusion holds the discrete diffusion schedule that ε- and v-prediction families
// train on (diffusers' DDPM β/ᾱ tables, read from the pipeline's scheduler/scheduler_config.json)
// and the samplers that integrate a model's predictions for validation images (DDIM, Euler and
// DPM-Solver++ multistep, as --validation_noise_scheduler names them).
//
// Numerics follow what diffusers computes on the CPU so that training and validation match the
// reference run: the β table is built in float32 the way torch.linspace does, ᾱ is a float32
// cumulative product accumulated in float64 (torch's CPU kernel), and the noising coefficients
// are float32 square roots. The package has no state beyond its values: a Schedule and a Solver
// are built once per job; a Solver carries its multistep history and is not safe for concurrent
// use.
package diffusion
