package vae

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"simpletuner/internal/atomicfile"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

// Files of a diffusers VAE component directory.
const (
	// ConfigFile is the component's config.
	ConfigFile = "config.json"
	// WeightsBase is the weights' base name: "<base>[.<variant>].safetensors", or the sharded
	// "<base>.safetensors.index[.<variant>].json".
	WeightsBase = "diffusion_pytorch_model"
)

// AutoencoderKL is a loaded VAE. Its parameters are frozen: Encode and Decode run under
// engine.NoGrad. It is driven by the goroutine that drives its engine, like the engine itself.
type AutoencoderKL struct {
	e        *engine.Engine
	cfg      Config
	raw      []byte // config.json as read, written back unchanged by Save
	params   []*param
	byName   map[string]*engine.Parameter // canonical name → parameter
	variant  string
	metadata map[string]string // the weights file's __metadata__, written back by Save
}

// param is a parameter with what Save needs to write it back as it was on disk.
type param struct {
	*engine.Parameter
	disk safetensors.Spec // on-disk name, dtype and shape
}

// LoadOptions tunes Load.
type LoadOptions struct {
	// Variant selects weight files such as diffusion_pytorch_model.fp16.safetensors; a
	// directory without that variant falls back to its plain weights, as diffusers does.
	Variant string
}

// Config returns the model's config.
func (m *AutoencoderKL) Config() Config { return m.cfg }

// Parameters returns the parameters in diffusers' state-dict order, under current names.
func (m *AutoencoderKL) Parameters() []*engine.Parameter {
	out := make([]*engine.Parameter, len(m.params))
	for i, p := range m.params {
		out[i] = p.Parameter
	}
	return out
}

// Free releases every parameter. The model is unusable afterwards.
func (m *AutoencoderKL) Free() {
	for _, p := range m.params {
		p.Free()
	}
}

// allocate creates zeroed, frozen parameters for every spec of cfg.
func allocate(e *engine.Engine, cfg Config) (*AutoencoderKL, error) {
	m := &AutoencoderKL{e: e, cfg: cfg, byName: map[string]*engine.Parameter{}}
	err := engine.Catch(func() {
		for _, sp := range cfg.paramSpecs() {
			p := e.NewParameter(sp.name, e.Zeros(sp.shape...))
			p.SetRequiresGrad(false)
			m.params = append(m.params, &param{Parameter: p, disk: safetensors.Spec{Name: sp.name, DType: safetensors.F32, Shape: sp.shape}})
			m.byName[sp.name] = p
		}
	})
	if err != nil {
		m.Free()
		return nil, fmt.Errorf("vae: allocate: %w", err)
	}
	return m, nil
}

// New builds a model of cfg with random weights drawn from seed (convolution and linear
// weights normal with std 1/√fan_in, biases 0, norms 1 and 0), as F32 under current names.
// It is for benchmarks and tests: real use loads a checkpoint.
func New(e *engine.Engine, cfg Config, seed uint64) (*AutoencoderKL, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("vae: encode config: %w", err)
	}
	m, err := allocate(e, cfg)
	if err != nil {
		return nil, err
	}
	m.raw, m.metadata = raw, map[string]string{"format": "pt"}
	rng := engine.NewRNG(seed)
	err = engine.Catch(func() {
		for _, p := range m.params {
			shape := p.Shape()
			switch {
			case len(shape) > 1:
				fanIn := p.Numel() / shape[0]
				w := e.RandN(rng, 0, float32(1/math.Sqrt(float64(fanIn))), shape...)
				e.Backend().Copy2D(p.Buffer(), 0, 0, w.Buffer(), 0, 0, 1, w.Numel())
				w.Free()
			case isNormWeight(p.Name):
				e.Backend().Fill(p.Buffer(), 1)
			}
		}
	})
	if err != nil {
		m.Free()
		return nil, fmt.Errorf("vae: init: %w", err)
	}
	return m, nil
}

// isNormWeight reports whether a parameter is a group norm's scale.
func isNormWeight(name string) bool {
	for _, n := range []string{".norm1.weight", ".norm2.weight", ".group_norm.weight", "conv_norm_out.weight"} {
		if strings.HasSuffix(name, n) {
			return true
		}
	}
	return false
}

