// Package data is the trainer's data pipeline: it reads SimpleTuner's dataloader JSON
// (multidatabackend.json, docs/compatibility.md §13) with the contract's parser
// (plugins/dataloader), discovers images on the local backend, derives captions,
// preprocesses images into aspect-bucketed pixel tensors, tokenizes captions, keeps both
// in on-disk caches, and yields deterministic, resumable batches.
//
// The model trains in pixel space, so the "VAE cache" (cache_dir_vae) holds preprocessed
// pixel tensors: decoded, optionally downsampled, resized to cover the aspect bucket, cropped,
// normalised to [-1, 1], stored as CHW float32 or float16. The text-embeds cache (cache_dir of
// the text_embeds dataset) holds token ids from a deterministic byte-level tokenizer; the
// learned caption encoder is the model's concern.
//
// Determinism: every random choice (random crops, caption variants, shuffles, dataset
// interleaving) is a pure function of a seed and stable identifiers, so the same seed yields
// the same batches and a restored Sampler continues bit-identically.
//
// The package has no global mutable state and never logs: warnings and progress go through
// callbacks in Options. It never imports the supervisor.
package data
