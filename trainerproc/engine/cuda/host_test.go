package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"simpletuner/trainerproc/engine"
)

func TestArgsPacking(t *testing.T) {
	a := NewArgs(6).Ptr(0xdeadbeef000).Int(-1).Int64(-2).Uint64(1 << 63).Float(1.5).Int(7)
	want := []uint64{0xdeadbeef000, 0x00000000ffffffff, 0xfffffffffffffffe, 1 << 63, uint64(math.Float32bits(1.5)), 7}
	if !slices.Equal(a.Values(), want) {
		t.Fatalf("values %#x, want %#x", a.Values(), want)
	}
	if a.Signature() != "pilufi" {
		t.Fatalf("signature %q", a.Signature())
	}
	// A 4-byte parameter must read back exactly from the low half of its slot.
	if got := int32(uint32(a.Values()[1])); got != -1 {
		t.Fatalf("int slot reads %d", got)
	}
	if got := math.Float32frombits(uint32(a.Values()[4])); got != 1.5 {
		t.Fatalf("float slot reads %g", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Int(1<<31) did not panic")
		}
	}()
	NewArgs(1).Int(1 << 31)
}

func TestCheckSignature(t *testing.T) {
	if err := checkSignature("axpy_f32", NewArgs(4).Ptr(1).Ptr(2).Float(1).Int64(3)); err != nil {
		t.Fatal(err)
	}
	err := checkSignature("axpy_f32", NewArgs(4).Ptr(1).Ptr(2).Float(1).Int(3))
	if !errors.Is(err, ErrKernel) || !strings.Contains(err.Error(), "axpy_f32") {
		t.Fatalf("mismatch error %v", err)
	}
	if err := checkSignature("nope", NewArgs(0)); !errors.Is(err, ErrKernel) {
		t.Fatalf("unknown kernel error %v", err)
	}
}

