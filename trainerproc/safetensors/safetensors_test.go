package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// goldenHeader is the JSON the reference writer produces for goldenTensors: "__metadata__"
// first, then tensors by descending dtype (F32 > BF16 > U8), names ascending within a dtype.
const goldenHeader = `{"__metadata__":{"format":"pt"},` +
	`"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
	`"c":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},` +
	`"b":{"dtype":"U8","shape":[3],"data_offsets":[10,13]}}`

// goldenFile is built by hand from the format description: 194 bytes of JSON padded with 6
// spaces to 200 (0xc8), then F32 1.0 and -2.0, BF16 1.0, and the bytes 1 2 3.
func goldenFile() []byte {
	var b []byte
	b = append(b, 0xc8, 0, 0, 0, 0, 0, 0, 0)
	b = append(b, goldenHeader...)
	b = append(b, "      "...)
	b = append(b, 0x00, 0x00, 0x80, 0x3f) // 1.0f
	b = append(b, 0x00, 0x00, 0x00, 0xc0) // -2.0f
	b = append(b, 0x80, 0x3f)             // bf16 1.0
	b = append(b, 1, 2, 3)
	return b
}

func goldenTensors(t *testing.T) []Tensor {
	t.Helper()
	b, err := FromUint8("b", []int{3}, []uint8{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	a, err := FromFloat32("a", F32, []int{2}, []float32{1, -2})
	if err != nil {
		t.Fatal(err)
	}
	c, err := FromFloat32("c", BF16, []int{1}, []float32{1})
	if err != nil {
		t.Fatal(err)
	}
	return []Tensor{b, a, c} // deliberately unsorted
}

func TestGoldenWrite(t *testing.T) {
	if len(goldenHeader) != 194 {
		t.Fatalf("golden header is %d bytes, the hand-computed padding assumes 194", len(goldenHeader))
	}
	got, err := Marshal(goldenTensors(t), map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	if want := goldenFile(); !bytes.Equal(got, want) {
		t.Fatalf("written bytes differ from the golden file\n got %q\nwant %q", got, want)
	}
}

func TestGoldenRead(t *testing.T) {
	ts, meta, err := Unmarshal(goldenFile())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(meta, map[string]string{"format": "pt"}) {
		t.Fatalf("metadata = %v", meta)
	}
	names := []string{}
	for _, x := range ts {
		names = append(names, x.Name)
	}
	if !reflect.DeepEqual(names, []string{"a", "c", "b"}) {
		t.Fatalf("data order = %v", names)
	}
	a, _ := ts[0].Float32()
	if !reflect.DeepEqual(a, []float32{1, -2}) {
		t.Fatalf("a = %v", a)
	}
	c, _ := ts[1].Float32()
	if !reflect.DeepEqual(c, []float32{1}) {
		t.Fatalf("c = %v", c)
	}
	b, _ := ts[2].Uint8()
	if !reflect.DeepEqual(b, []uint8{1, 2, 3}) {
		t.Fatalf("b = %v", b)
	}
}

func TestNoMetadataOmitsKey(t *testing.T) {
	x, _ := FromFloat32("w", F32, []int{1}, []float32{3})
	b, err := Marshal([]Tensor{x}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(metadataKey)) {
		t.Fatalf("nil metadata must not write %s: %q", metadataKey, b)
	}
	n := binary.LittleEndian.Uint64(b)
	if n%8 != 0 || b[8+n-1] != ' ' && b[8+n-1] != '}' {
		t.Fatalf("header length %d not padded", n)
	}
}

func randomTensors(r *rand.Rand) []Tensor {
	var ts []Tensor
	dts := []DType{F32, F16, BF16, F64, I64, I32, U8}
	for i := range 1 + r.IntN(8) {
		dt := dts[r.IntN(len(dts))]
		shape := make([]int, r.IntN(4))
		for j := range shape {
			shape[j] = r.IntN(5)
		}
		n, _ := numElements(shape)
		data := make([]byte, int(n)*dt.Size())
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		ts = append(ts, Tensor{Name: "t" + string(rune('a'+i)) + "." + string(dt), DType: dt, Shape: shape, Data: data})
	}
	return ts
}

func canonical(ts []Tensor) []Tensor {
	out := append([]Tensor(nil), ts...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		ts := randomTensors(r)
		meta := map[string]string{"k": "v<&>", "step": "7"}
		b, err := Marshal(ts, meta)
		if err != nil {
			t.Fatal(err)
		}
		got, gotMeta, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if !reflect.DeepEqual(canonical(got), canonical(ts)) {
			t.Fatalf("tensors differ after round trip")
		}
		if !reflect.DeepEqual(gotMeta, meta) {
			t.Fatalf("metadata %v != %v", gotMeta, meta)
		}
	}
}

func TestFloat32BitsExact(t *testing.T) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 1e-45, math.MaxFloat32, float32(math.Inf(-1)),
		math.Float32frombits(0x7fc00001), 0.1, -3.1415927}
	x, err := FromFloat32("x", F32, []int{len(vals)}, vals)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Marshal([]Tensor{x}, nil)
	got, _, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := got[0].Float32()
	for i := range vals {
		if math.Float32bits(f[i]) != math.Float32bits(vals[i]) {
			t.Fatalf("value %d: bits %08x != %08x", i, math.Float32bits(f[i]), math.Float32bits(vals[i]))
		}
	}
}

func TestFileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := os.WriteFile(path, goldenFile(), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Tensor("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing tensor: %v", err)
	}
	info, ok := f.Info("c")
	if !ok || info.DType != BF16 || info.Begin != 8 || info.End != 10 {
		t.Fatalf("info = %+v", info)
	}
}

func TestTruncationAndExtensionDetected(t *testing.T) {
	g := goldenFile()
	for cut := range len(g) {
		if _, _, err := Unmarshal(g[:cut]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("file truncated to %d bytes: err = %v, want ErrCorrupt", cut, err)
		}
	}
	if _, _, err := Unmarshal(append(goldenFile(), 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: err = %v", err)
	}
}

// withHeader builds a file from a raw header and n data bytes.
func withHeader(h string, n int) []byte {
	for len(h)%8 != 0 {
		h += " "
	}
	b := make([]byte, 8, 8+len(h)+n)
	binary.LittleEndian.PutUint64(b, uint64(len(h)))
	b = append(b, h...)
	return append(b, make([]byte, n)...)
}

func TestCorruptHeaders(t *testing.T) {
	huge := make([]byte, 16)
	binary.LittleEndian.PutUint64(huge, MaxHeaderSize+1)
	cases := []struct {
		name string
		file []byte
		msg  string
	}{
		{"empty", nil, "shorter than"},
		{"length bound", huge, "exceeds"},
		{"length past end", withHeader(`{}`, 0)[:9], "runs past"},
		{"not an object", withHeader(`[]`, 0), "does not start"},
		{"bad json", withHeader(`{"a":`, 0), "EOF"},
		{"trailing garbage", withHeader(`{}x`, 0), "trailing"},
		{"invalid utf8", withHeader("{\"\xff\":1}", 0), "UTF-8"},
		{"duplicate name", withHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2), "duplicate"},
		{"duplicate metadata key", withHeader(`{"__metadata__":{"k":"a","k":"b"}}`, 0), "duplicate"},
		{"metadata not string", withHeader(`{"__metadata__":{"k":1}}`, 0), "not a string"},
		{"unknown dtype", withHeader(`{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, 16), "unknown dtype"},
		{"missing field", withHeader(`{"a":{"dtype":"U8","shape":[1]}}`, 1), "needs dtype"},
		{"negative offset", withHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, 1), "non-negative"},
		{"float dim", withHeader(`{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, 1), "non-negative"},
		{"three offsets", withHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, 1), "2"},
		{"size mismatch", withHeader(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "needs 8 bytes"},
		{"gap", withHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2), "gap"},
		{"overlap", withHeader(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, 3), "overlaps"},
		{"reversed", withHeader(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"c":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}`, 1), "reversed"},
		{"past end", withHeader(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, 3), "truncated"},
		{"extra data", withHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 2), "unexpected bytes"},
		{"shape overflow", withHeader(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, 0), "overflows"},
		{"bytes overflow", withHeader(`{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}}`, 0), "overflows"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Unmarshal(c.file)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %q, want it to mention %q", err, c.msg)
			}
		})
	}
}