// weightsSource is an open checkpoint and how to name its files in errors.
type weightsSource struct {
	safetensors.Checkpoint
	path    string // the single file, or the shard index
	sharded *safetensors.Sharded
}

// fileOf names the file that holds tensor name.
func (w *weightsSource) fileOf(name string) string {
	if w.sharded != nil {
		if f, ok := w.sharded.Index().WeightMap[name]; ok {
			return filepath.Join(filepath.Dir(w.path), f)
		}
	}
	return w.path
}

// openWeights opens the weights of dir: the variant's single file or shard index when
// variant is set and present, else the plain ones. It returns the variant actually used.
func openWeights(dir, variant string) (*weightsSource, string, error) {
	type candidate struct {
		path    string
		sharded bool
		variant string
	}
	var cands []candidate
	if variant != "" {
		cands = append(cands,
			candidate{filepath.Join(dir, WeightsBase+"."+variant+".safetensors"), false, variant},
			candidate{filepath.Join(dir, WeightsBase+".safetensors.index."+variant+".json"), true, variant})
	}
	cands = append(cands,
		candidate{filepath.Join(dir, WeightsBase+".safetensors"), false, ""},
		candidate{filepath.Join(dir, WeightsBase+safetensors.IndexSuffix), true, ""})
	for _, c := range cands {
		if _, err := os.Stat(c.path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, "", fmt.Errorf("%w: %w", ErrWeights, err)
		}
		if c.sharded {
			s, err := safetensors.OpenSharded(c.path, safetensors.ShardOptions{})
			if err != nil {
				return nil, "", fmt.Errorf("%w: %w", ErrWeights, err)
			}
			return &weightsSource{Checkpoint: s, path: c.path, sharded: s}, c.variant, nil
		}
		f, err := safetensors.Open(c.path)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrWeights, err)
		}
		return &weightsSource{Checkpoint: f, path: c.path}, c.variant, nil
	}
	return nil, "", fmt.Errorf("%w: no %s weights in %s: %w", ErrWeights, WeightsBase, dir, os.ErrNotExist)
}

