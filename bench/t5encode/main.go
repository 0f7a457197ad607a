// Command t5encode times the T5 encoder (package trainerproc/t5) on one caption at T5-XXL's
// dimensions (d_model 4096, d_ff 10240, 64 heads of 64, vocab 32128, gated-gelu) with
// random weights, on the CPU backend, and, when -python is given, the reference
// (bench/reference/torch_ref.py t5-encode: transformers' own T5EncoderModel on Debian's
// PyTorch) with the same layers, tokens and threads, one after the other. The full encoder
// has 24 blocks (19 GB in float32); -layers runs a few of them and the report scales the
// per-block time to 24, as the reference script does. It prints both sides and the speed
// ratio (reference time / ours: above 1 means we are faster).
//
// The garbage collector matters here: with gigabytes of live weights, Go's default GOGC=100
// lets as much garbage pile up before a collection, so nearly every activation the encoder
// allocates is fresh memory from the kernel, and first-touch page faults then cost more than
// the elementwise kernels themselves. Our side runs with the trainer binaries' target
// (runner.DefaultGCPercent) unless -gc-percent says otherwise.
//
// With -load it measures loading instead: a random encoder of -layers blocks is saved, then
// loaded by a child process (positioned reads, then a memory mapping), and each child's peak
// RSS is printed against the size of the weights on disk.
//
//	go run ./bench/t5encode -layers 2 -tokens 300 -threads 2 -repeat 3 \
//	    -python /usr/bin/python3 -transformers-src DIR
//	go run ./bench/t5encode -load -layers 2
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/runner"
	"simpletuner/trainerproc/t5"
)

type options struct {
	layers, tokens, threads, repeat int
	gcPercent                       int
	python, script, transformersSrc string
	blasChoice, cpuProfile          string
	// load measures loading instead: save a random encoder, load it in a child process.
	load      bool
	childLoad string // internal: the child's checkpoint directory
	childMap  bool
}

// reference is the JSON line torch_ref.py prints.
type reference struct {
	SecondsPerItem    float64 `json:"seconds_per_item"`
	SecondsPerLayer   float64 `json:"seconds_per_layer"`
	SecondsPer24      float64 `json:"seconds_per_item_24_layers"`
	CPUSecondsPerItem float64 `json:"cpu_seconds_per_item"`
	MaxRSSMB          float64 `json:"max_rss_mb"`
	Torch             string  `json:"torch"`
}

func main() {
	var o options
	flag.IntVar(&o.layers, "layers", 2, "encoder blocks to build (of T5-XXL's 24; about 0.77 GB of float32 weights each)")
	flag.IntVar(&o.tokens, "tokens", 300, "caption length in tokens (PixArt: 300, Flux: 512)")
	flag.IntVar(&o.threads, "threads", 2, "threads for both sides (Go kernels + OpenBLAS; torch intra-op)")
	flag.IntVar(&o.repeat, "repeat", 3, "timed runs after one warm-up (the median is reported)")
	flag.StringVar(&o.python, "python", "", "interpreter with torch for the reference (empty: ours only)")
	flag.StringVar(&o.script, "script", "bench/reference/torch_ref.py", "the reference timing script")
	flag.StringVar(&o.transformersSrc, "transformers-src", "", "the reference's source tree (see the script)")
	flag.StringVar(&o.blasChoice, "blas", "openblas", "Go BLAS: openblas, gonum or auto")
	flag.IntVar(&o.gcPercent, "gc-percent", runner.DefaultGCPercent, "debug.SetGCPercent for our side (default: the trainer's; 0: leave GOGC as it is; see the package doc)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of our timed runs to this file")
	flag.BoolVar(&o.load, "load", false, "measure loading: peak RSS of a child that loads a saved random encoder, against the files' size")
	flag.StringVar(&o.childLoad, "child-load", "", "internal: load this directory and report")
	flag.BoolVar(&o.childMap, "child-map", false, "internal: load through a memory mapping")
	flag.Parse()
	var err error
	switch {
	case o.childLoad != "":
		err = childLoad(o)
	case o.load:
		err = measureLoad(o)
	default:
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "t5encode:", err)
		os.Exit(1)
	}
}

