package t5

import (
	"fmt"
	"slices"
	"sort"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

// LoadOptions tunes Load.
type LoadOptions struct {
	// Map reads the weights through a memory mapping instead of positioned reads (see
	// safetensors.ShardOptions); either way no second copy of a tensor is held.
	Map bool
}

// Load reads a T5 encoder from a component directory: dir/config.json and
// dir/model.safetensors or the sharded dir/model.safetensors.index.json. Every weight is
// checked against the config (name and shape) before any memory is allocated; then each is
// read straight into its parameter's buffer (on the float32 CPU backend) or through one
// tensor-sized host slice uploaded at once (other backends), converting F16/BF16 to float32
// on the way. The token embedding is read from SharedName, or EmbedTokensName when the file
// only has that one.
func Load(e *engine.Engine, dir string, opt LoadOptions) (*Encoder, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	src, err := safetensors.OpenCheckpoint(dir, WeightsBase, safetensors.ShardOptions{Map: opt.Map})
	if err != nil {
		return nil, fmt.Errorf("t5: %w", err)
	}
	defer src.Close()
	return FromSource(e, cfg, src)
}

// FromSource builds an encoder for cfg from the weights in src (see Load).
func FromSource(e *engine.Engine, cfg Config, src safetensors.TensorSource) (*Encoder, error) {
	embedName := SharedName
	_, hasShared := src.Info(SharedName)
	_, hasEmbed := src.Info(EmbedTokensName)
	if !hasShared && hasEmbed {
		embedName = EmbedTokensName
	}
	specs := cfg.specs(embedName)
	infos := make(map[string]safetensors.TensorInfo, len(specs))
	for _, s := range specs {
		ti, ok := src.Info(s.name)
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrMissingTensor, s.name)
		}
		if !slices.Equal(ti.Shape, s.shape) {
			return nil, fmt.Errorf("%w: %s is %v in the checkpoint, the config needs %v", ErrTensorShape, s.name, ti.Shape, s.shape)
		}
		switch ti.DType {
		case safetensors.F32, safetensors.BF16, safetensors.F16:
		default:
			return nil, fmt.Errorf("%w: %s is %s, want F32, BF16 or F16", ErrTensorShape, s.name, ti.DType)
		}
		infos[s.name] = ti
	}
	m, err := newEncoder(e, cfg, embedName, func(s tensorSpec) *engine.Tensor { return e.Zeros(s.shape...) })
	if err != nil {
		return nil, err
	}
	if hasShared && hasEmbed {
		// transformers ties the two names to one table; both are kept on Save.
		ti, _ := src.Info(EmbedTokensName)
		if !slices.Equal(ti.Shape, infos[SharedName].Shape) {
			m.Free()
			return nil, fmt.Errorf("%w: %s is %v but %s is %v", ErrTensorShape, EmbedTokensName, ti.Shape, SharedName, infos[SharedName].Shape)
		}
		m.aliases[EmbedTokensName] = SharedName
		m.dtypes[EmbedTokensName] = ti.DType
	}
	for _, p := range m.params {
		m.dtypes[p.Name] = infos[p.Name].DType
		if err := readInto(p, src); err != nil {
			m.Free()
			return nil, err
		}
	}
	used := map[string]bool{EmbedTokensName: true}
	for _, s := range specs {
		used[s.name] = true
	}
	for _, n := range src.Names() {
		if !used[n] {
			m.Ignored = append(m.Ignored, n)
		}
	}
	sort.Strings(m.Ignored)
	return m, nil
}

// readInto decodes the tensor named like p into p's buffer.
func readInto(p *engine.Parameter, src safetensors.TensorSource) error {
	be := p.Engine().Backend()
	if _, ok := be.(*cpu.Backend[float32]); ok {
		// The parameter's own memory is the destination: no staging copy at all.
		if err := src.Float32Into(p.Name, cpu.Data[float32](p.Buffer())); err != nil {
			return fmt.Errorf("t5: read %s: %w", p.Name, err)
		}
		return nil
	}
	v := make([]float32, p.Numel())
	if err := src.Float32Into(p.Name, v); err != nil {
		return fmt.Errorf("t5: read %s: %w", p.Name, err)
	}
	if err := be.Upload(p.Buffer(), v); err != nil {
		return fmt.Errorf("t5: upload %s: %w", p.Name, err)
	}
	return nil
}
