package cpu

import (
	"simpletuner/trainerproc/engine"
)

// Gemm implements engine.Backend. Batch entries run one after another when the BLAS is itself
// multi-threaded (OpenBLAS: concurrent calls are not assumed safe), and concurrently on the
// pool otherwise (gonum runs small products on one goroutine) unless the entries share C.
func (b *Backend[T]) Gemm(p engine.GemmParams) {
	a, bb, c := Data[T](p.A), Data[T](p.B), Data[T](p.C)
	batch := max(p.Batch, 1)
	if p.M == 0 || p.N == 0 {
		return
	}
	lda, ldb, ldc := p.Lda, p.Ldb, p.Ldc
	if lda == 0 {
		lda = p.K
		if p.TransA {
			lda = p.M
		}
	}
	if ldb == 0 {
		ldb = p.N
		if p.TransB {
			ldb = p.K
		}
	}
	if ldc == 0 {
		ldc = p.N
	}
	// BLAS requires leading dimensions ≥ 1 even for empty operands (k = 0).
	lda, ldb, ldc = max(lda, 1), max(ldb, 1), max(ldc, 1)
	alpha, beta := T(p.Alpha), T(p.Beta)
	one := func(i int) {
		b.gemm(p.TransA, p.TransB, p.M, p.N, p.K, alpha,
			a[p.OffA+i*p.StrideA:], lda, bb[p.OffB+i*p.StrideB:], ldb, beta, c[p.OffC+i*p.StrideC:], ldc)
	}
	if batch == 1 || b.gemmParallel || p.StrideC == 0 || p.M*p.N*p.K >= 1<<21 {
		for i := 0; i < batch; i++ {
			one(i)
		}
		return
	}
	b.pool.chunks(batch, one)
}
