package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"simpletuner/internal/sysmem"
	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/dit"
	"simpletuner/trainerproc/family/pixart"
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
	// Families are the model families this trainer trains, keyed by --model_family; nil
	// is DefaultFamilies().
	Families *family.Registry
}

// DefaultFamilies is the registry of the families the bundled trainers train: dit and
// pixart_sigma.
func DefaultFamilies() *family.Registry {
	r, err := family.NewRegistry(dit.Family{}, pixart.Family{})
	if err != nil {
		panic(err) // the bundled families have distinct names
	}
	return r
}

// Runner implements kit.Runner for the families of Options.Families, on whichever engine
// backend Options picks.
type Runner struct {
	opts Options
	// reg is the options registry of this trainer's families: configurations are parsed
	// and validated with it. Built once by New, read-only afterwards.
	reg *options.Registry
	// err is New's failure to build reg (families the options registry refuses), returned
	// by every call.
	err error
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
	if o.Families == nil {
		o.Families = DefaultFamilies()
	}
	r := &Runner{opts: o}
	r.reg, r.err = options.New(options.Capabilities{Families: plugins.OptionFamilies(o.Families.Describe())})
	if r.err != nil {
		r.err = fmt.Errorf("runner: model families: %w", r.err)
	}
	return r
}

// Info implements kit.Runner: the backend (cpu, or Options.BackendName), its device
// description (the BLAS in use on the CPU), and the families of Options.Families.
func (r *Runner) Info(context.Context) (plugins.Info, error) {
	if r.err != nil {
		return plugins.Info{}, r.err
	}
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
		Families: r.opts.Families.Describe()}, nil
}

// newBackend builds the engine backend of a run (or of Info and Validate, which close it):
// Options.NewBackend's, else the CPU backend.
func (r *Runner) newBackend(mixedPrecision string) (engine.Backend, error) {
	if r.opts.NewBackend != nil {
		return r.opts.NewBackend(mixedPrecision)
	}
	return cpu.New(cpu.Options{Threads: r.opts.Threads, BLAS: r.opts.BLAS})
}

// Validate implements kit.Runner: the registry's checks plus what this trainer needs (a
// family it trains, a known flavour, a dataloader document that parses, a lycoris config
// that parses, base weights it can find: weightIssues) and, when all of that holds,
// whether the job fits this machine's memory (memoryIssue).
func (r *Runner) Validate(_ context.Context, raw json.RawMessage) ([]plugins.Issue, error) {
	s, issues, err := r.ParseSettings(raw)
	registry := toPluginIssues(issues)
	if err != nil && len(issues.Errors()) == 0 {
		// A failure that is not an option issue (e.g. not a JSON object).
		return nil, err
	}
	// Everything found below only the trainer can find: it is marked so that the daemon,
	// which made the registry's findings itself, passes its warnings on too.
	var out []plugins.Issue
	if s != nil {
		wi, dir := r.weightIssues(s)
		out = append(out, wi...)
		if dir != "" {
			s.Pretrained = dir // the memory check reads the model's own config
		}
		out = append(out, r.encoderIssues(s)...)
		out = append(out, s.forcedIssues()...)
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
	for i := range out {
		out[i].Origin = plugins.IssueOriginTrainer
	}
	return append(registry, out...), nil
}

// checkMemory runs memoryIssue for a parsed job on be (nil: a backend of its own, closed
// afterwards).
func (r *Runner) checkMemory(s *Settings, dcfg *data.Config, be engine.Backend) (*plugins.Issue, error) {
	p, err := r.plan(s, hasConditioning(dcfg))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if be == nil {
		if be, err = r.newBackend(s.Cfg.String("--mixed_precision")); err != nil {
			return nil, fmt.Errorf("%w: backend: %w", ErrConfig, err)
		}
		defer be.Close()
	}
	return memoryIssue(s, p, dcfg, be, r.opts.Memory)
}

// plan resolves a job's model: its family from Options.Families (family.ErrUnknownFamily),
// then the family's plan for the job's flavour, pretrained directory, conditioning and
// caption length. The errors are bare: ParseSettings names the option, Run wraps ErrConfig.
func (r *Runner) plan(s *Settings, conditioning bool) (family.Plan, error) {
	fam, err := r.opts.Families.Get(s.ModelFamily)
	if err != nil {
		return nil, err
	}
	return fam.Plan(family.Spec{Flavour: s.Flavour, Pretrained: s.Pretrained, Conditioning: conditioning, CaptionLen: s.TokenizerMaxLength,
		Components: s.Components, Variant: s.Cfg.String(optVariant), BF16Weights: bf16Weights(s.Cfg),
		GradientCheckpointing: s.GradientCheckpointing, Sampler: s.ValidationSampler})
}

// bf16Weights reports whether a job holds its trained weights at bf16 precision: a base
// model loaded at bf16 (--base_model_precision bf16) or the adamw_bf16 optimizer, whose
// parameters are bf16 in SimpleTuner.
func bf16Weights(cfg *options.Config) bool {
	return cfg.String("--base_model_precision") == "bf16" || cfg.String("--optimizer") == "adamw_bf16"
}

// Run implements kit.Runner.
func (r *Runner) Run(ctx context.Context, job *kit.Job) error {
	ev := &emitter{job: job}
	s, _, err := r.ParseSettings(job.Config)
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
