package pixart_test

import (
	"context"
	"errors"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/diffusion"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/encoders/encoderstest"
	"simpletuner/trainerproc/family/pixart"
	"simpletuner/trainerproc/family/pixart/pixarttest"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/safetensors"
	"simpletuner/trainerproc/validation"
)

func TestDescribe(t *testing.T) {
	d := pixart.Family{}.Describe()
	if d.Name != "pixart_sigma" || d.DefaultFlavour != "900M-1024-v0.6" || d.DefaultResolution != 1024 {
		t.Errorf("Describe = %+v", d)
	}
	want := []string{"600M-1024", "600M-2048", "600M-512", "900M-1024-v0.6", "900M-1024-v0.7-stage1", "900M-1024-v0.7-stage2"}
	if !slices.Equal(d.Flavours, want) {
		t.Errorf("flavours %v, want %v", d.Flavours, want)
	}
	if r := pixart.Repo("900M-1024-v0.6"); r != "terminusresearch/pixart-900m-1024-ft-v0.6" {
		t.Errorf("Repo = %q", r)
	}
	if o := (pixart.Family{}).Overrides(); !slices.Equal(o, []string{"transformer"}) {
		t.Errorf("Overrides = %v", o)
	}
}

func TestPlan(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	p, err := pixart.Family{}.Plan(family.Spec{Pretrained: dir, CaptionLen: 77})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "pixart_sigma/900M-1024-v0.6" || p.Align() != 64 || p.CaptionLen() != 300 {
		t.Errorf("plan %s: align %d, caption length %d", p.Name(), p.Align(), p.CaptionLen())
	}
	if p.SampleSize() != pixarttest.SampleSize {
		t.Errorf("SampleSize = %d, want %d (sample_size × VAE factor)", p.SampleSize(), pixarttest.SampleSize)
	}
	if c := p.Caches(); c != (family.Caches{Latents: true, TextEmbeds: true}) {
		t.Errorf("Caches = %+v", c)
	}
	name, rewrite := p.(family.CaptionPreprocessor).CaptionPreprocess()
	if name == "" || rewrite("  A <b>Cat</b> http://x.example/a.png ") == "  A <b>Cat</b> http://x.example/a.png " {
		t.Errorf("caption preprocessing %q does not clean", name)
	}
	if !p.(family.CheckpointingPlan).SupportsGradientCheckpointing() {
		t.Error("gradient checkpointing not supported")
	}
	n, err := p.TrainableParams(nil)
	if err != nil || n <= 0 {
		t.Errorf("TrainableParams = %d, %v", n, err)
	}
	// The flavour's shape sizes the plan before the pipeline is at hand: PixArt-Σ 900M.
	fp, err := pixart.Family{}.Plan(family.Spec{Pretrained: "terminusresearch/pixart-900m-1024-ft-v0.6"})
	if err != nil {
		t.Fatal(err)
	}
	if fp.SampleSize() != 1024 {
		t.Errorf("900M sample size %d, want 1024", fp.SampleSize())
	}
	if n, err := fp.TrainableParams(nil); err != nil || n < 900e6 || n > 915e6 {
		t.Errorf("900M has %d trainable parameters (%v), want ≈908.4 M", n, err)
	}
	for _, tc := range []struct {
		spec family.Spec
		want error
	}{
		{family.Spec{Flavour: "2B"}, family.ErrUnknownFlavour},
		{family.Spec{Sampler: "unipc"}, family.ErrUnknownSampler},
		{family.Spec{Sampler: "euler"}, nil},
		{family.Spec{Sampler: "dpm++"}, nil},
		{family.Spec{Flavour: "600M-512"}, nil},
	} {
		_, err := pixart.Family{}.Plan(tc.spec)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("Plan(%+v) = %v, want %v", tc.spec, err, tc.want)
		}
	}
}