// measureLoad saves a random encoder of -layers blocks (float32, sharded as save_pretrained
// shards) and loads it in a child process, once with positioned reads and once through a
// memory mapping, reporting each child's peak RSS against the size of the weights on disk.
func measureLoad(o options) error {
	cfg, err := xxl(o.layers)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "t5load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	be, err := cpu.New(cpu.Options{Threads: o.threads})
	if err != nil {
		return err
	}
	m, err := t5.NewRandom(engine.New(be), cfg, 0)
	if err != nil {
		return err
	}
	err = m.Save(dir)
	m.Free()
	be.Close()
	if err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	var size int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			size += st.Size()
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("loading T5-XXL dims, %d of 24 blocks: %d file(s), %.0f MiB on disk\n", o.layers, len(files), float64(size)/(1<<20))
	for _, mapped := range []bool{false, true} {
		cmd := exec.Command(exe, "-child-load", dir, "-child-map="+strconv.FormatBool(mapped), "-threads", strconv.Itoa(o.threads))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("child: %w", err)
		}
		peak := float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) * 1024 // kB on Linux
		fmt.Printf("  mapped=%v: %s, peak RSS %.0f MiB = %.3f × the files\n", mapped, strings.TrimSpace(string(out)), peak/(1<<20), peak/float64(size))
	}
	return nil
}

// childLoad loads the checkpoint in dir and prints how long it took.
func childLoad(o options) error {
	be, err := cpu.New(cpu.Options{Threads: o.threads})
	if err != nil {
		return err
	}
	defer be.Close()
	t0 := time.Now()
	m, err := t5.Load(engine.New(be), o.childLoad, t5.LoadOptions{Map: o.childMap})
	if err != nil {
		return err
	}
	defer m.Free()
	fmt.Printf("loaded in %.1f s", time.Since(t0).Seconds())
	return nil
}

// xxl is T5-v1.1-XXL's encoder config with the given number of blocks.
func xxl(layers int) (t5.Config, error) {
	return t5.ParseConfig(fmt.Appendf(nil, `{"vocab_size":32128,"d_model":4096,"d_kv":64,"num_heads":64,"d_ff":10240,
		"num_layers":%d,"relative_attention_num_buckets":32,"relative_attention_max_distance":128,
		"feed_forward_proj":"gated-gelu","layer_norm_epsilon":1e-6}`, layers))
}

func run(o options) error {
	cfg, err := xxl(o.layers)
	if err != nil {
		return err
	}
	ours, err := runOurs(o, cfg)
	if err != nil {
		return err
	}
	est := cfg.Memory(1, o.tokens)
	fmt.Printf("T5-XXL dims, %d of 24 blocks, %d tokens, %d threads, median of %d, GC percent %d\n", o.layers, o.tokens, o.threads, o.repeat, currentGCPercent())
	fmt.Printf("  ours (%s): %.3f s/caption, %.3f s/block, ×24 ≈ %.2f s/caption, CPU %.2f s, peak buffers %.0f MiB (estimate %.0f MiB)\n",
		ours.desc, ours.seconds, ours.perLayer, ours.per24, ours.cpu, float64(ours.peak)/(1<<20), float64(est.Total)/(1<<20))
	if o.python == "" {
		return nil
	}
	ref, err := runReference(o)
	if err != nil {
		return err
	}
	fmt.Printf("  reference (torch %s): %.3f s/caption, %.3f s/block, ×24 ≈ %.2f s/caption, CPU %.2f s, max RSS %.0f MiB\n",
		ref.Torch, ref.SecondsPerItem, ref.SecondsPerLayer, ref.SecondsPer24, ref.CPUSecondsPerItem, ref.MaxRSSMB)
	fmt.Printf("  ratio (reference / ours): %.2f per caption, %.2f per block\n", ref.SecondsPerItem/ours.seconds, ref.SecondsPerLayer/ours.perLayer)
	return nil
}