func TestValidEdgeCases(t *testing.T) {
	cases := map[string][]byte{
		"no tensors":           withHeader(`{}`, 0),
		"empty metadata":       withHeader(`{"__metadata__":{}}`, 0),
		"scalar":               withHeader(`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, 4),
		"zero-size tensors":    withHeader(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"c":{"dtype":"I64","shape":[0,3],"data_offsets":[1,1]}}`, 1),
		"unordered keys":       withHeader(`{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"data_offsets":[0,1],"shape":[1],"dtype":"U8"}}`, 2),
		"unknown tensor field": withHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":{"x":[1]}}}`, 1),
	}
	for name, file := range cases {
		if _, _, err := Unmarshal(file); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestWriterRejectsBadInput(t *testing.T) {
	good, _ := FromFloat32("w", F32, []int{1}, []float32{1})
	cases := map[string][]Tensor{
		"duplicate":  {good, good},
		"reserved":   {{Name: metadataKey, DType: U8, Shape: []int{0}}},
		"size":       {{Name: "x", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}},
		"dtype":      {{Name: "x", DType: "Q4", Shape: []int{1}, Data: make([]byte, 1)}},
		"negative":   {{Name: "x", DType: U8, Shape: []int{-1}}},
		"not utf8":   {{Name: "\xff", DType: U8, Shape: []int{0}}},
		"zero shape": {{Name: "x", DType: U8, Shape: []int{0}, Data: []byte{1}}},
	}
	for name, ts := range cases {
		if _, err := Marshal(ts, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := FromFloat32("x", F32, []int{3}, []float32{1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("count mismatch: %v", err)
	}
	if _, err := FromFloat32("x", I32, []int{1}, []float32{1}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("float32 to I32: %v", err)
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("disk full")
	}
	w.after--
	return len(p), nil
}

func TestWriteErrorPropagates(t *testing.T) {
	ts := goldenTensors(t)
	for after := range 3 {
		if _, err := Write(&failWriter{after: after}, ts, nil); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("after %d writes: err = %v", after, err)
		}
	}
}

func TestIntConversions(t *testing.T) {
	i64, _ := FromInt64("a", []int{3}, []int64{math.MinInt64, -1, math.MaxInt64})
	i32, _ := FromInt32("b", []int{2}, []int32{math.MinInt32, 7})
	f64, _ := FromFloat64("c", []int{2}, []float64{math.Pi, math.Copysign(0, -1)})
	b, err := Marshal([]Tensor{i64, i32, f64}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Tensor{}
	for _, x := range ts {
		by[x.Name] = x
	}
	if v, _ := by["a"].Int64(); !reflect.DeepEqual(v, []int64{math.MinInt64, -1, math.MaxInt64}) {
		t.Errorf("i64 = %v", v)
	}
	if v, _ := by["b"].Int32(); !reflect.DeepEqual(v, []int32{math.MinInt32, 7}) {
		t.Errorf("i32 = %v", v)
	}
	if v, _ := by["b"].Int64(); !reflect.DeepEqual(v, []int64{math.MinInt32, 7}) {
		t.Errorf("i32 as i64 = %v", v)
	}
	if v, _ := by["c"].Float64(); v[0] != math.Pi || math.Float64bits(v[1]) != math.Float64bits(math.Copysign(0, -1)) {
		t.Errorf("f64 = %v", v)
	}
	if _, err := by["c"].Int64(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("f64 as int64: %v", err)
	}
}

// TestLazyTensorsWriteTheSameBytes: tensors that fill their bytes at write time (Fill) give
// the same file as tensors holding them, each filled exactly once, and a Fill error stops
// the write with the tensor's name.
func TestLazyTensorsWriteTheSameBytes(t *testing.T) {
	a, err := FromFloat32("a", BF16, []int{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromFloat32("b", F32, []int{4}, []float32{-1, 0.5, 7, 9})
	if err != nil {
		t.Fatal(err)
	}
	want, err := Marshal([]Tensor{a, b}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	lazy := func(src Tensor) Tensor {
		return Tensor{Name: src.Name, DType: src.DType, Shape: src.Shape, Fill: func(dst []byte) error {
			calls[src.Name]++
			if len(dst) != len(src.Data) {
				return fmt.Errorf("dst of %d bytes, want %d", len(dst), len(src.Data))
			}
			copy(dst, src.Data)
			return nil
		}}
	}
	got, err := Marshal([]Tensor{lazy(a), lazy(b)}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) || calls["a"] != 1 || calls["b"] != 1 {
		t.Fatalf("lazy write differs (%d vs %d bytes) or fills %v", len(got), len(want), calls)
	}
	m, err := lazy(a).Materialize()
	if err != nil || !bytes.Equal(m.Data, a.Data) {
		t.Fatalf("Materialize: %v", err)
	}
	boom := Tensor{Name: "c", DType: F32, Shape: []int{1}, Fill: func([]byte) error { return errors.New("device lost") }}
	if _, err := Marshal([]Tensor{a, boom}, nil); err == nil || !strings.Contains(err.Error(), `"c"`) || !strings.Contains(err.Error(), "device lost") {
		t.Fatalf("fill error: %v", err)
	}
}
