package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// specialHalves are fp16/bf16 encodings that conversions get wrong first: ±0, the smallest
// and largest subnormals, the smallest normal, the largest finite, ±inf and NaNs (quiet,
// with payload, negative).
var specialHalves = []uint16{0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfbff,
	0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe00, 0x7f80, 0xff80, 0x7fc0, 0x0080, 0x007f}

func halfBytes(v []uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, h := range v {
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b
}

// writeSpecials writes one F16, one BF16 and one F32 tensor of special values to a file.
func writeSpecials(t *testing.T) (string, []Tensor) {
	t.Helper()
	f32 := []float32{0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32,
		float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00001), 1.5}
	raw32 := make([]byte, 4*len(f32))
	encodeFloat32(F32, f32, raw32)
	ts := []Tensor{
		{Name: "h", DType: F16, Shape: []int{len(specialHalves)}, Data: halfBytes(specialHalves)},
		{Name: "b", DType: BF16, Shape: []int{len(specialHalves)}, Data: halfBytes(specialHalves)},
		{Name: "f", DType: F32, Shape: []int{2, 4}, Data: raw32},
	}
	path := filepath.Join(t.TempDir(), "s.safetensors")
	raw, err := Marshal(ts, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, ts
}

type sourceCloser interface {
	TensorSource
	Close() error
}

func openers() map[string]func(string) (sourceCloser, error) {
	return map[string]func(string) (sourceCloser, error){
		"pread": func(p string) (sourceCloser, error) { return Open(p) },
		"mmap":  func(p string) (sourceCloser, error) { return OpenMapped(p) },
	}
}

// Loading converts exactly: raw bytes unchanged, widening to float32 bit-exact against the
// scalar conversions, and narrowing the widened values back gives the original bytes (NaNs
// stay NaN).
func TestLoadConversionsExact(t *testing.T) {
	path, ts := writeSpecials(t)
	for name, open := range openers() {
		t.Run(name, func(t *testing.T) {
			src, err := open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			for _, want := range ts {
				raw := make([]byte, len(want.Data))
				if err := src.ReadInto(want.Name, raw); err != nil || !bytes.Equal(raw, want.Data) {
					t.Fatalf("%s raw: %v", want.Name, err)
				}
				f, _, err := ReadFloat32(src, want.Name)
				if err != nil {
					t.Fatal(err)
				}
				ref, _ := want.Float32()
				for i := range f {
					if math.Float32bits(f[i]) != math.Float32bits(ref[i]) {
						t.Fatalf("%s[%d]: %08x, want %08x", want.Name, i, math.Float32bits(f[i]), math.Float32bits(ref[i]))
					}
				}
				same := make([]byte, len(want.Data))
				if err := ConvertInto(src, want.Name, want.DType, same); err != nil || !bytes.Equal(same, want.Data) {
					t.Fatalf("%s same-dtype convert: %v", want.Name, err)
				}
				if want.DType == F32 {
					continue
				}
				as32 := make([]byte, 4*len(f))
				if err := ConvertInto(src, want.Name, F32, as32); err != nil {
					t.Fatal(err)
				}
				back := make([]byte, len(want.Data))
				encodeFloat32(want.DType, bytesFloat32(as32), back)
				for i := 0; i < len(back); i += 2 {
					g, w := binary.LittleEndian.Uint16(back[i:]), binary.LittleEndian.Uint16(want.Data[i:])
					isNaN := isNaN32(f[i/2])
					if g != w && !(isNaN && isNaN32(ref[i/2])) {
						t.Fatalf("%s[%d]: round trip %04x, want %04x", want.Name, i/2, g, w)
					}
				}
			}
			// Narrowing F32 to BF16/F16 rounds as the scalar conversions do.
			for _, to := range []DType{F16, BF16} {
				dst := make([]byte, 8*to.Size())
				if err := ConvertInto(src, "f", to, dst); err != nil {
					t.Fatal(err)
				}
				ref, _ := ts[2].Float32()
				want := make([]byte, len(dst))
				encodeFloat32(to, ref, want)
				if !bytes.Equal(dst, want) {
					t.Fatalf("F32 -> %s: %x, want %x", to, dst, want)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	path, _ := writeSpecials(t)
	m, err := OpenMapped(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"missing", m.ReadInto("nope", nil), ErrNotFound},
		{"short buffer", m.ReadInto("h", make([]byte, 3)), ErrInvalid},
		{"wrong count", m.Float32Into("f", make([]float32, 7)), ErrInvalid},
		{"bad target", ConvertInto(m, "f", I64, make([]byte, 64)), ErrUnsupported},
		{"bad target size", ConvertInto(m, "f", BF16, make([]byte, 15)), ErrInvalid},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	v, err := m.View("b")
	if err != nil || len(v) != 2*len(specialHalves) {
		t.Fatalf("view: %d bytes, %v", len(v), err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.View("b"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("view after close: %v", err)
	}
	if err := m.ReadInto("h", make([]byte, 2*len(specialHalves))); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalid) {
		t.Fatalf("read after close: %v", err)
	}
}

// largeFile writes a file of nTensors F32 tensors totalling about size bytes with the
// streaming writer, so the test itself never holds the file.
func largeFile(t *testing.T, size int, dt DType) string {
	t.Helper()
	const nTensors = 32
	per := size / nTensors / dt.Size()
	specs := make([]Spec, nTensors)
	for i := range specs {
		specs[i] = Spec{Name: "layer." + string(rune('a'+i)) + ".weight", DType: dt, Shape: []int{per / 256, 256}}
	}
	path := filepath.Join(t.TempDir(), "big.safetensors")
	w, err := Create(path, specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, per)
	for _, s := range specs {
		for i := range v {
			v[i] = float32(i) * 0.5
		}
		if err := w.WriteFloat32(s.Name, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

// Loading a 64 MiB file tensor by tensor allocates about one copy of it (the destination
// buffers the caller keeps), never two: the allocation-size check the issue asks for.
func TestLoadAllocatesOneCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	const size = 64 << 20
	for _, dt := range []DType{F32, BF16} {
		path := largeFile(t, size, dt)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		// The float32 destination is the one copy a loader must allocate: the file's size
		// for F32, twice it for BF16 widened to float32.
		dstBytes := float64(st.Size()) * 4 / float64(dt.Size())
		for name, open := range openers() {
			t.Run(string(dt)+"/"+name, func(t *testing.T) {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				src, err := open(path)
				if err != nil {
					t.Fatal(err)
				}
				kept := map[string][]float32{}
				for _, n := range src.Names() {
					v, _, err := ReadFloat32(src, n)
					if err != nil {
						t.Fatal(err)
					}
					kept[n] = v
				}
				runtime.ReadMemStats(&after)
				if err := src.Close(); err != nil {
					t.Fatal(err)
				}
				alloc := after.TotalAlloc - before.TotalAlloc
				ratio := float64(alloc) / dstBytes
				t.Logf("%s %s: file %d bytes, allocated %d while loading (%.4f× the float32 result, %.4f× the file)",
					dt, name, st.Size(), alloc, ratio, float64(alloc)/float64(st.Size()))
				if ratio > 1.1 {
					t.Fatalf("loading allocated %.3f× the float32 result, want ≤ 1.1×", ratio)
				}
				runtime.KeepAlive(kept)
			})
		}
	}
}
