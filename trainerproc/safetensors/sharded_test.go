package safetensors

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A checkpoint streamed into shards reads back through its index with the same names,
// shapes, dtypes and bytes, with and without mapping, and its total_size checks out.
func TestShardedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	var ts []Tensor
	for i := range 7 {
		v := make([]float32, 10+i)
		for j := range v {
			v[j] = float32(i*100 + j)
		}
		dt := []DType{F32, BF16, F16}[i%3]
		tt, err := FromFloat32(fmt.Sprintf("blocks.%d.weight", i), dt, []int{len(v)}, v)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tt)
	}
	w, err := CreateSharded(dir, "model", specsOf(ts), map[string]string{"format": "pt"}, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range ts {
		if err := w.WriteTensor(tt.Name, tt.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, mapped := range []bool{false, true} {
		s, err := OpenSharded(filepath.Join(dir, "model"+IndexSuffix), ShardOptions{Map: mapped})
		if err != nil {
			t.Fatal(err)
		}
		shards := s.Index().Shards()
		if len(shards) < 3 || shards[0] != fmt.Sprintf("model-00001-of-%05d.safetensors", len(shards)) {
			t.Fatalf("shards %v", shards)
		}
		if err := s.Verify(); err != nil {
			t.Fatal(err)
		}
		if got := len(s.Names()); got != len(ts) {
			t.Fatalf("%d names", got)
		}
		for _, tt := range ts {
			ti, err := s.Describe(tt.Name)
			if err != nil || ti.DType != tt.DType || !slices.Equal(ti.Shape, tt.Shape) {
				t.Fatalf("%s: %+v %v", tt.Name, ti, err)
			}
			raw := make([]byte, len(tt.Data))
			if err := s.ReadInto(tt.Name, raw); err != nil || !bytes.Equal(raw, tt.Data) {
				t.Fatalf("%s bytes: %v", tt.Name, err)
			}
			f, _, err := ReadFloat32(s, tt.Name)
			want, _ := tt.Float32()
			if err != nil || fmt.Sprint(f) != fmt.Sprint(want) {
				t.Fatalf("%s float32: %v", tt.Name, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.ReadInto(ts[0].Name, make([]byte, len(ts[0].Data))); !errors.Is(err, ErrInvalid) {
			t.Fatalf("read after close: %v", err)
		}
	}
	for _, e := range mustReadDir(t, dir) {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
}

func writeShard(t *testing.T, dir, name string, names ...string) {
	t.Helper()
	var ts []Tensor
	for _, n := range names {
		tt, _ := FromFloat32(n, F32, []int{2}, []float32{1, 2})
		ts = append(ts, tt)
	}
	raw, err := Marshal(ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Each way an index and its shards can disagree is refused with ErrCorrupt, at the
// latest when the tensor concerned (or, for Verify, any shard) is read.
func TestShardedRefusals(t *testing.T) {
	cases := []struct {
		name   string
		index  string
		shards map[string][]string
		read   string // tensor to read; "" means call Verify
		extra  error  // a second error the result must also wrap
	}{
		{"index not JSON", `{"weight_map":`, nil, "", nil},
		{"no weight_map", `{"metadata":{}}`, nil, "", nil},
		{"duplicate name in weight_map", `{"weight_map":{"a":"s1","a":"s1"}}`, nil, "", nil},
		{"non-string shard", `{"weight_map":{"a":1}}`, nil, "", nil},
		{"path traversal", `{"weight_map":{"a":"../s1"}}`, nil, "", nil},
		{"bad total_size", `{"metadata":{"total_size":"x"},"weight_map":{"a":"s1"}}`, nil, "", nil},
		{"missing shard", `{"weight_map":{"a":"s1","b":"s2"}}`, map[string][]string{"s1": {"a"}}, "b", os.ErrNotExist},
		{"tensor missing from its shard", `{"weight_map":{"a":"s1","b":"s1"}}`, map[string][]string{"s1": {"a"}}, "a", nil},
		{"shard holds an unindexed tensor", `{"weight_map":{"a":"s1"}}`, map[string][]string{"s1": {"a", "z"}}, "a", nil},
		{"duplicate across shards", `{"weight_map":{"a":"s1","b":"s2"}}`, map[string][]string{"s1": {"a"}, "s2": {"a", "b"}}, "b", nil},
		{"total_size mismatch", `{"metadata":{"total_size":9},"weight_map":{"a":"s1"}}`, map[string][]string{"s1": {"a"}}, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "m"+IndexSuffix)
			if err := os.WriteFile(path, []byte(c.index), 0o600); err != nil {
				t.Fatal(err)
			}
			for f, names := range c.shards {
				writeShard(t, dir, f, names...)
			}
			s, err := OpenSharded(path, ShardOptions{})
			if err == nil {
				defer s.Close()
				if c.read == "" {
					err = s.Verify()
				} else {
					err = s.ReadInto(c.read, make([]byte, 8))
				}
			}
			if !errors.Is(err, ErrCorrupt) || (c.extra != nil && !errors.Is(err, c.extra)) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// Shards are opened lazily: an index whose shards are absent opens, lists its names and
// only fails on a read; a correct total_size written as a float is accepted.
func TestShardedLazy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m"+IndexSuffix)
	if err := os.WriteFile(path, []byte(`{"metadata":{"total_size":8.0},"weight_map":{"a":"s1","b":"s2"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSharded(path, ShardOptions{Map: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := fmt.Sprint(s.Names()); got != "[a b]" || s.Index().TotalSize != 8 {
		t.Fatalf("names %s total %d", got, s.Index().TotalSize)
	}
	writeShard(t, dir, "s1", "a")
	if _, ok := s.Info("a"); !ok {
		t.Fatal("a not readable once its shard exists")
	}
	if _, err := s.Describe("b"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("b: %v", err)
	}
	if _, err := s.Describe("c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("c: %v", err)
	}
}

func mustReadDir(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ents
}

// Concurrent readers share the lazily opened shards safely (run with -race), and narrowing
// conversions through the index match the scalar rounding.
func TestShardedConcurrentReads(t *testing.T) {
	dir := t.TempDir()
	var ts []Tensor
	for i := range 8 {
		v := make([]float32, 1000)
		for j := range v {
			v[j] = float32(i) + float32(j)/7
		}
		tt, _ := FromFloat32(fmt.Sprintf("w%d", i), F32, []int{1000}, v)
		ts = append(ts, tt)
	}
	w, err := CreateSharded(dir, "m", specsOf(ts), nil, 4000)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range ts {
		if err := w.WriteTensor(tt.Name, tt.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSharded(w.IndexPath(), ShardOptions{Map: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	errs := make(chan error, len(ts))
	for _, tt := range ts {
		go func() {
			got := make([]byte, 2000)
			if err := ConvertInto(s, tt.Name, BF16, got); err != nil {
				errs <- err
				return
			}
			v, _ := tt.Float32()
			want := make([]byte, 2000)
			encodeFloat32(BF16, v, want)
			if !bytes.Equal(got, want) {
				errs <- fmt.Errorf("%s: BF16 conversion differs", tt.Name)
				return
			}
			errs <- nil
		}()
	}
	for range ts {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := len(s.Index().Shards()); n != 8 {
		t.Fatalf("%d shards, want one per 4000-byte tensor", n)
	}
}
