package safetensors

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func isNaN32(f float32) bool { return f != f }

// Every half and bfloat16 value must survive a trip through float32 unchanged.
func TestHalfWidenNarrowExhaustive(t *testing.T) {
	for h := range 1 << 16 {
		u := uint16(h)
		if f := F16ToFloat32(u); !isNaN32(f) {
			if back := Float32ToF16(f); back != u {
				t.Fatalf("f16 %04x -> %v -> %04x", u, f, back)
			}
		} else if back := Float32ToF16(f); back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
			t.Fatalf("f16 NaN %04x -> %04x is not NaN", u, back)
		}
		if f := BF16ToFloat32(u); !isNaN32(f) {
			if back := Float32ToBF16(f); back != u {
				t.Fatalf("bf16 %04x -> %v -> %04x", u, f, back)
			}
		} else if !isNaN32(BF16ToFloat32(Float32ToBF16(f))) {
			t.Fatalf("bf16 NaN %04x lost", u)
		}
	}
}

// nearest returns the encoding of the value closest to x among vals (the decoded positive
// finite encodings, ascending) for positive x, ties to the even encoding: an independent reference for rounding.
func nearest(x float64, vals []float64) uint16 {
	maxFinite := uint16(len(vals) - 1)
	i := sort.SearchFloat64s(vals, x)
	if i > int(maxFinite) {
		// Beyond the largest finite value: IEEE rounds to infinity once x reaches the
		// midpoint to the next (unrepresentable) step.
		return maxFinite + 1
	}
	if vals[i] == x || i == 0 {
		return uint16(i)
	}
	lo, hi := vals[i-1], vals[i]
	switch {
	case x-lo < hi-x:
		return uint16(i - 1)
	case x-lo > hi-x:
		return uint16(i)
	}
	if (i-1)%2 == 0 {
		return uint16(i - 1)
	}
	return uint16(i)
}

func TestRoundingMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var inputs []float32
	// Exact midpoints between neighbouring halves/bfloat16s exercise ties-to-even.
	for range 2000 {
		h := uint16(r.IntN(0x7bff))
		lo, hi := float64(F16ToFloat32(h)), float64(F16ToFloat32(h+1))
		inputs = append(inputs, float32((lo+hi)/2))
		b := uint16(r.IntN(0x7f7f))
		lo, hi = float64(BF16ToFloat32(b)), float64(BF16ToFloat32(b+1))
		inputs = append(inputs, float32((lo+hi)/2))
	}
	for range 20000 {
		inputs = append(inputs, math.Float32frombits(r.Uint32()&0x7fffffff))
		inputs = append(inputs, float32(r.Float64()*70000))
		inputs = append(inputs, float32(r.Float64()*1e-6))
	}
	table := func(decode func(uint16) float32, maxFinite uint16) []float64 {
		vals := make([]float64, int(maxFinite)+1)
		for i := range vals {
			vals[i] = float64(decode(uint16(i)))
		}
		return vals
	}
	f16s, bf16s := table(F16ToFloat32, 0x7bff), table(BF16ToFloat32, 0x7f7f)
	for _, f := range inputs {
		if isNaN32(f) || math.IsInf(float64(f), 0) {
			continue
		}
		x := float64(f)
		if want := nearest(x, f16s); Float32ToF16(f) != want {
			// Above the largest half the reference says "inf" only past the midpoint.
			if !(want == 0x7c00 && x < 65520) {
				t.Fatalf("Float32ToF16(%g) = %04x, want %04x", f, Float32ToF16(f), want)
			}
		}
		if x < float64(math.MaxFloat32) {
			if want := nearest(x, bf16s); Float32ToBF16(f) != want {
				t.Fatalf("Float32ToBF16(%g) = %04x, want %04x", f, Float32ToBF16(f), want)
			}
		}
		// Sign symmetry.
		if Float32ToF16(-f) != Float32ToF16(f)|0x8000 || Float32ToBF16(-f) != Float32ToBF16(f)|0x8000 {
			t.Fatalf("sign asymmetry at %g", f)
		}
	}
}

func TestConversionSpecialValues(t *testing.T) {
	cases := []struct {
		in       float32
		f16, b16 uint16
	}{
		{1, 0x3c00, 0x3f80},
		{-2, 0xc000, 0xc000},
		{65504, 0x7bff, 0x4780},
		{65520, 0x7c00, 0x4780}, // f16 midpoint to "65536" rounds to even = inf
		{float32(math.Inf(1)), 0x7c00, 0x7f80},
		{5.960464477539063e-08, 0x0001, 0x3380},  // smallest f16 subnormal
		{2.9802322387695312e-08, 0x0000, 0x3300}, // half of it ties to even = 0
		{math.MaxFloat32, 0x7c00, 0x7f80},        // bf16 rounds up to inf
		{1.00390625, 0x3c04, 0x3f80},             // bf16 tie (1 + 2^-8) to even
		{1.01171875, 0x3c0c, 0x3f82},             // bf16 tie (1 + 3·2^-8) to even (up)
	}
	for _, c := range cases {
		if got := Float32ToF16(c.in); got != c.f16 {
			t.Errorf("Float32ToF16(%g) = %04x, want %04x", c.in, got, c.f16)
		}
		if got := Float32ToBF16(c.in); got != c.b16 {
			t.Errorf("Float32ToBF16(%g) = %04x, want %04x", c.in, got, c.b16)
		}
	}
	if !isNaN32(F16ToFloat32(Float32ToF16(float32(math.NaN())))) {
		t.Error("f16 NaN lost")
	}
	if !isNaN32(BF16ToFloat32(Float32ToBF16(math.Float32frombits(0x7f800001)))) {
		t.Error("bf16 signalling NaN rounded to infinity")
	}
}
