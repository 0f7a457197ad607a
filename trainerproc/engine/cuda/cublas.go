package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebitengine/purego"
)

// cuBLAS is not linked: a GPU machine may carry CUDA 11, 12 or 13 libraries and a binary
// linked against one soname does not start with another. It is opened with dlopen when the
// backend starts, newest major version first.

// cublasMajors is the search order of cuBLAS major versions.
var cublasMajors = []string{"13", "12", "11"}

// EnvCUBLAS names a cuBLAS library file to load instead of searching.
const EnvCUBLAS = "SIMPLETUNER_CUBLAS"

// EnvCUDALibDirs is a colon-separated list of directories searched before the loader's path.
const EnvCUDALibDirs = "SIMPLETUNER_CUDA_LIB_DIRS"

// cublasSymbols are the entry points the backend needs; a library lacking one is skipped.
var cublasSymbols = []string{
	"cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetMathMode",
	"cublasGetVersion_v2", "cublasGemmEx", "cublasGemmStridedBatchedEx",
}

// Loader opens shared libraries and looks up symbols (dlopen/dlsym); tests substitute a fake.
type Loader interface {
	// Open loads a library by file name or path. global asks for RTLD_GLOBAL, so that a
	// library loaded later finds this one's symbols and soname.
	Open(name string, global bool) (uintptr, error)
	// Sym returns a symbol's address.
	Sym(lib uintptr, name string) (uintptr, error)
}

// SystemLoader is the Loader backed by the process's dynamic linker (through purego, so no
// cgo is needed for it).
type SystemLoader struct{}

// Open implements Loader.
func (SystemLoader) Open(name string, global bool) (uintptr, error) {
	mode := purego.RTLD_NOW | purego.RTLD_LOCAL
	if global {
		mode = purego.RTLD_NOW | purego.RTLD_GLOBAL
	}
	return purego.Dlopen(name, mode)
}

// Sym implements Loader.
func (SystemLoader) Sym(lib uintptr, name string) (uintptr, error) { return purego.Dlsym(lib, name) }

// cublasCandidate is one place to try: the cuBLAS library and the cuBLASLt library of the same
// version beside it (libcublas needs libcublasLt; loading Lt first, globally, lets libcublas
// find it even when its directory is not on the loader's path).
type cublasCandidate struct {
	Lib, Lt string
}

