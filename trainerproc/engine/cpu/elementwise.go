package cpu

import (
	"fmt"
	"math"

	"simpletuner/trainerproc/engine"
)

// spanIndex returns the offset of row (o,m) and the inner step (0 or 1) of an operand with the
// given span in shape s.
func spanIndex(s engine.Shape3, sp engine.Span, o, m int) (off, step int) {
	mid, inner := 1, 1
	if sp&engine.SpanMid != 0 {
		mid = s.Mid
	}
	if sp&engine.SpanInner != 0 {
		inner, step = s.Inner, 1
	}
	if sp&engine.SpanOuter == 0 {
		o = 0
	}
	if sp&engine.SpanMid == 0 {
		m = 0
	}
	return (o*mid + m) * inner, step
}

// Binary implements engine.Backend.
func (b *Backend[T]) Binary(op engine.BinaryOp, dst, x, y engine.Buffer, s engine.Shape3, xs, ys engine.Span) {
	d, xa, ya := Data[T](dst), Data[T](x), Data[T](y)
	mustLen("Binary dst", len(d), s.Size())
	mustLen("Binary a", len(xa), s.SpanSize(xs))
	mustLen("Binary b", len(ya), s.SpanSize(ys))
	rows, inner := s.Outer*s.Mid, s.Inner
	b.pool.rangeFor(rows, grainFor(inner), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			o, m := r/s.Mid, r%s.Mid
			xo, xst := spanIndex(s, xs, o, m)
			yo, yst := spanIndex(s, ys, o, m)
			out := d[r*inner : (r+1)*inner]
			switch {
			case xst == 1 && yst == 1:
				binaryRow(op, out, xa[xo:xo+inner], ya[yo:yo+inner])
			case xst == 1:
				binaryRowScalarB(op, out, xa[xo:xo+inner], ya[yo])
			case yst == 1:
				binaryRowScalarA(op, out, xa[xo], ya[yo:yo+inner])
			default:
				v := applyOp(op, xa[xo], ya[yo])
				for i := range out {
					out[i] = v
				}
			}
		}
	})
}

func applyOp[T Float](op engine.BinaryOp, a, b T) T {
	switch op {
	case engine.OpAdd:
		return a + b
	case engine.OpSub:
		return a - b
	case engine.OpMul:
		return a * b
	case engine.OpDiv:
		return a / b
	}
	panic(fmt.Sprintf("cpu: unknown binary op %d", op))
}

func binaryRow[T Float](op engine.BinaryOp, out, a, b []T) {
	a, b = a[:len(out)], b[:len(out)]
	switch op {
	case engine.OpAdd:
		for i := range out {
			out[i] = a[i] + b[i]
		}
	case engine.OpSub:
		for i := range out {
			out[i] = a[i] - b[i]
		}
	case engine.OpMul:
		for i := range out {
			out[i] = a[i] * b[i]
		}
	case engine.OpDiv:
		for i := range out {
			out[i] = a[i] / b[i]
		}
	default:
		panic(fmt.Sprintf("cpu: unknown binary op %d", op))
	}
}

func binaryRowScalarB[T Float](op engine.BinaryOp, out, a []T, b T) {
	a = a[:len(out)]
	switch op {
	case engine.OpAdd:
		for i := range out {
			out[i] = a[i] + b
		}
	case engine.OpSub:
		for i := range out {
			out[i] = a[i] - b
		}
	case engine.OpMul:
		for i := range out {
			out[i] = a[i] * b
		}
	default:
		for i := range out {
			out[i] = applyOp(op, a[i], b)
		}
	}
}

func binaryRowScalarA[T Float](op engine.BinaryOp, out []T, a T, b []T) {
	b = b[:len(out)]
	for i := range out {
		out[i] = applyOp(op, a, b[i])
	}
}

// Affine implements engine.Backend.
func (b *Backend[T]) Affine(dst, x engine.Buffer, alpha, beta float32) {
	d, xs := Data[T](dst), Data[T](x)
	mustLen("Affine x", len(xs), len(d))
	al, be := T(alpha), T(beta)
	b.pool.rangeFor(len(d), 1<<15, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = al*xs[i] + be
		}
	})
}

