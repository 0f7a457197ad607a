package cuda

import "math"

// BF16FromFloat32 rounds f to bfloat16 with round-to-nearest-even, as cast_f32_bf16 and
// torch do; NaN stays a (quiet) NaN.
func BF16FromFloat32(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep the sign, force a quiet mantissa bit
		return uint16(b>>16) | 0x0040
	}
	// Add 0x7fff plus the lowest kept bit, so ties round to even.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// Float32FromBF16 widens a bfloat16 exactly.
func Float32FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// RoundBF16 returns f rounded to the nearest bfloat16, as a float32; CPU-side references of
// the bf16 path use it to model what the GPU multiplies.
func RoundBF16(f float32) float32 { return Float32FromBF16(BF16FromFloat32(f)) }