// cublasCandidates lists where to look, in order: the file named by SIMPLETUNER_CUBLAS alone
// when set; otherwise, for each major version 13, 12, 11 (newest first), the directories of
// SIMPLETUNER_CUDA_LIB_DIRS, the bare soname (the loader's own path: LD_LIBRARY_PATH,
// ld.so.cache), $CUDA_HOME/lib64 and /usr/local/cuda/lib64.
func cublasCandidates(getenv func(string) string) []cublasCandidate {
	if f := getenv(EnvCUBLAS); f != "" {
		dir, base := filepath.Split(f)
		lt := strings.Replace(base, "libcublas.", "libcublasLt.", 1)
		return []cublasCandidate{{Lib: f, Lt: filepath.Join(dir, lt)}}
	}
	var dirs []string
	for _, d := range strings.Split(getenv(EnvCUDALibDirs), ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, "") // the loader's own search path
	if h := getenv("CUDA_HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, "lib64"))
	}
	dirs = append(dirs, "/usr/local/cuda/lib64")
	var out []cublasCandidate
	seen := map[string]bool{}
	for _, v := range cublasMajors {
		for _, d := range dirs {
			c := cublasCandidate{Lib: "libcublas.so." + v, Lt: "libcublasLt.so." + v}
			if d != "" {
				c = cublasCandidate{Lib: filepath.Join(d, c.Lib), Lt: filepath.Join(d, c.Lt)}
			}
			if !seen[c.Lib] {
				seen[c.Lib] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// cublasLib is a loaded cuBLAS: where it came from and its symbol addresses.
type cublasLib struct {
	Path string
	Syms map[string]uintptr
}

// loadCUBLAS tries the candidates in order and returns the first library that has every
// symbol in cublasSymbols. The error lists every attempt.
func loadCUBLAS(l Loader, cands []cublasCandidate) (*cublasLib, error) {
	var tried []string
	for _, c := range cands {
		// A missing Lt is not fatal by itself: the library may find its own through RPATH.
		_, ltErr := l.Open(c.Lt, true)
		h, err := l.Open(c.Lib, false)
		if err != nil {
			msg := fmt.Sprintf("%s: %v", c.Lib, err)
			if ltErr != nil {
				msg += fmt.Sprintf(" (and %s: %v)", c.Lt, ltErr)
			}
			tried = append(tried, msg)
			continue
		}
		syms := make(map[string]uintptr, len(cublasSymbols))
		var missing []string
		for _, s := range cublasSymbols {
			p, err := l.Sym(h, s)
			if err != nil || p == 0 {
				missing = append(missing, s)
				continue
			}
			syms[s] = p
		}
		if len(missing) > 0 {
			tried = append(tried, fmt.Sprintf("%s: missing %s", c.Lib, strings.Join(missing, ", ")))
			continue
		}
		return &cublasLib{Path: c.Lib, Syms: syms}, nil
	}
	return nil, fmt.Errorf("%w: tried %s", ErrNoCUBLAS, strings.Join(tried, "; "))
}

// cuBLAS constants (cublas_api.h, library_types.h; stable across 11–13).
const (
	cublasOpN          = 0
	cublasOpT          = 1
	cudaR32F           = 0
	cudaR16BF          = 14
	cublasCompute32F   = 68
	cublasGemmDefault  = -1
	cublasDefaultMath  = 0
	cublasStatusOK     = 0
	bf16Bytes          = 2
	f32Bytes           = 4
	cublasMaxBatchSize = 1<<31 - 1
)

// cublasStatusText names cuBLAS status codes for error messages.
func cublasStatusText(s int32) string {
	switch s {
	case 0:
		return "CUBLAS_STATUS_SUCCESS"
	case 1:
		return "CUBLAS_STATUS_NOT_INITIALIZED"
	case 3:
		return "CUBLAS_STATUS_ALLOC_FAILED"
	case 7:
		return "CUBLAS_STATUS_INVALID_VALUE"
	case 8:
		return "CUBLAS_STATUS_ARCH_MISMATCH"
	case 11:
		return "CUBLAS_STATUS_MAPPING_ERROR"
	case 13:
		return "CUBLAS_STATUS_EXECUTION_FAILED"
	case 14:
		return "CUBLAS_STATUS_INTERNAL_ERROR"
	case 15:
		return "CUBLAS_STATUS_NOT_SUPPORTED"
	case 16:
		return "CUBLAS_STATUS_LICENSE_ERROR"
	}
	return fmt.Sprintf("cuBLAS status %d", s)
}

func cublasErr(call string, s int32) error {
	if s == cublasStatusOK {
		return nil
	}
	return fmt.Errorf("%w: %s: %s", ErrCUBLAS, call, cublasStatusText(s))
}

// cublasAPI is the typed view of a loaded library. Device pointers travel as uintptr (they are
// not Go pointers); alpha and beta are host pointers, kept alive by purego for the call.
type cublasAPI struct {
	lib        *cublasLib
	create     func(handle *uintptr) int32
	destroy    func(handle uintptr) int32
	setStream  func(handle, stream uintptr) int32
	setMath    func(handle uintptr, mode int32) int32
	getVersion func(handle uintptr, v *int32) int32
	gemmEx     func(handle uintptr, ta, tb, m, n, k int32, alpha *float32, a uintptr, at, lda int32,
		b uintptr, bt, ldb int32, beta *float32, c uintptr, ct, ldc int32, compute, algo int32) int32
	gemmStridedBatchedEx func(handle uintptr, ta, tb, m, n, k int32, alpha *float32, a uintptr, at, lda int32, sa int64,
		b uintptr, bt, ldb int32, sb int64, beta *float32, c uintptr, ct, ldc int32, sc int64, batch, compute, algo int32) int32
}

// bindCUBLAS turns resolved symbols into callable functions.
func bindCUBLAS(lib *cublasLib) (*cublasAPI, error) {
	a := &cublasAPI{lib: lib}
	targets := map[string]any{
		"cublasCreate_v2": &a.create, "cublasDestroy_v2": &a.destroy, "cublasSetStream_v2": &a.setStream,
		"cublasSetMathMode": &a.setMath, "cublasGetVersion_v2": &a.getVersion, "cublasGemmEx": &a.gemmEx,
		"cublasGemmStridedBatchedEx": &a.gemmStridedBatchedEx,
	}
	for name, fp := range targets {
		p, ok := lib.Syms[name]
		if !ok {
			return nil, fmt.Errorf("%w: %s lacks %s", ErrNoCUBLAS, lib.Path, name)
		}
		purego.RegisterFunc(fp, p)
	}
	return a, nil
}

// openCUBLAS searches, loads and binds cuBLAS.
func openCUBLAS(l Loader, getenv func(string) string) (*cublasAPI, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	lib, err := loadCUBLAS(l, cublasCandidates(getenv))
	if err != nil {
		return nil, err
	}
	return bindCUBLAS(lib)
}

// cublasHandle is a created handle with its math mode set.
type cublasHandle struct {
	api     *cublasAPI
	h       uintptr
	version int32
}

// newHandle creates a handle on the calling thread's current context and turns TF32 off, so
// the fp32 path is true fp32.
func (a *cublasAPI) newHandle() (*cublasHandle, error) {
	var h uintptr
	if err := cublasErr("cublasCreate", a.create(&h)); err != nil {
		return nil, err
	}
	ch := &cublasHandle{api: a, h: h}
	if err := cublasErr("cublasSetMathMode", a.setMath(h, cublasDefaultMath)); err != nil {
		_ = a.destroy(h)
		return nil, err
	}
	if err := cublasErr("cublasGetVersion", a.getVersion(h, &ch.version)); err != nil {
		_ = a.destroy(h)
		return nil, err
	}
	return ch, nil
}

func (h *cublasHandle) close() error {
	if h == nil || h.h == 0 {
		return nil
	}
	err := cublasErr("cublasDestroy", h.api.destroy(h.h))
	h.h = 0
	return err
}

// cublasVersionString renders cuBLAS's version integer (major·10000 + minor·100 + patch for 11+).
func cublasVersionString(v int32) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, (v/100)%100, v%100)
}

// gemmCall is one cuBLAS GEMM with resolved device addresses.
type gemmCall struct {
	plan       gemmPlan
	a, b, c    uintptr // device addresses of A', B' (already offset) and C
	dtype      int32   // cudaR32F or cudaR16BF for A' and B'
	elemAB     int64   // bytes per A'/B' element (for strides)
	sequential bool
}

// gemm issues the call: one strided-batched call, or the products one by one when every entry
// writes the same C (their beta·C accumulation must be ordered).
func (h *cublasHandle) gemm(g gemmCall) error {
	p := g.plan
	alpha, beta := p.alpha, p.beta
	op := func(t bool) int32 {
		if t {
			return cublasOpT
		}
		return cublasOpN
	}
	if p.batch == 1 || p.sequentialSharedC {
		for i := 0; i < p.batch; i++ {
			a := g.a + uintptr(int64(i)*p.strideA*g.elemAB)
			b := g.b + uintptr(int64(i)*p.strideB*g.elemAB)
			c := g.c + uintptr(int64(i)*p.strideC*f32Bytes)
			s := h.api.gemmEx(h.h, op(p.transA), op(p.transB), int32(p.m), int32(p.n), int32(p.k), &alpha,
				a, g.dtype, int32(p.lda), b, g.dtype, int32(p.ldb), &beta, c, cudaR32F, int32(p.ldc), cublasCompute32F, cublasGemmDefault)
			if err := cublasErr("cublasGemmEx", s); err != nil {
				return err
			}
		}
		return nil
	}
	if p.batch > cublasMaxBatchSize {
		return fmt.Errorf("%w: gemm batch of %d", ErrUnsupported, p.batch)
	}
	s := h.api.gemmStridedBatchedEx(h.h, op(p.transA), op(p.transB), int32(p.m), int32(p.n), int32(p.k), &alpha,
		g.a, g.dtype, int32(p.lda), p.strideA, g.b, g.dtype, int32(p.ldb), p.strideB, &beta,
		g.c, cudaR32F, int32(p.ldc), p.strideC, int32(p.batch), cublasCompute32F, cublasGemmDefault)
	return cublasErr("cublasGemmStridedBatchedEx", s)
}