func TestForce(t *testing.T) {
	p, err := pixart.Family{}.Plan(family.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	f := p.(family.SettingsForcer)
	for _, tc := range []struct {
		name string
		in   family.UserSettings
		want map[string]any
	}{
		{"defaults", family.UserSettings{MaxGradNorm: 2}, map[string]any{"--max_grad_norm": 0.01}},
		{"i know", family.UserSettings{MaxGradNorm: 2, IKnowWhatIAmDoing: true}, map[string]any{}},
		{"already low", family.UserSettings{MaxGradNorm: 0.005}, map[string]any{}},
		{"clipping off", family.UserSettings{MaxGradNorm: 0}, map[string]any{}},
		{"caption length", family.UserSettings{TokenizerMaxLength: 77, MaxGradNorm: 0.01}, map[string]any{"--tokenizer_max_length": 300}},
		{"caption length 300", family.UserSettings{TokenizerMaxLength: 300, MaxGradNorm: 0.01}, map[string]any{}},
		{"both", family.UserSettings{TokenizerMaxLength: 512, MaxGradNorm: 1, IKnowWhatIAmDoing: false},
			map[string]any{"--tokenizer_max_length": 300, "--max_grad_norm": 0.01}},
	} {
		got := map[string]any{}
		used, forced := f.Force(tc.in)
		applied := map[string]any{}
		if used.TokenizerMaxLength != tc.in.TokenizerMaxLength {
			applied["--tokenizer_max_length"] = used.TokenizerMaxLength
		}
		if used.MaxGradNorm != tc.in.MaxGradNorm {
			applied["--max_grad_norm"] = used.MaxGradNorm
		}
		for k, v := range applied {
			if tc.want[k] != v {
				t.Errorf("%s: the settings used have %s = %v, want %v", tc.name, k, v, tc.want[k])
			}
		}
		for _, fo := range forced {
			if fo.Message == "" {
				t.Errorf("%s: %s forced without a message", tc.name, fo.Option)
			}
			got[fo.Option] = fo.Value
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: forced %v, want %v", tc.name, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", tc.name, k, got[k], v)
			}
		}
	}
}

