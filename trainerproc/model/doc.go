// Package model implements the PixArt-Σ transformer twice over one implementation of its
// block (adaLN-single timestep modulation, self-attention, cross-attention to caption
// tokens, GELU-tanh MLP): the trainer's model family "dit", on patchified RGB pixels with
// 2-D sin-cos positions, conditioned by a small learned caption encoder and trained with
// rectified flow; and diffusers' PixArtTransformer2DModel as PixArt-Σ checkpoints ship it
// (pixart.go: ReadTransformerConfig, LoadTransformer, ForwardEmbeds, SaveTransformer), on VAE
// latents with T5 caption states, DDPM timesteps and 8 output channels (ε and the learned
// variance). Gradient checkpointing (SetGradientCheckpointing) recomputes each block in the
// backward pass for either.
//
// # Architecture
//
// The transformer follows diffusers' PixArtTransformer2DModel exactly (parameter names
// included), so that weights are recognisable and the PyTorch reference in bench/torch_dit.py
// can load them unchanged:
//
//	tokens = patchify(x_t)·Wpatchᵀ + b + pos2d                       pos_embed.proj
//	temb   = linear_2(SiLU(linear_1(sinusoid(1000·t))))              adaln_single.emb.timestep_embedder
//	         (PixArt: sinusoid(t) of the DDPM timestep t ∈ 0..999)
//	tmod   = adaln_single.linear(SiLU(temb))              [B, 6D]   shared by every block
//	y      = linear_2(GELU(linear_1(captionEncoder(ids))))          caption_projection
//	         (PixArt: linear_2(GELU(linear_1(T5 states))))
//	block  : h += gate_msa·attn1(LN(h)·(1+scale_msa)+shift_msa)
//	         h += attn2(h, y, mask)                                 no norm, no gate
//	         h += gate_mlp·ff(LN(h)·(1+scale_mlp)+shift_mlp)
//	out    = unpatchify(proj_out(LN(h)·(1+scale)+shift))             scale_shift_table + temb
//
// The caption encoder (parameters prefixed "text_encoder.") is a pre-LN transformer over byte
// tokens: token and learned position embeddings, Config.TextLayers layers of masked
// self-attention and GELU-tanh MLP, and a final layer norm.
//
// # Objective
//
// Rectified flow: x_t = (1−t)·x₀ + t·ε, the model predicts ε − x₀, t is logit-normal. Caption
// dropout (classifier-free guidance) zeroes a sample's caption mask: with no key to attend
// to, cross-attention contributes only its output bias, which is also the unconditional input
// at sampling time. No tokenizer convention is needed for the null caption.
//
// # Weights
//
// A model directory holds model_index.json, transformer/{config.json,
// diffusion_pytorch_model.safetensors} and text_encoder/{config.json, model.safetensors}, all
// float32 with diffusers-style names. LoRA and LoKr adapters (adapter.go) save
// pytorch_lora_weights.safetensors with PEFT names (transformer.<module>.lora_A.weight) or
// LyCORIS names (lycoris_<module>.lokr_w1).
package model
