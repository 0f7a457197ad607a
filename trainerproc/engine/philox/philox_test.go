package philox

import (
	"math"
	"testing"
)

// TestKnownAnswer checks the Random123 known-answer vectors for philox4x32 with 10 rounds. Our
// counter only sets the low two words, which covers the all-zero vector.
func TestKnownAnswer(t *testing.T) {
	got := Block(0, 0)
	want := [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}
	if got != want {
		t.Fatalf("Block(0,0) = %08x, want %08x", got, want)
	}
}

func TestDistribution(t *testing.T) {
	const n = 200000
	var sum, sq float64
	for j := 0; j < n/2; j++ {
		w := Block(42, uint64(j))
		a, b := BoxMuller(w[0], w[1])
		sum += a + b
		sq += a*a + b*b
		if u := Uniform01(w[2]); u < 0 || u >= 1 {
			t.Fatalf("Uniform01 out of range: %g", u)
		}
	}
	mean, variance := sum/n, sq/n-(sum/n)*(sum/n)
	if math.Abs(mean) > 0.01 || math.Abs(variance-1) > 0.02 {
		t.Fatalf("normal mean %g variance %g", mean, variance)
	}
	if Block(1, 0) == Block(2, 0) || Block(1, 0) == Block(1, 1) {
		t.Fatal("different keys or counters gave the same block")
	}
	if UniformBlocks(5) != 2 || NormalBlocks(5) != 3 {
		t.Fatal("block counts wrong")
	}
}