// build loads the tiny pipeline's model.
func build(t *testing.T, dir string, spec family.Spec) (*pixart.Model, *engine.Engine) {
	t.Helper()
	spec.Pretrained = dir
	p, err := pixart.Family{}.Plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	e := encoderstest.NewEngine(t)
	m, loaded, err := p.Build(e, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded {
		t.Error("Build did not report loaded weights")
	}
	t.Cleanup(m.Free)
	return m.(*pixart.Model), e
}

// captionLen is a short caption length for the loss tests' batches (the cache's length is
// the plan's; the model takes any).
const captionLen = 6

// batch is a batch of b latents of 4×h×w with random caption states, their masks padded
// after lens[i] tokens, and an empty caption of its own.
func batch(b, h, w int, seed uint64, lens ...int) *data.Batch {
	r := rand.New(rand.NewPCG(seed, 0))
	host := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	d := pixarttest.CaptionChannels
	mask := func(lens []int) []float32 {
		m := make([]float32, len(lens)*captionLen)
		for i, l := range lens {
			for j := range l {
				m[i*captionLen+j] = 1
			}
		}
		return m
	}
	return &data.Batch{B: b, L: captionLen, Captions: make([]string, b),
		Latents:   &data.Latents{C: 4, H: h, W: w, Values: host(b * 4 * h * w)},
		Text:      &data.TextEmbedBatch{B: b, L: captionLen, D: d, Hidden: host(b * captionLen * d), Mask: mask(lens), Lengths: lens},
		EmptyText: &data.TextEmbedBatch{B: 1, L: captionLen, D: d, Hidden: host(captionLen * d), Mask: mask([]int{1}), Lengths: []int{1}}}
}

// reference is the loss computed by hand from the draws Loss documents (uniform per sample,
// ε, uniform per sample for dropout, from the same seed), the schedule's coefficients and
// one forward pass of the transformer, in float64.
func reference(t *testing.T, m *pixart.Model, e *engine.Engine, sched *diffusion.Schedule, b *data.Batch, seed uint64, dropP, gamma float64) float64 {
	t.Helper()
	r := engine.NewRNG(seed)
	u, _ := e.RandU(r, 0, 1, b.B).ToHost()
	lat := b.Latents
	n := lat.C * lat.H * lat.W
	eps, _ := e.RandN(r, 0, 1, b.B*n).ToHost()
	drop, _ := e.RandU(r, 0, 1, b.B).ToHost()
	ts := sched.SampleTimesteps(u)
	xt := make([]float32, b.B*n)
	tf := make([]float32, b.B)
	for i, tt := range ts {
		sig, noi := sched.NoiseCoefficients(tt)
		for j := range n {
			xt[i*n+j] = sig*lat.Values[i*n+j] + noi*eps[i*n+j]
		}
		tf[i] = float32(tt)
	}
	l, d := b.Text.L, b.Text.D
	hidden := slices.Clone(b.Text.Hidden)
	mask := slices.Clone(b.Text.Mask)
	for i := range b.B {
		if float64(drop[i]) < dropP {
			copy(hidden[i*l*d:], b.EmptyText.Hidden)
			copy(mask[i*l:], b.EmptyText.Mask)
		}
	}
	defer e.NoGrad()()
	out, err := m.Transformer().ForwardEmbeds(e.FromHost(xt, b.B, lat.C, lat.H, lat.W), tf,
		model.Embeds{Y: e.FromHost(hidden, b.B, l, d), Mask: mask, Len: l})
	if err != nil {
		t.Fatal(err)
	}
	pred, _ := out.ToHost()
	outC := out.Dim(1)
	var total float64
	for i := range b.B {
		var s float64
		for c := range lat.C { // the first 4 of the 8 predicted channels
			for j := range lat.H * lat.W {
				p := float64(pred[((i*outC)+c)*lat.H*lat.W+j])
				q := float64(eps[i*n+c*lat.H*lat.W+j])
				s += (p - q) * (p - q)
			}
		}
		w := 1.0
		if gamma > 0 {
			snr := sched.SNR(ts[i])
			w = math.Min(snr, gamma) / snr
		}
		total += w * s / float64(n)
	}
	return total / float64(b.B)
}

func schedule(t *testing.T, dir string) *diffusion.Schedule {
	t.Helper()
	c, err := diffusion.ReadSchedulerConfig(filepath.Join(dir, "scheduler"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := diffusion.NewSchedule(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLossMatchesHandComputed(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	m, e := build(t, dir, family.Spec{})
	sched := schedule(t, dir)
	b := batch(2, 8, 12, 3, 4, 2)
	for _, tc := range []struct {
		name  string
		drop  float64
		gamma float64
	}{
		{"plain", 0, 0},
		{"min-snr", 0, 5},
		{"all captions dropped", 1, 0},
		{"half dropped, min-snr 1", 0.5, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const seed = 11
			loss, err := m.Loss(b, engine.NewRNG(seed), family.LossOptions{CaptionDropout: tc.drop, SNRGamma: tc.gamma})
			if err != nil {
				t.Fatal(err)
			}
			got, err := loss.Item()
			if err != nil {
				t.Fatal(err)
			}
			loss.Free()
			want := reference(t, m, e, sched, b, seed, tc.drop, tc.gamma)
			if math.Abs(float64(got)-want) > 1e-5*math.Abs(want) {
				t.Errorf("loss %v, hand-computed %v", got, want)
			}
		})
	}
}

// TestCaptionDropoutUsesEmptyCaption: with every caption dropped, the loss is the loss of
// the batch whose captions are all the empty caption, and it differs from the kept
// captions' loss.
func TestCaptionDropoutUsesEmptyCaption(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	m, _ := build(t, dir, family.Spec{})
	b := batch(2, 8, 8, 5, 3, 5)
	lossOf := func(b *data.Batch, p float64) float32 {
		l, err := m.Loss(b, engine.NewRNG(2), family.LossOptions{CaptionDropout: p})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Free()
		v, err := l.Item()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	dropped := lossOf(b, 1)
	empty := *b
	et := *b.Text
	et.Hidden = append(slices.Clone(b.EmptyText.Hidden), b.EmptyText.Hidden...)
	et.Mask = append(slices.Clone(b.EmptyText.Mask), b.EmptyText.Mask...)
	empty.Text = &et
	if got := lossOf(&empty, 0); got != dropped {
		t.Errorf("all dropped: %v; batch of empty captions: %v", dropped, got)
	}
	if kept := lossOf(b, 0); kept == dropped {
		t.Errorf("dropping the captions changed nothing (%v)", kept)
	}
}

func TestLossRefusesIncompleteBatch(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	m, _ := build(t, dir, family.Spec{})
	for name, mut := range map[string]func(b *data.Batch){
		"no latents":     func(b *data.Batch) { b.Latents = nil },
		"no text":        func(b *data.Batch) { b.Text = nil },
		"no empty":       func(b *data.Batch) { b.EmptyText = nil },
		"wrong channels": func(b *data.Batch) { b.Latents.C = 3 },
		"wrong width":    func(b *data.Batch) { b.Text.D = 7 },
	} {
		b := batch(1, 8, 8, 1, 2)
		mut(b)
		if _, err := m.Loss(b, engine.NewRNG(1), family.LossOptions{}); !errors.Is(err, pixart.ErrBatch) {
			t.Errorf("%s: %v, want ErrBatch", name, err)
		}
	}
}

// embeds is a one-caption text embedding of random states with n real tokens.
func embeds(seed uint64, n int) *data.TextEmbedBatch {
	b := batch(1, 1, 1, seed, n)
	return b.Text
}

func TestSample(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	m, _ := build(t, dir, family.Spec{})
	prompt, negative := embeds(7, 4), embeds(8, 1)
	req := validation.Request{Prompt: "a red square", Resolution: validation.Resolution{W: 64, H: 128}, Steps: 3, Guidance: 3.8,
		Seed: 12345, PromptEmbeds: prompt, NegativeEmbeds: negative}
	sample := func(r validation.Request) *image.RGBA {
		t.Helper()
		img, err := m.Sample(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if img.Bounds().Dx() != r.Resolution.W || img.Bounds().Dy() != r.Resolution.H {
			t.Fatalf("image %v for %s", img.Bounds(), r.Resolution)
		}
		return img
	}
	first := sample(req)
	if again := sample(req); !slices.Equal(first.Pix, again.Pix) {
		t.Error("same seed, different image")
	}
	other := req
	other.Seed = 1
	if slices.Equal(first.Pix, sample(other).Pix) {
		t.Error("another seed, same image")
	}
	noCFG := req
	noCFG.Guidance = 1
	if slices.Equal(first.Pix, sample(noCFG).Pix) {
		t.Error("guidance changed nothing")
	}
	neg := req
	neg.NegativeEmbeds = embeds(9, 3)
	if slices.Equal(first.Pix, sample(neg).Pix) {
		t.Error("the negative prompt changed nothing")
	}
	for _, name := range []string{"ddim", "euler", "dpm++"} {
		r := req
		r.Sampler = name
		var steps []int
		r.PreviewEvery = 2
		r.Preview = func(p validation.Preview) {
			if p.Image == nil || p.Total != 3 {
				t.Errorf("%s: preview %+v", name, p)
			}
			steps = append(steps, p.Step)
		}
		sample(r)
		if want := validation.PreviewSteps(3, 2); !slices.Equal(steps, want) {
			t.Errorf("%s: previews at %v, want %v", name, steps, want)
		}
	}
	for name, r := range map[string]validation.Request{
		"bad resolution": {Resolution: validation.Resolution{W: 60, H: 64}, Steps: 2, PromptEmbeds: prompt},
		"no embeds":      {Resolution: validation.Resolution{W: 64, H: 64}, Steps: 2},
		"no negative":    {Resolution: validation.Resolution{W: 64, H: 64}, Steps: 2, Guidance: 2, PromptEmbeds: prompt},
		"bad sampler":    {Resolution: validation.Resolution{W: 64, H: 64}, Steps: 2, PromptEmbeds: prompt, Sampler: "plms"},
	} {
		if _, err := m.Sample(context.Background(), r); !errors.Is(err, pixart.ErrSample) {
			t.Errorf("%s: %v, want ErrSample", name, err)
		}
	}
}

// tensorsOf reads a safetensors file's names, dtypes and shapes.
func tensorsOf(t *testing.T, path string) map[string]safetensors.TensorInfo {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]safetensors.TensorInfo{}
	for _, n := range f.Names() {
		ti, _ := f.Info(n)
		ti.Begin, ti.End = 0, 0
		out[n] = ti
	}
	return out
}

func TestSaveLayout(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	m, _ := build(t, dir, family.Spec{})
	out := t.TempDir()
	if err := m.Save(out); err != nil {
		t.Fatal(err)
	}
	base := tensorsOf(t, filepath.Join(dir, "transformer", "diffusion_pytorch_model.safetensors"))
	saved := tensorsOf(t, filepath.Join(out, "transformer", "diffusion_pytorch_model.safetensors"))
	if len(base) != len(saved) {
		t.Errorf("saved %d tensors, base has %d", len(saved), len(base))
	}
	for n, ti := range base {
		if s, ok := saved[n]; !ok || s.DType != ti.DType || !slices.Equal(s.Shape, ti.Shape) {
			t.Errorf("%s: saved %+v, base %+v", n, s, ti)
		}
	}
	for _, rel := range []string{"model_index.json", "transformer/config.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
		"text_encoder/config.json", "tokenizer/spiece.model", "scheduler/scheduler_config.json"} {
		want, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s differs from the base's", rel)
		}
	}
	if fi, err := os.Lstat(filepath.Join(out, "vae", "config.json")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("vae/config.json is not a link: %v", err)
	}
	// Saving again over the same folder replaces the links.
	if err := m.Save(out); err != nil {
		t.Fatalf("second save: %v", err)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	m, e := build(t, dir, family.Spec{})
	before := hostParams(t, m)
	ts, blobs, err := m.CheckpointWeights()
	if err != nil {
		t.Fatal(err)
	}
	base := tensorsOf(t, filepath.Join(dir, "transformer", "diffusion_pytorch_model.safetensors"))
	for _, st := range ts[0].Tensors {
		if base[st.Name].DType != st.DType {
			t.Errorf("%s checkpointed as %s, base stores %s", st.Name, st.DType, base[st.Name].DType)
		}
		if st.Data != nil {
			t.Errorf("%s holds a copy of the weight: checkpoint tensors fill at write time", st.Name)
		}
	}
	mgr := checkpoint.New(t.TempDir(), checkpoint.Options{})
	if _, err := mgr.Save(context.Background(), checkpoint.Checkpoint{Step: 3, State: checkpoint.TrainingState{GlobalStep: 3},
		Tensors: ts, Files: blobs}); err != nil {
		t.Fatal(err)
	}
	// Scramble the weights, then restore them.
	for _, p := range m.Trainable() {
		z := make([]float32, p.Numel())
		if err := e.Backend().Upload(p.Buffer(), z); err != nil {
			t.Fatal(err)
		}
	}
	l, err := mgr.Resume("latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RestoreWeights(l); err != nil {
		t.Fatal(err)
	}
	after := hostParams(t, m)
	for n, v := range before {
		if !slices.Equal(v, after[n]) {
			t.Errorf("%s not restored", n)
		}
	}
}

func hostParams(t *testing.T, m *pixart.Model) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, p := range m.Transformer().Params() {
		v, err := p.ToHost()
		if err != nil {
			t.Fatal(err)
		}
		out[p.Name] = v
	}
	return out
}

func TestMemoryEstimates(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	e := encoderstest.NewEngine(t)
	ws, _ := e.Backend().(engine.Workspacer)
	plan := func(ckpt bool) family.Plan {
		p, err := pixart.Family{}.Plan(family.Spec{Pretrained: dir, GradientCheckpointing: ckpt})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	shape := family.TrainShape{Batch: 2, Width: 256, Height: 256, OptimizerBytes: 8, Accumulation: 1}
	on, err := plan(true).TrainingMemory(shape, ws)
	if err != nil {
		t.Fatal(err)
	}
	off, err := plan(false).TrainingMemory(shape, ws)
	if err != nil {
		t.Fatal(err)
	}
	if on.Activations >= off.Activations || on.Weights != off.Weights {
		t.Errorf("checkpointing: %v; without: %v", on, off)
	}
	s, err := plan(false).SamplingMemory(family.SampleShape{Width: 256, Height: 256, Batch: 2}, ws)
	if err != nil {
		t.Fatal(err)
	}
	if s.Weights <= 0 || s.Activations <= 0 || s.Gradients != 0 {
		t.Errorf("sampling %v", s)
	}
}

// TestAdaptersTrain: LoRA on the PixArt transformer's attention projections trains only
// the adapters, and the loss's graph reaches them.
func TestAdaptersTrain(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	m, e := build(t, dir, family.Spec{})
	if err := m.AttachAdapters(family.AdapterConfig{Type: "standard", Rank: 2, Alpha: 2, Dropout: 0.1, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if !m.HasAdapters() || len(m.Trainable()) == 0 {
		t.Fatalf("adapters %v, %d trainable", m.HasAdapters(), len(m.Trainable()))
	}
	for _, p := range m.Trainable() {
		if !strings.Contains(p.Name, "lora") {
			t.Errorf("trainable %s is not an adapter", p.Name)
		}
	}
	loss, err := m.Loss(batch(2, 8, 8, 4, 3, 6), engine.NewRNG(9), family.LossOptions{CaptionDropout: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Backward(loss); err != nil {
		t.Fatal(err)
	}
	loss.Free()
	got := 0
	for _, p := range m.Trainable() {
		if p.Grad() != nil {
			got++
		}
	}
	if got == 0 {
		t.Error("no adapter got a gradient")
	}
	ts, err := m.AdapterTensors()
	if err != nil || len(ts) == 0 {
		t.Errorf("AdapterTensors: %d, %v", len(ts), err)
	}
}

// TestTutorialEstimate logs the estimate of the tutorial's run (900M at 1024², batch 2,
// adamw_bf16's slots, gradient checkpointing) and holds it to the model-families sizing:
// weights ≈ 3.6 GB in float32 (908 M), activations far below the uncheckpointed step's.
func TestTutorialEstimate(t *testing.T) {
	shape := family.TrainShape{Batch: 2, Width: 1024, Height: 1024, OptimizerBytes: 12, Accumulation: 2}
	est := func(ckpt bool) family.Memory {
		p, err := pixart.Family{}.Plan(family.Spec{GradientCheckpointing: ckpt})
		if err != nil {
			t.Fatal(err)
		}
		m, err := p.TrainingMemory(shape, nil)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	on, off := est(true), est(false)
	t.Logf("900M, 1024², batch 2: with checkpointing %v; without %v", on, off)
	if on.Weights < 3_600_000_000 || on.Weights > 4_100_000_000 || on.Activations*4 > off.Activations {
		t.Errorf("estimate with checkpointing %v, without %v", on, off)
	}
}

// TestVariant: --variant loads the transformer's variant files when the folder has them,
// and its plain weights when it has not (as the Hub client falls back); checkpoints keep the
// loaded file's dtypes either way.
func TestVariant(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	m, _ := build(t, dir, family.Spec{Variant: "fp16"}) // no fp16 files: plain weights
	if _, _, err := m.CheckpointWeights(); err != nil {
		t.Fatal(err)
	}
	tr := filepath.Join(dir, "transformer")
	if err := os.Rename(filepath.Join(tr, "diffusion_pytorch_model.safetensors"), filepath.Join(tr, "diffusion_pytorch_model.fp16.safetensors")); err != nil {
		t.Fatal(err)
	}
	build(t, dir, family.Spec{Variant: "fp16"})
	p, err := pixart.Family{}.Plan(family.Spec{Pretrained: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Build(encoderstest.NewEngine(t), 1); err == nil {
		t.Error("built without --variant from a folder holding only fp16 weights")
	}
}

// TestTransformerOverride: the transformer comes from the override folder
// (--pretrained_transformer_model_name_or_path), the rest from the pipeline.
func TestTransformerOverride(t *testing.T) {
	dir := pixarttest.PipelineDir(t)
	other := filepath.Join(t.TempDir(), "transformer")
	if err := os.Rename(filepath.Join(dir, "transformer"), other); err != nil {
		t.Fatal(err)
	}
	m, _ := build(t, dir, family.Spec{Components: map[string]string{"transformer": other}})
	if m.Transformer().Config().NumLayers != 2 {
		t.Errorf("override config %+v", m.Transformer().Config())
	}
	p, err := pixart.Family{}.Plan(family.Spec{Pretrained: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Build(encoderstest.NewEngine(t), 1); err == nil {
		t.Error("built from a pipeline without its transformer and no override")
	}
}
