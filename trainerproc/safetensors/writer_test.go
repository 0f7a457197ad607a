package safetensors

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func specsOf(ts []Tensor) []Spec {
	out := make([]Spec, len(ts))
	for i, t := range ts {
		out[i] = Spec{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	return out
}

// The streaming writer produces the same bytes as the in-memory encoder (itself checked
// against the reference layout), whatever order the tensors arrive in, and leaves no
// temporary file behind.
func TestFileWriterMatchesMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for iter := range 20 {
		ts := randomTensors(r)
		meta := map[string]string{"format": "pt", "i": string(rune('a' + iter))}
		want, err := Marshal(ts, meta)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "w.safetensors")
		w, err := Create(path, specsOf(ts), meta)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range r.Perm(len(ts)) {
			if err := w.WriteTensor(ts[i].Name, ts[i].Data); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("final name exists before Commit: %v", err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("iteration %d: streamed file differs from Marshal (%v)", iter, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("leftover files: %v", ents)
		}
	}
}

// Round trip through the streaming writer and the mapped reader: same names, shapes,
// dtypes and bytes, and float32 written as BF16 reads back as the scalar rounding gives.
func TestStreamRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rt.safetensors")
	v := []float32{1, -0.0, 3.14159, 65504, 1e-40, 1e30}
	specs := []Spec{{"x", BF16, []int{2, 3}}, {"y", F16, []int{6}}, {"z", F32, []int{3, 2}}, {"s", I64, []int{}}}
	w, err := Create(path, specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"x", "y", "z"} {
		if err := w.WriteFloat32(n, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteTensor("s", []byte{42, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	m, err := OpenMapped(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Metadata() != nil {
		t.Fatalf("metadata %v, want none", m.Metadata())
	}
	for _, s := range specs {
		ti, ok := m.Info(s.Name)
		if !ok || ti.DType != s.DType || !slices.Equal(ti.Shape, s.Shape) {
			t.Fatalf("%s: info %+v", s.Name, ti)
		}
		if s.DType == I64 {
			continue
		}
		raw, _ := m.View(s.Name)
		want := make([]byte, len(v)*s.DType.Size())
		encodeFloat32(s.DType, v, want)
		if !bytes.Equal(raw, want) {
			t.Fatalf("%s: bytes %x, want %x", s.Name, raw, want)
		}
	}
}

func TestFileWriterErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "e.safetensors")
	specs := []Spec{{"a", F32, []int{2}}, {"b", U8, []int{3}}}
	if _, err := Create(path, append(specs, Spec{"a", F32, nil}), nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("duplicate spec: %v", err)
	}
	if _, err := Create(path, []Spec{{"q", "Q8", nil}}, nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown dtype: %v", err)
	}
	w, err := Create(path, specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"undeclared", w.WriteTensor("zz", nil), ErrNotFound},
		{"wrong size", w.WriteTensor("a", make([]byte, 7)), ErrInvalid},
		{"wrong count", w.WriteFloat32("a", []float32{1}), ErrInvalid},
		{"no float conversion", w.WriteFloat32("b", []float32{1, 2, 3}), ErrUnsupported},
		{"first write", w.WriteFloat32("a", []float32{1, 2}), nil},
		{"second write", w.WriteFloat32("a", []float32{1, 2}), ErrInvalid},
		{"commit with b missing", w.Commit(), ErrInvalid},
		{"write after failed commit", w.WriteTensor("b", []byte{1, 2, 3}), ErrInvalid},
	}
	for _, c := range cases {
		if (c.want == nil) != (c.err == nil) || (c.want != nil && !errors.Is(c.err, c.want)) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a failed commit left files: %v", ents)
	}
	w2, err := Create(path, specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	w2.Abort()
	w2.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Abort left files: %v", ents)
	}
}
