// Command pixartstep benchmarks one PixArt-Σ training step (trainerproc/model's
// PixArtTransformer2DModel: forward, SimpleTuner's ε loss on the first 4 of 8 channels,
// backward, optimizer update) on this machine against diffusers' own
// PixArtTransformer2DModel on Debian's PyTorch (bench/reference/torch_ref.py pixart-train),
// on the same shapes and threads, in the same run. Two configs: "900m" is PixArt-Σ 900M's
// transformer config (42 blocks of 16 heads × 72, caption channels 4096; random weights in
// its layout) at 512² (latents 64×64), a caption of 300 T5 states of which 120 are real;
// "tiny" is the parity fixture's config (trainerproc/model/testdata/pixart_tiny), to compare
// the per-op overheads. Each side runs in its own child process, so each peak RSS (the
// kernel's accounting of the child) is its own.
//
//	go run ./bench/pixartstep -configs tiny,900m -threads 2 \
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
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"simpletuner/bench/internal/benchkit"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/optim"
	"simpletuner/trainerproc/runner"
)

// sigma900M is PixArt-Σ 900M's transformer/config.json (the fields that shape the model).
const sigma900M = `{"_class_name": "PixArtTransformer2DModel", "num_layers": 42, "num_attention_heads": 16,
"attention_head_dim": 72, "cross_attention_dim": 1152, "caption_channels": 4096,
"in_channels": 4, "out_channels": 8, "patch_size": 2, "sample_size": 128,
"interpolation_scale": 2, "use_additional_conditions": false, "norm_type": "ada_norm_single",
"norm_elementwise_affine": false, "norm_eps": 1e-06, "activation_fn": "gelu-approximate",
"attention_bias": true, "num_embeds_ada_norm": 1000, "upcast_attention": false}
`

type options struct {
	configs                string
	threads, steps, warmup int
	tokens, realTokens     int
	latent900, latentTiny  int
	optimizer, blasChoice  string
	python, script, src    string
	noCheckpointing        bool
	child                  bool
	configDir              string
	latent                 int
	repeatTiny, layers     int
	cpuProfile             string
}

// result is what either child reports (the reference's JSON line has the same names).
type result struct {
	SecondsPerItem float64 `json:"seconds_per_item"`
	CPUPerItem     float64 `json:"cpu_seconds_per_item"`
	Loss           float64 `json:"loss"`
	Torch          string  `json:"torch,omitempty"`
	Optimizer      string  `json:"optimizer"`
	Backend        string  `json:"backend,omitempty"`
	EstimateMiB    float64 `json:"estimate_mib,omitempty"`
	PeakRSSMiB     float64 `json:"-"`
}

func main() {
	var o options
	flag.StringVar(&o.configs, "configs", "tiny,900m", "comma-separated configs: tiny, 900m")
	flag.IntVar(&o.threads, "threads", 2, "threads for both sides")
	flag.IntVar(&o.steps, "steps", 1, "timed steps of the 900m config (the median is reported)")
	flag.IntVar(&o.warmup, "warmup", 1, "untimed warm-up steps of the 900m config, both sides (the tiny one runs at least 3)")
	flag.IntVar(&o.repeatTiny, "tiny-steps", 20, "timed steps of the tiny config")
	flag.IntVar(&o.tokens, "tokens", 300, "caption length (T5 states)")
	flag.IntVar(&o.realTokens, "real-tokens", 120, "unmasked caption positions")
	flag.IntVar(&o.latent900, "latent", 64, "latent side of the 900m config (512 px: 64)")
	flag.IntVar(&o.latentTiny, "tiny-latent", 16, "latent side of the tiny config")
	flag.IntVar(&o.layers, "layers", 0, "blocks of the 900m config (0: its 42; fewer for a quick check)")
	flag.StringVar(&o.optimizer, "optimizer", "adamw_bf16", "our optimizer (trainerproc/optim name)")
	flag.BoolVar(&o.noCheckpointing, "no-checkpointing", false, "turn gradient checkpointing off on both sides")
	flag.StringVar(&o.python, "python", "", "interpreter with torch for the reference (empty: ours only)")
	flag.StringVar(&o.script, "script", "bench/reference/torch_ref.py", "the reference timing script")
	flag.StringVar(&o.src, "diffusers-src", "", "exported diffusers tree for the reference")
	flag.StringVar(&o.blasChoice, "blas", "openblas", "Go BLAS: openblas, gonum or auto")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "with -child: write a CPU profile of the timed steps")
	flag.BoolVar(&o.child, "child", false, "internal: run our side and print JSON")
	flag.StringVar(&o.configDir, "config-dir", "", "internal: transformer folder for -child")
	flag.IntVar(&o.latent, "child-latent", 0, "internal: latent side for -child")
	flag.Parse()
	benchkit.Main("pixartstep", o.child, func() error { return runChild(o) }, func() error { return run(o) })
}

