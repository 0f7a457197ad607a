// Package philox implements the Philox4x32-10 counter-based random number generator (Salmon et
// al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) and the mapping from its output to
// uniform and normal float32 values that every engine backend must reproduce bit-for-bit (up
// to the transcendental functions used by Box-Muller).
//
// A counter-based generator makes element i of a random tensor a pure function of (seed,
// offset, i), so results do not depend on how the work is split across threads or GPU blocks.
//
// Stream layout (the contract backends follow):
//   - Uniform: element i uses block (offset + i/4), word i%4, mapped to [0,1) by Uniform01.
//   - Normal:  elements 2j and 2j+1 use block (offset + j): words 0,1 feed Box-Muller for the
//     cosine and sine branch respectively (words 2,3 are unused).
//
// UniformBlocks and NormalBlocks give how many counter blocks a tensor consumes, so a caller
// advancing its offset never reuses a block.
package philox

import "math"

const (
	m0 = 0xD2511F53
	m1 = 0xCD9E8D57
	w0 = 0x9E3779B9
	w1 = 0xBB67AE85
)

// Block returns the four 32-bit words of Philox4x32-10 for counter (lo 64 bits = ctr, high 64
// bits = 0) and 64-bit key.
func Block(key, ctr uint64) [4]uint32 {
	c0, c1, c2, c3 := uint32(ctr), uint32(ctr>>32), uint32(0), uint32(0)
	k0, k1 := uint32(key), uint32(key>>32)
	for r := 0; r < 10; r++ {
		p0 := uint64(m0) * uint64(c0)
		p1 := uint64(m1) * uint64(c2)
		hi0, lo0 := uint32(p0>>32), uint32(p0)
		hi1, lo1 := uint32(p1>>32), uint32(p1)
		c0, c1, c2, c3 = hi1^c1^k0, lo1, hi0^c3^k1, lo0
		k0 += w0
		k1 += w1
	}
	return [4]uint32{c0, c1, c2, c3}
}

// Uniform01 maps a word to [0,1) using its top 24 bits (exactly representable in float32).
func Uniform01(w uint32) float32 {
	return float32(w>>8) * (1.0 / (1 << 24))
}

// BoxMuller maps two words to two independent standard normals. The first word is mapped to
// (0,1] so the logarithm is finite.
func BoxMuller(a, b uint32) (float64, float64) {
	u1 := (float64(a>>8) + 1) * (1.0 / (1 << 24))
	u2 := float64(b>>8) * (1.0 / (1 << 24))
	r := math.Sqrt(-2 * math.Log(u1))
	s, c := math.Sincos(2 * math.Pi * u2)
	return r * c, r * s
}

// UniformBlocks is the number of counter blocks a uniform tensor of n elements consumes.
func UniformBlocks(n int) uint64 { return uint64((n + 3) / 4) }

// NormalBlocks is the number of counter blocks a normal tensor of n elements consumes.
func NormalBlocks(n int) uint64 { return uint64((n + 1) / 2) }
