package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/dit"
	"simpletuner/trainerproc/safetensors"
	"simpletuner/trainerproc/validation"
)

// latentToy is a second family for the seam's tests, which trains on VAE latents and text
// embeddings from the data pipeline's caches: its "transformer" is one linear map from the
// mean caption embedding to the mean latent of each channel, trained by MSE. Its flavours
// "a" and "b" differ in name only. Build records what it finds on the engine in log.
type latentToy struct {
	log *toyLog
	// upper makes its text encoder take captions in upper case (family.CaptionPreprocessor).
	upper bool
	// force makes its plan force --max_grad_norm 0.01 as PixArt does (family.SettingsForcer).
	force bool
	// repo, when set, is every flavour's published model (family.PretrainedDefaulter).
	repo string
	// huge makes its training step need a terabyte; checkpointing makes its plan implement
	// gradient checkpointing (family.CheckpointingPlan).
	huge, checkpointing bool
}

// defaultingToy is a latentToy whose flavours name a model.
type defaultingToy struct{ latentToy }

func (f defaultingToy) DefaultPretrained(string) string { return f.repo }

// toyLog is what the toy family saw, read by the test once the job has ended; the mutex
// guards it against the trainer's goroutine.
type toyLog struct {
	mu sync.Mutex
	// liveAtBuild are the engine buffers alive when Build ran, one entry per Build.
	liveAtBuild []int64
	// batches are the latent and text shapes of the batches Loss saw: [B,C,H,W,L,D].
	batches [][6]int
	// lossOpts are the options of every Loss call; samples the requests Sample got.
	lossOpts []family.LossOptions
	samples  []validation.Request
}

func (latentToy) Describe() plugins.Family {
	return plugins.Family{Name: "latent_toy", Flavours: []string{"a", "b"}, DefaultFlavour: "a", MinResolution: 8, DefaultResolution: 32}
}

func (latentToy) Overrides() []string { return nil }

func (f latentToy) Plan(s family.Spec) (family.Plan, error) {
	if s.Flavour == "" {
		s.Flavour = "a"
	}
	if s.Flavour != "a" && s.Flavour != "b" {
		return nil, fmt.Errorf("%w: %q", family.ErrUnknownFlavour, s.Flavour)
	}
	if s.CaptionLen == 0 {
		s.CaptionLen = 8
	}
	if f.upper {
		return upperPlan{latentPlan{s: s, log: f.log}}, nil
	}
	if f.force {
		return forcingPlan{latentPlan{s: s, log: f.log}}, nil
	}
	if f.huge {
		return hugePlan{latentPlan{s: s, log: f.log}, f.checkpointing}, nil
	}
	return latentPlan{s: s, log: f.log}, nil
}

// upperPlan is a latentPlan whose captions are upper-cased for the text encoder.
type upperPlan struct{ latentPlan }

func (upperPlan) CaptionPreprocess() (string, func(string) string) { return "upper", strings.ToUpper }

// forcingPlan is a latentPlan that forces --max_grad_norm 0.01 unless the user knows better.
type forcingPlan struct{ latentPlan }

func (forcingPlan) Force(u family.UserSettings) (family.UserSettings, []family.Forced) {
	if u.MaxGradNorm > 0.01 && !u.IKnowWhatIAmDoing {
		u.MaxGradNorm = 0.01
		return u, []family.Forced{{Option: "--max_grad_norm", Value: 0.01, Message: "latent_toy requires --max_grad_norm=0.01"}}
	}
	return u, nil
}

// hugePlan is a latentPlan whose training step needs a terabyte, with or without gradient
// checkpointing.
type hugePlan struct {
	latentPlan
	checkpointing bool
}

func (p hugePlan) SupportsGradientCheckpointing() bool { return p.checkpointing }
func (hugePlan) TrainingMemory(family.TrainShape, engine.Workspacer) (family.Memory, error) {
	return family.Memory{Activations: 1 << 40}, nil
}

// Dimensions of the toy: the tiny VAE's latent channels and the test T5's width.
const toyC, toyD = 4, 32

type latentPlan struct {
	s   family.Spec
	log *toyLog
}

func (p latentPlan) Name() string                                       { return "latent_toy/" + p.s.Flavour }
func (p latentPlan) Flavour() string                                    { return p.s.Flavour }
func (latentPlan) Align() int                                           { return 8 }
func (latentPlan) SampleSize() int                                      { return 32 }
func (p latentPlan) CaptionLen() int                                    { return p.s.CaptionLen }
func (latentPlan) Caches() family.Caches                                { return family.Caches{Latents: true, TextEmbeds: true} }
func (latentPlan) TrainableParams(*family.AdapterConfig) (int64, error) { return toyC * toyD, nil }
func (latentPlan) TrainingMemory(family.TrainShape, engine.Workspacer) (family.Memory, error) {
	return family.Memory{Weights: toyC * toyD * 4}, nil
}
func (latentPlan) SamplingMemory(family.SampleShape, engine.Workspacer) (family.Memory, error) {
	return family.Memory{Weights: toyC * toyD * 4}, nil
}

func (p latentPlan) Build(e *engine.Engine, seed uint64) (family.Model, bool, error) {
	live, _ := e.Backend().(interface{ Stats() (int64, int64) }).Stats()
	p.log.mu.Lock()
	p.log.liveAtBuild = append(p.log.liveAtBuild, live)
	p.log.mu.Unlock()
	w := e.NewParameter("proj.weight", e.RandN(engine.NewRNG(seed), 0, 0.1, toyC, toyD))
	return &toyModel{e: e, w: w, log: p.log}, false, nil
}

type toyModel struct {
	e   *engine.Engine
	w   *engine.Parameter
	log *toyLog
}

