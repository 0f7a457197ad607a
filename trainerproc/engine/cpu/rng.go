package cpu

import (
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/philox"
)

// RandUniform implements engine.Backend following package philox's stream layout.
func (b *Backend[T]) RandUniform(dst engine.Buffer, seed, offset uint64, lo, hi float32) {
	d := Data[T](dst)
	width := float64(hi) - float64(lo)
	blocks := int(philox.UniformBlocks(len(d)))
	b.pool.rangeFor(blocks, 1<<12, func(b0, b1 int) {
		for j := b0; j < b1; j++ {
			w := philox.Block(seed, offset+uint64(j))
			for t := 0; t < 4 && 4*j+t < len(d); t++ {
				d[4*j+t] = T(float64(lo) + width*float64(philox.Uniform01(w[t])))
			}
		}
	})
}

// RandNormal implements engine.Backend following package philox's stream layout.
func (b *Backend[T]) RandNormal(dst engine.Buffer, seed, offset uint64, mean, std float32) {
	d := Data[T](dst)
	blocks := int(philox.NormalBlocks(len(d)))
	b.pool.rangeFor(blocks, 1<<12, func(b0, b1 int) {
		for j := b0; j < b1; j++ {
			w := philox.Block(seed, offset+uint64(j))
			z0, z1 := philox.BoxMuller(w[0], w[1])
			d[2*j] = T(float64(mean) + float64(std)*z0)
			if 2*j+1 < len(d) {
				d[2*j+1] = T(float64(mean) + float64(std)*z1)
			}
		}
	})
}
