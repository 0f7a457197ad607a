package engine

import (
	"errors"
	"fmt"
)

// Sentinel errors at the package boundary. Errors returned (or recovered by Catch) wrap one of
// these, so callers test with errors.Is.
var (
	// ErrShape reports incompatible tensor shapes or an invalid axis.
	ErrShape = errors.New("engine: shape mismatch")
	// ErrOutOfMemory reports that a backend could not allocate a buffer.
	ErrOutOfMemory = errors.New("engine: out of device memory")
	// ErrFreed reports use of a tensor whose buffer was already freed.
	ErrFreed = errors.New("engine: tensor already freed")
	// ErrBackend reports any other backend failure (e.g. a failed copy).
	ErrBackend = errors.New("engine: backend failure")
	// ErrGrad reports misuse of autograd (Backward from a non-scalar, or from a tensor with no
	// graph).
	ErrGrad = errors.New("engine: autograd misuse")
	// ErrMixedEngines reports an op whose operands belong to different engines.
	ErrMixedEngines = errors.New("engine: tensors from different engines")
)

// opPanic is the value engine ops panic with. Ops panic instead of returning errors so model
// code reads like math; Catch turns these panics back into errors at a step boundary. Panics
// with any other value (real bugs) pass through Catch untouched.
type opPanic struct{ err error }

func throw(err error) { panic(opPanic{err}) }

func throwf(sentinel error, format string, args ...any) {
	throw(fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...)))
}

// Catch runs fn and returns the error of an engine op that panicked inside it (wrapping one of
// the sentinel errors), or nil. Training loops wrap each step in Catch.
func Catch(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			op, ok := r.(opPanic)
			if !ok {
				panic(r)
			}
			err = op.err
		}
	}()
	fn()
	return nil
}

// ToHostOf runs f in a scope of its own and returns its result copied to the host, with the
// error of f, of an engine op that panicked inside it, or of the copy: the shape of every
// inference call that hands host values back (validation sampling, decoding). Every tensor
// f makes is freed.
func ToHostOf(e *Engine, f func() (*Tensor, error)) (host []float32, err error) {
	var ferr error
	err = Catch(func() {
		s := e.Scope()
		defer s.Close()
		out, err := f()
		if err != nil {
			ferr = err
			return
		}
		host, ferr = out.ToHost()
	})
	if err == nil {
		err = ferr
	}
	return host, err
}
