package t5

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

// newEngine returns a float32 CPU engine closed with the test.
func newEngine(t *testing.T) (*engine.Engine, *cpu.Backend[float32]) {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return engine.New(be), be
}

// smallConfig is a config small enough for unit tests whose 8 buckets and distance 20 reach
// the logarithmic buckets within 30 tokens, with an inner width (3·5) unlike d_model.
func smallConfig(t *testing.T, ffp string) Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(`{"vocab_size":50,"d_model":24,"d_kv":5,"num_heads":3,"d_ff":40,"num_layers":2,
		"relative_attention_num_buckets":8,"relative_attention_max_distance":20,"feed_forward_proj":"` + ffp + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// randomEncoder returns a random encoder for cfg, freed with the test.
func randomEncoder(t *testing.T, e *engine.Engine, cfg Config, seed uint64) *Encoder {
	t.Helper()
	m, err := NewRandom(e, cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

// batchInputs returns ids and a mask for b rows of n tokens, row r padded after n−3r tokens.
func batchInputs(b, n, vocab int) (ids, mask []int32) {
	ids, mask = make([]int32, b*n), make([]int32, b*n)
	for i := range ids {
		r, c := i/n, i%n
		ids[i] = int32((i*7 + 3) % vocab)
		if c < n-3*r {
			mask[i] = 1
		}
	}
	return ids, mask
}

func hostOf(t *testing.T, x *engine.Tensor) []float32 {
	t.Helper()
	v, err := x.ToHost()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// maxRelErr is max|got−want| / max|want|.
func maxRelErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		num = max(num, math.Abs(float64(got[i])-float64(want[i])))
		den = max(den, math.Abs(float64(want[i])))
	}
	return num / den
}

// TestShardedRoundTrip saves a random encoder in shards, loads it back (positioned reads
// and memory-mapped), and checks every weight and the forward pass are identical.
func TestShardedRoundTrip(t *testing.T) {
	e, _ := newEngine(t)
	cfg := smallConfig(t, "gated-gelu")
	m := randomEncoder(t, e, cfg, 11)
	dir := t.TempDir()
	if err := m.SaveSharded(dir, 8_000); err != nil {
		t.Fatal(err)
	}
	shards, _ := filepath.Glob(filepath.Join(dir, "model-*-of-*.safetensors"))
	if len(shards) < 3 {
		t.Fatalf("%d shards, want several", len(shards))
	}
	if _, err := os.Stat(filepath.Join(dir, WeightsBase+safetensors.IndexSuffix)); err != nil {
		t.Fatal(err)
	}
	ids, mask := batchInputs(2, 30, cfg.VocabSize)
	want, err := m.Forward(ids, mask, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, mapped := range []bool{false, true} {
		back, err := Load(e, dir, LoadOptions{Map: mapped})
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range back.Parameters() {
			if p.Name != m.params[i].Name || !slices.Equal(hostOf(t, p.Tensor), hostOf(t, m.params[i].Tensor)) {
				t.Fatalf("mapped=%v: weight %s differs", mapped, p.Name)
			}
		}
		got, err := back.Forward(ids, mask, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(hostOf(t, got), hostOf(t, want)) {
			t.Errorf("mapped=%v: forward differs after the round trip", mapped)
		}
		got.Free()
		back.Free()
	}
}

// checkpointTensor is one tensor of a hand-written checkpoint.
type checkpointTensor struct {
	dtype safetensors.DType
	shape []int
	v     []float32
}

// writeCheckpoint writes config.json and model.safetensors into a new directory.
func writeCheckpoint(t *testing.T, config string, ts map[string]checkpointTensor) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	for n, ct := range ts {
		specs = append(specs, safetensors.Spec{Name: n, DType: ct.dtype, Shape: ct.shape})
	}
	w, err := safetensors.Create(filepath.Join(dir, WeightsBase+".safetensors"), specs, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	for n, ct := range ts {
		if err := w.WriteFloat32(n, ct.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return dir
}

const tinyConfigJSON = `{"vocab_size":20,"d_model":8,"d_kv":4,"num_heads":2,"d_ff":12,"num_layers":2,
	"relative_attention_num_buckets":8,"relative_attention_max_distance":20,"feed_forward_proj":"gated-gelu"}`

// tinyTensors returns the weights of tinyConfigJSON with seeded values, each tensor stored
// as dtypeOf(name), and the embedding under the given names.
func tinyTensors(t *testing.T, dtypeOf func(string) safetensors.DType, embedNames ...string) map[string]checkpointTensor {
	t.Helper()
	cfg, err := ParseConfig([]byte(tinyConfigJSON))
	if err != nil {
		t.Fatal(err)
	}
	ts := map[string]checkpointTensor{}
	seed := float32(0.1)
	for i, s := range cfg.specs(SharedName) {
		n := 1
		for _, d := range s.shape {
			n *= d
		}
		v := make([]float32, n)
		for j := range v {
			v[j] = float32(math.Sin(float64(seed) * float64(i*131+j+1)))
		}
		names := []string{s.name}
		if s.name == SharedName {
			names = embedNames
		}
		for _, name := range names {
			ts[name] = checkpointTensor{dtypeOf(name), s.shape, v}
		}
	}
	return ts
}

// TestSaveRoundTripBytes loads checkpoints with mixed dtypes (F32, BF16, F16) and both
// embedding spellings, saves them, and checks the saved file has the same tensor names,
// shapes, dtypes and bytes, and the same config.json.
func TestSaveRoundTripBytes(t *testing.T) {
	mixed := func(name string) safetensors.DType {
		switch {
		case name == FinalNormName:
			return safetensors.F16
		case len(name)%3 == 0:
			return safetensors.BF16
		}
		return safetensors.F32
	}
	cases := []struct {
		name   string
		embeds []string
		ignore []string
	}{
		{"shared only", []string{SharedName}, nil},
		{"embed_tokens only", []string{EmbedTokensName}, nil},
		{"both spellings", []string{SharedName, EmbedTokensName}, nil},
		{"extra tensors skipped", []string{SharedName}, []string{"decoder.final_layer_norm.weight"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newEngine(t)
			ts := tinyTensors(t, mixed, c.embeds...)
			for _, n := range c.ignore {
				ts[n] = checkpointTensor{safetensors.F32, []int{8}, make([]float32, 8)}
			}
			src := writeCheckpoint(t, tinyConfigJSON, ts)
			m, err := Load(e, src, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			if !slices.Equal(m.Ignored, c.ignore) {
				t.Errorf("Ignored = %v, want %v", m.Ignored, c.ignore)
			}
			dst := t.TempDir()
			if err := m.Save(dst); err != nil {
				t.Fatal(err)
			}
			cfgBack, err := os.ReadFile(filepath.Join(dst, ConfigFile))
			if err != nil || string(cfgBack) != tinyConfigJSON {
				t.Errorf("config.json not written back unchanged: %v", err)
			}
			in, out := readAll(t, src), readAll(t, dst)
			for _, n := range c.ignore {
				delete(in, n)
			}
			if len(in) != len(out) {
				t.Fatalf("%d tensors saved, want %d", len(out), len(in))
			}
			for n, a := range in {
				b, ok := out[n]
				if !ok || a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) || string(a.Data) != string(b.Data) {
					t.Errorf("tensor %s does not round-trip", n)
				}
			}
		})
	}
}

func readAll(t *testing.T, dir string) map[string]safetensors.Tensor {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, WeightsBase+".safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := safetensors.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]safetensors.Tensor{}
	for _, x := range ts {
		out[x.Name] = x
	}
	return out
}

// TestLoadErrors checks what a bad checkpoint or config is refused with.
func TestLoadErrors(t *testing.T) {
	f32 := func(string) safetensors.DType { return safetensors.F32 }
	cases := []struct {
		name   string
		config string
		edit   func(map[string]checkpointTensor)
		want   error
	}{
		{"missing tensor", tinyConfigJSON, func(ts map[string]checkpointTensor) {
			delete(ts, "encoder.block.1.layer.1.DenseReluDense.wi_1.weight")
		}, ErrMissingTensor},
		{"missing embedding", tinyConfigJSON, func(ts map[string]checkpointTensor) { delete(ts, SharedName) }, ErrMissingTensor},
		{"wrong shape", tinyConfigJSON, func(ts map[string]checkpointTensor) {
			ts["encoder.block.0.layer.0.SelfAttention.q.weight"] = checkpointTensor{safetensors.F32, []int{4, 8}, make([]float32, 32)}
		}, ErrTensorShape},
		{"config disagrees with the weights", `{"vocab_size":20,"d_model":8,"d_kv":4,"num_heads":2,"d_ff":16,"num_layers":2,
			"relative_attention_num_buckets":8,"relative_attention_max_distance":20,"feed_forward_proj":"gated-gelu"}`, nil, ErrTensorShape},
		{"non-gated config, gated weights", `{"vocab_size":20,"d_model":8,"d_kv":4,"num_heads":2,"d_ff":12,"num_layers":2,
			"relative_attention_num_buckets":8,"relative_attention_max_distance":20,"feed_forward_proj":"relu"}`, nil, ErrMissingTensor},
		{"unknown feed_forward_proj", `{"vocab_size":20,"d_model":8,"feed_forward_proj":"gated-mish"}`, nil, ErrConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, be := newEngine(t)
			ts := tinyTensors(t, f32, SharedName)
			if c.edit != nil {
				c.edit(ts)
			}
			m, err := Load(e, writeCheckpoint(t, c.config, ts), LoadOptions{})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if m != nil {
				t.Fatal("an encoder came back with the error")
			}
			if n, _ := be.Stats(); n != 0 {
				t.Errorf("%d buffers left allocated after the failed load", n)
			}
		})
	}
	t.Run("no weights file", func(t *testing.T) {
		e, _ := newEngine(t)
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, ConfigFile), []byte(tinyConfigJSON), 0o644)
		if _, err := Load(e, dir, LoadOptions{}); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want os.ErrNotExist", err)
		}
	})
}

// TestForwardInputErrors checks inputs the encoder refuses before running.
func TestForwardInputErrors(t *testing.T) {
	e, _ := newEngine(t)
	m := randomEncoder(t, e, smallConfig(t, "gated-gelu"), 1)
	for _, c := range []struct {
		name  string
		ids   []int32
		mask  []int32
		batch int
	}{
		{"id past the vocabulary", []int32{1, 50}, nil, 1},
		{"negative id", []int32{-1, 2}, nil, 1},
		{"ragged batch", []int32{1, 2, 3}, nil, 2},
		{"short mask", []int32{1, 2}, []int32{1}, 1},
		{"empty", nil, nil, 1},
	} {
		if _, err := m.Forward(c.ids, c.mask, c.batch); !errors.Is(err, ErrInput) {
			t.Errorf("%s: err = %v, want ErrInput", c.name, err)
		}
	}
}

// TestMaskedRowsIndependent checks that a padded caption's real tokens do not see its
// padding: the same caption alone and next to a longer one, padded to the same length,
// gives the same states; and a nil mask equals an all-ones mask.
func TestMaskedRowsIndependent(t *testing.T) {
	e, _ := newEngine(t)
	cfg := smallConfig(t, "gated-gelu")
	m := randomEncoder(t, e, cfg, 3)
	ids, mask := batchInputs(2, 30, cfg.VocabSize)
	both, err := m.Forward(ids, mask, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Row 1 with its padding replaced by other ids: real positions must not change.
	alt := slices.Clone(ids[30:])
	for i := range alt {
		if mask[30+i] == 0 {
			alt[i] = int32((int(alt[i]) + 17) % cfg.VocabSize)
		}
	}
	single, err := m.Forward(alt, mask[30:], 1)
	if err != nil {
		t.Fatal(err)
	}
	b, s := hostOf(t, both), hostOf(t, single)
	d := cfg.DModel
	for pos := range 30 {
		if mask[30+pos] == 0 {
			continue
		}
		if err := maxRelErr(s[pos*d:(pos+1)*d], b[(30+pos)*d:(31+pos)*d]); err > 1e-6 {
			t.Fatalf("position %d: rel. error %.3g between batched and alone", pos, err)
		}
	}
	ones := make([]int32, 30)
	for i := range ones {
		ones[i] = 1
	}
	x, err := m.Forward(ids[:30], ones, 1)
	if err != nil {
		t.Fatal(err)
	}
	y, err := m.Forward(ids[:30], nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hostOf(t, x), hostOf(t, y)) {
		t.Error("a nil mask differs from an all-ones mask")
	}
}

// TestForwardFreesIntermediates checks a forward pass leaves only its output allocated and
// that the measured peak stays within the memory estimate (and not far below it).
func TestForwardFreesIntermediates(t *testing.T) {
	e, be := newEngine(t)
	cfg := smallConfig(t, "gated-gelu")
	m := randomEncoder(t, e, cfg, 5)
	const b, n = 3, 40
	ids, mask := batchInputs(b, n, cfg.VocabSize)
	buffers, live := be.Stats()
	be.ResetPeak()
	out, err := m.Forward(ids, mask, b)
	if err != nil {
		t.Fatal(err)
	}
	peak := be.Peak() - live
	nb, bytes := be.Stats()
	if nb != buffers+1 || bytes != live+int64(out.Numel()*4) {
		t.Errorf("after Forward: %d buffers, %d bytes; want %d, %d", nb, bytes, buffers+1, live+int64(out.Numel()*4))
	}
	out.Free()
	est := cfg.Memory(b, n)
	if est.Weights != live {
		t.Errorf("estimated weights %d, allocated %d", est.Weights, live)
	}
	if peak > est.Activations || float64(peak) < 0.6*float64(est.Activations) {
		t.Errorf("forward peak %d bytes, estimate %d", peak, est.Activations)
	}
	t.Logf("peak %d, estimate %d", peak, est.Activations)
}
