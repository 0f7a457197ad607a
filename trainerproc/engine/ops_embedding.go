package engine

// Embedding gathers rows of table [V, D] for ids and returns [len(ids), D]. The gradient is a
// scatter-add into the table.
func (e *Engine) Embedding(table *Tensor, ids []int32) *Tensor {
	e.check(table)
	if table.Rank() != 2 {
		throwf(ErrShape, "embedding table %v, want [V,D]", table.shape)
	}
	v, d := table.shape[0], table.shape[1]
	for i, id := range ids {
		if id < 0 || int(id) >= v {
			throwf(ErrShape, "embedding id %d at %d outside [0,%d)", id, i, v)
		}
	}
	ids = append([]int32(nil), ids...)
	y := e.newTensor([]int{len(ids), d})
	e.be.Embedding(y.st.buf, table.st.buf, ids, d)
	e.record(y, "embedding", []*Tensor{table}, nil, nil, func(_ *node, gy *Tensor) []*Tensor {
		g := e.newGrad(table.shape)
		e.be.EmbeddingBackward(g.st.buf, gy.st.buf, ids, d)
		return []*Tensor{g}
	})
	return y
}
