package cpu

import (
	"fmt"

	"simpletuner/trainerproc/engine"
)

func checkIDs(ids []int32, rows int) {
	for i, id := range ids {
		if id < 0 || int(id) >= rows {
			panic(fmt.Sprintf("cpu: embedding id %d at %d outside [0,%d)", id, i, rows))
		}
	}
}

// Embedding implements engine.Backend.
func (b *Backend[T]) Embedding(dst, table engine.Buffer, ids []int32, dim int) {
	d, t := Data[T](dst), Data[T](table)
	mustLen("Embedding dst", len(d), len(ids)*dim)
	checkIDs(ids, len(t)/dim)
	b.pool.rangeFor(len(ids), grainFor(dim), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			id := int(ids[i])
			copy(d[i*dim:(i+1)*dim], t[id*dim:(id+1)*dim])
		}
	})
}

// EmbeddingBackward implements engine.Backend. Work is split by column, and each column adds
// the rows in index order, so repeated ids accumulate deterministically without atomics.
func (b *Backend[T]) EmbeddingBackward(dtable, dy engine.Buffer, ids []int32, dim int) {
	dt, g := Data[T](dtable), Data[T](dy)
	mustLen("EmbeddingBackward dy", len(g), len(ids)*dim)
	checkIDs(ids, len(dt)/dim)
	b.pool.rangeFor(dim, max(1, grainFor(len(ids))), func(lo, hi int) {
		for i, id := range ids {
			row := dt[int(id)*dim:]
			src := g[i*dim:]
			for c := lo; c < hi; c++ {
				row[c] += src[c]
			}
		}
	})
}
