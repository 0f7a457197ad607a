// Command conv benchmarks the CPU backend's Conv2D (forward, and forward plus backward with
// input, weight and bias gradients) against PyTorch's conv2d on the same machine, with the
// same thread count and shape, in the same run, and prints the ratio (PyTorch time / ours:
// above 1 means we are faster), the median over rounds that alternate the two sides. The default is a VAE-sized 3×3 convolution, 128→128 channels
// at 256×256.
//
//	go run ./bench/conv -threads 2
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"time"

	"simpletuner/bench/internal/benchkit"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
)

type options struct {
	threads, n, c, o, h, w, k int
	steps, warmup, rounds     int
	python, script, blas      string
}

// timings are median seconds per call.
type timings struct {
	Fwd   float64 `json:"fwd_s"`
	Step  float64 `json:"step_s"`
	Torch string  `json:"torch,omitempty"`
}

func main() {
	var o options
	flag.IntVar(&o.threads, "threads", 2, "threads for both sides")
	flag.IntVar(&o.n, "n", 1, "batch")
	flag.IntVar(&o.c, "c", 128, "input channels")
	flag.IntVar(&o.o, "o", 128, "output channels")
	flag.IntVar(&o.h, "h", 256, "image height")
	flag.IntVar(&o.w, "w", 256, "image width")
	flag.IntVar(&o.k, "k", 3, "square kernel size (padding k/2, stride 1)")
	flag.IntVar(&o.steps, "steps", 5, "timed calls (the median is reported)")
	flag.IntVar(&o.warmup, "warmup", 1, "untimed calls")
	flag.IntVar(&o.rounds, "rounds", 3, "alternating rounds of both sides")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "interpreter with torch")
	flag.StringVar(&o.script, "script", "bench/conv/torch_conv.py", "the PyTorch side")
	flag.StringVar(&o.blas, "blas", "openblas", "Go BLAS: openblas, gonum or auto")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "conv:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	// Rounds alternate the two sides so that a change in the machine's load hits both; the
	// ratio reported is the median of the rounds' ratios.
	var fwd, step []float64
	var ours, theirs timings
	var desc string
	for i := 0; i < o.rounds; i++ {
		var err error
		if ours, desc, err = runOurs(o); err != nil {
			return err
		}
		if theirs, err = runTorch(o); err != nil {
			return err
		}
		fwd = append(fwd, theirs.Fwd/ours.Fwd)
		step = append(step, theirs.Step/ours.Step)
		fmt.Printf("round %d: forward %.1fms ours, %.1fms torch; forward+backward %.1fms ours, %.1fms torch\n",
			i+1, ours.Fwd*1e3, theirs.Fwd*1e3, ours.Step*1e3, theirs.Step*1e3)
	}
	flops := 2 * float64(o.n) * float64(o.o) * float64(o.c*o.k*o.k) * float64(o.h*o.w)
	fmt.Printf("conv %d×%d, %d→%d channels, %d×%d, batch %d, %d threads, %d rounds\n", o.k, o.k, o.c, o.o, o.h, o.w, o.n, o.threads, o.rounds)
	fmt.Printf("ratio torch/ours (median of rounds): forward %.2f, forward+backward %.2f (last round ours: %.1f and %.1f GFLOP/s)\n",
		medianOf(fwd), medianOf(step), flops/ours.Fwd/1e9, 3*flops/ours.Step/1e9)
	fmt.Printf("ours: %s; torch %s\n", desc, theirs.Torch)
	return nil
}

func medianOf(v []float64) float64 {
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	return v[len(v)/2]
}

func median(fn func(), steps, warmup int) float64 {
	for i := 0; i < warmup; i++ {
		fn()
	}
	ts := make([]float64, steps)
	for i := range ts {
		t0 := time.Now()
		fn()
		ts[i] = time.Since(t0).Seconds()
	}
	return medianOf(ts)
}

func runOurs(o options) (timings, string, error) {
	choice, err := blas.ParseChoice(o.blas)
	if err != nil {
		return timings{}, "", err
	}
	be, err := cpu.New(cpu.Options{Threads: o.threads, BLAS: choice})
	if err != nil {
		return timings{}, "", err
	}
	defer be.Close()
	r := rand.New(rand.NewPCG(1, 2))
	alloc := func(n int) engine.Buffer {
		b, err := be.Alloc(n)
		if err != nil {
			panic(err)
		}
		for i, d := 0, cpu.Data[float32](b); i < len(d); i++ {
			d[i] = float32(r.NormFloat64())
		}
		return b
	}
	p := engine.Conv2DParams{N: o.n, C: o.c, H: o.h, Wd: o.w, O: o.o, KH: o.k, KW: o.k, Stride: 1,
		PadTop: o.k / 2, PadBottom: o.k / 2, PadLeft: o.k / 2, PadRight: o.k / 2}
	p.X, p.W, p.Bias, p.Y = alloc(o.n*o.c*o.h*o.w), alloc(o.o*o.c*o.k*o.k), alloc(o.o), alloc(o.n*o.o*o.h*o.w)
	gp := engine.Conv2DGradParams{Conv2DParams: p, DY: alloc(o.n * o.o * o.h * o.w),
		DX: alloc(o.n * o.c * o.h * o.w), DW: alloc(o.o * o.c * o.k * o.k), DBias: alloc(o.o)}
	var t timings
	t.Fwd = median(func() { be.Conv2D(p) }, o.steps, o.warmup)
	t.Step = median(func() { be.Conv2D(p); be.Conv2DBackward(gp) }, o.steps, o.warmup)
	return t, be.Describe(), nil
}

func runTorch(o options) (timings, error) {
	args := []string{o.script}
	for _, v := range []int{o.threads, o.n, o.c, o.o, o.h, o.w, o.k, o.steps, o.warmup} {
		args = append(args, strconv.Itoa(v))
	}
	cmd := exec.Command(o.python, args...)
	cmd.Env = benchkit.ThreadEnv(o.threads)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return timings{}, fmt.Errorf("%s: %w", o.python, err)
	}
	var t timings
	if err := json.Unmarshal(out, &t); err != nil {
		return timings{}, fmt.Errorf("torch output %q: %w", out, err)
	}
	return t, nil
}
