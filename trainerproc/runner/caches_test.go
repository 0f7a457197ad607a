package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/dit"
	"simpletuner/trainerproc/family/encoders"
	"simpletuner/trainerproc/family/encoders/encoderstest"
	"simpletuner/trainerproc/family/footprint"
	"simpletuner/trainerproc/vae"
)

// stageEvent is one lifecycle.stage event: its key, status and extra data.
type stageEvent struct {
	key, status string
	data        map[string]any
}

func stagesOf(t *testing.T, evs []plugins.Event) []stageEvent {
	t.Helper()
	var out []stageEvent
	for _, e := range eventsOf(evs, plugins.EventLifecycleStage) {
		d := dataOf(t, e)
		st, _ := d["stage"].(map[string]any)
		key, _ := st["key"].(string)
		status, _ := st["status"].(string)
		if label, _ := st["label"].(string); label == "" {
			t.Errorf("stage %s without a label", key)
		}
		out = append(out, stageEvent{key, status, d})
	}
	return out
}

// find is the index of the first stage event with key and status, or -1.
func find(ss []stageEvent, key, status string) int {
	return slices.IndexFunc(ss, func(s stageEvent) bool { return s.key == key && s.status == status })
}

// countFiles counts the files under dir whose name ends with ext.
func countFiles(t *testing.T, dir, ext string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ext) {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// latentSetup is a latent_toy job's pipeline directory (tiny VAE, test T5), its dataset of
// 4 images captioned "red" and "blue", and its two cache directories.
type latentSetup struct {
	root, pipe, dataDir string
	vaeCache, textCache string
	dataloader          string
}

func newLatentSetup(t *testing.T) *latentSetup {
	t.Helper()
	root := t.TempDir()
	ls := &latentSetup{root: root, pipe: encoderstest.PipelineDir(t, 3), dataDir: filepath.Join(root, "data"),
		vaeCache: filepath.Join(root, "vae-cache"), textCache: filepath.Join(root, "text-cache")}
	makeDataset(t, ls.dataDir, 2, 16)
	ls.dataloader = ls.dataloaderWith(t, 128)
	return ls
}

// dataloaderWith is the setup's dataloader with the text_embeds dataset's write_batch_size.
func (ls *latentSetup) dataloaderWith(t *testing.T, writeBatch int) string {
	t.Helper()
	dl, err := json.Marshal([]map[string]any{
		{"id": "shapes", "type": "local", "dataset_type": "image", "instance_data_dir": ls.dataDir, "caption_strategy": "textfile",
			"resolution": 16, "resolution_type": "pixel", "crop": false, "cache_dir_vae": ls.vaeCache},
		{"id": "text", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": ls.textCache, "write_batch_size": writeBatch},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(dl)
}

// config is a 3-step latent_toy job writing into the output folder name.
func (ls *latentSetup) config(name string) map[string]any {
	cfg := baseConfig(filepath.Join(ls.root, name), ls.dataDir)
	cfg["--model_family"], cfg["--model_flavour"] = "latent_toy", "a"
	cfg["--pretrained_model_name_or_path"] = ls.pipe
	cfg["--data_backend_config"] = ls.dataloader
	cfg["--train_batch_size"], cfg["--max_train_steps"] = 2, 3
	return cfg
}

// TestLatentFamilyTrainsFromCaches: a family asking for latents and text embeddings trains
// end to end from a pipeline directory. The first job encodes every caption (and the empty
// one) with the pipeline's T5 into the text_embeds dataset's cache_dir and every image with
// its VAE into cache_dir_vae, frees both encoders before the model is built, and feeds the
// loss scaled latents and embeddings; a second job with the same data encodes nothing; after
// one image changes, a third job encodes that image alone; a family that preprocesses its
// captions re-encodes them all; caches without directories are kept in memory.
func TestLatentFamilyTrainsFromCaches(t *testing.T) {
	log := &toyLog{}
	reg, err := family.NewRegistry(dit.Family{}, latentToy{log: log})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{Threads: 2, BLAS: blas.ChoiceAuto, Families: reg})
	ls := newLatentSetup(t)
	run := func(name string) []stageEvent {
		t.Helper()
		evs, st := startJob(t, r, ls.config(name)).wait(t, nil)
		if st.State != plugins.StateCompleted {
			t.Fatalf("%s: job ended %q: %s\n%s", name, st.State, st.Error, tail(evs, 6))
		}
		if l := losses(t, evs); len(l) != 3 {
			t.Fatalf("%s: losses %v", name, l)
		}
		ss := stagesOf(t, evs)
		text, vae, build := find(ss, stageTextEmbeds, "completed"), find(ss, stageVAECache, "completed"), find(ss, "init_load_base_model", "running")
		if text < 0 || vae < 0 || build < 0 || text > build || vae > build {
			t.Fatalf("%s: text cache done at event %d, VAE cache at %d, model build at %d: the caches come first", name, text, vae, build)
		}
		return ss
	}
	counts := func(ss []stageEvent, key string) [3]float64 {
		d := ss[find(ss, key, "completed")].data
		return [3]float64{d["hits"].(float64), d["built"].(float64), d["stale"].(float64)}
	}

	raw, err := json.Marshal(ls.config("validated"))
	if err != nil {
		t.Fatal(err)
	}
	if is, err := r.Validate(context.Background(), raw); err != nil || len(errorsOf(is)) > 0 {
		t.Fatalf("Validate: %+v, %v", is, err)
	}
	ss := run("first")
	if got := counts(ss, stageTextEmbeds); got != [3]float64{0, 3, 0} {
		t.Errorf("first job's text cache hits, built, stale = %v, want 0, 3 (red, blue, empty), 0", got)
	}
	if got := counts(ss, stageVAECache); got != [3]float64{0, 4, 0} {
		t.Errorf("first job's VAE cache = %v, want 0, 4, 0", got)
	}
	if n := countFiles(t, ls.textCache, ".te"); n != 3 {
		t.Errorf("%d text-embedding files in %s, want 3", n, ls.textCache)
	}
	if n := countFiles(t, ls.vaeCache, ".lat"); n != 4 {
		t.Errorf("%d latent files in %s, want 4", n, ls.vaeCache)
	}

	ss = run("second")
	if got := counts(ss, stageTextEmbeds); got != [3]float64{3, 0, 0} {
		t.Errorf("second job's text cache = %v, want all hits", got)
	}
	if got := counts(ss, stageVAECache); got != [3]float64{4, 0, 0} {
		t.Errorf("second job's VAE cache = %v, want all hits", got)
	}

	writeClassImage(t, filepath.Join(ls.dataDir, "red_a.png"), 16, "red", 7)
	ss = run("third")
	if got := counts(ss, stageTextEmbeds); got != [3]float64{3, 0, 0} {
		t.Errorf("third job's text cache = %v, want all hits", got)
	}
	if got := counts(ss, stageVAECache); got != [3]float64{3, 1, 1} {
		t.Errorf("third job's VAE cache = %v, want the changed image rebuilt", got)
	}
	if n := countFiles(t, ls.vaeCache, ".lat"); n != 4 {
		t.Errorf("%d latent files after the rebuild, want 4 (rewritten in place)", n)
	}

	// A family that preprocesses captions gets embeddings of its own.
	r = New(Options{Threads: 2, BLAS: blas.ChoiceAuto, Families: mustRegistry(t, latentToy{log: log, upper: true})})
	ss = run("fourth")
	if got := counts(ss, stageTextEmbeds); got != [3]float64{0, 3, 3} {
		t.Errorf("text cache with preprocessed captions = %v, want all 3 rebuilt", got)
	}
	if got := counts(ss, stageVAECache); got != [3]float64{4, 0, 0} {
		t.Errorf("fourth job's VAE cache = %v, want all hits", got)
	}

	// A memory text_embeds dataset and no cache_dir_vae: both caches live in the job.
	cfg := ls.config("fifth")
	cfg["--data_backend_config"] = dataloader(ls.dataDir, 16)
	evs, st := startJob(t, r, cfg).wait(t, nil)
	if st.State != plugins.StateCompleted {
		t.Fatalf("in-memory caches: job ended %q: %s\n%s", st.State, st.Error, tail(evs, 6))
	}
	ss = stagesOf(t, evs)
	if got := counts(ss, stageTextEmbeds); got != [3]float64{0, 3, 0} {
		t.Errorf("in-memory text cache = %v, want 3 built", got)
	}
	if got := counts(ss, stageVAECache); got != [3]float64{0, 4, 0} {
		t.Errorf("in-memory VAE cache = %v, want 4 built", got)
	}
	if n, m := countFiles(t, ls.textCache, ".te"), countFiles(t, ls.vaeCache, ".lat"); n != 3 || m != 4 {
		t.Errorf("%d text and %d latent files on disk after an in-memory job, want the 3 and 4 of before", n, m)
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	if !slices.Equal(log.liveAtBuild, []int64{0, 0, 0, 0, 0}) {
		t.Errorf("engine buffers alive when the model was built: %v, want none (encoders freed)", log.liveAtBuild)
	}
	for _, b := range log.batches {
		// 16-pixel images through the tiny VAE (downscale 4), 8 tokens of the test T5 (32 wide).
		if b != [6]int{2, toyC, 4, 4, 8, toyD} {
			t.Fatalf("batch shapes [B,C,H,W,L,D] %v", b)
		}
	}
	if len(log.batches) != 15 {
		t.Fatalf("%d batches, want 15", len(log.batches))
	}
}

// TestEncodeMemoryRefused: a job whose encode phase does not fit the machine is refused at
// submission and at start, before any encoder is loaded, saying which phase needs what
// and what to lower.
func TestEncodeMemoryRefused(t *testing.T) {
	ls := newLatentSetup(t)
	kib := func(m int64) int64 { return m / 1024 }
	t5Need := func(batch int) int64 {
		m, err := encoders.T5Memory(ls.pipe, batch, 8)
		if err != nil {
			t.Fatal(err)
		}
		return kib(m.Weights + m.Activations)
	}
	raw, err := os.ReadFile(filepath.Join(ls.pipe, "vae", vae.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := vae.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	vw, va := vae.EncodeMemory(encoderstest.NewEngine(t), cfg, latentBatchSize, 16, 16)
	vaeNeed := kib(vw + va)
	for _, tc := range []struct {
		name       string
		writeBatch int
		kb         int64
		option     string
		msg        string
	}{
		{"text encoder", 512, (vaeNeed + t5Need(512)) / 2, "--data_backend_config",
			"for encoding captions with the text encoder (batch 512 of 8 tokens) on latent_toy/a"},
		{"vae", 128, (vaeNeed + t5Need(128)) / 2, "--data_backend_config",
			`for encoding dataset "shapes" with the VAE at 16x16, batch 4 on latent_toy/a`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kb <= t5Need(tc.writeBatch) && tc.kb <= vaeNeed || tc.kb >= t5Need(tc.writeBatch) && tc.kb >= vaeNeed {
				t.Fatalf("%d KiB is not between the phases' needs (text %d, VAE %d KiB)", tc.kb, t5Need(tc.writeBatch), vaeNeed)
			}
			r := New(Options{Threads: 2, BLAS: blas.ChoiceAuto, Families: mustRegistry(t, latentToy{log: &toyLog{}}), Memory: hostOfKB(t, tc.kb)})
			cfg := ls.config("out")
			cfg["--data_backend_config"] = ls.dataloaderWith(t, tc.writeBatch)
			raw, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			is, err := r.Validate(context.Background(), raw)
			if errs := errorsOf(is); err != nil || len(errs) != 1 || errs[0].Option != tc.option || !strings.Contains(errs[0].Message, tc.msg) {
				t.Fatalf("Validate = %+v, %v; want %s: %q", is, err, tc.option, tc.msg)
			}
			t.Log(errorsOf(is)[0].Message)
			if tc.name == "text encoder" {
				// How far to lower: the largest write_batch_size whose pass fits.
				var n int
				if _, err := fmt.Sscanf(errorsOf(is)[0].Message[strings.Index(errorsOf(is)[0].Message, "(up to ")+1:], "up to %d fits", &n); err != nil {
					t.Fatalf("no write_batch_size hint: %v", err)
				}
				if n < 1 || n >= tc.writeBatch || t5Need(n) > tc.kb || t5Need(n+1) < tc.kb {
					t.Fatalf("hint %d: need %d KiB there, %d KiB at %d, capacity %d KiB", n, t5Need(n), t5Need(n+1), n+1, tc.kb)
				}
			}
			evs, st := startJob(t, r, cfg).wait(t, nil)
			if st.State != plugins.StateFailed || !strings.Contains(st.Error, tc.msg) {
				t.Fatalf("job ended %q: %s\n%s", st.State, st.Error, tail(evs, 4))
			}
			if ss := stagesOf(t, evs); find(ss, stageTextEmbeds, "running") >= 0 || find(ss, stageVAECache, "running") >= 0 {
				t.Fatal("an encoder was loaded")
			}
		})
	}
}

// TestCheckEncodeMemory: the in-phase check, for the actual batch, refuses what exceeds the
// machine and ignores host staging on a host backend.
func TestCheckEncodeMemory(t *testing.T) {
	for _, tc := range []struct {
		name string
		mem  footprint.Memory
		want string // "" fits
	}{
		{"fits", footprint.Memory{Weights: 60 << 10, Activations: 30 << 10}, ""},
		{"staging is not needed on a host backend", footprint.Memory{Weights: 60 << 10, HostCache: 90 << 10}, ""},
		{"too large", footprint.Memory{Weights: 60 << 10, Activations: 60 << 10},
			"runner: invalid training configuration: encoding x needs about 120 KiB (weights 60.0 KiB, activations 60.0 KiB), but the machine has"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &trainer{r: New(Options{Memory: hostOfKB(t, 100)}), be: encoderstest.NewEngine(t).Backend()}
			err := tr.checkEncodeMemory(tc.mem, "encoding x", "lower y")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "; lower y")):
				t.Fatalf("err = %v, want %q…", err, tc.want)
			}
		})
	}
}

func mustRegistry(t *testing.T, fams ...family.Family) *family.Registry {
	t.Helper()
	reg, err := family.NewRegistry(fams...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// fakeVAE encodes every image to 2 channels at a quarter of its size, with the mean i%5 at
// the image's element i and the log-variance logvar.
type fakeVAE struct{ logvar float32 }

func (f fakeVAE) Encode(_ []float32, b, h, w int) (*data.Posterior, error) {
	p := &data.Posterior{B: b, C: 2, H: h / 4, W: w / 4}
	n := b * 2 * (h / 4) * (w / 4)
	p.Mean, p.LogVar = make([]float32, n), make([]float32, n)
	for i := range n {
		p.Mean[i], p.LogVar[i] = float32(i%(n/b)%5), f.logvar
	}
	return p, nil
}

func (fakeVAE) Identity() string { return "fake-vae" }

// fakeText embeds a caption as its length in every position (D 3).
type fakeText struct{}

func (fakeText) Encode(captions []string, maxLen int) (*data.TextEmbeddings, error) {
	te := &data.TextEmbeddings{B: len(captions), L: maxLen, D: 3, Hidden: make([]float32, len(captions)*maxLen*3), Lengths: make([]int, len(captions))}
	for i, c := range captions {
		te.Lengths[i] = min(len(c)+1, maxLen)
		for j := range maxLen * 3 {
			te.Hidden[i*maxLen*3+j] = float32(len(c))
		}
	}
	return te, nil
}

func (fakeText) Identity() string { return "fake-text" }

// TestFillBatch: a latent family's batch gets (z − shift)·scale with z drawn from each
// item's posterior with the run's stream, its captions' embeddings and the empty caption's;
// a pixel family's batch is left as the sampler made it.
func TestFillBatch(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 2, 16)
	dcfg, err := data.ParseConfig([]byte(dataloader(dataDir, 16)), data.Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := data.Open(ctx, dcfg, data.Options{Latents: true, MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := data.EnsureLatents(ctx, l.LatentItems(), fakeVAE{logvar: -1}, data.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := data.EnsureTextEmbeds(ctx, "", l.Captions(), 8, fakeText{}, data.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.NewSampler(data.SamplerOptions{Seed: 1, BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	e := encoderstest.NewEngine(t)

	pixel := *b
	if err := (&caches{}).fill(e, &pixel, engine.NewRNG(9)); err != nil || pixel.Latents != nil || pixel.Text != nil || pixel.EmptyText != nil {
		t.Fatalf("pixel family's batch changed: %v", err)
	}

	c := &caches{latents: lc, scale: 0.5, shift: 0.25, text: map[string]*data.TextEmbedCache{"shapes": tc}}
	rng := engine.NewRNG(9)
	if err := c.fill(e, b, rng); err != nil {
		t.Fatal(err)
	}
	if _, off := rng.State(); off == 0 {
		t.Fatal("the posterior sample drew nothing from the run's stream")
	}
	n := 2 * 2 * 4 * 4
	eps := e.RandN(engine.NewRNG(9), 0, 1, n)
	noise, _ := eps.ToHost()
	eps.Free()
	if b.Latents == nil || b.Latents.C != 2 || b.Latents.H != 4 || b.Latents.W != 4 || len(b.Latents.Values) != n {
		t.Fatalf("latents %+v", b.Latents)
	}
	for i, got := range b.Latents.Values {
		mean := float64(i % (n / 2) % 5)
		want := (mean + math.Exp(-0.5)*float64(noise[i]) - 0.25) * 0.5
		if math.Abs(float64(got)-want) > 1e-5 {
			t.Fatalf("latent %d = %g, want %g", i, got, want)
		}
	}
	if b.Text == nil || b.Text.B != 2 || b.Text.L != 8 || b.Text.D != 3 || b.EmptyText == nil || b.EmptyText.B != 1 {
		t.Fatalf("text %+v, empty %+v", b.Text, b.EmptyText)
	}
	for i, cap := range b.Captions {
		if b.Text.Hidden[i*24] != float32(len(cap)) || b.Text.Lengths[i] != len(cap)+1 {
			t.Fatalf("caption %q: embedding %g, length %d", cap, b.Text.Hidden[i*24], b.Text.Lengths[i])
		}
	}
	if b.EmptyText.Hidden[0] != 0 || b.EmptyText.Lengths[0] != 1 {
		t.Fatalf("empty caption: %g, %d", b.EmptyText.Hidden[0], b.EmptyText.Lengths[0])
	}
	delete(c.text, "shapes")
	if err := c.fill(e, b, rng); !errors.Is(err, data.ErrNotCached) {
		t.Fatalf("a dataset without a text cache: %v", err)
	}
}

// TestEveryPercent: progress runs at the check, once per whole percent, and at the end.
func TestEveryPercent(t *testing.T) {
	for _, tc := range []struct {
		name              string
		total, hits, step int
		want              int
	}{
		{"1000 in batches of 4", 1000, 0, 4, 101},
		{"3 one at a time", 3, 0, 1, 4},
		{"all hits", 5, 5, 1, 1},
		{"half hits, 10 left in batches of 3", 20, 10, 3, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			f := everyPercent(func(data.EncodeProgress) { n++ })
			todo := tc.total - tc.hits
			for done := 0; ; done = min(done+tc.step, todo) {
				f(data.EncodeProgress{Total: tc.total, Hits: tc.hits, ToEncode: todo, Encoded: done})
				if done == todo {
					break
				}
			}
			if n != tc.want {
				t.Errorf("%d calls, want %d", n, tc.want)
			}
		})
	}
}

// TestLatentFamilyValidationAndForcedSettings: a latent family's validation gets the
// prompt's and the negative prompt's states from the text-embedding cache, which the cache
// phase filled with them beside the captions (no text encoder at validation); --snr_gamma
// reaches the loss; a setting the family forces is applied, reported by Validate as the
// trainer's warning naming the value, and said again when the run starts, unless
// --i_know_what_i_am_doing; --use_ema is refused.
func TestLatentFamilyValidationAndForcedSettings(t *testing.T) {
	log := &toyLog{}
	r := New(Options{Threads: 2, BLAS: blas.ChoiceAuto, Families: mustRegistry(t, latentToy{log: log, force: true})})
	ls := newLatentSetup(t)
	cfg := ls.config("val")
	cfg["--validation_prompt"] = "a green thing"
	cfg["--validation_negative_prompt"] = "blurry"
	cfg["--validation_step_interval"] = 2
	cfg["--validation_guidance"] = 4.0
	cfg["--snr_gamma"] = 5.0
	cfg["--max_grad_norm"] = 1.0
	validate := func(cfg map[string]any) []plugins.Issue {
		t.Helper()
		raw, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		is, err := r.Validate(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		return is
	}
	is := validate(cfg)
	i := slices.IndexFunc(is, func(i plugins.Issue) bool { return i.Option == "--max_grad_norm" })
	if i < 0 || is[i].Severity != "warning" || is[i].Origin != plugins.IssueOriginTrainer || !strings.Contains(is[i].Message, "0.01") {
		t.Errorf("Validate did not report the forced --max_grad_norm: %+v", is)
	}
	knows := maps.Clone(cfg)
	knows["--i_know_what_i_am_doing"] = true
	if is := validate(knows); slices.ContainsFunc(is, func(i plugins.Issue) bool { return i.Option == "--max_grad_norm" }) {
		t.Errorf("forced despite --i_know_what_i_am_doing: %+v", is)
	}
	ema := maps.Clone(cfg)
	ema["--use_ema"] = true
	if is := validate(ema); !slices.ContainsFunc(errorsOf(is), func(i plugins.Issue) bool { return i.Option == "--use_ema" }) {
		t.Errorf("--use_ema not refused: %+v", is)
	}

	evs, st := startJob(t, r, cfg).wait(t, nil)
	if st.State != plugins.StateCompleted {
		t.Fatalf("job ended %q: %s\n%s", st.State, st.Error, tail(evs, 6))
	}
	if !slices.ContainsFunc(eventsOf(evs, plugins.EventNotification), func(e plugins.Event) bool {
		return e.Severity == "warning" && strings.Contains(e.Message, "--max_grad_norm=0.01")
	}) {
		t.Error("the run did not say it overrode --max_grad_norm")
	}
	ss := stagesOf(t, evs)
	if d := ss[find(ss, stageTextEmbeds, "completed")].data; d["built"].(float64) != 5 {
		t.Errorf("text cache built %v embeddings, want 5 (2 captions, the empty one, the prompt, the negative)", d["built"])
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.samples) == 0 {
		t.Fatal("no validation ran")
	}
	for _, req := range log.samples {
		if req.PromptEmbeds == nil || req.NegativeEmbeds == nil || req.PromptEmbeds.D != toyD || req.PromptEmbeds.B != 1 ||
			slices.Equal(req.PromptEmbeds.Hidden, req.NegativeEmbeds.Hidden) {
			t.Errorf("validation request without the cached states of its prompts: %+v", req)
		}
	}
	for _, o := range log.lossOpts {
		if o.SNRGamma != 5 {
			t.Errorf("loss options %+v, want SNRGamma 5", o)
		}
	}
}

// TestFlavourNamesThePipeline: a job of a family whose flavours are published models and
// that names no --pretrained_model_name_or_path trains from the flavour's model.
func TestFlavourNamesThePipeline(t *testing.T) {
	ls := newLatentSetup(t)
	r := New(Options{Threads: 2, BLAS: blas.ChoiceAuto, Families: mustRegistry(t, defaultingToy{latentToy{log: &toyLog{}, repo: ls.pipe}})})
	cfg := ls.config("flavour")
	delete(cfg, "--pretrained_model_name_or_path")
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := r.ParseSettings(raw)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pretrained != ls.pipe || s.Cfg.String("--pretrained_model_name_or_path") != ls.pipe {
		t.Errorf("pretrained %q (option %q), want the flavour's %q", s.Pretrained, s.Cfg.String("--pretrained_model_name_or_path"), ls.pipe)
	}
	if is, err := r.Validate(context.Background(), raw); err != nil || len(errorsOf(is)) > 0 {
		t.Errorf("Validate: %+v, %v", is, err)
	}
}