type ourResult struct {
	desc                          string
	seconds, perLayer, per24, cpu float64
	peak                          int64
}

// runOurs builds the encoder with random weights and times Forward on one caption (random
// ids, the last one </s>, mask all ones, as the reference does), and the part outside the
// blocks (embedding and final norm) to scale the block time.
func runOurs(o options, cfg t5.Config) (ourResult, error) {
	if o.gcPercent != 0 {
		debug.SetGCPercent(o.gcPercent)
	}
	be, err := cpu.New(cpu.Options{Threads: o.threads, BLAS: blas.Choice(o.blasChoice)})
	if err != nil {
		return ourResult{}, err
	}
	defer be.Close()
	e := engine.New(be)
	m, err := t5.NewRandom(e, cfg, 0)
	if err != nil {
		return ourResult{}, err
	}
	defer m.Free()
	ids := make([]int32, o.tokens)
	for i := range ids {
		ids[i] = int32(2 + (i*7919)%(cfg.VocabSize-2))
	}
	ids[len(ids)-1] = 1
	mask := make([]int32, o.tokens)
	for i := range mask {
		mask[i] = 1
	}
	be.ResetPeak()
	stopProfile, err := startProfile(o.cpuProfile)
	if err != nil {
		return ourResult{}, err
	}
	wall, cpuTime, err := timed(o.repeat, func() error {
		out, err := m.Forward(ids, mask, 1)
		if err == nil {
			out.Free()
		}
		return err
	})
	stopProfile()
	if err != nil {
		return ourResult{}, err
	}
	peak := be.Peak()
	embed := m.Parameters()[0].Tensor
	final := m.Parameters()[len(m.Parameters())-1].Tensor
	rest, _, err := timed(o.repeat, func() error {
		return engine.Catch(func() {
			defer e.NoGrad()()
			x := e.Embedding(embed, ids)
			y := e.RMSNorm(x, final, 1e-6)
			x.Free()
			y.Free()
		})
	})
	if err != nil {
		return ourResult{}, err
	}
	perLayer := max(wall-rest, 0) / float64(o.layers)
	return ourResult{desc: be.Describe(), seconds: wall, perLayer: perLayer, per24: perLayer*24 + rest, cpu: cpuTime, peak: peak}, nil
}

// currentGCPercent reads the collector's target (setting it back at once).
func currentGCPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// startProfile starts a CPU profile into path (nothing when path is empty) and returns the
// function that stops it.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// timed runs fn once to warm up, then repeat times, and returns the median wall time and
// the median process CPU time (all threads) of the timed runs.
func timed(repeat int, fn func() error) (wall, cpuTime float64, err error) {
	if err := fn(); err != nil {
		return 0, 0, err
	}
	var walls, cpus []float64
	for range max(repeat, 1) {
		c0 := processCPU()
		t0 := time.Now()
		if err := fn(); err != nil {
			return 0, 0, err
		}
		walls = append(walls, time.Since(t0).Seconds())
		cpus = append(cpus, processCPU()-c0)
	}
	return median(walls), median(cpus), nil
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 1 {
		return v[n/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// processCPU is the process's user+system CPU time in seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// runReference runs the reference script and parses its one JSON line.
func runReference(o options) (reference, error) {
	if o.transformersSrc == "" {
		return reference{}, fmt.Errorf("-python needs -transformers-src (see %s)", o.script)
	}
	cmd := exec.Command(o.python, o.script, "t5-encode",
		"--layers", strconv.Itoa(o.layers), "--tokens", strconv.Itoa(o.tokens),
		"--threads", strconv.Itoa(o.threads), "--repeat", strconv.Itoa(o.repeat),
		"--transformers-src", o.transformersSrc)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return reference{}, fmt.Errorf("reference: %w: %s", err, stderr.String())
	}
	lines := bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n"))
	var r reference
	if err := json.Unmarshal(lines[len(lines)-1], &r); err != nil {
		return reference{}, fmt.Errorf("reference output %q: %w", stdout.String(), err)
	}
	return r, nil
}
