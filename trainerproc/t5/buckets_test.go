package t5

import (
	"fmt"
	"testing"
)

// TestRelativePositionBucket checks buckets worked out by hand from the definition: within
// a half, distances below n/4 are exact, then 8 + ⌊log(|rel|/8)/log(128/8)·8⌋ capped at 15
// for T5's 32 buckets and distance 128 (keys after the query add 16). The distances 16, 32
// and 64 land exactly on 2, 4 and 6 in exact arithmetic, so they check that the float32
// evaluation does not round them down. (These, and every distance in ±1000 for six configs,
// were also compared with the reference's own function under Debian's torch 1.13.)
func TestRelativePositionBucket(t *testing.T) {
	cases := []struct {
		rel, buckets, maxDist int
		bidirectional         bool
		want                  int
	}{
		{0, 32, 128, true, 0},
		{-1, 32, 128, true, 1},
		{1, 32, 128, true, 17},
		{-7, 32, 128, true, 7},
		{7, 32, 128, true, 23},
		{-8, 32, 128, true, 8},  // log(1) = 0
		{8, 32, 128, true, 24},  //
		{-9, 32, 128, true, 8},  // 8·log(9/8)/log 16 = 0.34
		{-12, 32, 128, true, 9}, // 1.17
		{-15, 32, 128, true, 9}, // 1.81
		{-16, 32, 128, true, 10},
		{16, 32, 128, true, 26},
		{-31, 32, 128, true, 11}, // 3.91
		{-32, 32, 128, true, 12},
		{-63, 32, 128, true, 13}, // 5.97
		{-64, 32, 128, true, 14},
		{64, 32, 128, true, 30},
		{-127, 32, 128, true, 15}, // 7.98
		{-128, 32, 128, true, 15}, // 8, capped
		{300, 32, 128, true, 31},
		{-300, 32, 128, true, 15},
		// Decoder-style (one direction): keys after the query all share bucket 0.
		{5, 32, 128, false, 0},
		{-5, 32, 128, false, 5},
		{-16, 32, 128, false, 16},
		{-32, 32, 128, false, 21}, // exact below 16, then 16 + ⌊log(2)/log(8)·16⌋ = 16 + ⌊5.33⌋
		// Another table: 8 buckets, distance 20: halves of 4, exact below 2, then
		// 2 + ⌊log(|rel|/2)/log(10)·2⌋ capped at 3.
		{-1, 8, 20, true, 1},
		{-2, 8, 20, true, 2},
		{-6, 8, 20, true, 2}, // 0.95
		{-7, 8, 20, true, 3}, // 1.09
		{7, 8, 20, true, 7},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d/%d/%d/%v", c.rel, c.buckets, c.maxDist, c.bidirectional), func(t *testing.T) {
			if got := RelativePositionBucket(c.rel, c.buckets, c.maxDist, c.bidirectional); got != c.want {
				t.Errorf("bucket = %d, want %d", got, c.want)
			}
		})
	}
}

// TestBucketTable checks the [query][key] table against the per-distance function.
func TestBucketTable(t *testing.T) {
	const n = 40
	tab := bucketTable(n, 32, 128)
	for q := range n {
		for k := range n {
			if got, want := int(tab[q*n+k]), RelativePositionBucket(k-q, 32, 128, true); got != want {
				t.Fatalf("table[%d][%d] = %d, want %d", q, k, got, want)
			}
		}
	}
}
