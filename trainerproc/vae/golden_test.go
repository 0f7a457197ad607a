package vae

import (
	"path/filepath"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

// The golden fixtures come from diffusers' own AutoencoderKL run on PyTorch (see
// testdata/gen_golden.py for the commit, the shims and how to rerun it).
const (
	goldenDir = "testdata/tiny"
	goldenIO  = "testdata/tiny_io.safetensors"
	// goldenBF16 holds the reference's outputs for the same inputs with the weights rounded
	// to bf16 (testdata/gen_bf16ref.py).
	goldenBF16 = "testdata/tiny_bf16ref.safetensors"
)

// fp32Tol is the fp32 acceptance bound on max|ours − reference| / max|reference|.
const fp32Tol = 1e-4

// readGolden reads a fixture's tensors.
func readGolden(t *testing.T, path string) map[string]safetensors.Tensor {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts, err := f.All()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]safetensors.Tensor{}
	for _, x := range ts {
		out[x.Name] = x
	}
	return out
}

// toEngine uploads a fixture tensor.
func toEngine(t *testing.T, e *engine.Engine, x safetensors.Tensor) *engine.Tensor {
	t.Helper()
	v, err := x.Float32()
	if err != nil {
		t.Fatal(err)
	}
	var out *engine.Tensor
	if err := engine.Catch(func() { out = e.FromHost(v, x.Shape...) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(out.Free)
	return out
}

// goldenErrors runs the model on the fixture's inputs and returns the max relative error of
// the posterior mean, the posterior logvar and the decoded images against the reference
// outputs in refPath.
func goldenErrors(t *testing.T, e *engine.Engine, m *AutoencoderKL, refPath string) (mean, logvar, decoded float64) {
	t.Helper()
	io, ref := readGolden(t, goldenIO), readGolden(t, refPath)
	want := func(name string) []float32 {
		v, err := ref[name].Float32()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	mu, lv, err := m.Encode(toEngine(t, e, io["sample"]))
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Free()
	defer lv.Free()
	y, err := m.DecodeRaw(toEngine(t, e, io["z"]))
	if err != nil {
		t.Fatal(err)
	}
	defer y.Free()
	return maxRelErr(host(t, mu), want("posterior_mean")),
		maxRelErr(host(t, lv), want("posterior_logvar")),
		maxRelErr(host(t, y), want("decoded"))
}

// checkGolden compares m's outputs with the reference outputs in refPath at the fp32 bound
// and logs the errors.
func checkGolden(t *testing.T, e *engine.Engine, m *AutoencoderKL, refPath, label string) {
	t.Helper()
	mean, logvar, decoded := goldenErrors(t, e, m, refPath)
	t.Logf("%s, max relative error: mean %.3g, logvar %.3g, decoded %.3g", label, mean, logvar, decoded)
	for name, v := range map[string]float64{"posterior mean": mean, "posterior logvar": logvar, "decoded": decoded} {
		if v >= fp32Tol {
			t.Errorf("%s: %s: max relative error %.3g ≥ %g", label, name, v, fp32Tol)
		}
	}
}

// rewriteGolden stores the fixture's weights again as file in a fresh directory, with edit
// choosing names and dtypes, and returns the directory.
func rewriteGolden(t *testing.T, e *engine.Engine, file string, edit func(*diskTensor)) string {
	t.Helper()
	ref, err := Load(e, goldenDir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Free()
	dir := t.TempDir()
	writeCheckpoint(t, ref, dir, file, edit)
	return dir
}

func loadOrFail(t *testing.T, e *engine.Engine, dir string, opt LoadOptions) *AutoencoderKL {
	t.Helper()
	m, err := Load(e, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

func TestGoldenFP32(t *testing.T) {
	e, _ := newEngine(t)
	checkGolden(t, e, loadOrFail(t, e, goldenDir, LoadOptions{}), goldenIO, "fp32")
}

// TestGoldenLegacyNames loads the fixture with its attention tensors renamed to the legacy
// names and must reproduce the reference as well.
func TestGoldenLegacyNames(t *testing.T) {
	e, _ := newEngine(t)
	dir := rewriteGolden(t, e, WeightsFile(""), toLegacy)
	checkGolden(t, e, loadOrFail(t, e, dir, LoadOptions{}), goldenIO, "legacy names")
}

// TestGoldenBF16 stores the fixture's weights as BF16 (rounded to nearest even, as PyTorch
// rounds), loads that checkpoint back to f32, and compares with the reference run in fp32 on
// the same bf16-rounded weights: the fp32 bound applies, since only the storage is bf16. The
// distance to the unrounded reference is logged to show what bf16 storage itself costs.
func TestGoldenBF16(t *testing.T) {
	e, _ := newEngine(t)
	dir := rewriteGolden(t, e, WeightsFile("bf16"), func(d *diskTensor) { d.dtype = safetensors.BF16 })
	m := loadOrFail(t, e, dir, LoadOptions{Variant: "bf16"})
	checkGolden(t, e, m, goldenBF16, "bf16 weights vs the reference on bf16 weights")
	mean, logvar, decoded := goldenErrors(t, e, m, goldenIO)
	t.Logf("bf16 weights vs the fp32 reference: mean %.3g, logvar %.3g, decoded %.3g", mean, logvar, decoded)
	// A bf16 checkpoint saves back to the same bytes.
	roundTrip(t, e, dir, LoadOptions{Variant: "bf16"}, WeightsFile("bf16"))
}

// TestGoldenRoundTrip: the reference's own files load and save back byte for byte.
func TestGoldenRoundTrip(t *testing.T) {
	e, _ := newEngine(t)
	roundTrip(t, e, goldenDir, LoadOptions{}, filepath.Base(WeightsFile("")))
}

// TestGoldenFloat64Backend loads the fixture on the float64 reference backend, which takes
// the loader's staging path (no direct float32 memory to decode into), and must match the
// reference and save back the same bytes.
func TestGoldenFloat64Backend(t *testing.T) {
	be, err := cpu.NewFloat64(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	e := engine.New(be)
	checkGolden(t, e, loadOrFail(t, e, goldenDir, LoadOptions{}), goldenIO, "float64 backend")
	roundTrip(t, e, goldenDir, LoadOptions{}, WeightsFile(""))
}
