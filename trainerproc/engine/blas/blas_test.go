package blas

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// naiveSgemm is the reference the implementations are checked against (float64 accumulation).
func naiveSgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				ai, bi := i*lda+p, p*ldb+j
				if transA {
					ai = p*lda + i
				}
				if transB {
					bi = j*ldb + p
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
			}
			c[i*ldc+j] = float32(float64(alpha)*s + float64(beta)*float64(c[i*ldc+j]))
		}
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func implementations(t testing.TB) []Sgemmer {
	impls := []Sgemmer{NewGonum()}
	ob, err := Open(ChoiceOpenBLAS, 2)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Open(openblas): error does not wrap ErrUnavailable: %v", err)
		}
		t.Logf("OpenBLAS not available, testing gonum only: %v", err)
	} else {
		impls = append(impls, ob)
	}
	return impls
}

func TestSgemmAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, impl := range implementations(t) {
		t.Run(impl.Name(), func(t *testing.T) {
			t.Logf("%s", impl.Describe())
			for _, tc := range []struct{ m, n, k int }{{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 48, 0}, {70, 130, 90}} {
				for _, ta := range []bool{false, true} {
					for _, tb := range []bool{false, true} {
						m, n, k := tc.m, tc.n, tc.k
						// Padded leading dimensions exercise lda/ldb/ldc handling.
						lda, ldb, ldc := k+3, n+2, n+1
						arows := m
						if ta {
							lda, arows = m+3, k
						}
						brows := k
						if tb {
							ldb, brows = k+2, n
						}
						a := randSlice(r, arows*lda+1)
						b := randSlice(r, brows*ldb+1)
						c := randSlice(r, m*ldc)
						want := append([]float32(nil), c...)
						naiveSgemm(ta, tb, m, n, k, 0.7, a, lda, b, ldb, 0.3, want, ldc)
						impl.Sgemm(ta, tb, m, n, k, 0.7, a, lda, b, ldb, 0.3, c, ldc)
						for i := range c {
							if d := math.Abs(float64(c[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
								t.Fatalf("m=%d n=%d k=%d ta=%v tb=%v: c[%d]=%g want %g", m, n, k, ta, tb, i, c[i], want[i])
							}
						}
					}
				}
			}
		})
	}
}

func TestBothPathsAgree(t *testing.T) {
	impls := implementations(t)
	if len(impls) < 2 {
		t.Skip("OpenBLAS not installed; nothing to compare")
	}
	r := rand.New(rand.NewPCG(3, 4))
	m, n, k := 256, 192, 320
	a, b := randSlice(r, m*k), randSlice(r, n*k)
	c0, c1 := make([]float32, m*n), make([]float32, m*n)
	impls[0].Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c0, n)
	impls[1].Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c1, n)
	for i := range c0 {
		if d := math.Abs(float64(c0[i] - c1[i])); d > 1e-4*(1+math.Abs(float64(c0[i]))) {
			t.Fatalf("gonum and openblas disagree at %d: %g vs %g", i, c0[i], c1[i])
		}
	}
}

func TestParseChoice(t *testing.T) {
	for in, want := range map[string]Choice{"": ChoiceAuto, "GONUM": ChoiceGonum, " openblas ": ChoiceOpenBLAS, "auto": ChoiceAuto} {
		got, err := ParseChoice(in)
		if err != nil || got != want {
			t.Errorf("ParseChoice(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseChoice("mkl"); err == nil {
		t.Error("ParseChoice(mkl) succeeded")
	}
	if g, err := Open(ChoiceGonum, 0); err != nil || g.Name() != "gonum" {
		t.Errorf("Open(gonum) = %v, %v", g, err)
	}
	if a, err := Open(ChoiceAuto, 0); err != nil || a == nil {
		t.Errorf("Open(auto) = %v, %v", a, err)
	}
}

func TestParseVersion(t *testing.T) {
	if v := parseVersion("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64"); v != "0.3.21" {
		t.Errorf("parseVersion = %q", v)
	}
}

// BenchmarkSgemm reports GFLOP/s for square and transformer-shaped products (rows = batch×tokens,
// x·Wᵀ as in a Linear layer) on each available implementation.
func BenchmarkSgemm(b *testing.B) {
	shapes := []struct {
		name    string
		m, n, k int
		transB  bool
	}{
		{"1024x1024x1024", 1024, 1024, 1024, false},
		{"linear_4096x1152x1152_xWt", 4096, 1152, 1152, true},
		{"mlp_4096x4608x1152_xWt", 4096, 4608, 1152, true},
		{"attn_256x256x72", 256, 256, 72, true},
	}
	threads := runtime.GOMAXPROCS(0)
	impls := []Sgemmer{NewGonum()}
	if ob, err := Open(ChoiceOpenBLAS, threads); err == nil {
		impls = append(impls, ob)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, impl := range impls {
		for _, s := range shapes {
			b.Run(fmt.Sprintf("%s/%s", impl.Name(), s.name), func(b *testing.B) {
				a := randSlice(r, s.m*s.k)
				w := randSlice(r, s.k*s.n)
				c := make([]float32, s.m*s.n)
				ldb := s.n
				if s.transB {
					ldb = s.k
				}
				b.ResetTimer()
				for b.Loop() {
					impl.Sgemm(false, s.transB, s.m, s.n, s.k, 1, a, s.k, w, ldb, 0, c, s.n)
				}
				flops := 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
