package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"simpletuner/internal/sysmem"
	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/model"
)

// Options configure a Runner. Zero values take the defaults.
type Options struct {
	// Version is reported by Info.
	Version string
	// Threads is the CPU backend's thread count (≤ 0: GOMAXPROCS). Results are bit-identical
	// only for the same thread count (OpenBLAS).
	Threads int
	// BLAS picks the GEMM library (default auto: OpenBLAS when found, else gonum).
	BLAS blas.Choice
	// CheckpointFS, when set, performs the checkpoint manager's file operations (tests slow
	// or fail them); nil is the real file system.
	CheckpointFS checkpoint.FS
	// NewBackend, when set, builds each run's engine backend instead of the CPU backend
	// (simpletuner-trainer-cuda passes its CUDA backend here). It gets the run's
	// --mixed_precision value ("" when Info asks).
	NewBackend func(mixedPrecision string) (engine.Backend, error)
	// BackendName is the backend Info reports when NewBackend is set (e.g. "cuda").
	BackendName string
	// Memory reads host memory and the cgroup's limit for the memory check (the zero
	// value reads the real /proc and /sys; tests give a tree of their own).
	Memory sysmem.FS
	// Getenv reads the trainer's environment for the Hugging Face Hub settings (HF_HOME,
	// HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, HOME); nil is os.Getenv.
	Getenv func(string) string
	// Now is the clock that paces download progress events; nil is time.Now.
	Now func() time.Time
}

// Runner implements kit.Runner for the dit trainer, on whichever engine backend Options picks.
type Runner struct {
	opts Options
}

var _ kit.Runner = (*Runner)(nil)

// New returns a Runner.
func New(o Options) *Runner {
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.BLAS == "" {
		o.BLAS = blas.ChoiceAuto
	}
	return &Runner{opts: o}
}

// Info implements kit.Runner: the backend (cpu, or Options.BackendName), its device
// description (the BLAS in use on the CPU), and family dit.
func (r *Runner) Info(context.Context) (plugins.Info, error) {
	name := "cpu"
	if r.opts.NewBackend != nil {
		name = r.opts.BackendName
	}
	be, err := r.newBackend("")
	if err != nil {
		return plugins.Info{}, fmt.Errorf("runner: %s backend: %w", name, err)
	}
	desc := be.Describe()
	_ = be.Close()
	return plugins.Info{Version: r.opts.Version, Backend: name, Devices: []string{desc},
		Families: []plugins.Family{{Name: "dit", Flavours: model.Flavours(), DefaultFlavour: "tiny"}}}, nil
}

// newBackend builds the engine backend of a run (or of Info and Validate, which close it):
// Options.NewBackend's, else the CPU backend.
func (r *Runner) newBackend(mixedPrecision string) (engine.Backend, error) {
	if r.opts.NewBackend != nil {
		return r.opts.NewBackend(mixedPrecision)
	}
	return cpu.New(cpu.Options{Threads: r.opts.Threads, BLAS: r.opts.BLAS})
}

// Validate implements kit.Runner: the registry's checks plus what this trainer needs (family
// dit, a known flavour, a dataloader document that parses, a lycoris config that parses,
// base weights it can find: weightIssues) and, when all of that holds, whether the job
// fits this machine's memory (memoryIssue).
func (r *Runner) Validate(_ context.Context, raw json.RawMessage) ([]plugins.Issue, error) {
	s, issues, err := ParseSettings(raw)
	out := toPluginIssues(issues)
	if err != nil && len(issues.Errors()) == 0 {
		// A failure that is not an option issue (e.g. not a JSON object).
		return nil, err
	}
	if s != nil {
		wi, dir := r.weightIssues(s)
		out = append(out, wi...)
		if dir != "" {
			s.Pretrained = dir // the memory check reads the model's own config
		}
	}
	if s != nil && s.DataConfig != nil {
		dcfg, derr := data.ParseConfig(s.DataConfig, dataDefaults(s))
		if derr != nil {
			out = append(out, plugins.Issue{Option: "--data_backend_config", Severity: "error", Message: derr.Error()})
		} else if err == nil {
			is, merr := r.checkMemory(s, dcfg, nil)
			if merr != nil {
				return nil, merr
			}
			if is != nil {
				out = append(out, *is)
			}
		}
	}
	return out, nil
}

// checkMemory runs memoryIssue for a parsed job on be (nil: a backend of its own, closed
// afterwards).
func (r *Runner) checkMemory(s *Settings, dcfg *data.Config, be engine.Backend) (*plugins.Issue, error) {
	mcfg, err := modelConfig(s)
	if err != nil {
		return nil, err
	}
	mcfg.Conditioning = hasConditioning(dcfg)
	if be == nil {
		if be, err = r.newBackend(s.Cfg.String("--mixed_precision")); err != nil {
			return nil, fmt.Errorf("%w: backend: %w", ErrConfig, err)
		}
		defer be.Close()
	}
	return memoryIssue(s, mcfg, dcfg, be, r.opts.Memory)
}

// Run implements kit.Runner.
func (r *Runner) Run(ctx context.Context, job *kit.Job) error {
	ev := &emitter{job: job}
	s, _, err := ParseSettings(job.Config)
	if err != nil {
		ev.failed(err)
		return err
	}
	t := &trainer{r: r, opts: r.opts, job: job, ev: ev, s: s}
	t.bgCtx, t.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	defer t.close()
	err = t.run(ctx)
	if err == nil {
		t.bg.Wait() // a completed run lets background validation scripts finish
	}
	if err != nil && !isUserEnding(err) {
		ev.failed(err)
	}
	return err
}

func dataDefaults(s *Settings) data.Defaults {
	return data.Defaults{Resolution: s.Resolution, ResolutionType: s.ResolutionType, CacheDirVAE: s.CacheDirVAE}
}
