package t5

// f32 is the size of an engine element: weights and activations are float32 whatever the
// checkpoint's dtype.
const f32 = 4

// Memory is an estimate, in bytes, of what loading the encoder and encoding one batch takes
// on the engine's device.
type Memory struct {
	// Weights are every weight as float32 (a BF16 checkpoint doubles in size once loaded).
	Weights int64
	// Scores is one [B, H, L, L] score tensor. The shared attention bias is one (only
	// [1, H, L, L] without a mask), and a block's softmax holds two more at once.
	Scores int64
	// Activations is the peak of the forward pass's tensors beyond the weights: the shared
	// bias plus the largest working set of one block (the query/key/value projections, the
	// two score tensors around the softmax, or the feed-forward's three d_ff-wide tensors),
	// with the residual streams alive at that point.
	Activations int64
	// HostStaging is host memory loading needs on a backend whose buffers are not host
	// memory: one tensor at a time, the largest as float32. The CPU backend reads straight
	// into the weights and needs none.
	HostStaging int64
	// Total is Weights + Activations.
	Total int64
}

// Memory estimates loading the encoder and encoding batch captions of seqLen tokens with a
// padding mask (Forward with a nil mask holds a smaller bias). The working sets follow the
// order in which Forward frees its intermediates.
func (c Config) Memory(batch, seqLen int) Memory {
	var m Memory
	var largest int64
	for _, s := range c.specs(SharedName) {
		n := int64(1)
		for _, d := range s.shape {
			n *= int64(d)
		}
		m.Weights += n * f32
		largest = max(largest, n*f32)
	}
	m.HostStaging = largest
	b, l := int64(batch), int64(seqLen)
	t := b * l // tokens
	d, inner, ff := int64(c.DModel), int64(c.InnerDim()), int64(c.DFF)
	s := b * int64(c.NumHeads) * l * l
	m.Scores = s * f32
	block := max(
		2*t*d+4*t*inner, // stream, normed input, q, k, and v before and after the head split
		t*d+t*inner+2*s, // stream, v, scores and biased scores (then biased and probabilities)
		3*t*d+3*ff*t,    // both streams, normed input, gate, linear half, product
		4*t*d,           // both streams, the feed-forward output and the new stream
	)
	m.Activations = (s + block) * f32
	m.Total = m.Weights + m.Activations
	return m
}
