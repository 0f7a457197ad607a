package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/safetensors"
)

// Files of a model directory (diffusers pipeline layout).
const (
	ModelIndexFile     = "model_index.json"
	TransformerDir     = "transformer"
	TextEncoderDir     = "text_encoder"
	ConfigFile         = "config.json"
	TransformerWeights = "diffusion_pytorch_model.safetensors"
	TextEncoderWeights = "model.safetensors"
	// LoRAWeightsFile is the adapter file name inside a checkpoint (diffusers' name).
	LoRAWeightsFile = "pytorch_lora_weights.safetensors"
)

// ClassName is the config's _class_name.
const ClassName = "SimpleTunerDiTTransformer2DModel"

type configFile struct {
	ClassName string `json:"_class_name"`
	Config
}

// Save writes the base weights and configs to dir in the diffusers layout (float32),
// creating dir. Files are written whole then renamed, so a crash leaves no half file under
// its final name.
func (m *Model) Save(dir string) error {
	var tr, te []safetensors.Tensor
	for _, p := range m.params {
		v, err := p.ToHost()
		if err != nil {
			return fmt.Errorf("model: read %s: %w", p.Name, err)
		}
		name, isText := strings.CutPrefix(p.Name, textPrefix)
		t, err := safetensors.FromFloat32(name, safetensors.F32, p.Shape(), v)
		if err != nil {
			return fmt.Errorf("model: encode %s: %w", p.Name, err)
		}
		if isText {
			te = append(te, t)
		} else {
			tr = append(tr, t)
		}
	}
	cfg, err := json.MarshalIndent(configFile{ClassName, m.cfg}, "", "  ")
	if err != nil {
		return fmt.Errorf("model: encode config: %w", err)
	}
	index, _ := json.MarshalIndent(map[string]any{
		"_class_name":  "SimpleTunerDiTPipeline",
		TransformerDir: []string{"simpletuner", ClassName},
		TextEncoderDir: []string{"simpletuner", "SimpleTunerCaptionEncoder"},
	}, "", "  ")
	meta := map[string]string{"format": "pt", "flavour": m.cfg.Flavour}
	writes := []struct {
		path string
		data func() ([]byte, error)
	}{
		{filepath.Join(dir, TransformerDir, ConfigFile), func() ([]byte, error) { return cfg, nil }},
		{filepath.Join(dir, TransformerDir, TransformerWeights), func() ([]byte, error) { return safetensors.Marshal(tr, meta) }},
		{filepath.Join(dir, TextEncoderDir, ConfigFile), func() ([]byte, error) { return cfg, nil }},
		{filepath.Join(dir, TextEncoderDir, TextEncoderWeights), func() ([]byte, error) { return safetensors.Marshal(te, meta) }},
		{filepath.Join(dir, ModelIndexFile), func() ([]byte, error) { return index, nil }},
	}
	for _, w := range writes {
		data, err := w.data()
		if err != nil {
			return fmt.Errorf("model: encode %s: %w", w.path, err)
		}
		if err := writeFileAtomic(w.path, data); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	return nil
}

// ReadConfig reads transformer/config.json of a model directory.
func ReadConfig(dir string) (Config, error) {
	data, err := os.ReadFile(filepath.Join(dir, TransformerDir, ConfigFile))
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrWeights, err)
	}
	var cf configFile
	if err := json.Unmarshal(data, &cf); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %w", ErrWeights, ConfigFile, err)
	}
	if cf.ClassName != ClassName {
		return Config{}, fmt.Errorf("%w: %s is a %q, want %q", ErrWeights, dir, cf.ClassName, ClassName)
	}
	cf.Config.fillDefaults()
	if err := cf.Config.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrWeights, err)
	}
	return cf.Config, nil
}

// Load reads a model directory written by Save. Every weight must be present with the
// configured shape, and no unknown tensor may appear (a mismatched directory is an error,
// not a partial load).
func Load(e *engine.Engine, dir string) (*Model, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	m := &Model{e: e, cfg: cfg, byName: map[string]*engine.Parameter{}, adapters: map[string]Adapter{}, pos: map[[2]int][]float32{}}
	tensors := map[string]safetensors.Tensor{}
	for _, f := range []struct{ path, prefix string }{
		{filepath.Join(dir, TransformerDir, TransformerWeights), ""},
		{filepath.Join(dir, TextEncoderDir, TextEncoderWeights), textPrefix},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrWeights, err)
		}
		ts, _, err := safetensors.Unmarshal(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrWeights, f.path, err)
		}
		for _, t := range ts {
			tensors[f.prefix+t.Name] = t
		}
	}
	specs := cfg.paramShapes()
	if len(tensors) != len(specs) {
		return nil, fmt.Errorf("%w: %s holds %d tensors, the config needs %d", ErrWeights, dir, len(tensors), len(specs))
	}
	err = engine.Catch(func() {
		for _, sp := range specs {
			p := e.NewParameter(sp.name, e.Zeros(sp.shape...))
			m.params = append(m.params, p)
			m.byName[p.Name] = p
		}
	})
	if err == nil {
		for _, p := range m.params {
			if err = uploadParam(e, p, tensors); err != nil {
				break
			}
		}
	}
	if err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// uploadParam copies the tensor named like p into p after checking its shape.
func uploadParam(e *engine.Engine, p *engine.Parameter, ts map[string]safetensors.Tensor) error {
	t, ok := ts[p.Name]
	if !ok {
		return fmt.Errorf("%w: tensor %s missing", ErrWeights, p.Name)
	}
	if !slicesEqual(t.Shape, p.Shape()) {
		return fmt.Errorf("%w: tensor %s has shape %v, want %v", ErrWeights, p.Name, t.Shape, p.Shape())
	}
	v, err := t.Float32()
	if err != nil {
		return fmt.Errorf("%w: tensor %s: %w", ErrWeights, p.Name, err)
	}
	if err := e.Backend().Upload(p.Buffer(), v); err != nil {
		return fmt.Errorf("model: upload %s: %w", p.Name, err)
	}
	return nil
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FromPretrained implements --pretrained_model_name_or_path for dit: a local directory in
// the Save layout is loaded; an empty path or one that does not exist starts from scratch
// with the fallback config (the flavour's) and seed. loaded reports which happened.
func FromPretrained(e *engine.Engine, path string, fallback Config, seed uint64) (m *Model, loaded bool, err error) {
	if path != "" {
		if _, statErr := os.Stat(path); statErr == nil {
			m, err = Load(e, path)
			return m, err == nil, err
		} else if !errors.Is(statErr, fs.ErrNotExist) {
			return nil, false, fmt.Errorf("%w: %w", ErrWeights, statErr)
		}
	}
	m, err = New(e, fallback, seed)
	return m, false, err
}
