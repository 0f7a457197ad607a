// Command vaeencode benchmarks the SDXL-architecture VAE (trainerproc/vae; block_out_channels
// [128, 256, 512, 512], two resnets per block, 32 groups, random weights of the real shapes)
// on this machine: the peak RSS while loading its checkpoint next to the checkpoint's size,
// and the time to encode one image (the posterior mean) at -size² on the CPU with -threads
// threads. With -python and -diffusers-src it runs the reference timing script
// (bench/reference/torch_ref.py vae-encode: diffusers' AutoencoderKL on PyTorch, same config,
// same threads) in the same run and prints the ratio (reference time / ours: above 1 means we
// are faster). Each side runs in its own child process, so each peak RSS is its own.
//
//	go run ./bench/vaeencode -size 1024 -threads 2 -repeat 2 \
//	    -python /usr/bin/python3 -diffusers-src /tmp/diffusers-src
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"simpletuner/bench/internal/benchkit"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/runner"
	"simpletuner/trainerproc/vae"
)

type options struct {
	size, threads, repeat int
	python, script, src   string
	blasChoice            string
	child                 bool
	modelDir              string
}

// ours is what our child reports.
type ours struct {
	SecondsPerItem float64 `json:"seconds_per_item"`
	CPUPerItem     float64 `json:"cpu_seconds_per_item"`
	RSSBeforeMiB   float64 `json:"rss_before_load_mib"`
	RSSLoadMiB     float64 `json:"peak_rss_after_load_mib"`
	PeakRSSMiB     float64 `json:"peak_rss_mib"`
	WeightsMiB     float64 `json:"weights_mib"`
	EstimateMiB    float64 `json:"encode_estimate_mib"`
	MeasuredMiB    float64 `json:"encode_measured_mib"`
	Backend        string  `json:"backend"`
}

// reference is the reference script's JSON line (the fields we use).
type reference struct {
	What           string  `json:"what"`
	SecondsPerItem float64 `json:"seconds_per_item"`
	CPUPerItem     float64 `json:"cpu_seconds_per_item"`
	Torch          string  `json:"torch"`
	RefCommit      string  `json:"ref_commit"`
}

func main() {
	var o options
	flag.IntVar(&o.size, "size", 1024, "image side in pixels")
	flag.IntVar(&o.threads, "threads", 2, "threads for both sides")
	flag.IntVar(&o.repeat, "repeat", 2, "timed encodes after one warm-up (the median is reported)")
	flag.StringVar(&o.python, "python", "", "interpreter with torch for the reference (empty: ours only)")
	flag.StringVar(&o.script, "script", "bench/reference/torch_ref.py", "the reference timing script")
	flag.StringVar(&o.src, "diffusers-src", "", "exported diffusers tree for the reference")
	flag.StringVar(&o.blasChoice, "blas", "openblas", "Go BLAS: openblas, gonum or auto")
	flag.BoolVar(&o.child, "child", false, "internal: run our side and print JSON")
	flag.StringVar(&o.modelDir, "model", "", "internal: VAE directory for -child")
	flag.Parse()
	benchkit.Main("vaeencode", o.child, func() error { return runChild(o) }, func() error { return run(o) })
}

