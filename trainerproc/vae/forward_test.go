package vae

import (
	"errors"
	"math"
	"slices"
	"testing"

	"simpletuner/trainerproc/engine"
)

// images returns a deterministic batch in [−1, 1].
func images(t *testing.T, e *engine.Engine, shape ...int) *engine.Tensor {
	t.Helper()
	var x *engine.Tensor
	if err := engine.Catch(func() { x = e.RandU(engine.NewRNG(3), -1, 1, shape...) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Free)
	return x
}

func host(t *testing.T, x *engine.Tensor) []float32 {
	t.Helper()
	v, err := x.ToHost()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestEncodeDecodeShapes(t *testing.T) {
	e, be := newEngine(t)
	shift := 0.25
	cfgs := map[string]Config{"tiny": tinyConfig()}
	flux := tinyConfig()
	flux.UseQuantConv, flux.UsePostQuantConv, flux.LatentChannels, flux.ShiftFactor = false, false, 16, &shift
	cfgs["no quant convs, shift"] = flux
	noAttn := tinyConfig()
	noAttn.MidBlockAddAttention = false
	cfgs["no attention"] = noAttn
	for name, cfg := range cfgs {
		t.Run(name, func(t *testing.T) {
			m, err := New(e, cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			x := images(t, e, 2, 3, 24, 40)
			_, live := be.Stats()
			mean, logvar, err := m.Encode(x)
			if err != nil {
				t.Fatal(err)
			}
			want := []int{2, cfg.LatentChannels, 6, 10}
			if !slices.Equal(mean.Shape(), want) || !slices.Equal(logvar.Shape(), want) {
				t.Fatalf("posterior %v %v, want %v", mean.Shape(), logvar.Shape(), want)
			}
			for _, v := range host(t, logvar) {
				if v < logvarMin || v > logvarMax {
					t.Fatalf("logvar %g outside the clamp", v)
				}
			}
			y, err := m.DecodeRaw(mean)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(y.Shape(), []int{2, cfg.OutChannels, 24, 40}) {
				t.Fatalf("decoded %v", y.Shape())
			}
			for _, v := range host(t, y) {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatal("decoded value not finite")
				}
			}
			mean.Free()
			logvar.Free()
			y.Free()
			if _, after := be.Stats(); after != live {
				t.Errorf("encode+decode left %d bytes live", after-live)
			}
		})
	}
}

// TestLatents checks the latent scaling both ways: Latents without an RNG is
// (mean − shift)·scale, Decode undoes it (same output as DecodeRaw on the mean), and a
// sampled latent is reproducible from its RNG and differs from the mode.
func TestLatents(t *testing.T) {
	e, _ := newEngine(t)
	shift := 0.1159
	cfg := tinyConfig()
	cfg.ShiftFactor = &shift
	m, err := New(e, cfg, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	x := images(t, e, 1, 3, 16, 16)
	mean, logvar, err := m.Encode(x)
	if err != nil {
		t.Fatal(err)
	}
	defer mean.Free()
	defer logvar.Free()
	mode, err := m.Latents(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mode.Free()
	mv, zv := host(t, mean), host(t, mode)
	for i := range mv {
		want := (mv[i] - float32(shift)) * float32(cfg.ScalingFactor)
		if d := math.Abs(float64(zv[i] - want)); d > 1e-6 {
			t.Fatalf("mode latent %d = %g, want %g", i, zv[i], want)
		}
	}
	a, err := m.Latents(x, engine.NewRNG(9))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	b, err := m.Latents(x, engine.NewRNG(9))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	if av := host(t, a); !slices.Equal(av, host(t, b)) || slices.Equal(av, zv) {
		t.Error("sampled latents are not reproducible from the RNG, or equal the mode")
	}
	dec, err := m.Decode(mode)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Free()
	raw, err := m.DecodeRaw(mean)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Free()
	if rel := maxRelErr(host(t, dec), host(t, raw)); rel > 1e-5 {
		t.Errorf("Decode(Latents(mode)) vs DecodeRaw(mean): max relative error %g", rel)
	}
}

func TestInputErrors(t *testing.T) {
	e, _ := newEngine(t)
	m := randomTiny(t, e)
	for _, shape := range [][]int{{3, 16, 16}, {1, 4, 16, 16}, {1, 3, 18, 16}, {1, 3, 16, 2}} {
		x := images(t, e, shape...)
		if _, _, err := m.Encode(x); !errors.Is(err, ErrInput) {
			t.Errorf("Encode(%v): err = %v, want ErrInput", shape, err)
		}
	}
	z := images(t, e, 1, 3, 4, 4)
	if _, err := m.Decode(z); !errors.Is(err, ErrInput) {
		t.Errorf("Decode of 3-channel latents: err = %v, want ErrInput", err)
	}
}

// TestMemoryEstimate holds EncodeBytes and DecodeBytes to the CPU backend's measured
// high-water mark (buffers plus kernel scratch), from −2 % to +25 %.
func TestMemoryEstimate(t *testing.T) {
	e, be := newEngine(t)
	m := randomTiny(t, e)
	check := func(what string, est, got int64) {
		t.Helper()
		if float64(est) < 0.98*float64(got) || float64(est) > 1.25*float64(got) {
			t.Errorf("%s: estimate %d bytes, measured %d", what, est, got)
		} else {
			t.Logf("%s: estimate %d bytes, measured %d", what, est, got)
		}
	}
	for _, sz := range [][3]int{{1, 32, 32}, {2, 48, 64}} {
		n, h, w := sz[0], sz[1], sz[2]
		_, base := be.Stats()
		be.ResetPeak()
		var x *engine.Tensor
		if err := engine.Catch(func() { x = e.Zeros(n, 3, h, w) }); err != nil {
			t.Fatal(err)
		}
		mean, logvar, err := m.Encode(x)
		if err != nil {
			t.Fatal(err)
		}
		x.Free()
		logvar.Free()
		check("encode", m.EncodeBytes(n, h, w), be.Peak()-base)
		be.ResetPeak()
		y, err := m.Decode(mean)
		if err != nil {
			t.Fatal(err)
		}
		check("decode", m.DecodeBytes(n, h/m.cfg.Downscale(), w/m.cfg.Downscale()), be.Peak()-base)
		y.Free()
		mean.Free()
	}
}

// maxRelErr is max|a−b| / max|b|: the error relative to the reference's scale, so values
// near zero do not dominate.
func maxRelErr(a, b []float32) float64 {
	var d, s float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		s = max(s, math.Abs(float64(b[i])))
	}
	return d / max(s, 1e-30)
}

// TestEncodeMemoryWithoutLoading: the config-only estimate is the loaded model's own.
func TestEncodeMemoryWithoutLoading(t *testing.T) {
	e, _ := newEngine(t)
	m := randomTiny(t, e)
	for _, sz := range [][3]int{{1, 32, 32}, {3, 48, 64}} {
		w, a := EncodeMemory(e, m.Config(), sz[0], sz[1], sz[2])
		if w != m.WeightBytes() || a != m.EncodeBytes(sz[0], sz[1], sz[2]) {
			t.Errorf("EncodeMemory%v = %d, %d; the model says %d, %d", sz, w, a, m.WeightBytes(), m.EncodeBytes(sz[0], sz[1], sz[2]))
		}
		w, a = DecodeMemory(e, m.Config(), sz[0], sz[1], sz[2])
		if w != m.WeightBytes() || a != m.DecodeBytes(sz[0], sz[1], sz[2]) {
			t.Errorf("DecodeMemory%v = %d, %d; the model says %d, %d", sz, w, a, m.WeightBytes(), m.DecodeBytes(sz[0], sz[1], sz[2]))
		}
	}
}