func (m *toyModel) Trainable() []*engine.Parameter { return []*engine.Parameter{m.w} }
func (m *toyModel) AttachAdapters(family.AdapterConfig) error {
	return errors.New("latent_toy: no adapters")
}
func (m *toyModel) HasAdapters() bool                             { return false }
func (m *toyModel) AdapterTensors() ([]safetensors.Tensor, error) { return nil, nil }
func (m *toyModel) LoadAdapterTensors([]safetensors.Tensor) error { return nil }

// Sample records the request and renders a blank image of its size.
func (m *toyModel) Sample(_ context.Context, req validation.Request) (*image.RGBA, error) {
	m.log.mu.Lock()
	m.log.samples = append(m.log.samples, req)
	m.log.mu.Unlock()
	return image.NewRGBA(image.Rect(0, 0, req.Resolution.W, req.Resolution.H)), nil
}
func (m *toyModel) CheckpointWeights() ([]checkpoint.TensorFile, []checkpoint.Blob, error) {
	return nil, nil, nil
}
func (m *toyModel) RestoreWeights(*checkpoint.Loaded) error { return nil }
func (m *toyModel) Free()                                   { m.w.Free() }

// Loss is the MSE between W · (mean caption embedding) and each channel's mean latent.
func (m *toyModel) Loss(b *data.Batch, _ *engine.RNG, o family.LossOptions) (*engine.Tensor, error) {
	if b.Latents == nil || b.Text == nil || b.EmptyText == nil || b.Pixels != nil {
		return nil, fmt.Errorf("latent_toy: batch without latents or text embeddings (pixels %v)", b.Pixels != nil)
	}
	lt, tx := b.Latents, b.Text
	m.log.mu.Lock()
	m.log.batches = append(m.log.batches, [6]int{b.B, lt.C, lt.H, lt.W, tx.L, tx.D})
	m.log.lossOpts = append(m.log.lossOpts, o)
	m.log.mu.Unlock()
	e := m.e
	text := e.Mean(e.FromHost(tx.Hidden, tx.B, tx.L, tx.D), false, 1)           // [B,D]
	target := e.Mean(e.FromHost(lt.Values, b.B, lt.C, lt.H, lt.W), false, 2, 3) // [B,C]
	return e.MSELoss(e.MatMul(text, m.w.Tensor, false, true), target), nil
}

func (m *toyModel) Save(dir string) error {
	v, err := m.w.ToHost()
	if err != nil {
		return err
	}
	st, err := safetensors.FromFloat32(m.w.Name, safetensors.F32, m.w.Shape(), v)
	if err != nil {
		return err
	}
	b, err := safetensors.Marshal([]safetensors.Tensor{st}, nil)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "transformer", "diffusion_pytorch_model.safetensors"), b)
}

// TestInfoAndValidationFollowTheRegistry: the families a runner reports, parses and
// refuses are its registry's, not a fixed list; a family whose caches the data pipeline
// cannot prepare is refused at start with what it lacks.
func TestInfoAndValidationFollowTheRegistry(t *testing.T) {
	reg, err := family.NewRegistry(dit.Family{}, latentToy{log: &toyLog{}})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{Threads: 2, BLAS: blas.ChoiceAuto, Families: reg})
	info, err := r.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range info.Families {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"dit", "latent_toy"}) || info.Families[1].DefaultResolution != 32 || info.Families[0].DefaultResolution != 16 {
		t.Fatalf("Info families %+v", info.Families)
	}

	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 2, 16)
	cfg := baseConfig(filepath.Join(t.TempDir(), "out"), dataDir)
	cfg["--model_family"], cfg["--model_flavour"] = "latent_toy", "b"
	raw, _ := json.Marshal(cfg)
	s, _, err := r.ParseSettings(raw)
	if err != nil || s.ModelFamily != "latent_toy" {
		t.Fatalf("ParseSettings(latent_toy): %v", err)
	}
	for _, tc := range []struct{ family, flavour, want string }{
		{"pixart_sigma", "", "Unknown model family: pixart_sigma (known: dit, latent_toy)"},
		{"latent_toy", "tiny", "--model_flavour"},
	} {
		bad := clone(cfg)
		bad["--model_family"], bad["--model_flavour"] = tc.family, tc.flavour
		raw, _ := json.Marshal(bad)
		is, err := r.Validate(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		if errs := errorsOf(is); len(errs) == 0 || !strings.Contains(errs[0].Option+": "+errs[0].Message, tc.want) {
			t.Fatalf("%s/%s: issues %+v, want %q", tc.family, tc.flavour, is, tc.want)
		}
	}
	// The bundled registry knows dit and pixart_sigma only.
	if _, _, err := ParseSettings(raw); err == nil || !strings.Contains(err.Error(), "known: dit, pixart_sigma)") {
		t.Fatalf("default runner parsed latent_toy: %v", err)
	}

	// Without a pipeline there is no VAE or text encoder to fill the caches with: refused
	// at submission, and by a run that was not validated.
	is, err := r.Validate(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if errs := errorsOf(is); len(errs) != 1 || errs[0].Option != "--pretrained_model_name_or_path" || !strings.Contains(errs[0].Message, "latent_toy/b trains on VAE latents") {
		t.Fatalf("Validate(latent_toy without a base model) = %+v", is)
	}
	evs, st := startJob(t, r, cfg).wait(t, nil)
	if st.State != plugins.StateFailed || !strings.Contains(st.Error, "latent_toy/b encodes captions with its pipeline's text encoder: set --pretrained_model_name_or_path") {
		t.Fatalf("latent_toy run ended %q: %s\n%s", st.State, st.Error, tail(evs, 4))
	}
}