// TestEmbeddedPTX checks that every declared kernel is in the embedded PTX with exactly the
// declared parameters, that every PTX entry is declared, and that the PTX is for a target the
// H100/H200 driver can JIT.
func TestEmbeddedPTX(t *testing.T) {
	mods, err := PTXModules()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"attention.ptx", "conv.ptx", "elementwise.ptx", "groupnorm.ptx", "misc.ptx", "norm.ptx", "reduce.ptx"} {
		if _, ok := mods[f]; !ok {
			t.Fatalf("%s not embedded (have %v)", f, keys(mods))
		}
	}
	found := map[string]string{}
	for file, ptx := range mods {
		if !strings.Contains(ptx, ".target sm_80") && !strings.Contains(ptx, ".target sm_90") {
			t.Errorf("%s: unexpected .target", file)
		}
		for name, types := range ParsePTXEntries(ptx) {
			if prev, dup := found[name]; dup {
				t.Errorf("%s in both %s and %s", name, prev, file)
			}
			found[name] = file
			sig, ok := kernelSigs[name]
			if !ok {
				t.Errorf("%s (%s) has no declared signature", name, file)
				continue
			}
			if err := sigMatchesPTX(sig, types); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	for _, name := range KernelNames() {
		if _, ok := found[name]; !ok {
			t.Errorf("%s declared but not in the PTX (run make kernels)", name)
		}
	}
}

func TestSigMatchesPTX(t *testing.T) {
	if err := sigMatchesPTX("pif", []string{"u64", "u32", "f32"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"u64", "u32"}, {"u32", "u32", "f32"}, {"u64", "f32", "f32"}} {
		if sigMatchesPTX("pif", bad) == nil {
			t.Errorf("%v accepted for pif", bad)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestLaunchGeometry(t *testing.T) {
	if l := flatLaunch(0); l.GridX != 0 {
		t.Fatalf("n=0 grid %+v", l)
	}
	for _, n := range []int64{1, 255, 256, 257, 1 << 20, 1 << 33} {
		l := flatLaunch(n)
		if l.GridX < 1 || l.GridX > maxFlatGrid || l.BlockX != flatBlock || l.GridY != 1 || l.GridZ != 1 {
			t.Fatalf("n=%d: %+v", n, l)
		}
		// Grid-stride kernels need at least one thread and never more blocks than work.
		if want := min((n+flatBlock-1)/flatBlock, maxFlatGrid); int64(l.GridX) != want {
			t.Fatalf("n=%d: grid %d, want %d", n, l.GridX, want)
		}
	}
	if l, err := colLaunch(3, 33); err != nil || l.GridX != 2 || l.GridY != 3 || l.BlockX*l.BlockY != 256 {
		t.Fatalf("colLaunch %+v %v", l, err)
	}
	if _, err := colLaunch(maxGridYZ+1, 1); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("colLaunch over the y limit: %v", err)
	}
	if l, err := flashLaunch(65, 12, flashQueries); err != nil || l.GridX != 2 || l.GridY != 12 {
		t.Fatalf("flashLaunch %+v %v", l, err)
	}
	if _, err := flashLaunch(1, maxGridYZ+1, flashQueries); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("flashLaunch over the y limit: %v", err)
	}
	if l := rowLaunch(5); l.GridX != 5 || l.BlockX != rowBlock || rowBlock&(rowBlock-1) != 0 {
		t.Fatalf("rowLaunch %+v", l)
	}
}

func TestFlashDim(t *testing.T) {
	for dh, want := range map[int]int{1: 16, 16: 16, 17: 32, 64: 64, 72: 80, 80: 80, 100: 128, 128: 128} {
		if got, ok := flashDim(dh); !ok || got != want {
			t.Errorf("flashDim(%d) = %d,%v want %d", dh, got, ok, want)
		}
	}
	if _, ok := flashDim(129); ok {
		t.Error("flashDim(129) accepted")
	}
}

// simulateReduce runs the reduce kernels' index arithmetic on the host.
func simulateReduce(pl reducePlan, src []float64) []float64 {
	if pl.keepInner {
		out := make([]float64, pl.groups*pl.inner)
		for g := 0; g < pl.groups; g++ {
			for i := 0; i < pl.inner; i++ {
				for j := 0; j < pl.count; j++ {
					out[g*pl.inner+i] += src[(g*pl.start+j*pl.stride)*pl.inner+i]
				}
			}
		}
		return out
	}
	out := make([]float64, pl.groups)
	for g := 0; g < pl.groups; g++ {
		for k := 0; k < pl.count*pl.inner; k++ {
			j, i := k/pl.inner, k%pl.inner
			out[g] += src[(g*pl.start+j*pl.stride)*pl.inner+i]
		}
	}
	return out
}

func TestPlanReduce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range []engine.Shape3{{Outer: 3, Mid: 4, Inner: 5}, {Outer: 1, Mid: 7, Inner: 1}, {Outer: 2, Mid: 1, Inner: 9}} {
		src := make([]float64, s.Size())
		for i := range src {
			src[i] = rng.Float64()
		}
		for _, sp := range []engine.Span{engine.SpanNone, engine.SpanOuter, engine.SpanMid, engine.SpanInner,
			engine.SpanOuter | engine.SpanMid, engine.SpanOuter | engine.SpanInner, engine.SpanMid | engine.SpanInner} {
			want := make([]float64, s.SpanSize(sp))
			for o := 0; o < s.Outer; o++ {
				for m := 0; m < s.Mid; m++ {
					for i := 0; i < s.Inner; i++ {
						idx := 0
						if sp&engine.SpanOuter != 0 {
							idx = o
						}
						if sp&engine.SpanMid != 0 {
							idx = idx*s.Mid + m
						}
						if sp&engine.SpanInner != 0 {
							idx = idx*s.Inner + i
						}
						want[idx] += src[(o*s.Mid+m)*s.Inner+i]
					}
				}
			}
			got := simulateReduce(planReduce(s, sp), src)
			if len(got) != len(want) {
				t.Fatalf("%+v span %d: %d outputs, want %d", s, sp, len(got), len(want))
			}
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-12 {
					t.Fatalf("%+v span %d: out[%d] = %g, want %g", s, sp, i, got[i], want[i])
				}
			}
		}
	}
}

// simulatePermute runs permute_f32's index arithmetic on the host.
func simulatePermute(pl permutePlan, src []float64) []float64 {
	out := make([]float64, pl.n)
	nd := len(pl.shape)
	for i := range out {
		rem, off := i, 0
		for k := nd - 1; k >= 0; k-- {
			c := rem % pl.shape[k]
			rem /= pl.shape[k]
			off += c * pl.stride[k]
		}
		out[i] = src[off]
	}
	return out
}

