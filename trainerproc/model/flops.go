package model

// TrainFLOPs is the matrix-multiply FLOP count of one training step (forward + backward,
// counted as 3× the forward GEMMs, the usual convention; gradient checkpointing's recompute
// is not counted) for a batch of bsz images of h×w input units (pixels for dit, latents for
// PixArt) with captions of l tokens. Elementwise work is not counted, so FLOP/s figures
// computed from it are comparable across implementations.
func (c Config) TrainFLOPs(bsz, h, w, l int) float64 {
	d, tw, p := float64(c.Width()), float64(c.TextWidth), float64(c.PatchSize)
	ff, tff := d*float64(c.MLPRatio), tw*float64(c.MLPRatio)
	n := float64((h / c.PatchSize) * (w / c.PatchSize))
	b, L := float64(bsz), float64(l)
	tok, ctok := b*n, b*L
	ch := float64(c.InChannels)
	lin := func(rows, in, out float64) float64 { return 2 * rows * in * out }
	attn := func(nq, nk, width float64) float64 { return 2 * 2 * b * nq * nk * width } // QKᵀ and P·V
	f := lin(tok, ch*p*p, d)
	f += lin(b, timeFreqDim, d) + lin(b, d, d) + lin(b, d, 6*d)
	for range c.TextLayers {
		f += 4*lin(ctok, tw, tw) + lin(ctok, tw, tff) + lin(ctok, tff, tw) + attn(L, L, tw)
	}
	f += lin(ctok, tw, d) + lin(ctok, d, d)
	perBlock := 4*lin(tok, d, d) + attn(n, n, d) + // self-attention
		2*lin(tok, d, d) + 2*lin(ctok, d, d) + attn(n, L, d) + // cross-attention
		lin(tok, d, ff) + lin(tok, ff, d)
	f += float64(c.NumLayers) * perBlock
	f += lin(tok, d, p*p*float64(c.Outputs()))
	return 3 * f
}
