//go:build cuda

package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/engine/cuda"
	"simpletuner/trainerproc/model"
)

// benchResult is one implementation's numbers for one model.
type benchResult struct {
	Impl      string  `json:"impl"`
	Flavour   string  `json:"flavour"`
	StepS     float64 `json:"step_s"`
	TokensS   float64 `json:"tokens_s"`
	MFU       float64 `json:"mfu"`
	PeakMiB   float64 `json:"peak_mib"`
	Loss      float64 `json:"loss"`
	Error     string  `json:"error,omitempty"`
	Precision string  `json:"precision"`
}

// peakFLOPs is the dense tensor-core peak MFU is measured against: bf16 for the bf16 path,
// TF32-free fp32 (CUDA cores) for fp32. Datasheet values for the SXM H100/H200.
func peakFLOPs(device string, prec cuda.Precision) float64 {
	hopper := strings.Contains(device, "H100") || strings.Contains(device, "H200")
	switch {
	case hopper && prec == cuda.PrecisionBF16:
		return 989.4e12
	case hopper:
		return 66.9e12
	case prec == cuda.PrecisionBF16:
		return 312e12 // A100
	default:
		return 19.5e12
	}
}

// runBench times training steps (forward, backward, AdamW on the device) of one flavour on
// the CUDA backend, then the same model in PyTorch (eager and torch.compile, bf16 autocast)
// through bench/gpucheck/torch_dit_gpu.py, and prints one BENCH line per implementation.
func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	flavour := fs.String("flavour", "base", "dit flavour")
	batch := fs.Int("batch", 16, "batch size")
	res := fs.Int("resolution", 64, "image side in pixels")
	tokens := fs.Int("tokens", 77, "caption tokens (a quarter padding)")
	steps := fs.Int("steps", 10, "timed steps (median reported)")
	warmup := fs.Int("warmup", 3, "untimed steps first")
	precS := fs.String("precision", "bf16", "bf16 or no")
	python := fs.String("python", "python3", "python with torch ('' skips PyTorch)")
	script := fs.String("torch-script", "torch_dit_gpu.py", "bench/gpucheck/torch_dit_gpu.py")
	work := fs.String("work", os.TempDir(), "directory for the shared model weights")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prec, err := cuda.ParsePrecision(*precS)
	if err != nil {
		return err
	}
	cfg, err := model.Flavour(*flavour)
	if err != nil {
		return err
	}
	dir := filepath.Join(*work, "model-"+*flavour)
	if err := writeModel(cfg, dir); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	flops := cfg.TrainFLOPs(*batch, *res, *res, *tokens)
	tok := float64(*batch) * float64((*res/cfg.PatchSize)*(*res/cfg.PatchSize))

	r, device := benchGo(dir, *batch, *res, *tokens, *steps, *warmup, prec)
	r.Flavour, r.Precision = *flavour, prec.String()
	peak := peakFLOPs(device, prec)
	finish := func(r *benchResult) {
		if r.StepS > 0 {
			r.TokensS = tok / r.StepS
			r.MFU = flops / r.StepS / peak
		}
	}
	finish(&r)
	results := []benchResult{r}
	if *python != "" {
		for _, mode := range []string{"eager", "compile"} {
			tr := benchTorch(*python, *script, dir, mode, *batch, *res, *tokens, *steps, *warmup, prec)
			tr.Flavour, tr.Precision = *flavour, prec.String()
			finish(&tr)
			results = append(results, tr)
		}
	}
	fmt.Printf("# %s, %s, batch %d, %d×%d px, %d tokens, %.3g GFLOP/step, peak %.0f TFLOP/s\n",
		*flavour, device, *batch, *res, *res, *tokens, flops/1e9, peak/1e12)
	for _, r := range results {
		fmt.Printf("BENCH\t%s\t%s\t%s\t%.2f\t%.0f\t%.1f\t%.0f\t%.4f\t%s\n", r.Flavour, r.Impl, r.Precision,
			r.StepS*1e3, r.TokensS, 100*r.MFU, r.PeakMiB, r.Loss, r.Error)
	}
	if results[0].Error != "" {
		return errors.New(results[0].Error)
	}
	return nil
}

// writeModel saves a freshly initialised model (seed 1) that both sides load, so they start
// from identical weights.
func writeModel(cfg model.Config, dir string) error {
	be, err := cpu.New(cpu.Options{BLAS: blas.ChoiceGonum})
	if err != nil {
		return err
	}
	defer be.Close()
	m, err := model.New(engine.New(be), cfg, 1)
	if err != nil {
		return err
	}
	defer m.Free()
	return m.Save(dir)
}

