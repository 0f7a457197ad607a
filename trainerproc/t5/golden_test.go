package t5

import (
	"os"
	"path/filepath"
	"testing"

	"simpletuner/trainerproc/safetensors"
)

// goldenIO reads a fixture's inputs and outputs (see testdata/gen_golden.py and
// gen_ffproj.py: transformers' own T5EncoderModel run on Debian's torch): ids and mask as
// int32, references as float32.
func goldenIO(t *testing.T, path string) (ids, mask []int32, batch int, refs map[string][]float32) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := safetensors.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	refs = map[string][]float32{}
	for _, x := range ts {
		switch x.Name {
		case "input_ids", "attention_mask":
			v, err := x.Int64()
			if err != nil {
				t.Fatal(err)
			}
			out := make([]int32, len(v))
			for i := range v {
				out[i] = int32(v[i])
			}
			if x.Name == "input_ids" {
				ids, batch = out, x.Shape[0]
			} else {
				mask = out
			}
		default:
			if refs[x.Name], err = x.Float32(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ids, mask, batch, refs
}

// TestGoldenParity runs the fixtures and compares with the reference's last_hidden_state.
// The tiny set (3 layers, 32 buckets with 20 tokens so the logarithmic buckets are reached,
// two padded rows): the F32 checkpoint; the BF16 one against the reference run in float32
// on the same bf16-rounded weights (both to float32 precision) and against the F32
// reference within bf16's tolerance. The ffproj set: the other feed-forwards (ReLU and the
// exact GELU with one `wi`, gated SiLU), with an inner width unlike d_model.
func TestGoldenParity(t *testing.T) {
	tiny, ffproj := filepath.Join("testdata", "tiny_io.safetensors"), filepath.Join("testdata", "ffproj", "io.safetensors")
	cases := []struct {
		io, dir, ref string
		tol          float64
	}{
		{tiny, "tiny", "last_hidden_state", 1e-4},
		{tiny, "tiny_bf16", "last_hidden_state_bf16ref", 1e-4},
		{tiny, "tiny_bf16", "last_hidden_state", 3e-2},
		{ffproj, "ffproj/relu", "last_hidden_state_relu", 1e-4},
		{ffproj, "ffproj/gelu", "last_hidden_state_gelu", 1e-4},
		{ffproj, "ffproj/gated_silu", "last_hidden_state_gated_silu", 1e-4},
	}
	for _, c := range cases {
		t.Run(c.dir+"/"+c.ref, func(t *testing.T) {
			ids, mask, batch, refs := goldenIO(t, c.io)
			e, _ := newEngine(t)
			m, err := Load(e, filepath.Join("testdata", filepath.FromSlash(c.dir)), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			out, err := m.Forward(ids, mask, batch)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Free()
			want := refs[c.ref]
			if len(want) != out.Numel() {
				t.Fatalf("reference has %d values, output %v", len(want), out.Shape())
			}
			rel := maxRelErr(hostOf(t, out), want)
			t.Logf("max relative error %.3g", rel)
			if rel > c.tol {
				t.Errorf("max relative error %.3g > %g", rel, c.tol)
			}
		})
	}
}

// TestGoldenSaveRoundTrip loads the fixtures' checkpoints (F32 and BF16) and checks Save
// writes the same tensors, byte for byte, and the same config.json.
func TestGoldenSaveRoundTrip(t *testing.T) {
	for _, dir := range []string{"tiny", "tiny_bf16", "ffproj/relu"} {
		t.Run(dir, func(t *testing.T) {
			e, _ := newEngine(t)
			src := filepath.Join("testdata", filepath.FromSlash(dir))
			m, err := Load(e, src, LoadOptions{Map: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			dst := t.TempDir()
			if err := m.Save(dst); err != nil {
				t.Fatal(err)
			}
			in, out := readAll(t, src), readAll(t, dst)
			if len(in) != len(out) {
				t.Fatalf("%d tensors saved, %d loaded", len(out), len(in))
			}
			for n, a := range in {
				b := out[n]
				if a.DType != b.DType || string(a.Data) != string(b.Data) || len(a.Shape) != len(b.Shape) {
					t.Errorf("tensor %s does not round-trip", n)
				}
			}
			c1, _ := os.ReadFile(filepath.Join(src, ConfigFile))
			c2, _ := os.ReadFile(filepath.Join(dst, ConfigFile))
			if string(c1) != string(c2) {
				t.Error("config.json changed")
			}
		})
	}
}
