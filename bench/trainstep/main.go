// Command trainstep benchmarks one dit training step (forward, backward, AdamW update) of
// this trainer against the PyTorch reference (bench/torch_dit.py) on the same machine, with
// the same threads, batch and weights, in the same run. Each side runs in its own child
// process so that its peak RSS is its own. It prints a table with step times, the speed ratio
// (PyTorch time / ours: above 1 means we are faster), achieved GFLOP/s and their share of
// the BLAS's own sgemm peak, measured here first.
//
//	go run ./bench/trainstep -flavours tiny,small -threads 2 -batch 4
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"simpletuner/bench/internal/benchkit"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/optim"
)

type options struct {
	flavours                    string
	threads, batch, tokens, res int
	steps, warmup               int
	python, script, blasChoice  string
	child                       bool
	modelDir                    string
	peakSize                    int
	cpuProfile                  string
}

// result is what a child reports.
type result struct {
	StepS      float64 `json:"step_s"`
	Loss       float64 `json:"loss"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	Torch      string  `json:"torch,omitempty"`
}

func main() {
	var o options
	flag.StringVar(&o.flavours, "flavours", "tiny,small", "comma-separated dit flavours")
	flag.IntVar(&o.threads, "threads", 2, "threads for both sides (Go kernels + OpenBLAS; torch intra-op + OpenBLAS)")
	flag.IntVar(&o.batch, "batch", 4, "batch size")
	flag.IntVar(&o.tokens, "tokens", 32, "caption tokens per sample (a quarter is padding)")
	flag.IntVar(&o.res, "resolution", 0, "image side in pixels (0: the flavour's sample size)")
	flag.IntVar(&o.steps, "steps", 8, "timed steps (the median is reported)")
	flag.IntVar(&o.warmup, "warmup", 2, "untimed warm-up steps")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "interpreter with torch")
	flag.StringVar(&o.script, "script", "bench/torch_dit.py", "the PyTorch reference")
	flag.StringVar(&o.blasChoice, "blas", "openblas", "Go BLAS: openblas, gonum or auto")
	flag.IntVar(&o.peakSize, "peak-size", 1024, "square sgemm size for the peak measurement")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "with -child: write a CPU profile of the timed steps")
	flag.BoolVar(&o.child, "child", false, "internal: run our side for one flavour and print JSON")
	flag.StringVar(&o.modelDir, "model", "", "internal: model directory for -child")
	flag.Parse()
	benchkit.Main("trainstep", o.child, func() error { return runChild(o) }, func() error { return run(o) })
}

func run(o options) error {
	if _, err := exec.Command(o.python, "-c", "import torch").CombinedOutput(); err != nil {
		return fmt.Errorf("%s cannot import torch (make parity installs python3-torch): %w", o.python, err)
	}
	choice, err := blas.ParseChoice(o.blasChoice)
	if err != nil {
		return err
	}
	peak, desc, err := sgemmPeak(choice, o.threads, o.peakSize)
	if err != nil {
		return err
	}
	fmt.Printf("sgemm peak: %.1f GFLOP/s (%s, %d³)\n", peak, desc, o.peakSize)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "trainstep")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	type row struct {
		flavour     string
		res, params int
		flops       float64
		ours, torch result
	}
	var rows []row
	for _, fl := range strings.Split(o.flavours, ",") {
		cfg, err := model.Flavour(strings.TrimSpace(fl))
		if err != nil {
			return err
		}
		res := o.res
		if res == 0 {
			res = cfg.SampleSize
		}
		dir := filepath.Join(tmp, cfg.Flavour)
		if err := writeModel(cfg, dir); err != nil {
			return err
		}
		common := []string{"-batch", strconv.Itoa(o.batch), "-tokens", strconv.Itoa(o.tokens), "-resolution", strconv.Itoa(res),
			"-steps", strconv.Itoa(o.steps), "-warmup", strconv.Itoa(o.warmup), "-threads", strconv.Itoa(o.threads), "-blas", o.blasChoice}
		ours, err := runJSON(exec.Command(self, append([]string{"-child", "-model", dir}, common...)...), o.threads)
		if err != nil {
			return fmt.Errorf("%s ours: %w", cfg.Flavour, err)
		}
		torch, err := runJSON(exec.Command(o.python, o.script, "bench", "--model", dir, "--batch-size", strconv.Itoa(o.batch),
			"--resolution", strconv.Itoa(res), "--tokens", strconv.Itoa(o.tokens), "--steps", strconv.Itoa(o.steps),
			"--warmup", strconv.Itoa(o.warmup), "--threads", strconv.Itoa(o.threads)), o.threads)
		if err != nil {
			return fmt.Errorf("%s torch: %w", cfg.Flavour, err)
		}
		rows = append(rows, row{cfg.Flavour, res, cfg.ParamCount(), cfg.TrainFLOPs(o.batch, res, res, o.tokens), ours, torch})
	}
	fmt.Printf("threads %d, batch %d, %d caption tokens, %d warm-up + %d timed steps (median), step = forward+backward+AdamW; torch %s\n",
		o.threads, o.batch, o.tokens, o.warmup, o.steps, rows[0].torch.Torch)
	fmt.Printf("%-7s %5s %10s %11s %11s %7s %9s %9s %7s %7s %9s %9s\n",
		"flavour", "res", "params", "ours ms", "torch ms", "ratio", "ours GF/s", "torch GF/s", "ours %", "torch %", "ours MiB", "torch MiB")
	for _, r := range rows {
		og, tg := r.flops/r.ours.StepS/1e9, r.flops/r.torch.StepS/1e9
		fmt.Printf("%-7s %5d %10d %11.2f %11.2f %6.2fx %9.1f %10.1f %6.1f%% %6.1f%% %9.0f %9.0f\n",
			r.flavour, r.res, r.params, r.ours.StepS*1e3, r.torch.StepS*1e3, r.torch.StepS/r.ours.StepS,
			og, tg, 100*og/peak, 100*tg/peak, r.ours.PeakRSSMiB, r.torch.PeakRSSMiB)
	}
	fmt.Println("ratio = torch step time / ours (>1: ours faster); GF/s = matmul FLOPs (3× forward) per second; % of the sgemm peak above")
	return nil
}

// writeModel saves a freshly initialised model for both sides to load.
func writeModel(cfg model.Config, dir string) error {
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: blas.ChoiceGonum})
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

// runJSON runs a child (benchkit.RunJSON); the peak RSS comes from the kernel's accounting
// of the child.
func runJSON(cmd *exec.Cmd, threads int) (result, error) {
	var r result
	if err := benchkit.RunJSON(cmd, threads, &r); err != nil {
		return r, err
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.PeakRSSMiB = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	return r, nil
}

// sgemmPeak measures the BLAS's own single-precision GEMM rate on n×n×n products.
func sgemmPeak(choice blas.Choice, threads, n int) (float64, string, error) {
	g, err := blas.Open(choice, threads)
	if err != nil {
		return 0, "", err
	}
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)*0.1, float32(i%5)*0.1
	}
	g.Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n) // warm-up
	best := 0.0
	for range 5 {
		t0 := time.Now()
		g.Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
		best = max(best, 2*float64(n)*float64(n)*float64(n)/time.Since(t0).Seconds()/1e9)
	}
	return best, g.Describe(), nil
}

// runChild times our training steps for one model directory and prints a JSON result.
func runChild(o options) error {
	be, err := benchkit.CPUBackend(o.threads, o.blasChoice)
	if err != nil {
		return err
	}
	defer be.Close()
	e := engine.New(be)
	m, err := model.Load(e, o.modelDir)
	if err != nil {
		return err
	}
	defer m.Free()
	cfg := m.Config()
	opt, err := optim.New("adamw", m.Trainable(), nil, 0)
	if err != nil {
		return err
	}
	rng := engine.NewRNG(1)
	x0 := e.RandN(rng, 0, 1, o.batch, cfg.InChannels, o.res, o.res)
	defer x0.Free()
	c := model.Captions{Tokens: make([]int32, o.batch*o.tokens), Mask: make([]float32, o.batch*o.tokens), Len: o.tokens}
	for i := range c.Tokens {
		c.Tokens[i] = int32((i * 37) % cfg.VocabSize)
		if i%o.tokens < o.tokens*3/4 {
			c.Mask[i] = 1
		}
	}
	var times []float64
	var loss float32
	for i := 0; i < o.warmup+o.steps; i++ {
		if i == o.warmup && o.cpuProfile != "" {
			f, err := os.Create(o.cpuProfile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		t0 := time.Now()
		s := e.Scope()
		l, _, err := m.Loss(x0, c, rng, model.LossOptions{})
		if err != nil {
			return err
		}
		if err := e.Backward(l); err != nil {
			return err
		}
		if loss, err = l.Item(); err != nil {
			return err
		}
		s.Close()
		if err := opt.Step(1e-4); err != nil {
			return err
		}
		engine.ZeroGrads(m.Trainable())
		if i >= o.warmup {
			times = append(times, time.Since(t0).Seconds())
		}
	}
	sort.Float64s(times)
	return json.NewEncoder(os.Stdout).Encode(result{StepS: times[len(times)/2], Loss: float64(loss)})
}
