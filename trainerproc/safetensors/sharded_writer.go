package safetensors

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"simpletuner/internal/atomicfile"
)

// ShardedWriter streams a sharded checkpoint: tensors are split into shard files of at most
// maxShardSize tensor bytes (a single larger tensor gets a shard to itself), named as the
// Hugging Face libraries name them ("<base>-00001-of-00003.safetensors"), each written by a
// FileWriter, and the index "<base>.safetensors.index.json" is written last, so an index
// never names a shard that is not complete on disk.
type ShardedWriter struct {
	dir, base string
	owner     map[string]int
	shards    []*FileWriter
	names     []string
	total     int64
	finished  bool
}

// CreateSharded plans the shards for specs (in the given order) and opens one temporary file
// per shard in dir. metadata goes into every shard's header.
func CreateSharded(dir, base string, specs []Spec, metadata map[string]string, maxShardSize int64) (*ShardedWriter, error) {
	if maxShardSize <= 0 {
		return nil, fmt.Errorf("%w: shard size %d", ErrInvalid, maxShardSize)
	}
	var groups [][]Spec
	var cur int64
	var total int64
	for _, sp := range specs {
		size, err := byteSize(sp.DType, sp.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", sp.Name, err)
		}
		if len(groups) == 0 || (cur > 0 && cur+int64(size) > maxShardSize) {
			groups = append(groups, nil)
			cur = 0
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], sp)
		cur += int64(size)
		total += int64(size)
	}
	if len(groups) == 0 {
		groups = [][]Spec{nil}
	}
	w := &ShardedWriter{dir: dir, base: base, owner: map[string]int{}, total: total}
	for i, g := range groups {
		name := fmt.Sprintf("%s-%05d-of-%05d.safetensors", base, i+1, len(groups))
		for _, sp := range g {
			if _, dup := w.owner[sp.Name]; dup {
				w.Abort()
				return nil, fmt.Errorf("%w: duplicate tensor name %q", ErrInvalid, sp.Name)
			}
			w.owner[sp.Name] = i
		}
		fw, err := Create(filepath.Join(dir, name), g, metadata)
		if err != nil {
			w.Abort()
			return nil, err
		}
		w.shards = append(w.shards, fw)
		w.names = append(w.names, name)
	}
	return w, nil
}

// IndexPath is where Commit writes the index.
func (w *ShardedWriter) IndexPath() string { return filepath.Join(w.dir, w.base+IndexSuffix) }

func (w *ShardedWriter) target(name string) (*FileWriter, error) {
	i, ok := w.owner[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q was not declared", ErrNotFound, name)
	}
	return w.shards[i], nil
}

// WriteTensor stores a declared tensor's raw bytes in its shard.
func (w *ShardedWriter) WriteTensor(name string, data []byte) error {
	fw, err := w.target(name)
	if err != nil {
		return err
	}
	return fw.WriteTensor(name, data)
}

// WriteFloat32 stores float32 values as the tensor's declared dtype in its shard.
func (w *ShardedWriter) WriteFloat32(name string, v []float32) error {
	fw, err := w.target(name)
	if err != nil {
		return err
	}
	return fw.WriteFloat32(name, v)
}

// Commit commits every shard, then writes the index atomically (fsync, rename, directory
// fsync). On error the shards not yet committed are discarded.
func (w *ShardedWriter) Commit() error {
	if w.finished {
		return fmt.Errorf("%w: sharded writer is finished", ErrInvalid)
	}
	w.finished = true
	for i, fw := range w.shards {
		if err := fw.Commit(); err != nil {
			for _, rest := range w.shards[i+1:] {
				rest.Abort()
			}
			return err
		}
	}
	wm := make(map[string]string, len(w.owner))
	for n, i := range w.owner {
		wm[n] = w.names[i]
	}
	data, err := json.MarshalIndent(map[string]any{
		"metadata":   map[string]int64{"total_size": w.total},
		"weight_map": wm, // encoding/json sorts the keys, as the Python writers do
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("safetensors: encode index: %w", err)
	}
	return writeFileSync(w.IndexPath(), append(data, '\n'))
}

// Abort discards every shard not yet committed.
func (w *ShardedWriter) Abort() {
	w.finished = true
	for _, fw := range w.shards {
		fw.Abort()
	}
}

// writeFileSync replaces path with a small file (the index) through internal/atomicfile.
func writeFileSync(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	return nil
}
