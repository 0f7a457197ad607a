// Package vae implements the image autoencoder of latent diffusion models: diffusers'
// AutoencoderKL (the SDXL-architecture VAE of PixArt-Σ, and Flux's sibling without quant
// convs), for frozen inference on an engine.Engine, loaded from and saved to a diffusers
// component directory ("vae/": config.json plus diffusion_pytorch_model[.variant].safetensors,
// single file or sharded).
//
// # Architecture
//
// Everything is read from config.json; parameter names are diffusers' own, so checkpoints
// load unchanged:
//
//	encoder: conv_in → down_blocks[i] (layers_per_block ResnetBlock2D, then a Downsample2D
//	         except in the last block: pad right and bottom by one, 3×3 stride-2 conv)
//	         → mid_block (resnet, single-head self-attention with its own group norm and a
//	         residual connection, resnet) → conv_norm_out → SiLU → conv_out (2·latent
//	         channels: mean ‖ logvar) → quant_conv (1×1, optional)
//	posterior: logvar clamped to [−30, 20]; a sample is mean + exp(logvar/2)·ε
//	decoder: post_quant_conv (optional) → conv_in → mid_block → up_blocks[i]
//	         (layers_per_block+1 resnets, then nearest ×2 upsampling and a 3×3 conv except
//	         in the last block) → conv_norm_out → SiLU → conv_out
//
// A ResnetBlock2D is GN → SiLU → conv3×3 → GN → SiLU → conv3×3 plus the input (through a 1×1
// conv when the channel count changes). Every group norm has eps 1e-6. Block i of the decoder
// has the channels of encoder block n−1−i.
//
// Latents handed to a diffusion model are (z − shift_factor)·scaling_factor, as diffusers'
// pipelines and SimpleTuner's latent cache compute them; Decode undoes it.
//
// # Weights
//
// The loader reads each tensor straight into its parameter (F32, F16 or BF16 on disk, f32 in
// memory), so loading never holds a second copy of the model. It accepts the attention's
// current names (to_q, to_k, to_v, to_out.0) and the legacy ones (query, key, value,
// proj_attn), and remembers every tensor's on-disk name, dtype and shape, so Save writes back
// exactly what was loaded.
package vae
