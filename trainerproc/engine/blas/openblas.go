//go:build (linux || darwin) && (amd64 || arm64)

package blas

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// libNames are tried in order by openOpenBLAS.
var libNames = []string{"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", "libopenblas.dylib"}

const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// openBLAS calls cblas_sgemm in a dlopen'ed OpenBLAS. The function pointers are set once in
// openOpenBLAS and never change, so the value is safe to share.
type openBLAS struct {
	sgemm   func(order, ta, tb, m, n, k int32, alpha float32, a unsafe.Pointer, lda int32, b unsafe.Pointer, ldb int32, beta float32, c unsafe.Pointer, ldc int32)
	version string
	threads int
}

func openOpenBLAS(threads int) (Sgemmer, error) { return openOpenBLASFrom(libNames, threads) }

// openOpenBLASFrom tries the given library names in order (tests pass names that do not exist
// to exercise the fallback on machines that have OpenBLAS).
func openOpenBLASFrom(names []string, threads int) (Sgemmer, error) {
	var (
		h       uintptr
		lastErr error
	)
	for _, name := range names {
		var err error
		h, err = purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err == nil {
			break
		}
		lastErr = err
	}
	if h == 0 {
		return nil, fmt.Errorf("%w: openblas: %v", ErrUnavailable, lastErr)
	}
	sym, err := purego.Dlsym(h, "cblas_sgemm")
	if err != nil {
		return nil, fmt.Errorf("%w: openblas: cblas_sgemm: %v", ErrUnavailable, err)
	}
	ob := &openBLAS{version: "unknown"}
	purego.RegisterFunc(&ob.sgemm, sym)
	if s, err := purego.Dlsym(h, "openblas_set_num_threads"); err == nil && threads > 0 {
		var set func(int32)
		purego.RegisterFunc(&set, s)
		set(int32(threads))
	}
	if s, err := purego.Dlsym(h, "openblas_get_num_threads"); err == nil {
		var get func() int32
		purego.RegisterFunc(&get, s)
		ob.threads = int(get())
	}
	if s, err := purego.Dlsym(h, "openblas_get_config"); err == nil {
		var cfg func() string
		purego.RegisterFunc(&cfg, s)
		ob.version = parseVersion(cfg())
	}
	return ob, nil
}

// parseVersion extracts "0.3.21" from "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY ...".
func parseVersion(cfg string) string {
	f := strings.Fields(cfg)
	if len(f) >= 2 && strings.EqualFold(f[0], "OpenBLAS") {
		return f[1]
	}
	if len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func (*openBLAS) Name() string { return "openblas" }

func (o *openBLAS) Describe() string {
	if o.threads > 0 {
		return fmt.Sprintf("openblas %s, %d threads", o.version, o.threads)
	}
	return "openblas " + o.version
}

func (*openBLAS) ParallelInside() bool { return true }

func (o *openBLAS) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkSizes(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	ta, tb := int32(cblasNoTrans), int32(cblasNoTrans)
	if transA {
		ta = cblasTrans
	}
	if transB {
		tb = cblasTrans
	}
	var pa, pb unsafe.Pointer
	if len(a) > 0 {
		pa = unsafe.Pointer(&a[0])
	}
	if len(b) > 0 {
		pb = unsafe.Pointer(&b[0])
	}
	if k == 0 {
		// Some BLAS builds dereference A/B even when k is zero; avoid the call.
		if beta == 0 {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		} else if beta != 1 {
			for i := 0; i < m; i++ {
				for j := range c[i*ldc : i*ldc+n] {
					c[i*ldc+j] *= beta
				}
			}
		}
		return
	}
	o.sgemm(cblasRowMajor, ta, tb, int32(m), int32(n), int32(k), alpha, pa, int32(lda), pb, int32(ldb), beta, unsafe.Pointer(&c[0]), int32(ldc))
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
}
