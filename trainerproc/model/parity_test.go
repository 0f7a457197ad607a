package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

// parityEnv enables TestTorchParity (make parity sets it); parityPython names the interpreter
// with torch (Debian's python3-torch installs for /usr/bin/python3).
const (
	parityEnv    = "SIMPLETUNER_PARITY"
	parityPython = "SIMPLETUNER_TORCH_PYTHON"
	parityTol    = 1e-4
)

// TestTorchParity runs the same weights and batch through this package (float32 CPU backend)
// and through the PyTorch reference bench/torch_dit.py, and requires the loss, the prediction
// and every parameter gradient to agree to a relative error below 1e-4, where the error of a
// tensor is max|go − torch| / max|torch|. It runs only when SIMPLETUNER_PARITY is set.
func TestTorchParity(t *testing.T) {
	if os.Getenv(parityEnv) == "" {
		t.Skipf("set %s=1 (make parity) to compare with the PyTorch reference", parityEnv)
	}
	py := os.Getenv(parityPython)
	if py == "" {
		py = "/usr/bin/python3"
	}
	if out, err := exec.Command(py, "-c", "import torch, numpy").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import torch (make parity installs python3-torch): %v\n%s", py, err, out)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "bench", "torch_dit.py"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flavour     string
		bsz, res, l int
	}{
		{"tiny", 3, 16, 12},
		{"small", 3, 32, 20},
	} {
		t.Run(tc.flavour, func(t *testing.T) { runParity(t, py, script, tc.flavour, tc.bsz, tc.res, tc.l) })
	}
}

func runParity(t *testing.T, py, script, flavour string, bsz, res, l int) {
	be, err := cpu.New(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	t.Log(be.Describe())
	e := engine.New(be)
	cfg, err := Flavour(flavour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(e, cfg, 11)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	// Perturb every weight so the zero-initialised output projections pass gradient to
	// everything (otherwise most gradients would be trivially zero on both sides).
	r := rand.New(rand.NewPCG(21, 22))
	for _, p := range m.Params() {
		v, err := p.ToHost()
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			v[i] += float32(0.02 * r.NormFloat64())
		}
		if err := be.Upload(p.Buffer(), v); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if err := m.Save(filepath.Join(dir, "model")); err != nil {
		t.Fatal(err)
	}
	b := makeBatch(cfg, bsz, res, l, 31)
	var ts []safetensors.Tensor
	add := func(st safetensors.Tensor, err error) {
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, st)
	}
	add(safetensors.FromFloat32("x0", safetensors.F32, b.shape, b.x0))
	add(safetensors.FromFloat32("eps", safetensors.F32, b.shape, b.eps))
	add(safetensors.FromFloat32("t", safetensors.F32, []int{bsz}, b.t))
	add(safetensors.FromInt32("tokens", []int{bsz, l}, b.c.Tokens))
	add(safetensors.FromFloat32("mask", safetensors.F32, []int{bsz, l}, b.c.Mask))
	data, err := safetensors.Marshal(ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	batchPath, outPath := filepath.Join(dir, "batch.safetensors"), filepath.Join(dir, "torch.safetensors")
	if err := os.WriteFile(batchPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, script, "parity", "--model", filepath.Join(dir, "model"), "--batch", batchPath, "--out", outPath)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=2", "OPENBLAS_NUM_THREADS=2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("torch_dit.py parity: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	ref, _, err := safetensors.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]float32{}
	for _, rt := range ref {
		if want[rt.Name], err = rt.Float32(); err != nil {
			t.Fatal(err)
		}
	}

	// Our side: the same computation as FlowLoss, keeping the prediction.
	s := e.Scope()
	x0, eps := e.FromHost(b.x0, b.shape...), e.FromHost(b.eps, b.shape...)
	target := e.Sub(eps, x0)
	xt := e.Add(x0, e.Mul(e.FromHost(b.t, bsz, 1, 1, 1), target))
	var pred, loss *engine.Tensor
	if err := engine.Catch(func() { pred = m.forward(xt, b.t, b.c); loss = e.MSELoss(pred, target) }); err != nil {
		t.Fatal(err)
	}
	if err := e.Backward(loss); err != nil {
		t.Fatal(err)
	}
	got := map[string][]float32{}
	host := func(x *engine.Tensor) []float32 {
		v, err := x.ToHost()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	got["loss"], got["output"] = host(loss), host(pred)
	for _, p := range m.Params() {
		got["grad."+p.Name] = host(p.Grad())
	}
	s.Close()
	engine.ZeroGrads(m.Params())

	// Key-projection biases have an exactly zero gradient (softmax is invariant to adding
	// q·b_k to every score of a row); both sides hold round-off there, so they are checked
	// against the gradients' overall scale instead of relative to themselves.
	var gscale float64
	for _, name := range gradNames(m) {
		gscale = math.Max(gscale, maxAbs(want[name]))
	}
	worst, worstName := 0.0, ""
	for _, name := range append([]string{"loss", "output"}, gradNames(m)...) {
		g, w := got[name], want[name]
		if len(g) != len(w) {
			t.Fatalf("%s: %d values here, %d from torch", name, len(g), len(w))
		}
		if strings.HasSuffix(name, "to_k.bias") || strings.HasSuffix(name, "k_proj.bias") {
			if a, b := maxAbs(g), maxAbs(w); a > 1e-6*gscale || b > 1e-6*gscale {
				t.Errorf("%s: structurally zero gradient is %.3g here, %.3g in torch (scale %.3g)", name, a, b, gscale)
			}
			continue
		}
		rel := maxRelErr(g, w)
		if name == "loss" || name == "output" || testing.Verbose() {
			t.Logf("%-60s max rel err %.3g", name, rel)
		}
		if rel > worst || math.IsNaN(rel) {
			worst, worstName = rel, name
		}
		if rel > parityTol || math.IsNaN(rel) {
			t.Errorf("%s: relative error %.3g > %g (max |torch| %.3g, max |go| %.3g)", name, rel, parityTol, maxAbs(w), maxAbs(g))
		}
	}
	t.Logf("%s: loss %.6g (torch %.6g); %d tensors compared, worst %.3g (%s)",
		flavour, got["loss"][0], want["loss"][0], len(m.Params())+2, worst, worstName)
	fmt.Printf("PARITY %s loss=%.3g output=%.3g worst_grad=%.3g (%s)\n", flavour,
		maxRelErr(got["loss"], want["loss"]), maxRelErr(got["output"], want["output"]), worst, worstName)
}

func gradNames(m *Model) []string {
	var n []string
	for _, p := range m.Params() {
		n = append(n, "grad."+p.Name)
	}
	return n
}

// maxRelErr is max|a−b| / max|b| (0 when both are all zero).
func maxRelErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i])-float64(b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	if den == 0 {
		return num
	}
	return num / den
}

func maxAbs(a []float32) float64 {
	var m float64
	for _, v := range a {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}