func naivePermute(shape, perm []int, src []float64) []float64 {
	nd := len(shape)
	stride := make([]int, nd)
	acc := 1
	for i := nd - 1; i >= 0; i-- {
		stride[i] = acc
		acc *= shape[i]
	}
	out := make([]float64, acc)
	dshape := make([]int, nd)
	for i, p := range perm {
		dshape[i] = shape[p]
	}
	idx := make([]int, nd)
	for i := range out {
		off := 0
		for k := 0; k < nd; k++ {
			off += idx[k] * stride[perm[k]]
		}
		out[i] = src[off]
		for k := nd - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < dshape[k] {
				break
			}
			idx[k] = 0
		}
	}
	return out
}

func TestPlanPermute(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct{ shape, perm []int }{
		{[]int{2, 3, 4, 5}, []int{0, 2, 1, 3}}, // [B,N,H,Dh] → [B,H,N,Dh]
		{[]int{2, 3, 4}, []int{0, 1, 2}},       // identity merges to one dimension
		{[]int{2, 3, 4, 5}, []int{3, 2, 1, 0}},
		{[]int{1, 3, 1, 5}, []int{2, 3, 0, 1}},
		{[]int{2, 2, 2, 2, 2, 2, 2}, []int{0, 2, 4, 6, 1, 3, 5}}, // seven dims, merges to fewer? no: all split
	}
	for ci, c := range cases {
		n := 1
		for _, d := range c.shape {
			n *= d
		}
		src := make([]float64, n)
		for i := range src {
			src[i] = rng.Float64()
		}
		pl, err := planPermute(c.shape, c.perm)
		if ci == len(cases)-1 {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("7 unmergeable dims: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v %v: %v", c.shape, c.perm, err)
		}
		if !slices.Equal(simulatePermute(pl, src), naivePermute(c.shape, c.perm, src)) {
			t.Fatalf("%v %v: plan %+v gives a different permutation", c.shape, c.perm, pl)
		}
	}
	if pl, _ := planPermute([]int{2, 3, 4}, []int{0, 1, 2}); len(pl.shape) != 1 {
		t.Fatalf("identity not merged: %+v", pl)
	}
	if _, err := planPermute([]int{2, 3}, []int{0, 0}); !errors.Is(err, engine.ErrShape) {
		t.Fatalf("bad perm: %v", err)
	}
}

// colMajorGemm is cuBLAS's definition: C = alpha·op(A)·op(B) + beta·C, column-major.
func colMajorGemm(ta, tb bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	at := func(i, j int) float64 { // op(A)[i,j], m×k
		if ta {
			return a[j+i*lda]
		}
		return a[i+j*lda]
	}
	bt := func(i, j int) float64 { // op(B)[i,j], k×n
		if tb {
			return b[j+i*ldb]
		}
		return b[i+j*ldb]
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for l := 0; l < k; l++ {
				s += at(i, l) * bt(l, j)
			}
			c[i+j*ldc] = alpha*s + beta*c[i+j*ldc]
		}
	}
}

func TestPlanGemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := 0; trial < 40; trial++ {
		p := engine.GemmParams{TransA: rng.IntN(2) == 1, TransB: rng.IntN(2) == 1,
			M: 1 + rng.IntN(4), N: 1 + rng.IntN(4), K: rng.IntN(4), Alpha: 0.5, Beta: float32(rng.IntN(2)),
			Batch: 1 + rng.IntN(3), OffA: rng.IntN(3), OffB: rng.IntN(3), OffC: rng.IntN(3)}
		aRows, aCols := p.M, p.K
		if p.TransA {
			aRows, aCols = p.K, p.M
		}
		bRows, bCols := p.K, p.N
		if p.TransB {
			bRows, bCols = p.N, p.K
		}
		p.Lda, p.Ldb, p.Ldc = aCols+rng.IntN(2), bCols+rng.IntN(2), p.N+rng.IntN(2)
		p.StrideA = rng.IntN(2) * (aRows*max(p.Lda, 1) + 1) // sometimes 0: a shared operand
		p.StrideB = aRows*0 + bRows*max(p.Ldb, 1) + rng.IntN(2)
		p.StrideC = p.M*p.Ldc + rng.IntN(2)
		if rng.IntN(4) == 0 {
			p.StrideC = 0 // every entry accumulates into one C
		}
		lenA, lenB, lenC := p.OffA+p.Batch*(aRows*p.Lda+1)+5, p.OffB+p.Batch*(bRows*p.Ldb+1)+5, p.OffC+p.Batch*(p.M*p.Ldc+1)+5
		a, b, c := make([]float64, lenA), make([]float64, lenB), make([]float64, lenC)
		for i := range a {
			a[i] = rng.Float64()
		}
		for i := range b {
			b[i] = rng.Float64()
		}
		for i := range c {
			c[i] = rng.Float64()
		}
		want := slices.Clone(c)
		// Row-major engine semantics.
		for bi := 0; bi < p.Batch; bi++ {
			for i := 0; i < p.M; i++ {
				for j := 0; j < p.N; j++ {
					var s float64
					for l := 0; l < p.K; l++ {
						var av, bv float64
						if p.TransA {
							av = a[p.OffA+bi*p.StrideA+l*p.Lda+i]
						} else {
							av = a[p.OffA+bi*p.StrideA+i*p.Lda+l]
						}
						if p.TransB {
							bv = b[p.OffB+bi*p.StrideB+j*p.Ldb+l]
						} else {
							bv = b[p.OffB+bi*p.StrideB+l*p.Ldb+j]
						}
						s += av * bv
					}
					ci := p.OffC + bi*p.StrideC + i*p.Ldc + j
					want[ci] = float64(p.Alpha)*s + float64(p.Beta)*want[ci]
				}
			}
		}
		g, err := planGemm(p, lenA, lenB, lenC)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		got := slices.Clone(c)
		for bi := 0; bi < g.batch; bi++ {
			// A' is the engine's B and B' the engine's A.
			colMajorGemm(g.transA, g.transB, g.m, g.n, g.k, float64(g.alpha),
				b[g.offA+bi*int(g.strideA):], g.lda, a[g.offB+bi*int(g.strideB):], g.ldb, float64(g.beta),
				got[g.offC+bi*int(g.strideC):], g.ldc)
		}
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-12 {
				t.Fatalf("trial %d %+v: C[%d] = %g, want %g", trial, p, i, got[i], want[i])
			}
		}
		if p.StrideC == 0 && p.Batch > 1 && !g.sequentialSharedC {
			t.Fatalf("trial %d: shared C not run sequentially", trial)
		}
		// The touched extents must fit exactly what the engine semantics read.
		if g.offA+g.extA > lenB || g.offB+g.extB > lenA || g.offC+g.extC > lenC {
			t.Fatalf("trial %d: extents past buffers", trial)
		}
	}
	if _, err := planGemm(engine.GemmParams{M: 4, N: 4, K: 4}, 15, 16, 16); !errors.Is(err, engine.ErrShape) {
		t.Fatalf("short A accepted: %v", err)
	}
	if _, err := planGemm(engine.GemmParams{M: 4, N: 4, K: 4, Lda: 3}, 100, 100, 100); !errors.Is(err, engine.ErrShape) {
		t.Fatalf("lda below row length accepted: %v", err)
	}
}

