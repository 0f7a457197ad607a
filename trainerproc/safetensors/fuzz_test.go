package safetensors

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the parser. It must never panic or over-allocate; every
// failure must wrap ErrCorrupt; and whatever it accepts must re-encode and re-parse to the
// same tensors (the reader's validation and the writer agree on the format).
func FuzzRead(f *testing.F) {
	f.Add(goldenFile())
	f.Add(withHeader(`{}`, 0))
	f.Add(withHeader(`{"a":{"dtype":"F16","shape":[2,1],"data_offsets":[0,4]}}`, 4))
	f.Add(withHeader(`{"__metadata__":{"a":"b"},"x":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, 8))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, meta, err := Unmarshal(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		again, err := Marshal(ts, meta)
		if err != nil {
			t.Fatalf("accepted file does not re-encode: %v", err)
		}
		ts2, meta2, err := Unmarshal(again)
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v", err)
		}
		if !reflect.DeepEqual(canonical(ts), canonical(ts2)) {
			t.Fatalf("tensors changed across re-encoding")
		}
		if len(meta) != len(meta2) || (len(meta) > 0 && !reflect.DeepEqual(meta, meta2)) {
			t.Fatalf("metadata changed across re-encoding: %v vs %v", meta, meta2)
		}
	})
}

// FuzzIndex feeds arbitrary bytes to the shard index parser: no panic, every failure wraps
// ErrCorrupt, and an accepted index names only plain file names.
func FuzzIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":8},"weight_map":{"a":"s1","b":"s2"}}`))
	f.Add([]byte(`{"weight_map":{"a":"s1","a":"s1"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := ParseIndex(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		for _, s := range ix.Shards() {
			if s == "" || s == "." || s == ".." || strings.ContainsAny(s, `/\`) {
				t.Fatalf("accepted shard name %q", s)
			}
		}
		if ix.TotalSize < 0 {
			t.Fatalf("negative total size %d", ix.TotalSize)
		}
	})
}
