package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// IndexSuffix ends the name of a sharded checkpoint's index, e.g.
// "diffusion_pytorch_model.safetensors.index.json" next to its
// "diffusion_pytorch_model-00001-of-00002.safetensors" shards.
const IndexSuffix = ".safetensors.index.json"

// Index is a parsed shard index: which shard file holds each tensor, and the total tensor
// byte size the writer recorded.
type Index struct {
	// TotalSize is metadata.total_size (the sum of the tensors' byte sizes); 0 when absent.
	TotalSize int64
	// Metadata holds the other metadata entries as raw JSON.
	Metadata map[string]json.RawMessage
	// WeightMap maps tensor name → shard file name (relative to the index's directory).
	WeightMap map[string]string
}

// Shards lists the distinct shard file names, sorted.
func (ix *Index) Shards() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range ix.WeightMap {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// ParseIndex parses and validates an index: a JSON object with a "weight_map" of strings
// (no duplicate names, which encoding/json would silently merge) naming shard files that
// stay inside the index's directory, and an optional numeric metadata.total_size.
func ParseIndex(data []byte) (*Index, error) {
	var top struct {
		Metadata  map[string]json.RawMessage `json:"metadata"`
		WeightMap json.RawMessage            `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: index JSON: %w", ErrCorrupt, err)
	}
	if len(top.WeightMap) == 0 {
		return nil, corruptf("index has no weight_map")
	}
	ix := &Index{Metadata: top.Metadata, WeightMap: map[string]string{}}
	dec := json.NewDecoder(bytes.NewReader(top.WeightMap))
	if err := expectDelim(dec, '{', "weight_map"); err != nil {
		return nil, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: weight_map: %w", ErrCorrupt, err)
		}
		name, _ := tok.(string)
		if tok, err = dec.Token(); err != nil {
			return nil, fmt.Errorf("%w: weight_map: %w", ErrCorrupt, err)
		}
		file, ok := tok.(string)
		if !ok {
			return nil, corruptf("weight_map[%q] is not a string", name)
		}
		if _, dup := ix.WeightMap[name]; dup {
			return nil, corruptf("weight_map names tensor %q twice", name)
		}
		if file == "" || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
			return nil, corruptf("weight_map[%q] = %q is not a file name in the index's directory", name, file)
		}
		ix.WeightMap[name] = file
	}
	if err := expectDelim(dec, '}', "weight_map"); err != nil {
		return nil, err
	}
	if raw, ok := ix.Metadata["total_size"]; ok {
		var n json.Number
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&n); err != nil {
			return nil, corruptf("metadata.total_size is not a number")
		}
		// Some writers store it as a float ("1234.0"); accept integral values only.
		f, err := n.Float64()
		if err != nil || f < 0 || f != float64(int64(f)) {
			return nil, corruptf("metadata.total_size %q is not a non-negative integer", string(n))
		}
		ix.TotalSize = int64(f)
	}
	return ix, nil
}

// ShardOptions tunes OpenSharded.
type ShardOptions struct {
	// Map opens shards with OpenMapped instead of positioned reads.
	Map bool
}

// shardFile is an opened shard: a File or a Mapped.
type shardFile interface {
	TensorSource
	Close() error
}

// Sharded reads a sharded checkpoint through its index. Shards are opened lazily, on the
// first access to one of their tensors, and each is checked against the index when it is
// opened: a tensor the index places there must be in it, and a tensor it holds must be
// mapped to it (a name in two shards is refused). It is safe for concurrent use.
type Sharded struct {
	dir   string
	index *Index
	opt   ShardOptions

	mu     sync.Mutex
	opened map[string]shardFile
}

// OpenSharded reads the index at path; no shard is opened yet.
func OpenSharded(path string, opt ShardOptions) (*Sharded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	ix, err := ParseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Sharded{dir: filepath.Dir(path), index: ix, opt: opt, opened: map[string]shardFile{}}, nil
}

// Index returns the parsed index (shared; do not modify).
func (s *Sharded) Index() *Index { return s.index }

// Names lists every tensor of the index, sorted.
func (s *Sharded) Names() []string {
	out := make([]string, 0, len(s.index.WeightMap))
	for n := range s.index.WeightMap {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// shard opens (once) and checks the shard holding name.
func (s *Sharded) shard(name string) (shardFile, error) {
	file, ok := s.index.WeightMap[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return s.openShard(file)
}

func (s *Sharded) openShard(file string) (shardFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened == nil {
		return nil, fmt.Errorf("%w: sharded checkpoint is closed", ErrInvalid)
	}
	if f, ok := s.opened[file]; ok {
		return f, nil
	}
	path := filepath.Join(s.dir, file)
	var f shardFile
	var err error
	if s.opt.Map {
		f, err = OpenMapped(path)
	} else {
		f, err = Open(path)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: shard %s named by the index is missing: %w", ErrCorrupt, file, err)
		}
		return nil, err
	}
	if err := s.checkShard(file, f); err != nil {
		f.Close()
		return nil, err
	}
	s.opened[file] = f
	return f, nil
}

// checkShard compares a shard's header with the index.
func (s *Sharded) checkShard(file string, f shardFile) error {
	for _, n := range f.Names() {
		switch owner, ok := s.index.WeightMap[n]; {
		case !ok:
			return corruptf("shard %s holds tensor %q that the index does not name", file, n)
		case owner != file:
			return corruptf("tensor %q is in shard %s but the index places it in %s (duplicate across shards)", n, file, owner)
		}
	}
	for n, owner := range s.index.WeightMap {
		if owner != file {
			continue
		}
		if _, ok := f.Info(n); !ok {
			return corruptf("the index places tensor %q in shard %s, which does not hold it", n, file)
		}
	}
	return nil
}

// Describe returns a tensor's description, opening its shard if needed.
func (s *Sharded) Describe(name string) (TensorInfo, error) {
	f, err := s.shard(name)
	if err != nil {
		return TensorInfo{}, err
	}
	ti, _ := f.Info(name) // checkShard guarantees presence
	return ti, nil
}

// Info describes a tensor; false when it is unknown or its shard cannot be opened (use
// Describe for the reason).
func (s *Sharded) Info(name string) (TensorInfo, bool) {
	ti, err := s.Describe(name)
	return ti, err == nil
}

// ReadInto copies a tensor's raw bytes into dst.
func (s *Sharded) ReadInto(name string, dst []byte) error {
	f, err := s.shard(name)
	if err != nil {
		return err
	}
	return f.ReadInto(name, dst)
}

// Float32Into decodes a float tensor into dst.
func (s *Sharded) Float32Into(name string, dst []float32) error {
	f, err := s.shard(name)
	if err != nil {
		return err
	}
	return f.Float32Into(name, dst)
}

// convertInto converts a tensor a chunk at a time in the shard holding it.
func (s *Sharded) convertInto(name string, to DType, dst []byte) error {
	f, err := s.shard(name)
	if err != nil {
		return err
	}
	if c, ok := f.(chunkConverter); ok {
		return c.convertInto(name, to, dst)
	}
	return ConvertInto(f, name, to, dst)
}

// Verify opens every shard (checking each against the index, which also refuses names
// held by two shards) and, when the index records metadata.total_size, that it equals the
// sum of the tensors' byte sizes.
func (s *Sharded) Verify() error {
	var total int64
	for _, file := range s.index.Shards() {
		f, err := s.openShard(file)
		if err != nil {
			return err
		}
		for _, n := range f.Names() {
			ti, _ := f.Info(n)
			total += ti.Size()
		}
	}
	if s.index.TotalSize != 0 && s.index.TotalSize != total {
		return corruptf("index metadata.total_size is %d but the shards hold %d tensor bytes", s.index.TotalSize, total)
	}
	return nil
}

// Close closes every opened shard; the Sharded is unusable afterwards.
func (s *Sharded) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, f := range s.opened {
		errs = append(errs, f.Close())
	}
	s.opened = nil
	return errors.Join(errs...)
}
