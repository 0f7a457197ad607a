package model

import "math"

// timeFreqDim is the width of the sinusoidal timestep embedding (diffusers' Timesteps(256)).
const timeFreqDim = 256

// numTrainTimesteps scales the rectified-flow time t ∈ [0,1] to PixArt's timestep range before
// the sinusoid, so the embedding's frequencies see the range they were designed for.
const numTrainTimesteps = 1000

// TimestepEmbedding returns the [len(ts), dim] sinusoidal embedding of diffusers'
// get_timestep_embedding with flip_sin_to_cos=True and downscale_freq_shift=0: row i is
// [cos(ts[i]·ω_0..ω_{h-1}), sin(ts[i]·ω_0..)] with ω_j = exp(−ln(10000)·j/h), h = dim/2.
// It is computed in float64 and rounded once, so the PyTorch reference reproduces it exactly.
func TimestepEmbedding(ts []float64, dim int) []float32 {
	half := dim / 2
	out := make([]float32, len(ts)*dim)
	for i, t := range ts {
		row := out[i*dim : (i+1)*dim]
		for j := 0; j < half; j++ {
			arg := t * math.Exp(-math.Log(10000)*float64(j)/float64(half))
			row[j] = float32(math.Cos(arg))
			row[half+j] = float32(math.Sin(arg))
		}
	}
	return out
}

// PosEmbed2D returns diffusers' get_2d_sincos_pos_embed for an h×w token grid as [h·w, dim]
// (token index = row·w + col). Grid coordinates are normalised to the base grid
// (coordinate = index / (len/base) / interp) so every aspect ratio spans the same range, and
// the first dim/2 features encode the column, the last dim/2 the row, as in diffusers.
func PosEmbed2D(dim, h, w, base int, interp float64) []float32 {
	out := make([]float32, h*w*dim)
	half := dim / 2
	quarter := half / 2
	enc := func(dst []float32, pos float64) {
		for j := 0; j < quarter; j++ {
			omega := 1 / math.Pow(10000, float64(j)/float64(quarter))
			dst[j] = float32(math.Sin(pos * omega))
			dst[quarter+j] = float32(math.Cos(pos * omega))
		}
	}
	for r := 0; r < h; r++ {
		pr := float64(r) / (float64(h) / float64(base)) / interp
		for c := 0; c < w; c++ {
			pc := float64(c) / (float64(w) / float64(base)) / interp
			row := out[(r*w+c)*dim : (r*w+c+1)*dim]
			enc(row[:half], pc)
			enc(row[half:], pr)
		}
	}
	return out
}

// ddpmTimestepEmbedding is TimestepEmbedding for DDPM timesteps (0..999, fed as they are)
// evaluated the way diffusers evaluates it in float32: the exponent −ln(10000)·j and its
// division by dim/2 are rounded to float32, so are the frequency and the product with the
// timestep; only sin and cos are taken in float64. At t near 1000 the float64 formula of
// TimestepEmbedding differs from diffusers' by up to 1e-4 in the argument, which shows in a
// parity check; this one follows its rounding step by step.
func ddpmTimestepEmbedding(ts []float32, dim int) []float32 {
	half := dim / 2
	out := make([]float32, len(ts)*dim)
	lnMax := float32(-math.Log(10000))
	freq := make([]float32, half)
	for j := range freq {
		// Explicit conversions round each step (the compiler may not fuse them).
		exponent := float32(float32(lnMax*float32(j)) / float32(half))
		freq[j] = float32(math.Exp(float64(exponent)))
	}
	for i, t := range ts {
		row := out[i*dim : (i+1)*dim]
		for j, f := range freq {
			arg := float64(float32(t * f))
			row[j] = float32(math.Cos(arg))
			row[half+j] = float32(math.Sin(arg))
		}
	}
	return out
}