func run(o options) error {
	if o.repeat < 1 || o.size < 8 || o.size%8 != 0 {
		return fmt.Errorf("-repeat %d must be at least 1 and -size %d a multiple of 8", o.repeat, o.size)
	}
	tmp, err := os.MkdirTemp("", "vaeencode")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "vae")
	if err := writeModel(dir); err != nil {
		return err
	}
	st, err := os.Stat(filepath.Join(dir, vae.WeightsFile("")))
	if err != nil {
		return err
	}
	fileMiB := float64(st.Size()) / (1 << 20)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var us ours
	if err := benchkit.RunJSON(exec.Command(self, "-child", "-model", dir, "-size", strconv.Itoa(o.size), "-threads", strconv.Itoa(o.threads),
		"-repeat", strconv.Itoa(o.repeat), "-blas", o.blasChoice), o.threads, &us); err != nil {
		return fmt.Errorf("ours: %w", err)
	}
	fmt.Printf("SDXL VAE, random weights: checkpoint %.1f MiB (F32), %.1f MiB as parameters; %s\n", fileMiB, us.WeightsMiB, us.Backend)
	fmt.Printf("load: peak RSS %.1f MiB, %.1f MiB before loading: %.3f× the checkpoint's size (goal ≤ 1.1×)\n",
		us.RSSLoadMiB, us.RSSBeforeMiB, (us.RSSLoadMiB-us.RSSBeforeMiB)/fileMiB)
	fmt.Printf("encode %d×%d, %d threads: ours %.2f s/image, %.2f CPU s/image (medians of %d after a warm-up); activations estimated %.1f MiB, measured %.1f MiB; process peak RSS %.1f MiB\n",
		o.size, o.size, o.threads, us.SecondsPerItem, us.CPUPerItem, o.repeat, us.EstimateMiB, us.MeasuredMiB, us.PeakRSSMiB)
	if o.python == "" {
		return nil
	}
	if o.src == "" {
		return errors.New("-python needs -diffusers-src")
	}
	var ref reference
	if err := benchkit.RunJSON(exec.Command(o.python, o.script, "vae-encode", "--size", strconv.Itoa(o.size), "--threads", strconv.Itoa(o.threads),
		"--repeat", strconv.Itoa(o.repeat), "--diffusers-src", o.src), o.threads, &ref); err != nil {
		return fmt.Errorf("reference: %w", err)
	}
	fmt.Printf("reference (%s, torch %s, diffusers %s): %.2f s/image, %.2f CPU s/image\n",
		ref.What, ref.Torch, ref.RefCommit, ref.SecondsPerItem, ref.CPUPerItem)
	fmt.Printf("ratio reference/ours (>1: ours faster): wall %.2f×, CPU %.2f×\n",
		ref.SecondsPerItem/us.SecondsPerItem, ref.CPUPerItem/us.CPUPerItem)
	return nil
}

// writeModel saves a randomly initialised SDXL VAE for the child to load.
func writeModel(dir string) error {
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: blas.ChoiceGonum})
	if err != nil {
		return err
	}
	defer be.Close()
	m, err := vae.New(engine.New(be), vae.SDXLConfig(), 1)
	if err != nil {
		return err
	}
	defer m.Free()
	return m.Save(dir)
}

// runChild loads the model (recording the peak RSS around the load), then times encodes.
func runChild(o options) error {
	runner.TuneGC(os.Getenv) // as the trainer binaries run
	be, err := benchkit.CPUBackend(o.threads, o.blasChoice)
	if err != nil {
		return err
	}
	defer be.Close()
	e := engine.New(be)
	pid := os.Getpid()
	r := ours{RSSBeforeMiB: benchkit.PeakRSSMB(pid), Backend: be.Describe()}
	m, err := vae.Load(e, o.modelDir, vae.LoadOptions{})
	if err != nil {
		return err
	}
	defer m.Free()
	r.RSSLoadMiB = benchkit.PeakRSSMB(pid)
	r.WeightsMiB = float64(m.WeightBytes()) / (1 << 20)
	r.EstimateMiB = float64(m.EncodeBytes(1, o.size, o.size)) / (1 << 20)

	var x *engine.Tensor
	if err := engine.Catch(func() { x = e.RandU(engine.NewRNG(1), -1, 1, 1, 3, o.size, o.size) }); err != nil {
		return err
	}
	defer x.Free()
	_, base := be.Stats()
	be.ResetPeak()
	var times, cpuTimes []float64
	for i := range o.repeat + 1 {
		t0, c0 := time.Now(), benchkit.CPUSeconds()
		mean, logvar, err := m.Encode(x)
		if err != nil {
			return err
		}
		mean.Free()
		logvar.Free()
		if i > 0 {
			times = append(times, time.Since(t0).Seconds())
			cpuTimes = append(cpuTimes, benchkit.CPUSeconds()-c0)
		}
	}
	r.SecondsPerItem, r.CPUPerItem = benchkit.Median(times), benchkit.Median(cpuTimes)
	// The input image is counted by the estimate, and was allocated before the baseline.
	r.MeasuredMiB = float64(be.Peak()-base+int64(x.Numel())*4) / (1 << 20)
	r.PeakRSSMiB = benchkit.PeakRSSMB(pid)
	return json.NewEncoder(os.Stdout).Encode(r)
}
