// Package t5 is the T5 text encoder (transformers' T5EncoderModel) that PixArt and Flux
// condition on, with its caption pipeline: PixArt's caption cleaning (CleanCaption), the
// SentencePiece tokenizer (package text/sentencepiece) and the encoder's forward pass on the
// engine, for any config size.
//
// The encoder is frozen: it only runs inference (engine.NoGrad), so its weights are
// parameters that never require a gradient. Weights load from a component directory
// (`text_encoder/` in the diffusers layout: config.json plus model.safetensors or a sharded
// model.safetensors.index.json) one tensor at a time, straight into the engine buffer of
// its parameter, whatever the on-disk float type (F32, BF16 or F16, computed in float32).
// Save writes them back with each tensor's on-disk type, so a load-then-save round-trips
// names, shapes, dtypes and bytes.
//
// The architecture, per block: a root-mean-square norm, self-attention with unscaled scores
// plus a relative position bias (computed once from block 0's table and shared by every
// block) plus the key padding mask as a large negative additive bias, a residual add; a
// second norm, the (gated) feed-forward, a residual add; a final norm after the last block.
package t5
