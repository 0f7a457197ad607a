//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"

	"simpletuner/trainerproc/engine"
)

// ParityResult is one op's comparison of this backend against a reference backend.
type ParityResult struct {
	Op        string
	Precision Precision
	RelErr    float64 // ‖gpu − ref‖ / ‖ref‖ over every output
	Tol       float64
	NaN       bool   // an output held NaN (poisoned outputs that were not written show here)
	Err       error  // a backend error (sticky error, failed copy)
	Note      string // what was compared
}

// OK reports whether the op passed.
func (r ParityResult) OK() bool { return r.Err == nil && !r.NaN && r.RelErr <= r.Tol }

// Tolerances of the parity check: fp32 kernels against the fp32 CPU backend, and ops whose
// GEMMs run in bf16.
const (
	TolFP32 = 1e-5
	TolBF16 = 1e-2
)

// parity drives one op on both backends.
type parity struct {
	g   *Backend
	ref engine.Backend
	rng *rand.Rand
	out []ParityResult
}

// pair is the same tensor on both backends.
type pair struct {
	g, r engine.Buffer
	n    int
}

func (p *parity) alloc(n int) (pair, error) {
	gb, err := p.g.Alloc(n)
	if err != nil {
		return pair{}, err
	}
	rb, err := p.ref.Alloc(n)
	if err != nil {
		return pair{}, err
	}
	return pair{gb, rb, n}, nil
}

// random returns a pair holding the same values drawn from N(0, scale²).
func (p *parity) random(n int, scale float64) (pair, error) {
	x, err := p.alloc(n)
	if err != nil {
		return x, err
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(p.rng.NormFloat64() * scale)
	}
	return x, p.set(x, v)
}

func (p *parity) set(x pair, v []float32) error {
	if err := p.g.Upload(x.g, v); err != nil {
		return err
	}
	return p.ref.Upload(x.r, v)
}

// output allocates an output pair; the GPU side is poisoned with NaN so an element the kernel
// never writes fails the check.
func (p *parity) output(n int) (pair, error) {
	x, err := p.alloc(n)
	if err != nil {
		return x, err
	}
	p.g.Fill(x.g, float32(math.NaN()))
	return x, nil
}

func (p *parity) free(xs ...pair) {
	for _, x := range xs {
		if x.g != nil {
			p.g.Free(x.g)
		}
		if x.r != nil {
			p.ref.Free(x.r)
		}
	}
}

// compare downloads outs from both sides and records the relative error.
func (p *parity) compare(op, note string, tol float64, outs ...pair) {
	r := ParityResult{Op: op, Precision: p.g.opts.Precision, Tol: tol, Note: note}
	var num, den float64
	for _, x := range outs {
		gv, rv := make([]float32, x.n), make([]float32, x.n)
		if err := p.g.Download(gv, x.g); err != nil {
			r.Err = err
			break
		}
		if err := p.ref.Download(rv, x.r); err != nil {
			r.Err = err
			break
		}
		for i := range gv {
			g, w := float64(gv[i]), float64(rv[i])
			if math.IsNaN(g) {
				r.NaN = true
				continue
			}
			if math.IsInf(w, 0) && g == w { // e.g. the LSE of a fully masked row
				continue
			}
			num += (g - w) * (g - w)
			den += w * w
		}
	}
	switch {
	case den > 0:
		r.RelErr = math.Sqrt(num / den)
	case num > 0:
		r.RelErr = math.Inf(1)
	}
	p.out = append(p.out, r)
}

func (p *parity) fail(op string, err error) {
	p.out = append(p.out, ParityResult{Op: op, Precision: p.g.opts.Precision, Err: err, Tol: TolFP32})
}