func run(o options) error {
	if o.python != "" && o.src == "" {
		return errors.New("-python needs -diffusers-src")
	}
	tmp, err := os.MkdirTemp("", "pixartstep")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ckpt := !o.noCheckpointing
	fmt.Printf("PixArt-Σ training step, batch 1, caption %d states (%d real), %d threads, checkpointing %v, %d warm-up + %d timed steps (900m); ours: %s\n",
		o.tokens, o.realTokens, o.threads, ckpt, o.warmup, o.steps, o.optimizer)
	for _, name := range strings.Split(o.configs, ",") {
		name = strings.TrimSpace(name)
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var cfgText []byte
		latent, steps, warmup := o.latent900, o.steps, o.warmup
		switch name {
		case "900m":
			cfgText = []byte(sigma900M)
			if o.layers > 0 {
				cfgText = []byte(strings.Replace(sigma900M, `"num_layers": 42`, `"num_layers": `+strconv.Itoa(o.layers), 1))
			}
		case "tiny":
			if cfgText, err = os.ReadFile(filepath.Join("trainerproc", "model", "testdata", "pixart_tiny", model.ConfigFile)); err != nil {
				return fmt.Errorf("tiny config (run from the repository root): %w", err)
			}
			latent, steps, warmup = o.latentTiny, o.repeatTiny, max(o.warmup, 3)
		default:
			return fmt.Errorf("unknown config %q (tiny, 900m)", name)
		}
		cfgPath := filepath.Join(dir, model.ConfigFile)
		if err := os.WriteFile(cfgPath, cfgText, 0o644); err != nil {
			return err
		}
		cfg, err := model.ReadTransformerConfig(dir)
		if err != nil {
			return err
		}
		args := []string{"-child", "-config-dir", dir, "-child-latent", strconv.Itoa(latent), "-steps", strconv.Itoa(steps),
			"-warmup", strconv.Itoa(warmup), "-tokens", strconv.Itoa(o.tokens), "-real-tokens", strconv.Itoa(o.realTokens),
			"-threads", strconv.Itoa(o.threads), "-optimizer", o.optimizer, "-blas", o.blasChoice}
		if !ckpt {
			args = append(args, "-no-checkpointing")
		}
		ours, err := runJSON(exec.Command(self, args...), o.threads)
		if err != nil {
			return fmt.Errorf("%s ours: %w", name, err)
		}
		gflop := cfg.TrainFLOPs(1, latent, latent, o.tokens) / 1e9
		fmt.Printf("%s: %d layers, %d params, latents %d×%d (%d tokens), %.4g GFLOP/step (3× forward GEMMs, recompute not counted)\n",
			name, cfg.NumLayers, cfg.ParamCount(), latent, latent, (latent/cfg.PatchSize)*(latent/cfg.PatchSize), gflop)
		fmt.Printf("  ours:  %.3f s/step, %.3f CPU s/step, %.3g GFLOP/s, loss %.4f, peak RSS %.0f MiB (estimate %.0f MiB); %s\n",
			ours.SecondsPerItem, ours.CPUPerItem, gflop/ours.SecondsPerItem, ours.Loss, ours.PeakRSSMiB, ours.EstimateMiB, ours.Backend)
		if o.python == "" {
			continue
		}
		refArgs := []string{o.script, "pixart-train", "--config", cfgPath, "--latent", strconv.Itoa(latent),
			"--tokens", strconv.Itoa(o.tokens), "--real-tokens", strconv.Itoa(o.realTokens), "--threads", strconv.Itoa(o.threads),
			"--repeat", strconv.Itoa(steps), "--warmup", strconv.Itoa(warmup), "--diffusers-src", o.src}
		if ckpt {
			refArgs = append(refArgs, "--checkpointing")
		}
		ref, err := runJSON(exec.Command(o.python, refArgs...), o.threads)
		if err != nil {
			return fmt.Errorf("%s reference: %w", name, err)
		}
		fmt.Printf("  torch: %.3f s/step, %.3f CPU s/step, %.3g GFLOP/s, loss %.4f, peak RSS %.0f MiB (diffusers' model, torch %s, %s)\n",
			ref.SecondsPerItem, ref.CPUPerItem, gflop/ref.SecondsPerItem, ref.Loss, ref.PeakRSSMiB, ref.Torch, ref.Optimizer)
		fmt.Printf("  ratio torch/ours (>1: ours faster): wall %.2f×, CPU %.2f×\n",
			ref.SecondsPerItem/ours.SecondsPerItem, ref.CPUPerItem/ours.CPUPerItem)
	}
	return nil
}