// Axpy implements engine.Backend.
func (b *Backend[T]) Axpy(y, x engine.Buffer, alpha float32) {
	ys, xs := Data[T](y), Data[T](x)
	mustLen("Axpy x", len(xs), len(ys))
	al := T(alpha)
	b.pool.rangeFor(len(ys), 1<<15, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ys[i] += al * xs[i]
		}
	})
}

// Expand implements engine.Backend.
func (b *Backend[T]) Expand(dst, src engine.Buffer, s engine.Shape3, srcSpan engine.Span, alpha float32) {
	d, sv := Data[T](dst), Data[T](src)
	mustLen("Expand dst", len(d), s.Size())
	mustLen("Expand src", len(sv), s.SpanSize(srcSpan))
	al := T(alpha)
	rows, inner := s.Outer*s.Mid, s.Inner
	b.pool.rangeFor(rows, grainFor(inner), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			so, st := spanIndex(s, srcSpan, r/s.Mid, r%s.Mid)
			out := d[r*inner : (r+1)*inner]
			if st == 1 {
				in := sv[so : so+inner]
				for i := range out {
					out[i] = al * in[i]
				}
			} else {
				v := al * sv[so]
				for i := range out {
					out[i] = v
				}
			}
		}
	})
}

// Activation math, in float64 so the float32 and float64 backends differ only by rounding.
const (
	geluC = 0.7978845608028654 // √(2/π)
	geluA = 0.044715
)

func act(kind engine.Activation, x float64) float64 {
	switch kind {
	case engine.ActNone:
		return x
	case engine.ActGELUTanh:
		return 0.5 * x * (1 + math.Tanh(geluC*(x+geluA*x*x*x)))
	case engine.ActSiLU:
		return x / (1 + math.Exp(-x))
	}
	panic(fmt.Sprintf("cpu: unknown activation %d", kind))
}

func actGrad(kind engine.Activation, x float64) float64 {
	switch kind {
	case engine.ActNone:
		return 1
	case engine.ActGELUTanh:
		t := math.Tanh(geluC * (x + geluA*x*x*x))
		return 0.5*(1+t) + 0.5*x*(1-t*t)*geluC*(1+3*geluA*x*x)
	case engine.ActSiLU:
		s := 1 / (1 + math.Exp(-x))
		return s * (1 + x*(1-s))
	}
	panic(fmt.Sprintf("cpu: unknown activation %d", kind))
}

// BiasAct implements engine.Backend: bias add and activation in one pass over memory.
func (b *Backend[T]) BiasAct(kind engine.Activation, dst, x, bias engine.Buffer, rows, cols int) {
	d, xs, bs := Data[T](dst), Data[T](x), Data[T](bias)
	mustLen("BiasAct dst", len(d), rows*cols)
	mustLen("BiasAct x", len(xs), rows*cols)
	if bs != nil {
		mustLen("BiasAct bias", len(bs), cols)
	}
	b.pool.rangeFor(rows, grainFor(cols*8), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, dr := xs[r*cols:(r+1)*cols], d[r*cols:(r+1)*cols]
			for c := range dr {
				v := xr[c]
				if bs != nil {
					v += bs[c]
				}
				dr[c] = T(act(kind, float64(v)))
			}
		}
	})
}

// BiasActBackward implements engine.Backend.
func (b *Backend[T]) BiasActBackward(kind engine.Activation, dx, dbias, x, bias, dy engine.Buffer, rows, cols int) {
	dxs, xs, bs, dys := Data[T](dx), Data[T](x), Data[T](bias), Data[T](dy)
	mustLen("BiasActBackward dx", len(dxs), rows*cols)
	mustLen("BiasActBackward x", len(xs), rows*cols)
	mustLen("BiasActBackward dy", len(dys), rows*cols)
	b.pool.rangeFor(rows, grainFor(cols*8), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			for c := 0; c < cols; c++ {
				i := r*cols + c
				v := xs[i]
				if bs != nil {
					v += bs[c]
				}
				dxs[i] = T(float64(dys[i]) * actGrad(kind, float64(v)))
			}
		}
	})
	if dbias != nil {
		b.reduce(Data[T](dbias), dxs, engine.Shape3{Outer: 1, Mid: rows, Inner: cols}, engine.SpanInner, 1)
	}
}
