package t5

import (
	"fmt"
	"path/filepath"

	"simpletuner/internal/atomicfile"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

// DefaultMaxShardBytes is the shard size Save splits weights at, as transformers'
// save_pretrained does by default (5 GB): the XXL encoder in float32 (19 GB) becomes four
// shards, a tiny one a single model.safetensors.
const DefaultMaxShardBytes = 5_000_000_000

// tensorWriter is what Save needs of a single-file or sharded safetensors writer.
type tensorWriter interface {
	WriteFloat32(name string, v []float32) error
	Commit() error
	Abort()
}

// Save writes the encoder as a component directory Load reads back, sharded at
// DefaultMaxShardBytes; see SaveSharded.
func (m *Encoder) Save(dir string) error { return m.SaveSharded(dir, DefaultMaxShardBytes) }

// SaveSharded writes the encoder as a component directory Load reads back: dir/config.json
// (the file it was loaded from, unchanged) and the weights, one model.safetensors when they
// fit in maxShardBytes (≤ 0: DefaultMaxShardBytes), otherwise shards and an index. Each tensor
// keeps its name, shape and on-disk dtype (a BF16 weight, loaded exactly into float32, is
// written back to the same bits); tensors are streamed one at a time, never assembled in
// memory. dir must exist.
func (m *Encoder) SaveSharded(dir string, maxShardBytes int64) (err error) {
	if maxShardBytes <= 0 {
		maxShardBytes = DefaultMaxShardBytes
	}
	type item struct {
		name string // file name
		src  string // parameter it is a copy of
	}
	var items []item
	var specs []safetensors.Spec
	var total int64
	add := func(name, src string) {
		p := m.byName[src]
		dt := m.dtypes[name]
		items = append(items, item{name, src})
		specs = append(specs, safetensors.Spec{Name: name, DType: dt, Shape: p.Shape()})
		total += int64(p.Numel() * dt.Size())
	}
	for _, p := range m.params {
		add(p.Name, p.Name)
	}
	for name, src := range m.aliases {
		add(name, src)
	}
	meta := map[string]string{"format": "pt"}
	var w tensorWriter
	if total <= maxShardBytes {
		w, err = safetensors.Create(filepath.Join(dir, WeightsBase+".safetensors"), specs, meta)
	} else {
		w, err = safetensors.CreateSharded(dir, WeightsBase, specs, meta, maxShardBytes)
	}
	if err != nil {
		return fmt.Errorf("t5: save: %w", err)
	}
	for _, it := range items {
		p := m.byName[it.src]
		var v []float32
		if _, ok := m.e.Backend().(*cpu.Backend[float32]); ok {
			v = cpu.Data[float32](p.Buffer()) // written from the parameter's own memory
		} else if v, err = p.ToHost(); err != nil {
			w.Abort()
			return fmt.Errorf("t5: save %s: %w", it.name, err)
		}
		if err := w.WriteFloat32(it.name, v); err != nil {
			w.Abort()
			return fmt.Errorf("t5: save: %w", err)
		}
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("t5: save: %w", err)
	}
	cfg, err := m.cfg.JSON()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
		return fmt.Errorf("t5: save config: %w", err)
	}
	return nil
}
