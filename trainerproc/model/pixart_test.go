package model

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

// The PixArt fixtures come from diffusers' own PixArtTransformer2DModel
// (testdata/gen_pixart.py says how to regenerate them).
var (
	pixartDir = filepath.Join("testdata", "pixart_tiny")
	pixartIO  = filepath.Join("testdata", "pixart_io.safetensors")
)

// newCPUEngine is a 2-thread float32 CPU engine closed with the test.
func newCPUEngine(t *testing.T) *engine.Engine {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return engine.New(be)
}

// readFixture returns every tensor of a safetensors file as float32 with its shape.
func readFixture(t *testing.T, path string) (map[string][]float32, map[string][]int) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals, shapes := map[string][]float32{}, map[string][]int{}
	for _, name := range f.Names() {
		ti, _ := f.Info(name)
		v := make([]float32, ti.Numel())
		if err := f.Float32Into(name, v); err != nil {
			t.Fatal(err)
		}
		vals[name], shapes[name] = v, ti.Shape
	}
	return vals, shapes
}

func loadPixArt(t *testing.T, e *engine.Engine, variant string) *Model {
	t.Helper()
	m, err := LoadTransformer(e, pixartDir, variant)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

// pixartStep runs the fixture batch through m with y as caption states: the prediction,
// SimpleTuner's loss (MSE of the first 4 channels against ε) and every parameter's gradient.
func pixartStep(t *testing.T, m *Model, io map[string][]float32, shapes map[string][]int, y []float32) map[string][]float32 {
	t.Helper()
	e := m.Engine()
	got := map[string][]float32{}
	host := func(x *engine.Tensor) []float32 {
		v, err := x.ToHost()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	err := engine.Catch(func() {
		s := e.Scope()
		defer s.Close()
		xt := e.FromHost(io["xt"], shapes["xt"]...)
		c := Embeds{Y: e.FromHost(y, shapes["y"]...), Mask: io["mask"], Len: shapes["y"][1]}
		pred, err := m.ForwardEmbeds(xt, io["timesteps"], c)
		if err != nil {
			t.Fatal(err)
		}
		eps := e.FromHost(io["eps"], shapes["eps"]...)
		loss := e.MSELoss(e.Slice(pred, 1, 0, m.Config().InChannels), eps)
		if err := e.Backward(loss); err != nil {
			t.Fatal(err)
		}
		got["pred"], got["loss"] = host(pred), host(loss)
		for _, p := range m.Trainable() {
			got["grad."+p.Name] = host(p.Grad())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	engine.ZeroGrads(m.Trainable())
	return got
}

// TestPixArtParity compares the prediction, the loss and every gradient with diffusers'
// (fp32 relative error max|go − torch| / max|torch| below 1e-4), with gradient
// checkpointing off and on; checkpointing must give the very same numbers.
func TestPixArtParity(t *testing.T) {
	io, shapes := readFixture(t, pixartIO)
	e := newCPUEngine(t)
	m := loadPixArt(t, e, "")
	if cfg := m.Config(); !cfg.PixArt || cfg.Outputs() != 8 || cfg.InterpolationScale != 2 || cfg.TextWidth != 24 {
		t.Fatalf("config %+v", cfg)
	}
	plain := pixartStep(t, m, io, shapes, io["y"])
	m.SetGradientCheckpointing(true)
	ckpt := pixartStep(t, m, io, shapes, io["y"])
	m.SetGradientCheckpointing(false)

	var gscale float64
	for name, v := range io {
		if strings.HasPrefix(name, "grad.") {
			gscale = math.Max(gscale, maxAbs(v))
		}
	}
	names := []string{"pred", "loss"}
	for _, p := range m.Params() {
		names = append(names, "grad."+p.Name)
	}
	worst, worstName := 0.0, ""
	for _, name := range names {
		g, w := plain[name], io[name]
		if len(g) != len(w) {
			t.Fatalf("%s: %d values here, %d in the fixture", name, len(g), len(w))
		}
		// Checkpointing recomputes the same values; only the order in which the blocks'
		// contributions to shared inputs (caption states, modulation) are summed may differ.
		if d := maxRelErr(ckpt[name], g); d > 1e-6 {
			t.Errorf("%s: gradient checkpointing changed the result (rel %.3g)", name, d)
		}
		// Key-projection biases have a structurally zero gradient (softmax ignores a
		// constant added to a row of scores): both sides hold round-off, checked against
		// the gradients' scale.
		if strings.HasSuffix(name, "to_k.bias") {
			if a, b := maxAbs(g), maxAbs(w); a > 1e-6*gscale || b > 1e-6*gscale {
				t.Errorf("%s: structurally zero gradient is %.3g here, %.3g in diffusers", name, a, b)
			}
			continue
		}
		rel := maxRelErr(g, w)
		if rel > worst || math.IsNaN(rel) {
			worst, worstName = rel, name
		}
		if rel > parityTol || math.IsNaN(rel) {
			t.Errorf("%s: relative error %.3g > %g", name, rel, parityTol)
		}
	}
	t.Logf("loss %.7g (diffusers %.7g); pred rel err %.3g, loss %.3g; worst of %d tensors %.3g (%s)",
		plain["loss"][0], io["loss"][0], maxRelErr(plain["pred"], io["pred"]), maxRelErr(plain["loss"], io["loss"]), len(names), worst, worstName)
}

// TestPixArtPaddingIgnored changes the caption states at padded positions: the prediction
// must not move (cross-attention is mask-aware).
func TestPixArtPaddingIgnored(t *testing.T) {
	io, shapes := readFixture(t, pixartIO)
	e := newCPUEngine(t)
	m := loadPixArt(t, e, "")
	base := pixartStep(t, m, io, shapes, io["y"])
	l, w := shapes["y"][1], shapes["y"][2]
	y := slices.Clone(io["y"])
	changed := 0
	for i, keep := range io["mask"] {
		if keep == 0 {
			for j := range w {
				y[i*w+j] = 100 + float32(j)
			}
			changed++
		}
	}
	if changed == 0 || changed == len(io["mask"]) || l == 0 {
		t.Fatalf("fixture mask %v has no padding to test", io["mask"])
	}
	got := pixartStep(t, m, io, shapes, y)
	if d := maxRelErr(got["pred"], base["pred"]); d != 0 {
		t.Errorf("padded caption positions changed the prediction (rel %.3g)", d)
	}
	// And the real positions do matter (the test would pass for a model ignoring captions).
	y[0] += 1
	if d := maxRelErr(pixartStep(t, m, io, shapes, y)["pred"], base["pred"]); d == 0 {
		t.Error("a real caption position did not change the prediction")
	}
}

// TestPixArtSaveRoundTrip loads each variant and saves it: the saved file must hold exactly
// the source's tensor names, shapes, dtypes and bytes, and config.json byte for byte.
func TestPixArtSaveRoundTrip(t *testing.T) {
	e := newCPUEngine(t)
	for _, tc := range []struct{ variant, file string }{
		{"", TransformerWeights},
		{"bf16", "diffusion_pytorch_model.bf16.safetensors"},
	} {
		t.Run("variant="+tc.variant, func(t *testing.T) {
			m := loadPixArt(t, e, tc.variant)
			out := t.TempDir()
			if err := m.SaveTransformer(out); err != nil {
				t.Fatal(err)
			}
			wantCfg, _ := os.ReadFile(filepath.Join(pixartDir, ConfigFile))
			gotCfg, err := os.ReadFile(filepath.Join(out, ConfigFile))
			if err != nil || !bytes.Equal(gotCfg, wantCfg) {
				t.Errorf("config.json differs from the source (%v)", err)
			}
			sameTensors(t, filepath.Join(pixartDir, tc.file), filepath.Join(out, TransformerWeights))
		})
	}
}

// sameTensors requires two safetensors files to hold the same tensors byte for byte.
func sameTensors(t *testing.T, wantPath, gotPath string) {
	t.Helper()
	want, err := safetensors.Open(wantPath)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	got, err := safetensors.Open(gotPath)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	wn, gn := slices.Sorted(slices.Values(want.Names())), slices.Sorted(slices.Values(got.Names()))
	if !slices.Equal(wn, gn) {
		t.Fatalf("names differ:\n got %v\nwant %v", gn, wn)
	}
	for _, name := range wn {
		wi, _ := want.Info(name)
		gi, _ := got.Info(name)
		if wi.DType != gi.DType || !slices.Equal(wi.Shape, gi.Shape) {
			t.Errorf("%s: %s %v saved as %s %v", name, wi.DType, wi.Shape, gi.DType, gi.Shape)
			continue
		}
		wb, gb := make([]byte, wi.Size()), make([]byte, gi.Size())
		if err := want.ReadInto(name, wb); err != nil {
			t.Fatal(err)
		}
		if err := got.ReadInto(name, gb); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(wb, gb) {
			t.Errorf("%s: bytes differ", name)
		}
	}
}

// TestPixArtBF16 checks that the BF16 variant loads to the F32 weights rounded to bf16, and
// that RoundBF16 does that rounding.
func TestPixArtBF16(t *testing.T) {
	e := newCPUEngine(t)
	f32 := loadPixArt(t, e, "")
	b16 := loadPixArt(t, e, "bf16")
	if err := f32.RoundBF16(); err != nil {
		t.Fatal(err)
	}
	for _, p := range f32.Params() {
		a, _ := p.ToHost()
		b, _ := b16.Param(p.Name).ToHost()
		if !slices.Equal(a, b) {
			t.Errorf("%s: RoundBF16 of the F32 weights differs from the BF16 file", p.Name)
		}
	}
}

// TestPixArtSaveNew saves a model built by New: float32 weights and a config that reads
// back to the same Config.
func TestPixArtSaveNew(t *testing.T) {
	cfg, err := ReadTransformerConfig(pixartDir)
	if err != nil {
		t.Fatal(err)
	}
	e := newCPUEngine(t)
	m, err := New(e, cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	out := t.TempDir()
	if err := m.SaveTransformer(out); err != nil {
		t.Fatal(err)
	}
	back, err := LoadTransformer(e, out, "")
	if err != nil {
		t.Fatal(err)
	}
	defer back.Free()
	if back.Config() != cfg {
		t.Errorf("config read back as %+v, want %+v", back.Config(), cfg)
	}
	for _, p := range m.Params() {
		a, _ := p.ToHost()
		b, _ := back.Param(p.Name).ToHost()
		if !slices.Equal(a, b) || back.source.dtypes[p.Name] != safetensors.F32 {
			t.Errorf("%s: not saved as the same float32 values", p.Name)
		}
	}
	dit, err := Flavour("tiny")
	if err != nil {
		t.Fatal(err)
	}
	dm, err := New(e, dit, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Free()
	if err := dm.SaveTransformer(t.TempDir()); !errors.Is(err, ErrConfig) {
		t.Errorf("SaveTransformer of a dit model: %v, want ErrConfig", err)
	}
}

// writeConfig writes a transformer folder's config.json with the given JSON text.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestReadTransformerConfig checks diffusers' defaults, their null resolutions, and the
// refusal of every setting this model does not compute.
func TestReadTransformerConfig(t *testing.T) {
	const head = `{"_class_name": "PixArtTransformer2DModel", "caption_channels": 4096, "use_additional_conditions": false`
	sigma900 := head + `, "num_layers": 42, "num_attention_heads": 16, "attention_head_dim": 72,
		"cross_attention_dim": 1152, "in_channels": 4, "out_channels": 8, "patch_size": 2,
		"sample_size": 128, "interpolation_scale": 2, "norm_type": "ada_norm_single",
		"norm_elementwise_affine": false, "norm_eps": 1e-06, "activation_fn": "gelu-approximate",
		"attention_bias": true, "num_embeds_ada_norm": 1000, "upcast_attention": false}`
	for _, tc := range []struct {
		name, json string
		check      func(Config) bool
		errText    string // "" when it must load
	}{
		{"900M", sigma900, func(c Config) bool {
			return c.NumLayers == 42 && c.Width() == 1152 && c.TextWidth == 4096 && c.Outputs() == 8 &&
				c.InterpolationScale == 2 && c.SampleSize == 128 && c.MaxTokens == PixArtCaptionLen && c.ParamCount() == 908433824
		}, ""},
		{"defaults", head + `}`, func(c Config) bool {
			return c.NumLayers == 28 && c.Width() == 1152 && c.InChannels == 4 && c.Outputs() == 8 && c.PatchSize == 2 &&
				c.SampleSize == 128 && c.InterpolationScale == 2 && c.NormEps == 1e-6
		}, ""},
		{"interpolation null small", head + `, "sample_size": 32, "interpolation_scale": null}`, func(c Config) bool { return c.InterpolationScale == 1 }, ""},
		{"interpolation null 256", head + `, "sample_size": 256, "interpolation_scale": null}`, func(c Config) bool { return c.InterpolationScale == 4 }, ""},
		{"out_channels null", head + `, "out_channels": null}`, func(c Config) bool { return c.Outputs() == 4 }, ""},
		{"upcast accepted", head + `, "upcast_attention": true}`, func(Config) bool { return true }, ""},
		{"class", `{"_class_name": "Transformer2DModel", "caption_channels": 4096}`, nil, "want \"PixArtTransformer2DModel\""},
		{"norm_type", head + `, "norm_type": "ada_norm_zero"}`, nil, "norm_type"},
		{"additional conditions", head[:strings.LastIndex(head, ",")] + `, "use_additional_conditions": true}`, nil, "use_additional_conditions"},
		{"additional conditions null at 128", head[:strings.LastIndex(head, ",")] + `}`, nil, "use_additional_conditions"},
		{"cross dim", head + `, "cross_attention_dim": 2048}`, nil, "cross_attention_dim"},
		{"cross dim null", head + `, "cross_attention_dim": null}`, nil, "cross_attention_dim"},
		{"activation", head + `, "activation_fn": "geglu"}`, nil, "activation_fn"},
		{"bias", head + `, "attention_bias": false}`, nil, "attention_bias"},
		{"affine", head + `, "norm_elementwise_affine": true}`, nil, "norm_elementwise_affine"},
		{"dropout", head + `, "dropout": 0.1}`, nil, "dropout"},
		{"ada embeds null", head + `, "num_embeds_ada_norm": null}`, nil, "num_embeds_ada_norm"},
		{"no caption channels", `{"_class_name": "PixArtTransformer2DModel", "use_additional_conditions": false}`, nil, "caption_channels"},
		{"bad type", head + `, "num_layers": "many"}`, nil, "num_layers"},
		{"layers zero", head + `, "num_layers": 0}`, nil, "num_layers"},
		{"not json", `{`, nil, "config.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ReadTransformerConfig(writeConfig(t, tc.json))
			if tc.errText == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !tc.check(c) {
					t.Errorf("config %+v", c)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("error %v, want ErrConfig mentioning %q", err, tc.errText)
			}
		})
	}
	if _, err := ReadTransformerConfig(t.TempDir()); !errors.Is(err, ErrWeights) {
		t.Errorf("missing config.json: %v, want ErrWeights", err)
	}
}

// TestLoadTransformerErrors checks that a folder that does not match its config is refused
// with an error naming the problem.
func TestLoadTransformerErrors(t *testing.T) {
	e := newCPUEngine(t)
	cfgText, err := os.ReadFile(filepath.Join(pixartDir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	src, shapes := readFixture(t, filepath.Join(pixartDir, TransformerWeights))
	write := func(t *testing.T, edit func(ts map[string]safetensors.Tensor)) string {
		dir := writeConfig(t, string(cfgText))
		ts := map[string]safetensors.Tensor{}
		for name, v := range src {
			st, err := safetensors.FromFloat32(name, safetensors.F32, shapes[name], v)
			if err != nil {
				t.Fatal(err)
			}
			ts[name] = st
		}
		edit(ts)
		var list []safetensors.Tensor
		for _, st := range ts {
			list = append(list, st)
		}
		data, err := safetensors.Marshal(list, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, TransformerWeights), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, tc := range []struct {
		name, variant, want string
		edit                func(ts map[string]safetensors.Tensor)
	}{
		{"missing", "", "proj_out.bias missing", func(ts map[string]safetensors.Tensor) { delete(ts, "proj_out.bias") }},
		{"extra", "", "no place", func(ts map[string]safetensors.Tensor) {
			ts["extra.weight"], _ = safetensors.FromFloat32("extra.weight", safetensors.F32, []int{1}, []float32{1})
		}},
		{"shape", "", "shape", func(ts map[string]safetensors.Tensor) {
			ts["proj_out.bias"], _ = safetensors.FromFloat32("proj_out.bias", safetensors.F32, []int{2}, []float32{1, 2})
		}},
		{"dtype", "", "F32, F16 or BF16", func(ts map[string]safetensors.Tensor) {
			ts["proj_out.bias"], _ = safetensors.FromInt32("proj_out.bias", []int{32}, make([]int32, 32))
		}},
		{"variant", "fp16", "--variant", func(map[string]safetensors.Tensor) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := LoadTransformer(e, write(t, tc.edit), tc.variant)
			if err == nil {
				m.Free()
			}
			if !errors.Is(err, ErrWeights) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrWeights mentioning %q", err, tc.want)
			}
		})
	}
}

// TestLoadTransformerSharded loads the weights from a sharded index (variant bf16).
func TestLoadTransformerSharded(t *testing.T) {
	e := newCPUEngine(t)
	ref := loadPixArt(t, e, "bf16")
	cfgText, _ := os.ReadFile(filepath.Join(pixartDir, ConfigFile))
	dir := writeConfig(t, string(cfgText))
	var specs []safetensors.Spec
	for _, p := range ref.Params() {
		specs = append(specs, safetensors.Spec{Name: p.Name, DType: safetensors.BF16, Shape: p.Shape()})
	}
	w, err := safetensors.CreateSharded(dir, "diffusion_pytorch_model.bf16", specs, nil, 8<<10)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ref.Params() {
		v, _ := p.ToHost()
		if err := w.WriteFloat32(p.Name, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	// diffusers names a variant's index diffusion_pytorch_model.safetensors.index.<variant>.json.
	if err := os.Rename(w.IndexPath(), filepath.Join(dir, "diffusion_pytorch_model.safetensors.index.bf16.json")); err != nil {
		t.Fatal(err)
	}
	m, err := LoadTransformer(e, dir, "bf16")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	for _, p := range ref.Params() {
		a, _ := p.ToHost()
		b, _ := m.Param(p.Name).ToHost()
		if !slices.Equal(a, b) {
			t.Errorf("%s differs when read from shards", p.Name)
		}
	}
}

// TestForwardEmbedsInputs checks that every malformed batch is refused with ErrInput.
func TestForwardEmbedsInputs(t *testing.T) {
	e := newCPUEngine(t)
	m := loadPixArt(t, e, "")
	s := e.Scope()
	defer s.Close()
	x := e.Zeros(1, 4, 8, 8)
	y := e.Zeros(1, 3, 24)
	ok := Embeds{Y: y, Mask: []float32{1, 1, 0}, Len: 3}
	for _, tc := range []struct {
		name string
		x    *engine.Tensor
		ts   []float32
		c    Embeds
	}{
		{"channels", e.Zeros(1, 3, 8, 8), []float32{1}, ok},
		{"odd size", e.Zeros(1, 4, 7, 8), []float32{1}, ok},
		{"nil latents", nil, []float32{1}, ok},
		{"timesteps", x, []float32{1, 2}, ok},
		{"nan timestep", x, []float32{float32(math.NaN())}, ok},
		{"negative timestep", x, []float32{-1}, ok},
		{"caption width", x, []float32{1}, Embeds{Y: e.Zeros(1, 3, 16), Mask: ok.Mask, Len: 3}},
		{"caption len", x, []float32{1}, Embeds{Y: y, Mask: ok.Mask, Len: 2}},
		{"mask", x, []float32{1}, Embeds{Y: y, Mask: []float32{1}, Len: 3}},
		{"nil captions", x, []float32{1}, Embeds{Mask: ok.Mask, Len: 3}},
	} {
		if _, err := m.ForwardEmbeds(tc.x, tc.ts, tc.c); !errors.Is(err, ErrInput) {
			t.Errorf("%s: %v, want ErrInput", tc.name, err)
		}
	}
	if _, err := m.ForwardEmbeds(x, []float32{500}, ok); err != nil {
		t.Errorf("valid batch: %v", err)
	}
	dit, _ := Flavour("tiny")
	dm, err := New(e, dit, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Free()
	if _, err := dm.ForwardEmbeds(e.Zeros(1, 3, 16, 16), []float32{1}, ok); !errors.Is(err, ErrInput) {
		t.Errorf("ForwardEmbeds on a dit model: %v, want ErrInput", err)
	}
}

// TestPixArtAdapters attaches LoRA and LoKr to the latent model: a fresh adapter leaves the
// prediction unchanged, and only adapter weights get gradients.
func TestPixArtAdapters(t *testing.T) {
	io, shapes := readFixture(t, pixartIO)
	for _, ac := range []AdapterConfig{
		{Type: "standard", Rank: 4, Alpha: 4, Targets: []string{"to_q", "to_k", "to_v", "to_out.0"}},
		{Type: "lycoris", Lycoris: mustLycoris(t, `{"algo":"lokr","multiplier":1.0,"full_matrix":true,"linear_alpha":1,"factor":4,
			"apply_preset":{"target_module":["Attention","FeedForward"],"module_algo_map":{"Attention":{"factor":4},"FeedForward":{"factor":4}}}}`)},
	} {
		t.Run(ac.Type, func(t *testing.T) {
			e := newCPUEngine(t)
			m := loadPixArt(t, e, "")
			base := pixartStep(t, m, io, shapes, io["y"])
			if err := m.AttachAdapters(ac); err != nil {
				t.Fatal(err)
			}
			got := pixartStep(t, m, io, shapes, io["y"])
			if d := maxRelErr(got["pred"], base["pred"]); d > 1e-6 {
				t.Errorf("fresh adapters changed the prediction by %.3g", d)
			}
			if len(m.Trainable()) == 0 || len(m.Trainable()) == len(m.Params()) {
				t.Errorf("%d trainable tensors with adapters", len(m.Trainable()))
			}
		})
	}
}

// pixartStepPeak runs one training step of a PixArt model the way the family does (x_t from
// latents and noise on the device, ForwardEmbeds, the MSE of the first InChannels against ε,
// Backward) and returns the backend's peak of live bytes.
func pixartStepPeak(t *testing.T, cfg Config, ac *AdapterConfig, s TrainShape) int64 {
	t.Helper()
	be, e, m, free := newMeasuredModel(t, cfg)
	defer free()
	if ac != nil {
		if err := m.AttachAdapters(*ac); err != nil {
			t.Fatal(err)
		}
	}
	m.SetGradientCheckpointing(s.Checkpointing)
	l, b := s.CaptionLen, s.Batch
	mask := make([]float32, b*l)
	for i := range mask {
		mask[i] = float32(min(1, (i%l)/(l/2+1))) // some padding in every row
	}
	lat := b * cfg.InChannels * s.Height * s.Width
	be.ResetPeak()
	err := engine.Catch(func() {
		sc := e.Scope()
		defer sc.Close()
		rng := engine.NewRNG(3)
		y := e.RandN(rng, 0, 1, b, l, cfg.TextWidth)
		x0 := e.FromHost(make([]float32, lat), b, cfg.InChannels, s.Height, s.Width)
		eps := e.RandN(rng, 0, 1, b, cfg.InChannels, s.Height, s.Width)
		coef := func(v float32) *engine.Tensor { return e.FromHost(slices.Repeat([]float32{v}, b), b, 1, 1, 1) }
		xt := e.Add(e.Mul(coef(0.8), x0), e.Mul(coef(0.6), eps))
		pred, err := m.ForwardEmbeds(xt, slices.Repeat([]float32{500}, b), Embeds{Y: y, Mask: mask, Len: l})
		if err != nil {
			t.Fatal(err)
		}
		loss := e.MSELoss(e.Slice(pred, 1, 0, cfg.InChannels), eps)
		if _, err := loss.Item(); err != nil {
			t.Fatal(err)
		}
		if err := e.Backward(loss); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	engine.ZeroGrads(m.Trainable())
	return be.Peak()
}

// TestPixArtTrainingMemory checks the estimate of a PixArt step (latent input, caption
// states, 8 output channels; with and without checkpointing and adapters) against the CPU
// engine's peak.
func TestPixArtTrainingMemory(t *testing.T) {
	cfg, err := ReadTransformerConfig(pixartDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NumLayers = 4
	ws, err := cpu.New(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	lora := &AdapterConfig{Type: "standard", Rank: 4, Seed: 1}
	for _, tc := range []struct {
		name string
		s    TrainShape
		ac   *AdapterConfig
	}{
		{"full 16x24 batch 2", TrainShape{Batch: 2, Width: 24, Height: 16, CaptionLen: 12}, nil},
		{"full 32x32", TrainShape{Batch: 1, Width: 32, Height: 32, CaptionLen: 20}, nil},
		{"lora 16x16", TrainShape{Batch: 1, Width: 16, Height: 16, CaptionLen: 12}, lora},
		{"checkpointing 32x32", TrainShape{Batch: 1, Width: 32, Height: 32, CaptionLen: 20, Checkpointing: true}, nil},
		{"checkpointing 16x24 batch 2", TrainShape{Batch: 2, Width: 24, Height: 16, CaptionLen: 12, Checkpointing: true}, nil},
		{"checkpointing lora 32x32", TrainShape{Batch: 1, Width: 32, Height: 32, CaptionLen: 20, Checkpointing: true}, lora},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			s.Adapters = tc.ac
			est, err := cfg.TrainingMemory(s, ws)
			if err != nil {
				t.Fatal(err)
			}
			checkEstimate(t, tc.name, est.Device(), pixartStepPeak(t, cfg, tc.ac, tc.s))
		})
	}
}

// TestCheckpointingReplaysAdapterDropout: with LoRA dropout, the recomputed blocks must draw
// the same dropout masks as the forward pass (else the gradients would belong to another
// network), and the stream must end where it ends without checkpointing.
func TestCheckpointingReplaysAdapterDropout(t *testing.T) {
	io, shapes := readFixture(t, pixartIO)
	e := newCPUEngine(t)
	m := loadPixArt(t, e, "")
	if err := m.AttachAdapters(AdapterConfig{Type: "standard", Rank: 4, Dropout: 0.5, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	// Move the adapters off their zero start so their dropout reaches the output.
	for _, p := range m.Trainable() {
		v, _ := p.ToHost()
		for i := range v {
			v[i] += 0.05 * float32(i%7-3)
		}
		if err := e.Backend().Upload(p.Buffer(), v); err != nil {
			t.Fatal(err)
		}
	}
	run := func(ckpt bool) (map[string][]float32, [2]uint64) {
		m.SetGradientCheckpointing(ckpt)
		rng := engine.NewRNG(9)
		m.SetDropoutRNG(rng)
		defer m.SetDropoutRNG(nil)
		got := pixartStep(t, m, io, shapes, io["y"])
		s, o := rng.State()
		return got, [2]uint64{s, o}
	}
	plain, ps := run(false)
	ckpt, cs := run(true)
	if ps != cs {
		t.Errorf("the dropout stream ends at %v with checkpointing, %v without", cs, ps)
	}
	for name, g := range plain {
		if d := maxRelErr(ckpt[name], g); d > 1e-6 {
			t.Errorf("%s: checkpointing with dropout changed it (rel %.3g)", name, d)
		}
	}
	if len(plain) < 3 {
		t.Fatalf("only %d results compared", len(plain))
	}
}
