package model

import (
	"errors"
	"math/rand/v2"
	"testing"

	"simpletuner/trainerproc/engine"
)

// TestConditioningGradCheck: with reference-image tokens appended, every parameter
// (cond_embed and the shared patch embedding included) gets the gradient finite
// differences give, in float64.
func TestConditioningGradCheck(t *testing.T) {
	e, be := newF64(t)
	cfg := gradCheckConfig(t)
	cfg.NumLayers = 1
	cfg.Conditioning = true
	m, err := New(e, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Param("cond_embed") == nil {
		t.Fatal("no cond_embed parameter")
	}
	perturb(m.Params(), 3, 0.05)
	r := rand.New(rand.NewPCG(9, 9))
	ref := make([]float32, 2*3*8*4) // a reference of another size: 8×4 pixels
	for i := range ref {
		ref[i] = float32(r.Float64()*2 - 1)
	}
	cond := e.FromHost(ref, 2, 3, 8, 4)
	m.cond = []*engine.Tensor{cond, nil}
	checkGrads(t, m, makeBatch(cfg, 2, 8, 4, 2), 3)
	m.cond = nil
	engine.ZeroGrads(m.Trainable())
	cond.Free()
	m.Free()
	if n, _ := be.Stats(); n != 0 {
		t.Errorf("%d buffers leaked", n)
	}
}

func TestConditioningChangesTheOutputNotItsShape(t *testing.T) {
	e, _ := newF64(t)
	cfg := gradCheckConfig(t)
	cfg.Conditioning = true
	m, err := New(e, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	perturb(m.Params(), 3, 0.05)
	b := makeBatch(cfg, 2, 8, 4, 2)
	defer e.NoGrad()()
	x := e.FromHost(b.x0, b.shape...)
	plain, err := m.Forward(x, b.t, b.c)
	if err != nil {
		t.Fatal(err)
	}
	a := e.FromHost(make([]float32, 2*3*8*8), 2, 3, 8, 8)
	withA, err := m.ForwardCond(x, b.t, b.c, []*engine.Tensor{a})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := withA.Shape(), plain.Shape(); len(got) != len(want) || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("shape %v, want %v", got, want)
	}
	p, _ := plain.ToHost()
	q, _ := withA.ToHost()
	same := true
	for i := range p {
		same = same && p[i] == q[i]
	}
	if same {
		t.Fatal("the reference tokens have no effect on the prediction")
	}
	// A model without conditioning refuses reference images with a clear error.
	cfg.Conditioning = false
	m2, _ := New(e, cfg, 1)
	defer m2.Free()
	if _, err := m2.ForwardCond(x, b.t, b.c, []*engine.Tensor{a}); !errors.Is(err, ErrInput) {
		t.Fatalf("got %v, want ErrInput", err)
	}
	bad := e.FromHost(make([]float32, 2*3*7*8), 2, 3, 7, 8)
	if _, err := m.ForwardCond(x, b.t, b.c, []*engine.Tensor{bad}); !errors.Is(err, ErrInput) {
		t.Fatalf("odd-sized reference: %v", err)
	}
}