func TestBF16(t *testing.T) {
	cases := []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // above the tie
		{0xbf800000, 0xbf80}, // -1
		{0x7f800000, 0x7f80}, // +inf
		{0x7f7fffff, 0x7f80}, // max float rounds to inf, as the hardware
		{0x00000001, 0x0000}, // tiny denormal to zero
	}
	for _, c := range cases {
		if got := BF16FromFloat32(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("BF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if h := BF16FromFloat32(float32(math.NaN())); h&0x7f80 != 0x7f80 || h&0x7f == 0 {
		t.Errorf("NaN became %#04x", h)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 10000 {
		f := float32(rng.NormFloat64() * 100)
		r := RoundBF16(f)
		if rel := math.Abs(float64(r-f)) / math.Abs(float64(f)); rel > 1.0/256 {
			t.Fatalf("RoundBF16(%g) = %g, relative error %g", f, r, rel)
		}
		if Float32FromBF16(BF16FromFloat32(r)) != r {
			t.Fatalf("bf16 value %g does not round-trip", r)
		}
	}
}

func TestParsePrecision(t *testing.T) {
	for in, want := range map[string]Precision{"": PrecisionBF16, "bf16": PrecisionBF16, "BF16": PrecisionBF16, "no": PrecisionFP32, "fp32": PrecisionFP32} {
		got, err := ParsePrecision(in)
		if err != nil || got != want {
			t.Errorf("ParsePrecision(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"fp16", "fp8", "int8"} {
		if _, err := ParsePrecision(bad); !errors.Is(err, ErrPrecision) {
			t.Errorf("ParsePrecision(%q) = %v", bad, err)
		}
	}
	if PrecisionFP32.String() != "no" || PrecisionBF16.String() != "bf16" {
		t.Error("Precision.String")
	}
}

// fakeLoader has a set of loadable libraries, each with a set of symbols, and records opens.
type fakeLoader struct {
	libs   map[string][]string
	opened []string
	global map[string]bool
}

func (f *fakeLoader) Open(name string, global bool) (uintptr, error) {
	f.opened = append(f.opened, name)
	if _, ok := f.libs[name]; !ok {
		return 0, fmt.Errorf("%s: cannot open shared object file", name)
	}
	if f.global == nil {
		f.global = map[string]bool{}
	}
	f.global[name] = global
	return uintptr(len(f.opened)), nil
}

func (f *fakeLoader) Sym(lib uintptr, name string) (uintptr, error) {
	libName := f.opened[lib-1]
	if slices.Contains(f.libs[libName], name) {
		return 0x1000 + uintptr(len(name)), nil
	}
	return 0, fmt.Errorf("undefined symbol: %s", name)
}

func TestCublasSearchOrder(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c := cublasCandidates(env(nil))
	var libs []string
	for _, x := range c {
		libs = append(libs, x.Lib)
	}
	want := []string{"libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.13", "libcublas.so.12", "/usr/local/cuda/lib64/libcublas.so.12",
		"libcublas.so.11", "/usr/local/cuda/lib64/libcublas.so.11"}
	if !slices.Equal(libs, want) {
		t.Fatalf("candidates %v, want %v", libs, want)
	}
	if c[0].Lt != "libcublasLt.so.13" || c[1].Lt != "/usr/local/cuda/lib64/libcublasLt.so.13" {
		t.Fatalf("Lt beside lib: %+v", c[:2])
	}
	c = cublasCandidates(env(map[string]string{EnvCUDALibDirs: "/a:/b", "CUDA_HOME": "/opt/cuda"}))
	if c[0].Lib != "/a/libcublas.so.13" || c[1].Lib != "/b/libcublas.so.13" || c[2].Lib != "libcublas.so.13" || c[3].Lib != "/opt/cuda/lib64/libcublas.so.13" {
		t.Fatalf("dirs order: %+v", c[:4])
	}
	c = cublasCandidates(env(map[string]string{EnvCUBLAS: "/x/libcublas.so.12"}))
	if len(c) != 1 || c[0].Lib != "/x/libcublas.so.12" || c[0].Lt != "/x/libcublasLt.so.12" {
		t.Fatalf("explicit file: %+v", c)
	}

	// .13 has a library lacking a symbol, .12 is complete: .12 wins, after .13 was tried.
	partial := slices.DeleteFunc(slices.Clone(cublasSymbols), func(s string) bool { return s == "cublasGemmStridedBatchedEx" })
	fl := &fakeLoader{libs: map[string][]string{
		"libcublas.so.13": partial, "libcublasLt.so.13": nil,
		"libcublas.so.12": cublasSymbols, "libcublasLt.so.12": nil,
		"libcublas.so.11": cublasSymbols,
	}}
	lib, err := loadCUBLAS(fl, cublasCandidates(env(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if lib.Path != "libcublas.so.12" {
		t.Fatalf("loaded %s, want libcublas.so.12", lib.Path)
	}
	wantOpen := []string{"libcublasLt.so.13", "libcublas.so.13", "/usr/local/cuda/lib64/libcublasLt.so.13", "/usr/local/cuda/lib64/libcublas.so.13",
		"libcublasLt.so.12", "libcublas.so.12"}
	if !slices.Equal(fl.opened, wantOpen) {
		t.Fatalf("open order %v, want %v", fl.opened, wantOpen)
	}
	if !fl.global["libcublasLt.so.12"] || fl.global["libcublas.so.12"] {
		t.Fatalf("Lt must be global and cuBLAS local: %v", fl.global)
	}
	if len(lib.Syms) != len(cublasSymbols) {
		t.Fatalf("symbols %v", lib.Syms)
	}
	if _, err := bindCUBLAS(lib); err != nil {
		t.Fatal(err)
	}

	_, err = loadCUBLAS(&fakeLoader{}, cublasCandidates(env(nil)))
	if !errors.Is(err, ErrNoCUBLAS) || !strings.Contains(err.Error(), "libcublas.so.11") {
		t.Fatalf("nothing loadable: %v", err)
	}
	_, err = loadCUBLAS(&fakeLoader{libs: map[string][]string{"libcublas.so.13": partial}}, cublasCandidates(env(nil)))
	if !errors.Is(err, ErrNoCUBLAS) || !strings.Contains(err.Error(), "missing cublasGemmStridedBatchedEx") {
		t.Fatalf("missing symbol not reported: %v", err)
	}
}

func TestCublasStatus(t *testing.T) {
	if cublasErr("x", 0) != nil {
		t.Fatal("success is an error")
	}
	if err := cublasErr("cublasGemmEx", 7); !errors.Is(err, ErrCUBLAS) || !strings.Contains(err.Error(), "INVALID_VALUE") {
		t.Fatalf("%v", err)
	}
	if cublasVersionString(120903) != "12.9.3" {
		t.Fatal(cublasVersionString(120903))
	}
}

type fakeMem struct {
	next, limit, used int64
	sizes             map[uintptr]int64
	allocs, frees     int
}

func (f *fakeMem) alloc(bytes int64) (uintptr, error) {
	if f.used+bytes > f.limit {
		return 0, errDeviceFull
	}
	f.next += 1 << 32
	f.used += bytes
	f.allocs++
	f.sizes[uintptr(f.next)] = bytes
	return uintptr(f.next), nil
}

func (f *fakeMem) free(p uintptr) error {
	s, ok := f.sizes[p]
	if !ok {
		return errors.New("bad free")
	}
	delete(f.sizes, p)
	f.used -= s
	f.frees++
	return nil
}

func TestCachingAllocator(t *testing.T) {
	if roundAlloc(1) != 512 || roundAlloc(513) != 1024 || roundAlloc(1<<20) != 2<<20 || roundAlloc(3<<20) != 4<<20 || roundAlloc(0) != 512 {
		t.Fatal("size classes")
	}
	fm := &fakeMem{limit: 10 << 20, sizes: map[uintptr]int64{}}
	c := newCachingAllocator(fm, 0)
	p1, err := c.alloc(1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.free(p1); err != nil {
		t.Fatal(err)
	}
	p2, _ := c.alloc(900) // same class: reused without a device call
	if p2 != p1 || fm.allocs != 1 {
		t.Fatalf("no reuse: %#x vs %#x, %d allocs", p2, p1, fm.allocs)
	}
	if err := c.free(p1); err != nil {
		t.Fatal(err)
	}
	if err := c.free(p1); err == nil {
		t.Fatal("double free accepted")
	}
	// 4 MiB cached in another class; a 8 MiB request does not fit next to it, so the
	// cache is released and the request retried.
	big, _ := c.alloc(4 << 20)
	_ = c.free(big)
	p3, err := c.alloc(8 << 20)
	if err != nil {
		t.Fatalf("retry after release failed: %v", err)
	}
	if c.cached != 0 || fm.frees == 0 {
		t.Fatalf("cache not released: cached %d frees %d", c.cached, fm.frees)
	}
	if _, err := c.alloc(8 << 20); !errors.Is(err, errDeviceFull) {
		t.Fatalf("over the device: %v", err)
	}
	if c.peak < 8<<20 || c.inUse != 8<<20 {
		t.Fatalf("peak %d inUse %d", c.peak, c.inUse)
	}
	_ = p3
	if err := c.close(); err != nil || fm.used != 0 {
		t.Fatalf("close: %v, %d bytes left", err, fm.used)
	}
	lim := newCachingAllocator(&fakeMem{limit: 1 << 30, sizes: map[uintptr]int64{}}, 1024)
	if _, err := lim.alloc(2048); !errors.Is(err, errDeviceFull) {
		t.Fatalf("MaxBytes not enforced: %v", err)
	}
}