// runJSON runs a child (benchkit.RunJSON) and adds its peak RSS.
func runJSON(cmd *exec.Cmd, threads int) (result, error) {
	var r result
	err := benchkit.RunJSON(cmd, threads, &r)
	r.PeakRSSMiB = benchkit.ChildPeakRSSMB(cmd)
	return r, err
}

// runChild builds the model with random weights in the config's layout and times training
// steps as the pixart family takes them.
func runChild(o options) error {
	runner.TuneGC(os.Getenv) // as the trainer binaries run
	be, err := benchkit.CPUBackend(o.threads, o.blasChoice)
	if err != nil {
		return err
	}
	defer be.Close()
	e := engine.New(be)
	cfg, err := model.ReadTransformerConfig(o.configDir)
	if err != nil {
		return err
	}
	ckpt := !o.noCheckpointing
	r := result{Optimizer: o.optimizer, Backend: be.Describe()}
	est, err := cfg.TrainingMemory(model.TrainShape{Batch: 1, Width: o.latent, Height: o.latent, CaptionLen: o.tokens, Checkpointing: ckpt}, be)
	if err != nil {
		return err
	}
	stateBytes, err := optim.StateBytesWith(o.optimizer, nil)
	if err != nil {
		return err
	}
	r.EstimateMiB = float64(est.Total()+int64(stateBytes)*int64(cfg.ParamCount())) / (1 << 20)
	m, err := model.New(e, cfg, 1)
	if err != nil {
		return err
	}
	defer m.Free()
	m.SetGradientCheckpointing(ckpt)
	opt, err := optim.New(o.optimizer, m.Trainable(), nil, 1)
	if err != nil {
		return err
	}
	b, l, lat := 1, o.tokens, o.latent
	mask := make([]float32, b*l)
	for i := range mask {
		if i%l < o.realTokens {
			mask[i] = 1
		}
	}
	var x0, eps, y *engine.Tensor
	if err := engine.Catch(func() {
		rng := engine.NewRNG(1)
		x0 = e.RandN(rng, 0, 1, b, cfg.InChannels, lat, lat)
		eps = e.RandN(rng, 0, 1, b, cfg.InChannels, lat, lat)
		y = e.RandN(rng, 0, 1, b, l, cfg.TextWidth)
	}); err != nil {
		return err
	}
	defer x0.Free()
	defer eps.Free()
	defer y.Free()
	coef := func(v float32) *engine.Tensor { return e.FromHost(slices.Repeat([]float32{v}, b), b, 1, 1, 1) }
	var times, cpu []float64
	for i := range o.warmup + o.steps {
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
		t0, c0 := time.Now(), benchkit.CPUSeconds()
		var loss float32
		var stepErr error
		err := engine.Catch(func() {
			s := e.Scope()
			defer s.Close()
			xt := e.Add(e.Mul(coef(0.8), x0), e.Mul(coef(0.6), eps))
			pred, err := m.ForwardEmbeds(xt, []float32{500}, model.Embeds{Y: y, Mask: mask, Len: l})
			if err != nil {
				stepErr = err
				return
			}
			lt := e.MSELoss(e.Slice(pred, 1, 0, cfg.InChannels), eps)
			if stepErr = e.Backward(lt); stepErr == nil {
				loss, stepErr = lt.Item()
			}
		})
		if err = errors.Join(err, stepErr); err != nil {
			return err
		}
		if err := opt.Step(1e-4); err != nil {
			return err
		}
		engine.ZeroGrads(m.Trainable())
		if i >= o.warmup {
			times = append(times, time.Since(t0).Seconds())
			cpu = append(cpu, benchkit.CPUSeconds()-c0)
		}
		r.Loss = float64(loss)
	}
	r.SecondsPerItem, r.CPUPerItem = benchkit.Median(times), benchkit.Median(cpu)
	return json.NewEncoder(os.Stdout).Encode(r)
}
