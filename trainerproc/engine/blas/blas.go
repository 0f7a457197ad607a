package blas

import (
	"errors"
	"fmt"
	"os"
	"strings"

	gblas "gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// ErrUnavailable is returned (wrapped) when the requested BLAS library cannot be loaded.
var ErrUnavailable = errors.New("blas: library unavailable")

// Choice selects which BLAS implementation Open returns.
type Choice string

const (
	// ChoiceAuto tries OpenBLAS first and falls back to gonum.
	ChoiceAuto Choice = "auto"
	// ChoiceOpenBLAS requires OpenBLAS; Open fails with ErrUnavailable when it cannot be loaded.
	ChoiceOpenBLAS Choice = "openblas"
	// ChoiceGonum forces the pure-Go gonum implementation.
	ChoiceGonum Choice = "gonum"
)

// EnvVar names the environment variable ChoiceFromEnv reads ("auto", "openblas", "gonum").
const EnvVar = "SIMPLETUNER_BLAS"

// ChoiceFromEnv returns the Choice named by $SIMPLETUNER_BLAS, or ChoiceAuto when it is unset. It is a
// helper for commands; library code takes the Choice as an argument.
func ChoiceFromEnv() (Choice, error) {
	return ParseChoice(os.Getenv(EnvVar))
}

// ParseChoice parses "auto", "openblas" or "gonum" (case-insensitive; empty means ChoiceAuto).
func ParseChoice(s string) (Choice, error) {
	switch c := Choice(strings.ToLower(strings.TrimSpace(s))); c {
	case "":
		return ChoiceAuto, nil
	case ChoiceAuto, ChoiceOpenBLAS, ChoiceGonum:
		return c, nil
	default:
		return "", fmt.Errorf("blas: unknown choice %q (want auto, openblas or gonum)", s)
	}
}

// Sgemmer computes C = alpha*op(A)*op(B) + beta*C for row-major float32 matrices.
type Sgemmer interface {
	// Sgemm is the row-major cblas_sgemm. op(A) is m×k, op(B) is k×n, C is m×n.
	Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	// Name is "openblas" or "gonum".
	Name() string
	// Describe is a human-readable description, e.g. "openblas 0.3.21, 2 threads".
	Describe() string
	// ParallelInside reports whether one Sgemm call already uses several threads, so callers
	// should not run several calls concurrently.
	ParallelInside() bool
}

// Open returns the implementation named by choice. threads is the thread count OpenBLAS is told
// to use (openblas_set_num_threads is process-wide); <= 0 leaves OpenBLAS's default.
func Open(choice Choice, threads int) (Sgemmer, error) {
	switch choice {
	case ChoiceGonum:
		return NewGonum(), nil
	case ChoiceOpenBLAS:
		return openOpenBLAS(threads)
	case ChoiceAuto, "":
		if ob, err := openOpenBLAS(threads); err == nil {
			return ob, nil
		}
		return NewGonum(), nil
	default:
		return nil, fmt.Errorf("blas: unknown choice %q", choice)
	}
}

// Gonum is the pure-Go implementation (gonum.org/v1/gonum/blas/gonum). Large products are
// parallelised by gonum itself over GOMAXPROCS; each output block is accumulated in a fixed
// order, so results do not depend on the number of threads.
type Gonum struct{ impl gonum.Implementation }

// NewGonum returns the gonum implementation.
func NewGonum() *Gonum { return &Gonum{} }

// Name implements Sgemmer.
func (*Gonum) Name() string { return "gonum" }

// Describe implements Sgemmer.
func (*Gonum) Describe() string { return "gonum" }

// ParallelInside implements Sgemmer: gonum parallelises large products only, so the CPU backend
// may run small products concurrently.
func (*Gonum) ParallelInside() bool { return false }

// Sgemm implements Sgemmer.
func (g *Gonum) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	g.impl.Sgemm(trans(transA), trans(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dgemm is the float64 product used by the float64 reference backend.
func (g *Gonum) Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	g.impl.Dgemm(trans(transA), trans(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func trans(t bool) gblas.Transpose {
	if t {
		return gblas.Trans
	}
	return gblas.NoTrans
}

// checkSizes panics with a descriptive message when slices are too short for the product; the
// C library would otherwise read or write out of bounds.
func checkSizes(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	need := func(rows, cols, ld, have int, name string) {
		if rows == 0 || cols == 0 {
			return
		}
		if ld < cols || (rows-1)*ld+cols > have {
			panic(fmt.Sprintf("blas: %s is %d×%d with ld %d but has %d elements", name, rows, cols, ld, have))
		}
	}
	need(ar, ac, lda, len(a), "A")
	need(br, bc, ldb, len(b), "B")
	need(m, n, ldc, len(c), "C")
}