// benchGo times our steps: loss, backward, then AdamW with the device kernel (state on the
// GPU), the median of steps after warmup, synchronised before each clock read.
func benchGo(dir string, batch, res, tokens, steps, warmup int, prec cuda.Precision) (r benchResult, device string) {
	r.Impl = "go-cuda"
	fail := func(err error) (benchResult, string) {
		r.Error = err.Error()
		return r, device
	}
	be, err := cuda.New(cuda.Options{Precision: prec})
	if err != nil {
		return fail(err)
	}
	defer be.Close()
	device = be.Info().Name
	e := engine.New(be)
	m, err := model.Load(e, dir)
	if err != nil {
		return fail(err)
	}
	defer m.Free()
	cfg := m.Config()
	params := m.Trainable()
	state := make([][2]engine.Buffer, len(params))
	for i, p := range params {
		for j := range 2 {
			if state[i][j], err = be.Alloc(p.Numel()); err != nil {
				return fail(err)
			}
		}
	}
	defer func() {
		for _, s := range state {
			be.Free(s[0])
			be.Free(s[1])
		}
	}()
	rng := engine.NewRNG(1)
	x0 := e.RandN(rng, 0, 1, batch, cfg.InChannels, res, res)
	defer x0.Free()
	c := model.Captions{Tokens: make([]int32, batch*tokens), Mask: make([]float32, batch*tokens), Len: tokens}
	for i := range c.Tokens {
		c.Tokens[i] = int32((i * 37) % cfg.VocabSize)
		if i%tokens < tokens*3/4 {
			c.Mask[i] = 1
		}
	}
	const lr, b1, b2, eps, wd = 1e-4, 0.9, 0.999, 1e-8, 1e-2
	var times []float64
	var loss float32
	for i := 0; i < warmup+steps; i++ {
		if i == warmup {
			be.ResetPeak()
		}
		if err := be.Sync(); err != nil {
			return fail(err)
		}
		t0 := time.Now()
		var stepErr error
		err := engine.Catch(func() {
			s := e.Scope()
			defer s.Close()
			l, _, err := m.Loss(x0, c, rng, model.LossOptions{})
			if err == nil {
				err = e.Backward(l)
			}
			if err == nil {
				loss, err = l.Item()
			}
			stepErr = err
		})
		if err == nil {
			err = stepErr
		}
		if err != nil {
			return fail(err)
		}
		step := float64(i + 1)
		bc1, bc2 := 1-math.Pow(b1, step), 1-math.Pow(b2, step)
		for j, p := range params {
			if p.Grad() == nil {
				continue
			}
			be.AdamW(p.Buffer(), p.Grad().Buffer(), state[j][0], state[j][1], float32(1-lr*wd), b1, b2, eps,
				float32(lr/bc1), float32(math.Sqrt(bc2)))
		}
		engine.ZeroGrads(params)
		if err := be.Sync(); err != nil {
			return fail(err)
		}
		if i >= warmup {
			times = append(times, time.Since(t0).Seconds())
		}
	}
	sort.Float64s(times)
	_, peak, _ := be.MemStats()
	r.StepS, r.Loss, r.PeakMiB = times[len(times)/2], float64(loss), float64(peak)/(1<<20)
	return r, device
}

// benchTorch runs the PyTorch side in its own process and decodes its JSON line.
func benchTorch(python, script, dir, mode string, batch, res, tokens, steps, warmup int, prec cuda.Precision) benchResult {
	r := benchResult{Impl: "torch-" + mode}
	cmd := exec.Command(python, script, "--model", dir, "--mode", mode, "--precision", prec.String(),
		"--batch-size", fmt.Sprint(batch), "--resolution", fmt.Sprint(res), "--tokens", fmt.Sprint(tokens),
		"--steps", fmt.Sprint(steps), "--warmup", fmt.Sprint(warmup))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var tr struct {
		StepS   float64 `json:"step_s"`
		Loss    float64 `json:"loss"`
		PeakMiB float64 `json:"peak_mib"`
		Torch   string  `json:"torch"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &tr); err != nil {
		r.Error = fmt.Sprintf("decode %q: %v", lines[len(lines)-1], err)
		return r
	}
	r.StepS, r.Loss, r.PeakMiB = tr.StepS, tr.Loss, tr.PeakMiB
	r.Impl += " " + tr.Torch
	return r
}
