package t5

import "math"

// RelativePositionBucket maps a key-minus-query distance rel onto one of numBuckets
// relative-attention buckets, as T5 does. Bidirectionally (the encoder) half the buckets
// are for keys after the query (rel > 0, offset by numBuckets/2) and half for the rest;
// within a half, the first quarter of numBuckets holds the exact distances 0..n/4−1 and the
// rest spreads the distances from n/4 up to maxDistance logarithmically, every distance
// beyond maxDistance sharing the last bucket.
//
// The logarithmic part is computed in float32, as the reference does in its tensors, so
// that the distances where the real-valued formula lands exactly on an integer (16, 32, 64
// with the usual 32 buckets and distance 128) fall into the same bucket.
func RelativePositionBucket(rel, numBuckets, maxDistance int, bidirectional bool) int {
	bucket := 0
	if bidirectional {
		numBuckets /= 2
		if rel > 0 {
			bucket = numBuckets
		}
		rel = abs(rel)
	} else {
		rel = max(-rel, 0)
	}
	maxExact := numBuckets / 2
	if rel < maxExact {
		return bucket + rel
	}
	ratio := float32(rel) / float32(maxExact)
	logRatio := float32(math.Log(float64(ratio)))
	span := float32(math.Log(float64(maxDistance) / float64(maxExact)))
	large := maxExact + int(logRatio/span*float32(numBuckets-maxExact))
	return bucket + min(large, numBuckets-1)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// bucketTable returns the bucket of every (query, key) pair of a length-n sequence,
// row-major [query][key], for the encoder's bidirectional attention.
func bucketTable(n, numBuckets, maxDistance int) []int32 {
	// A bucket depends on key−query only: compute the 2n−1 distinct ones once.
	byRel := make([]int32, 2*n-1)
	for d := range byRel {
		byRel[d] = int32(RelativePositionBucket(d-(n-1), numBuckets, maxDistance, true))
	}
	out := make([]int32, n*n)
	for q := range n {
		copy(out[q*n:(q+1)*n], byRel[n-1-q:2*n-1-q])
	}
	return out
}
