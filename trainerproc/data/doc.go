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
// Latent-space models need two more caches, filled before training by the encoders the model
// family provides (latents.go, textembeds.go): EnsureLatents stores the VAE posterior (mean and
// log-variance) of every image, crop and bucket the loader planned (Loader.LatentItems) in the
// dataset's cache_dir_vae, and EnsureTextEmbeds the hidden states of every caption
// (Loader.Captions) and of the empty caption in the text_embeds dataset's cache_dir. Entries
// are keyed by everything they depend on (the image's content hash, the geometry, the
// encoder's identity, the max length), rebuilt when stale or corrupt, written atomically, and
// shared by jobs and processes; the training loop reads them back with LatentCache.Load and
// TextEmbedCache.Load. The file formats are described in cache.go.
//
// Determinism: every random choice (random crops, caption variants, shuffles, dataset
// interleaving) is a pure function of a seed and stable identifiers, so the same seed yields
// the same batches and a restored Sampler continues bit-identically.
//
// The package has no global mutable state and never logs: warnings and progress go through
// callbacks in Options. It never imports the supervisor.
package data