// Load reads a diffusers VAE component directory: config.json, then the weights, each tensor
// decoded straight into its parameter. Every tensor the config calls for must be present
// once (under its current or legacy name) with its shape, and no other tensor may appear;
// otherwise the error wraps ErrWeights and names the tensor and the file.
func Load(e *engine.Engine, dir string, opt LoadOptions) (*AutoencoderKL, error) {
	cfg, raw, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	src, variant, err := openWeights(dir, opt.Variant)
	if err != nil {
		return nil, err
	}
	defer src.Close()

	plan, err := planLoad(cfg, src)
	if err != nil {
		return nil, err
	}
	m, err := allocate(e, cfg)
	if err != nil {
		return nil, err
	}
	m.raw, m.variant = raw, variant
	if md, ok := src.Checkpoint.(interface{ Metadata() map[string]string }); ok {
		m.metadata = md.Metadata()
	} else {
		m.metadata = map[string]string{"format": "pt"}
	}
	if err := m.read(src, plan); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// planLoad matches the checkpoint's tensors with the config's parameters: it returns, per
// canonical name, the tensor's on-disk spec.
func planLoad(cfg Config, src *weightsSource) (map[string]safetensors.Spec, error) {
	want := map[string][]int{}
	for _, sp := range cfg.paramSpecs() {
		want[sp.name] = sp.shape
	}
	names := src.Names()
	sort.Strings(names)
	plan := make(map[string]safetensors.Spec, len(names))
	for _, name := range names {
		ti, _ := src.Info(name)
		canon, _ := canonicalName(name)
		shape, ok := want[canon]
		if !ok {
			return nil, fmt.Errorf("%w: unknown tensor %q in %s", ErrWeights, name, src.fileOf(name))
		}
		if prev, dup := plan[canon]; dup {
			return nil, fmt.Errorf("%w: tensors %q and %q in %s are the same parameter", ErrWeights, prev.Name, name, src.fileOf(name))
		}
		if !shapeMatches(canon, ti.Shape, shape) {
			return nil, fmt.Errorf("%w: tensor %q in %s has shape %v, the config needs %v", ErrWeights, name, src.fileOf(name), ti.Shape, shape)
		}
		switch ti.DType {
		case safetensors.F32, safetensors.F16, safetensors.BF16:
		default:
			return nil, fmt.Errorf("%w: tensor %q in %s is %s (F32, F16 or BF16 expected)", ErrWeights, name, src.fileOf(name), ti.DType)
		}
		plan[canon] = safetensors.Spec{Name: name, DType: ti.DType, Shape: ti.Shape}
	}
	for _, sp := range cfg.paramSpecs() {
		if _, ok := plan[sp.name]; !ok {
			return nil, fmt.Errorf("%w: tensor %q missing from %s", ErrWeights, sp.name, src.path)
		}
	}
	return plan, nil
}

// shapeMatches accepts the config's shape, and for the attention's linear weights also the
// 1×1-convolution shape [c, c, 1, 1] some converted checkpoints store (same values).
func shapeMatches(canon string, disk, want []int) bool {
	if slices.Equal(disk, want) {
		return true
	}
	return isAttentionLinear(canon) && len(disk) == 4 && disk[2] == 1 && disk[3] == 1 &&
		slices.Equal(disk[:2], want)
}

// read fills every parameter from src. On the CPU float32 backend each tensor is decoded
// straight into the parameter's memory; on other backends one staging buffer, sized for the
// largest tensor, is reused, so loading never holds a second copy of the model.
func (m *AutoencoderKL) read(src *weightsSource, plan map[string]safetensors.Spec) error {
	_, direct := m.e.Backend().(*cpu.Backend[float32])
	var stage []float32
	for _, p := range m.params {
		disk := plan[p.Name]
		p.disk = disk
		var dst []float32
		if direct {
			dst = cpu.Data[float32](p.Buffer())
		} else {
			if cap(stage) < p.Numel() {
				stage = make([]float32, m.largest())
			}
			dst = stage[:p.Numel()]
		}
		if err := src.Float32Into(disk.Name, dst); err != nil {
			return fmt.Errorf("%w: tensor %q in %s: %w", ErrWeights, disk.Name, src.fileOf(disk.Name), err)
		}
		if !direct {
			if err := m.e.Backend().Upload(p.Buffer(), dst); err != nil {
				return fmt.Errorf("vae: upload %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// largest is the element count of the biggest parameter.
func (m *AutoencoderKL) largest() int {
	n := 0
	for _, p := range m.params {
		n = max(n, p.Numel())
	}
	return n
}

// WeightsFile is the single-file weights name Save writes for variant ("" for none).
func WeightsFile(variant string) string {
	if variant == "" {
		return WeightsBase + ".safetensors"
	}
	return WeightsBase + "." + variant + ".safetensors"
}

// Save writes the component to dir (created if needed): config.json exactly as it was read,
// and one weights file (with the variant it was loaded from in its name) holding every
// tensor under the name, dtype and shape it had on disk, with the same metadata. Values that
// came from F16 or BF16 go back to the same bits, so a load followed by Save reproduces the
// tensors byte for byte. Tensors stream to the file one at a time; both files are replaced
// atomically (temporary file, fsync, rename, fsync of the directory).
func (m *AutoencoderKL) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("vae: %w", err)
	}
	specs := make([]safetensors.Spec, len(m.params))
	for i, p := range m.params {
		specs[i] = p.disk
	}
	path := filepath.Join(dir, WeightsFile(m.variant))
	w, err := safetensors.Create(path, specs, m.metadata)
	if err != nil {
		return fmt.Errorf("vae: %w", err)
	}
	for _, p := range m.params {
		v, err := p.ToHost()
		if err == nil {
			err = w.WriteFloat32(p.disk.Name, v)
		}
		if err != nil {
			w.Abort()
			return fmt.Errorf("vae: write %s: %w", p.disk.Name, err)
		}
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("vae: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, ConfigFile), m.raw, 0o644); err != nil {
		return fmt.Errorf("vae: %w", err)
	}
	return nil
}