// CheckParity runs every Backend op on random inputs on b and on ref (the CPU backend) and
// returns one result per op and variant. Inputs are drawn from seed; outputs are poisoned
// with NaN on the GPU first.
func CheckParity(b *Backend, ref engine.Backend, seed uint64) []ParityResult {
	p := &parity{g: b, ref: ref, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	gemmTol := TolFP32 * 10 // long fp32 dot products: cuBLAS and OpenBLAS sum in different orders
	if b.opts.Precision == PrecisionBF16 {
		gemmTol = TolBF16
	}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"Fill", func() error {
			x, err := p.output(1000)
			if err != nil {
				return err
			}
			defer p.free(x)
			p.g.Fill(x.g, 0.75)
			p.ref.Fill(x.r, 0.75)
			p.compare("Fill", "1000", 0, x)
			return nil
		}},
		{"Copy2D", func() error {
			src, err := p.random(40*30, 1)
			if err != nil {
				return err
			}
			dst, err := p.random(50*37, 1) // untouched elements keep their values on both sides
			if err != nil {
				return err
			}
			defer p.free(src, dst)
			p.g.Copy2D(dst.g, 3, 37, src.g, 2, 30, 39, 25)
			p.ref.Copy2D(dst.r, 3, 37, src.r, 2, 30, 39, 25)
			p.compare("Copy2D", "39×25 strided", 0, dst)
			return nil
		}},
		{"Permute", func() error {
			for _, c := range []struct{ shape, perm []int }{{[]int{2, 17, 4, 16}, []int{0, 2, 1, 3}}, {[]int{3, 5, 7}, []int{2, 0, 1}}} {
				n := 1
				for _, d := range c.shape {
					n *= d
				}
				src, err := p.random(n, 1)
				if err != nil {
					return err
				}
				dst, err := p.output(n)
				if err != nil {
					return err
				}
				p.g.Permute(dst.g, src.g, c.shape, c.perm)
				p.ref.Permute(dst.r, src.r, c.shape, c.perm)
				p.compare("Permute", fmt.Sprintf("%v→%v", c.shape, c.perm), 0, dst)
				p.free(src, dst)
			}
			return nil
		}},
		{"Gemm", func() error {
			cases := []engine.GemmParams{
				{M: 67, N: 45, K: 129, Alpha: 1},
				{TransA: true, M: 33, N: 70, K: 64, Alpha: 0.5, Beta: 1},
				{TransB: true, M: 64, N: 64, K: 72, Alpha: 0.125, Batch: 6},
				{TransA: true, TransB: true, M: 17, N: 23, K: 31, Alpha: 1, Batch: 3},
				{M: 40, N: 24, K: 48, Alpha: 1, Beta: 1, Batch: 4, OffA: 5}, // shared C (StrideC 0): accumulation
			}
			for _, c := range cases {
				batch := max(c.Batch, 1)
				aN, bN := c.M*c.K, c.K*c.N
				if c.Batch > 0 {
					c.StrideA, c.StrideB = aN, bN
					if c.Beta == 0 {
						c.StrideC = c.M * c.N
					}
				}
				a, err := p.random(c.OffA+batch*aN, 1)
				if err != nil {
					return err
				}
				bb, err := p.random(batch*bN, 1)
				if err != nil {
					return err
				}
				cN := c.M * c.N * max(1, batch*min(c.StrideC, 1))
				var cc pair
				if c.Beta != 0 {
					cc, err = p.random(cN, 1)
				} else {
					cc, err = p.output(cN)
				}
				if err != nil {
					return err
				}
				c.A, c.B, c.C = a.g, bb.g, cc.g
				p.g.Gemm(c)
				c.A, c.B, c.C = a.r, bb.r, cc.r
				p.ref.Gemm(c)
				p.compare("Gemm", fmt.Sprintf("%d×%d×%d tA=%v tB=%v batch %d β=%g", c.M, c.N, c.K, c.TransA, c.TransB, batch, c.Beta), gemmTol, cc)
				p.free(a, bb, cc)
			}
			return nil
		}},
		{"Binary", func() error {
			s := engine.Shape3{Outer: 3, Mid: 5, Inner: 33}
			spans := []engine.Span{engine.SpanAll, engine.SpanInner, engine.SpanOuter | engine.SpanInner, engine.SpanNone, engine.SpanMid, engine.SpanOuter}
			for op := engine.OpAdd; op <= engine.OpDiv; op++ {
				for _, bs := range spans {
					a, err := p.random(s.Size(), 1)
					if err != nil {
						return err
					}
					bb, err := p.random(s.SpanSize(bs), 1)
					if err != nil {
						return err
					}
					if op == engine.OpDiv { // keep divisors away from zero
						v := make([]float32, bb.n)
						for i := range v {
							v[i] = float32(1 + p.rng.Float64())
						}
						if err := p.set(bb, v); err != nil {
							return err
						}
					}
					d, err := p.output(s.Size())
					if err != nil {
						return err
					}
					p.g.Binary(op, d.g, a.g, bb.g, s, engine.SpanAll, bs)
					p.ref.Binary(op, d.r, a.r, bb.r, s, engine.SpanAll, bs)
					p.compare("Binary", fmt.Sprintf("op %d b span %d", op, bs), TolFP32, d)
					p.free(a, bb, d)
				}
			}
			return nil
		}},
		{"Affine/Axpy", func() error {
			x, err := p.random(5000, 1)
			if err != nil {
				return err
			}
			y, err := p.random(5000, 1)
			if err != nil {
				return err
			}
			d, err := p.output(5000)
			if err != nil {
				return err
			}
			defer p.free(x, y, d)
			p.g.Affine(d.g, x.g, -1.5, 0.25)
			p.ref.Affine(d.r, x.r, -1.5, 0.25)
			p.compare("Affine", "5000", TolFP32, d)
			p.g.Axpy(y.g, x.g, 0.3)
			p.ref.Axpy(y.r, x.r, 0.3)
			p.compare("Axpy", "5000", TolFP32, y)
			return nil
		}},
		{"Reduce/Expand", func() error {
			s := engine.Shape3{Outer: 4, Mid: 300, Inner: 40}
			src, err := p.random(s.Size(), 1)
			if err != nil {
				return err
			}
			defer p.free(src)
			for sp := engine.Span(0); sp <= engine.SpanAll; sp++ {
				d, err := p.output(s.SpanSize(sp))
				if err != nil {
					return err
				}
				p.g.Reduce(d.g, src.g, s, sp, 0.5)
				p.ref.Reduce(d.r, src.r, s, sp, 0.5)
				p.compare("Reduce", fmt.Sprintf("span %d", sp), TolFP32, d)
				e, err := p.output(s.Size())
				if err != nil {
					return err
				}
				p.g.Expand(e.g, d.g, s, sp, 2)
				p.ref.Expand(e.r, d.r, s, sp, 2)
				p.compare("Expand", fmt.Sprintf("span %d", sp), TolFP32, e)
				p.free(d, e)
			}
			return nil
		}},
		{"BiasAct", func() error {
			rows, cols := 70, 130
			for act := engine.ActNone; act <= engine.ActSiLU; act++ {
				x, err := p.random(rows*cols, 2)
				if err != nil {
					return err
				}
				bias, err := p.random(cols, 1)
				if err != nil {
					return err
				}
				dy, err := p.random(rows*cols, 1)
				if err != nil {
					return err
				}
				y, err := p.output(rows * cols)
				if err != nil {
					return err
				}
				dx, err := p.output(rows * cols)
				if err != nil {
					return err
				}
				db, err := p.output(cols)
				if err != nil {
					return err
				}
				p.g.BiasAct(act, y.g, x.g, bias.g, rows, cols)
				p.ref.BiasAct(act, y.r, x.r, bias.r, rows, cols)
				p.compare("BiasAct", fmt.Sprintf("act %d", act), TolFP32, y)
				p.g.BiasActBackward(act, dx.g, db.g, x.g, bias.g, dy.g, rows, cols)
				p.ref.BiasActBackward(act, dx.r, db.r, x.r, bias.r, dy.r, rows, cols)
				p.compare("BiasActBackward", fmt.Sprintf("act %d (dx, dbias)", act), TolFP32, dx, db)
				p.free(x, bias, dy, y, dx, db)
			}
			return nil
		}},
		{"Softmax", func() error {
			rows, cols := 37, 300
			x, err := p.random(rows*cols, 3)
			if err != nil {
				return err
			}
			dy, err := p.random(rows*cols, 1)
			if err != nil {
				return err
			}
			y, err := p.output(rows * cols)
			if err != nil {
				return err
			}
			dx, err := p.output(rows * cols)
			if err != nil {
				return err
			}
			defer p.free(x, dy, y, dx)
			p.g.Softmax(y.g, x.g, rows, cols)
			p.ref.Softmax(y.r, x.r, rows, cols)
			p.compare("Softmax", "37×300", TolFP32, y)
			p.g.SoftmaxBackward(dx.g, y.g, dy.g, rows, cols)
			p.ref.SoftmaxBackward(dx.r, y.r, dy.r, rows, cols)
			p.compare("SoftmaxBackward", "37×300", TolFP32, dx)
			return nil
		}},
		{"LayerNorm", func() error {
			for _, c := range []struct {
				groups int
				woff   float32
				affine bool
			}{{1, 0, true}, {4, 1, true}, {1, 0, false}} {
				rows, cols := 4*33, 96
				x, err := p.random(rows*cols, 2)
				if err != nil {
					return err
				}
				var w, bias pair
				if c.affine {
					if w, err = p.random(c.groups*cols, 0.5); err != nil {
						return err
					}
					if bias, err = p.random(c.groups*cols, 0.5); err != nil {
						return err
					}
				}
				y, err := p.output(rows * cols)
				if err != nil {
					return err
				}
				mean, err := p.output(rows)
				if err != nil {
					return err
				}
				rstd, err := p.output(rows)
				if err != nil {
					return err
				}
				dy, err := p.random(rows*cols, 1)
				if err != nil {
					return err
				}
				dx, err := p.output(rows * cols)
				if err != nil {
					return err
				}
				var dw, db pair
				if c.affine {
					if dw, err = p.output(c.groups * cols); err != nil {
						return err
					}
					if db, err = p.output(c.groups * cols); err != nil {
						return err
					}
				}
				lp := engine.LayerNormParams{Rows: rows, Cols: cols, Groups: c.groups, WeightOffset: c.woff, Eps: 1e-6}
				gp, rp := lp, lp
				gp.X, gp.Y, gp.Weight, gp.Bias, gp.Mean, gp.Rstd = x.g, y.g, w.g, bias.g, mean.g, rstd.g
				rp.X, rp.Y, rp.Weight, rp.Bias, rp.Mean, rp.Rstd = x.r, y.r, w.r, bias.r, mean.r, rstd.r
				p.g.LayerNorm(gp)
				p.ref.LayerNorm(rp)
				note := fmt.Sprintf("groups %d offset %g affine %v", c.groups, c.woff, c.affine)
				p.compare("LayerNorm", note+" (y, mean, rstd)", TolFP32, y, mean, rstd)
				bg := engine.LayerNormGradParams{X: x.g, Weight: w.g, Mean: mean.g, Rstd: rstd.g, DY: dy.g, DX: dx.g, DWeight: dw.g, DBias: db.g,
					Rows: rows, Cols: cols, Groups: c.groups, WeightOffset: c.woff}
				br := engine.LayerNormGradParams{X: x.r, Weight: w.r, Mean: mean.r, Rstd: rstd.r, DY: dy.r, DX: dx.r, DWeight: dw.r, DBias: db.r,
					Rows: rows, Cols: cols, Groups: c.groups, WeightOffset: c.woff}
				p.g.LayerNormBackward(bg)
				p.ref.LayerNormBackward(br)
				outs := []pair{dx}
				if c.affine {
					outs = append(outs, dw, db)
				}
				p.compare("LayerNormBackward", note, TolFP32, outs...)
				p.free(x, w, bias, y, mean, rstd, dy, dx, dw, db)
			}
			return nil
		}},
		{"RMSNorm", p.rmsNorm},
		{"GroupNorm", p.groupNorm},
		{"Conv2D", func() error { return p.conv2d(gemmTol) }},
		{"UpsampleNearest", p.upsample},
		{"Attention", func() error { return p.attention() }},
		{"Embedding", func() error {
			rows, dim := 50, 64
			ids := make([]int32, 300)
			for i := range ids {
				ids[i] = int32(p.rng.IntN(rows))
			}
			table, err := p.random(rows*dim, 1)
			if err != nil {
				return err
			}
			d, err := p.output(len(ids) * dim)
			if err != nil {
				return err
			}
			dy, err := p.random(len(ids)*dim, 1)
			if err != nil {
				return err
			}
			dt, err := p.random(rows*dim, 1)
			if err != nil {
				return err
			}
			defer p.free(table, d, dy, dt)
			p.g.Embedding(d.g, table.g, ids, dim)
			p.ref.Embedding(d.r, table.r, ids, dim)
			p.compare("Embedding", "300 ids of 50", 0, d)
			p.g.EmbeddingBackward(dt.g, dy.g, ids, dim)
			p.ref.EmbeddingBackward(dt.r, dy.r, ids, dim)
			p.compare("EmbeddingBackward", "repeated ids", TolFP32, dt)
			return nil
		}},
		{"Rand", func() error {
			u, err := p.output(10001)
			if err != nil {
				return err
			}
			nrm, err := p.output(10001)
			if err != nil {
				return err
			}
			defer p.free(u, nrm)
			p.g.RandUniform(u.g, 42, 7, -1, 3)
			p.ref.RandUniform(u.r, 42, 7, -1, 3)
			p.compare("RandUniform", "bit-exact Philox", 0, u)
			p.g.RandNormal(nrm.g, 42, 7, 0.5, 2)
			p.ref.RandNormal(nrm.r, 42, 7, 0.5, 2)
			p.compare("RandNormal", "Philox + Box-Muller", 1e-6, nrm)
			return nil
		}},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			p.fail(s.name, err)
		}
	}
	return p.out
}

