package engine

// Engine ties tensors to a Backend and holds the autograd mode and the stack of open scopes.
// It is not safe for concurrent use: one goroutine drives an Engine (the backend parallelises
// inside each kernel). Its fields are only touched by that goroutine, so no lock guards them.
type Engine struct {
	be     Backend
	noGrad int      // >0 while inside NoGrad; ops then record no graph
	scopes []*Scope // open scopes, innermost last; new tensors join the innermost
	nodes  uint64   // graph nodes recorded so far; Checkpoint tells the nodes f records by it
}

// New returns an engine running on be. The engine does not own be: the caller closes it after
// freeing the engine's tensors.
func New(be Backend) *Engine { return &Engine{be: be} }

// Backend returns the backend the engine runs on.
func (e *Engine) Backend() Backend { return e.be }

// GradEnabled reports whether ops currently record a graph.
func (e *Engine) GradEnabled() bool { return e.noGrad == 0 }

// NoGrad disables graph recording (inference, validation, optimizer updates) until the returned
// function is called: defer e.NoGrad()(). Calls nest.
func (e *Engine) NoGrad() (restore func()) {
	e.noGrad++
	done := false
	return func() {
		if !done {
			done = true
			e.noGrad--
		}
	}
}

// Scope collects every tensor created while it is the innermost open scope, so that a training
// step can free all its activations and intermediate results at once with Close. Parameters
// and tensors passed to Keep survive.
type Scope struct {
	e       *Engine
	tensors []*Tensor // tensors created in this scope; entries whose scope moved are skipped
	closed  bool
}

// Scope opens a new innermost scope.
func (e *Engine) Scope() *Scope {
	s := &Scope{e: e}
	e.scopes = append(e.scopes, s)
	return s
}

func (e *Engine) currentScope() *Scope {
	if len(e.scopes) == 0 {
		return nil
	}
	return e.scopes[len(e.scopes)-1]
}

// Keep moves tensors out of this scope into the enclosing one (or to no scope, in which case
// the caller frees them). It returns its first argument for convenience.
func (s *Scope) Keep(ts ...*Tensor) *Tensor {
	var parent *Scope
	for i, sc := range s.e.scopes {
		if sc == s && i > 0 {
			parent = s.e.scopes[i-1]
		}
	}
	for _, t := range ts {
		if t == nil || t.scope != s {
			continue
		}
		t.scope = parent
		if parent != nil {
			parent.tensors = append(parent.tensors, t)
		}
	}
	if len(ts) == 0 {
		return nil
	}
	return ts[0]
}

// Close frees every tensor still owned by the scope (newest first) and removes the scope from
// the engine. Graph nodes still needed by a live result survive (so a helper may close its own
// scope and return a result that can be differentiated). Close is idempotent.
func (s *Scope) Close() {
	if s.closed {
		return
	}
	s.closed = true
	for i := len(s.tensors) - 1; i >= 0; i-- {
		if t := s.tensors[i]; t.scope == s {
			t.Free()
		}
	}
	s.tensors = nil
	for i, sc := range s.e.scopes {
		if sc == s {
			s.e.scopes = append(s.e.scopes[:i], s.e.scopes[i+1:]...)
			break
		}
	}
}
