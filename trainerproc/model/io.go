package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"simpletuner/internal/atomicfile"
	"slices"
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
// creating dir. Weights stream to disk one parameter at a time (only that parameter's host
// copy is held, never the encoded file), and every file goes through a temporary that is
// fsynced and then renamed, so a crash leaves no half file under its final name.
func (m *Model) Save(dir string) error {
	type weightsFile struct {
		path   string
		specs  []safetensors.Spec
		params []*engine.Parameter
	}
	tr := &weightsFile{path: filepath.Join(dir, TransformerDir, TransformerWeights)}
	te := &weightsFile{path: filepath.Join(dir, TextEncoderDir, TextEncoderWeights)}
	for _, p := range m.params {
		name, isText := strings.CutPrefix(p.Name, textPrefix)
		f := tr
		if isText {
			f = te
		}
		f.specs = append(f.specs, safetensors.Spec{Name: name, DType: safetensors.F32, Shape: p.Shape()})
		f.params = append(f.params, p)
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
	writeWeights := func(f *weightsFile) error {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return fmt.Errorf("model: %w", err)
		}
		return writeParams(f.path, f.specs, f.params, meta)
	}
	steps := []func() error{
		func() error { return writeFileAtomic(filepath.Join(dir, TransformerDir, ConfigFile), cfg) },
		func() error { return writeWeights(tr) },
		func() error { return writeFileAtomic(filepath.Join(dir, TextEncoderDir, ConfigFile), cfg) },
		func() error { return writeWeights(te) },
		func() error { return writeFileAtomic(filepath.Join(dir, ModelIndexFile), index) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// writeParams streams params to the safetensors file path, specs[i] describing params[i]
// (its name in the file and its stored dtype: float32 values are converted as they are
// written). Only one parameter's host copy is held at a time, and the file appears under
// its name only once complete (safetensors.FileWriter).
func writeParams(path string, specs []safetensors.Spec, params []*engine.Parameter, meta map[string]string) error {
	w, err := safetensors.Create(path, specs, meta)
	if err != nil {
		return fmt.Errorf("model: encode %s: %w", path, err)
	}
	for i, p := range params {
		v, err := p.ToHost()
		if err == nil {
			err = w.WriteFloat32(specs[i].Name, v)
		}
		if err != nil {
			w.Abort()
			return fmt.Errorf("model: write %s: %w", p.Name, err)
		}
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	return nil
}

// writeFileAtomic creates path's folder and replaces path with data through
// internal/atomicfile, so the name never points at data that a crash could still lose.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
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
	// Each file is read one tensor at a time straight into the parameter's host buffer, so
	// loading never holds the file and the decoded weights at once.
	files := map[string]*safetensors.File{} // keyed by name prefix
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	ntensors := 0
	for _, f := range []struct{ path, prefix string }{
		{filepath.Join(dir, TransformerDir, TransformerWeights), ""},
		{filepath.Join(dir, TextEncoderDir, TextEncoderWeights), textPrefix},
	} {
		sf, err := safetensors.Open(f.path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrWeights, f.path, err)
		}
		files[f.prefix] = sf
		ntensors += len(sf.Names())
	}
	specs := cfg.paramShapes()
	if ntensors != len(specs) {
		return nil, fmt.Errorf("%w: %s holds %d tensors, the config needs %d", ErrWeights, dir, ntensors, len(specs))
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
			if err = loadParam(e, p, files); err != nil {
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

// loadParam reads the tensor named like p from the file its prefix selects, converting to
// float32, and uploads it after checking its shape.
func loadParam(e *engine.Engine, p *engine.Parameter, files map[string]*safetensors.File) error {
	f, name := files[""], p.Name
	if rest, ok := strings.CutPrefix(p.Name, textPrefix); ok {
		f, name = files[textPrefix], rest
	}
	ti, ok := f.Info(name)
	if !ok {
		return fmt.Errorf("%w: tensor %s missing", ErrWeights, p.Name)
	}
	if !slices.Equal(ti.Shape, p.Shape()) {
		return fmt.Errorf("%w: tensor %s has shape %v, want %v", ErrWeights, p.Name, ti.Shape, p.Shape())
	}
	v := make([]float32, ti.Numel())
	if err := f.Float32Into(name, v); err != nil {
		return fmt.Errorf("%w: tensor %s: %w", ErrWeights, p.Name, err)
	}
	if err := e.Backend().Upload(p.Buffer(), v); err != nil {
		return fmt.Errorf("model: upload %s: %w", p.Name, err)
	}
	return nil
}

// uploadParam copies the tensor named like p into p after checking its shape.
func uploadParam(e *engine.Engine, p *engine.Parameter, ts map[string]safetensors.Tensor) error {
	t, ok := ts[p.Name]
	if !ok {
		return fmt.Errorf("%w: tensor %s missing", ErrWeights, p.Name)
	}
	if !slices.Equal(t.Shape, p.Shape()) {
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
