// Package validation renders the trainer's validation images: an Euler sampler for the
// rectified-flow dit model with classifier-free guidance, the preview cadence of the
// seed tutorial (step 1, then every validation_preview_steps, then the last step), PNG
// encoding and file naming under output_dir/validation_images/, and the parsing of
// validation_resolution lists and user_prompt_library files.
//
// The sampler is deterministic: the initial noise comes from a Philox stream seeded by
// validation_seed, and each (prompt, resolution) pair starts from the same noise, so
// images of different prompts differ only by their caption. It never touches the
// training RNG, optimizer or data order, so running validation does not change a run.
package validation
