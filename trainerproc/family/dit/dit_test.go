package dit

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"simpletuner/options"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/validation"
)

// TestDescribeIsTheStaticFallback: what the trainer reports for dit is what a daemon
// that cannot ask it falls back to (options.DefaultFamilies), default resolution included.
func TestDescribeIsTheStaticFallback(t *testing.T) {
	got := Family{}.Describe()
	var want options.Family
	for _, f := range options.DefaultFamilies() {
		if f.Name == Name {
			want = f
		}
	}
	if got.Name != want.Name || !slices.Equal(got.Flavours, want.Flavours) || got.DefaultFlavour != want.DefaultFlavour ||
		got.DefaultResolution != want.DefaultResolution || got.MinResolution != want.MinResolution {
		t.Fatalf("Describe %+v, options.DefaultFamilies %+v", got, want)
	}
}

func TestPlan(t *testing.T) {
	small, _ := model.Flavour("small")
	pretrained := t.TempDir()
	be := newBackend(t)
	m, err := model.New(engine.New(be), small, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(pretrained); err != nil {
		t.Fatal(err)
	}
	m.Free()
	for _, tc := range []struct {
		name       string
		spec       family.Spec
		err        error
		plan       string
		captionLen int
	}{
		{"default flavour", family.Spec{}, nil, "dit/tiny", 32},
		{"named flavour", family.Spec{Flavour: "small"}, nil, "dit/small", 77},
		{"shorter captions", family.Spec{Flavour: "small", CaptionLen: 20}, nil, "dit/small", 20},
		{"longer captions keep the model's", family.Spec{Flavour: "tiny", CaptionLen: 500}, nil, "dit/tiny", 32},
		{"unknown flavour", family.Spec{Flavour: "huge"}, family.ErrUnknownFlavour, "", 0},
		{"pretrained directory's config wins", family.Spec{Flavour: "tiny", Pretrained: pretrained}, nil, "dit/small", 77},
		{"missing directory starts from the flavour", family.Spec{Flavour: "tiny", Pretrained: t.TempDir() + "/none"}, nil, "dit/tiny", 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Family{}.Plan(tc.spec)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Plan: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if p.Name() != tc.plan || p.CaptionLen() != tc.captionLen || p.Align() != 2 {
				t.Fatalf("plan %s, caption length %d, align %d", p.Name(), p.CaptionLen(), p.Align())
			}
			if c := p.Caches(); !c.Pixels || !c.Tokens || c.Latents || c.TextEmbeds {
				t.Fatalf("caches %+v", c)
			}
		})
	}
	// Build loads the pretrained directory.
	p, _ := Family{}.Plan(family.Spec{Pretrained: pretrained})
	built, loaded, err := p.Build(engine.New(be), 1)
	if err != nil || !loaded {
		t.Fatalf("Build: loaded %v, %v", loaded, err)
	}
	built.Free()
}

func newBackend(t *testing.T) engine.Backend {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 2, BLAS: blas.ChoiceGonum})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

// TestSeamAddsNothing: the loss and the validation image through the seam are bit for bit
// the model package's own, for the same seed and noise stream.
func TestSeamAddsNothing(t *testing.T) {
	e := engine.New(newBackend(t))
	p, err := Family{}.Plan(family.Spec{Flavour: "tiny", CaptionLen: 16})
	if err != nil {
		t.Fatal(err)
	}
	fm, loaded, err := p.Build(e, 9)
	if err != nil || loaded {
		t.Fatalf("Build: loaded %v, %v", loaded, err)
	}
	defer fm.Free()
	cfg, _ := model.Flavour("tiny")
	ref, err := model.New(e, cfg, 9)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Free()

	tok, _ := data.NewTokenizer(16)
	b := &data.Batch{B: 2, L: 16, W: 8, H: 6, Pixels: make([]float32, 2*3*6*8)}
	for i := range b.Pixels {
		b.Pixels[i] = float32(i%13)/6 - 1
	}
	for _, c := range []string{"red", "a blue circle"} {
		ids, mask := tok.EncodeNew(c)
		b.Tokens, b.Mask = append(b.Tokens, ids...), append(b.Mask, mask...)
	}
	loss := func(f func(rng *engine.RNG) (*engine.Tensor, error)) float32 {
		var v float32
		if err := engine.Catch(func() {
			sc := e.Scope()
			defer sc.Close()
			l, err := f(engine.NewRNG(5))
			if err != nil {
				panic(err)
			}
			if v, err = l.Item(); err != nil {
				panic(err)
			}
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	got := loss(func(rng *engine.RNG) (*engine.Tensor, error) {
		return fm.Loss(b, rng, family.LossOptions{CaptionDropout: 0.5})
	})
	want := loss(func(rng *engine.RNG) (*engine.Tensor, error) {
		x0 := e.FromHost(b.Pixels, 2, 3, 6, 8)
		l, _, err := ref.Loss(x0, model.Captions{Tokens: b.Tokens, Mask: b.Mask, Len: 16}, rng, model.LossOptions{CaptionDropout: 0.5})
		return l, err
	})
	if got != want {
		t.Fatalf("loss through the seam %v, model's %v", got, want)
	}

	req := validation.Request{Prompt: "red", Resolution: validation.Resolution{W: 8, H: 8}, Steps: 3, Guidance: 2, Seed: 4}
	img, err := fm.Sample(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	refImg, err := (&validation.Sampler{Model: ref, Tokenizer: tok}).Sample(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.Pix, refImg.Pix) {
		t.Fatal("the image through the seam differs from the sampler's")
	}
}
