package vae

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

func newEngine(t *testing.T) (*engine.Engine, *cpu.Backend[float32]) {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return engine.New(be), be
}

// diskTensor says how a test checkpoint stores one parameter.
type diskTensor struct {
	name  string
	dtype safetensors.DType
	shape []int
	skip  bool
}

// writeCheckpoint writes m's config and weights into dir as one safetensors file named
// file, with edit choosing each tensor's stored name, dtype and shape (nil: as in m).
func writeCheckpoint(t *testing.T, m *AutoencoderKL, dir, file string, edit func(*diskTensor)) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	var values [][]float32
	for _, p := range m.Parameters() {
		d := diskTensor{name: p.Name, dtype: safetensors.F32, shape: p.Shape()}
		if edit != nil {
			edit(&d)
		}
		if d.skip {
			continue
		}
		v, err := p.ToHost()
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, safetensors.Spec{Name: d.name, DType: d.dtype, Shape: d.shape})
		values = append(values, v)
	}
	w, err := safetensors.Create(filepath.Join(dir, file), specs, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	for i, sp := range specs {
		if err := w.WriteFloat32(sp.Name, values[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// toLegacy stores the attention layers under their legacy names.
func toLegacy(d *diskTensor) {
	for _, l := range attentionLayers() {
		d.name = strings.Replace(d.name, ".attentions.0."+l[0]+".", ".attentions.0."+l[1]+".", 1)
	}
}

// hostParams returns every parameter's values by name.
func hostParams(t *testing.T, m *AutoencoderKL) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, p := range m.Parameters() {
		v, err := p.ToHost()
		if err != nil {
			t.Fatal(err)
		}
		out[p.Name] = v
	}
	return out
}

func sameParams(t *testing.T, a, b *AutoencoderKL) {
	t.Helper()
	pa, pb := hostParams(t, a), hostParams(t, b)
	if len(pa) != len(pb) {
		t.Fatalf("%d parameters vs %d", len(pa), len(pb))
	}
	for n, v := range pa {
		if !slices.Equal(v, pb[n]) {
			t.Fatalf("parameter %s differs", n)
		}
	}
}

func randomTiny(t *testing.T, e *engine.Engine) *AutoencoderKL {
	t.Helper()
	m, err := New(e, tinyConfig(), 7)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

// roundTrip saves the model loaded from src into a fresh directory and checks that every
// file Save wrote is byte-identical to the one loaded.
func roundTrip(t *testing.T, e *engine.Engine, src string, opt LoadOptions, weights string) *AutoencoderKL {
	t.Helper()
	m, err := Load(e, src, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	out := filepath.Join(t.TempDir(), "vae")
	if err := m.Save(out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ConfigFile, weights} {
		a, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: saved file differs from the loaded one (%d vs %d bytes)", f, len(b), len(a))
		}
	}
	return m
}

func TestLoadSaveRoundTrip(t *testing.T) {
	e, _ := newEngine(t)
	ref := randomTiny(t, e)
	tests := []struct {
		name    string
		file    string
		variant string
		edit    func(*diskTensor)
	}{
		{name: "f32", file: WeightsFile("")},
		{name: "bf16 variant", file: WeightsFile("bf16"), variant: "bf16", edit: func(d *diskTensor) { d.dtype = safetensors.BF16 }},
		{name: "mixed dtypes", file: WeightsFile(""), edit: func(d *diskTensor) {
			switch {
			case strings.Contains(d.name, "norm"):
				d.dtype = safetensors.F32
			case strings.Contains(d.name, "encoder."):
				d.dtype = safetensors.F16
			default:
				d.dtype = safetensors.BF16
			}
		}},
		{name: "legacy attention names", file: WeightsFile(""), edit: toLegacy},
		{name: "attention linears as 1x1 convs", file: WeightsFile(""), edit: func(d *diskTensor) {
			if isAttentionLinear(d.name) {
				d.shape = append(d.shape, 1, 1)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeCheckpoint(t, ref, dir, tc.file, tc.edit)
			m := roundTrip(t, e, dir, LoadOptions{Variant: tc.variant}, tc.file)
			if tc.edit == nil || tc.name == "legacy attention names" || strings.Contains(tc.name, "1x1") {
				sameParams(t, ref, m) // lossless storage: the same values as the reference
			}
		})
	}
}

// TestLoadLegacyNames checks that the legacy attention names load the same values into the
// same parameters as the current ones.
func TestLoadLegacyNames(t *testing.T) {
	e, _ := newEngine(t)
	ref := randomTiny(t, e)
	dir := t.TempDir()
	writeCheckpoint(t, ref, dir, WeightsFile(""), func(d *diskTensor) {
		d.name = strings.Replace(d.name, ".to_out.0.", ".proj_attn.", 1)
		d.name = strings.Replace(d.name, ".to_q.", ".query.", 1)
	})
	m, err := Load(e, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	sameParams(t, ref, m)
}

func TestLoadVariantAndShards(t *testing.T) {
	e, _ := newEngine(t)
	ref := randomTiny(t, e)

	t.Run("missing variant falls back to the plain weights", func(t *testing.T) {
		dir := t.TempDir()
		writeCheckpoint(t, ref, dir, WeightsFile(""), nil)
		roundTrip(t, e, dir, LoadOptions{Variant: "fp16"}, WeightsFile(""))
	})

	t.Run("sharded fp16 variant", func(t *testing.T) {
		dir := t.TempDir()
		writeCheckpoint(t, ref, t.TempDir(), WeightsFile(""), nil) // for config.json below
		var specs []safetensors.Spec
		vals := hostParams(t, ref)
		for _, p := range ref.Parameters() {
			specs = append(specs, safetensors.Spec{Name: p.Name, DType: safetensors.F16, Shape: p.Shape()})
		}
		// The Hub names a variant's shards "<base>.fp16-0000k-of-0000n.safetensors" and its
		// index "<base>.safetensors.index.fp16.json".
		w, err := safetensors.CreateSharded(dir, WeightsBase+".fp16", specs, map[string]string{"format": "pt"}, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range specs {
			if err := w.WriteFloat32(sp.Name, vals[sp.Name]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(w.IndexPath(), filepath.Join(dir, WeightsBase+".safetensors.index.fp16.json")); err != nil {
			t.Fatal(err)
		}
		cfg, _ := json.Marshal(ref.cfg)
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Load(e, dir, LoadOptions{Variant: "fp16"})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		// Stored as F16, so compare with the F16-rounded reference.
		got := hostParams(t, m)
		for n, v := range vals {
			for i := range v {
				if want := safetensors.F16ToFloat32(safetensors.Float32ToF16(v[i])); got[n][i] != want {
					t.Fatalf("%s[%d] = %g, want %g", n, i, got[n][i], want)
				}
			}
		}
		out := t.TempDir()
		if err := m.Save(out); err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Open(filepath.Join(out, WeightsFile("fp16")))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, sp := range specs {
			ti, ok := f.Info(sp.Name)
			if !ok || ti.DType != safetensors.F16 || !slices.Equal(ti.Shape, sp.Shape) {
				t.Fatalf("saved %s: %+v, want F16 %v", sp.Name, ti, sp.Shape)
			}
		}
	})
}

func TestLoadErrors(t *testing.T) {
	e, be := newEngine(t)
	ref := randomTiny(t, e)
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		target  error
		wantMsg []string
	}{
		{name: "missing tensor", setup: func(t *testing.T, dir string) {
			writeCheckpoint(t, ref, dir, WeightsFile(""), func(d *diskTensor) { d.skip = d.name == "decoder.conv_out.bias" })
		}, target: ErrWeights, wantMsg: []string{`"decoder.conv_out.bias" missing`, WeightsFile("")}},
		{name: "unknown tensor", setup: func(t *testing.T, dir string) {
			writeCheckpoint(t, ref, dir, WeightsFile(""), func(d *diskTensor) {
				if d.name == "encoder.conv_in.bias" {
					d.name = "encoder.conv_in.extra"
				}
			})
		}, target: ErrWeights, wantMsg: []string{`unknown tensor "encoder.conv_in.extra"`, WeightsFile("")}},
		{name: "wrong shape", setup: func(t *testing.T, dir string) {
			writeCheckpoint(t, ref, dir, WeightsFile(""), func(d *diskTensor) {
				if d.name == "quant_conv.weight" {
					d.shape = []int{8, 8, 1, 1, 1}
				}
			})
		}, target: ErrWeights, wantMsg: []string{`"quant_conv.weight"`, "[8 8 1 1 1]", "[8 8 1 1]"}},
		{name: "1x1 shape only for attention", setup: func(t *testing.T, dir string) {
			writeCheckpoint(t, ref, dir, WeightsFile(""), func(d *diskTensor) {
				if d.name == "encoder.conv_norm_out.weight" {
					d.shape = []int{32, 1, 1}
				}
			})
		}, target: ErrWeights, wantMsg: []string{`"encoder.conv_norm_out.weight"`}},
		{name: "unsupported dtype", setup: func(t *testing.T, dir string) {
			writeCheckpoint(t, ref, dir, WeightsFile(""), func(d *diskTensor) {
				if d.name == "decoder.conv_in.bias" {
					d.dtype = safetensors.F64
				}
			})
		}, target: ErrWeights, wantMsg: []string{`"decoder.conv_in.bias"`, "F64"}},
		{name: "legacy and current name both", setup: func(t *testing.T, dir string) {
			// to_k's bias stored as "query.bias": the file then holds to_q's bias twice.
			writeCheckpoint(t, ref, dir, WeightsFile(""), func(d *diskTensor) {
				if d.name == "encoder.mid_block.attentions.0.to_k.bias" {
					d.name = "encoder.mid_block.attentions.0.query.bias"
				}
			})
		}, target: ErrWeights, wantMsg: []string{`"encoder.mid_block.attentions.0.query.bias"`, "are the same parameter"}},
		{name: "no weights", setup: func(t *testing.T, dir string) {
			writeCheckpoint(t, ref, dir, "other.safetensors", nil)
		}, target: os.ErrNotExist, wantMsg: []string{"no diffusion_pytorch_model weights"}},
		{name: "no config", setup: func(t *testing.T, dir string) {}, target: ErrConfig},
		{name: "bad config", setup: func(t *testing.T, dir string) {
			writeCheckpoint(t, ref, dir, WeightsFile(""), nil)
			if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"act_fn":"relu"}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, target: ErrConfig, wantMsg: []string{`act_fn "relu"`, ConfigFile}},
		{name: "config of another architecture", setup: func(t *testing.T, dir string) {
			writeCheckpoint(t, ref, dir, WeightsFile(""), nil)
			c := tinyConfig()
			c.BlockOutChannels = []int{16, 32, 64}
			raw, _ := json.Marshal(c)
			if err := os.WriteFile(filepath.Join(dir, ConfigFile), raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}, target: ErrWeights, wantMsg: []string{"shape"}},
		{name: "corrupt weights", setup: func(t *testing.T, dir string) {
			writeCheckpoint(t, ref, dir, WeightsFile(""), nil)
			if err := os.WriteFile(filepath.Join(dir, WeightsFile("")), []byte("not a safetensors file"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, target: safetensors.ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			_, before := be.Stats()
			m, err := Load(e, dir, LoadOptions{})
			if err == nil {
				m.Free()
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, tc.target) {
				t.Errorf("err = %v, want %v", err, tc.target)
			}
			for _, s := range tc.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v, want it to mention %q", err, s)
				}
			}
			if _, after := be.Stats(); after != before {
				t.Errorf("a failed load leaked %d bytes", after-before)
			}
		})
	}
}
