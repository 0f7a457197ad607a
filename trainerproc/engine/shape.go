package engine

import (
	"slices"
)

// plan3 folds an n-dimensional elementwise problem onto the backends' [Outer, Mid, Inner]
// form. present[k][d] says whether operand k spans dimension d of the output shape. Dimensions
// of size 1 are dropped and neighbouring dimensions with the same presence pattern are merged;
// at most three runs may remain (which covers bias, per-row, per-sample and scalar broadcasting
// and any full operand).
func plan3(out []int, present [][]bool) (Shape3, []Span, bool) {
	type run struct {
		size int
		pat  []bool
	}
	var runs []run
	for d, n := range out {
		if n == 1 {
			continue
		}
		pat := make([]bool, len(present))
		for k := range present {
			pat[k] = present[k][d]
		}
		if len(runs) > 0 && slices.Equal(runs[len(runs)-1].pat, pat) {
			runs[len(runs)-1].size *= n
			continue
		}
		runs = append(runs, run{size: n, pat: pat})
	}
	if len(runs) > 3 {
		return Shape3{}, nil, false
	}
	// Pad at the front with size-1 runs that every operand "spans" (harmless: size 1).
	for len(runs) < 3 {
		all := make([]bool, len(present))
		for k := range all {
			all[k] = true
		}
		runs = append([]run{{size: 1, pat: all}}, runs...)
	}
	s := Shape3{Outer: runs[0].size, Mid: runs[1].size, Inner: runs[2].size}
	spans := make([]Span, len(present))
	for k := range present {
		for r, bit := range []Span{SpanOuter, SpanMid, SpanInner} {
			if runs[r].pat[k] {
				spans[k] |= bit
			}
		}
	}
	return s, spans, true
}

// broadcastShapes returns the numpy-style broadcast of a and b and, for each, which output
// dimensions it spans.
func broadcastShapes(a, b []int) (out []int, pa, pb []bool, ok bool) {
	n := max(len(a), len(b))
	out = make([]int, n)
	pa, pb = make([]bool, n), make([]bool, n)
	for d := 0; d < n; d++ {
		da, db := 1, 1
		if i := d - (n - len(a)); i >= 0 {
			da = a[i]
		}
		if i := d - (n - len(b)); i >= 0 {
			db = b[i]
		}
		switch {
		case da == db:
			out[d] = da
		case da == 1:
			out[d] = db
		case db == 1:
			out[d] = da
		default:
			return nil, nil, nil, false
		}
		pa[d] = da == out[d] && out[d] != 1
		pb[d] = db == out[d] && out[d] != 1
	}
	return out, pa, pb, true
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(axis, rank int) int {
	if axis < 0 {
		axis += rank
	}
	if axis < 0 || axis >= rank {
		throwf(ErrShape, "axis %d out of range for rank %d", axis, rank)
	}
	return axis
}