// attention checks the flash kernels (each compiled head size, with a key mask that fully
// masks one sample) and the unfused path against the reference, forward and backward.
func (p *parity) attention() error {
	type variant struct {
		b, h, nq, nk, dh int
		mask, unfused    bool
	}
	vs := []variant{
		{2, 2, 70, 70, 16, false, false},
		{2, 3, 65, 77, 32, true, false},
		{2, 2, 100, 100, 64, true, false},
		{1, 2, 70, 40, 72, true, false},
		{1, 1, 40, 33, 128, false, false},
		{2, 2, 64, 50, 64, true, true},
		{1, 1, 20, 20, 160, false, false}, // beyond the flash sizes: unfused automatically
	}
	for _, v := range vs {
		bh := v.b * v.h
		q, err := p.random(bh*v.nq*v.dh, 1)
		if err != nil {
			return err
		}
		k, err := p.random(bh*v.nk*v.dh, 1)
		if err != nil {
			return err
		}
		val, err := p.random(bh*v.nk*v.dh, 1)
		if err != nil {
			return err
		}
		var mask pair
		if v.mask {
			if mask, err = p.alloc(v.b * v.nk); err != nil {
				return err
			}
			m := make([]float32, v.b*v.nk)
			for bi := 0; bi < v.b; bi++ {
				for j := 0; j < v.nk; j++ {
					// Sample 0 keeps three quarters of its keys; the last sample (when there
					// are two) has none, so its queries must output zero.
					if bi == 0 && j < v.nk*3/4 {
						m[bi*v.nk+j] = 1
					}
				}
			}
			if v.b == 1 {
				for j := 0; j < v.nk*3/4; j++ {
					m[j] = 1
				}
			}
			if err := p.set(mask, m); err != nil {
				return err
			}
		}
		o, err := p.output(bh * v.nq * v.dh)
		if err != nil {
			return err
		}
		lse, err := p.output(bh * v.nq)
		if err != nil {
			return err
		}
		do, err := p.random(bh*v.nq*v.dh, 1)
		if err != nil {
			return err
		}
		dq, err := p.output(bh * v.nq * v.dh)
		if err != nil {
			return err
		}
		dk, err := p.output(bh * v.nk * v.dh)
		if err != nil {
			return err
		}
		dv, err := p.output(bh * v.nk * v.dh)
		if err != nil {
			return err
		}
		scale := float32(1 / math.Sqrt(float64(v.dh)))
		ap := engine.AttentionParams{B: v.b, H: v.h, Nq: v.nq, Nk: v.nk, Dh: v.dh, Scale: scale}
		gp, rp := ap, ap
		gp.Q, gp.K, gp.V, gp.O, gp.LSE, gp.Mask = q.g, k.g, val.g, o.g, lse.g, mask.g
		rp.Q, rp.K, rp.V, rp.O, rp.LSE, rp.Mask = q.r, k.r, val.r, o.r, lse.r, mask.r
		saved := p.g.opts.UnfusedAttention
		p.g.opts.UnfusedAttention = v.unfused
		path := "flash"
		if _, ok := p.g.useFlash(v.dh); !ok {
			path = "unfused"
		}
		tol := TolFP32 * 10
		if path == "unfused" && p.g.opts.Precision == PrecisionBF16 {
			tol = TolBF16
		}
		note := fmt.Sprintf("%s B%d H%d %d×%d Dh%d mask %v", path, v.b, v.h, v.nq, v.nk, v.dh, v.mask)
		p.g.Attention(gp)
		p.ref.Attention(rp)
		p.compare("Attention", note+" (O, LSE)", tol, o, lse)
		p.g.AttentionBackward(engine.AttentionGradParams{AttentionParams: gp, DO: do.g, DQ: dq.g, DK: dk.g, DV: dv.g})
		p.ref.AttentionBackward(engine.AttentionGradParams{AttentionParams: rp, DO: do.r, DQ: dq.r, DK: dk.r, DV: dv.r})
		p.compare("AttentionBackward", note+" (dQ, dK, dV)", tol, dq, dk, dv)
		p.g.opts.UnfusedAttention = saved
		p.free(q, k, val, mask, o, lse, do, dq, dk, dv)
	}
	return nil
}
