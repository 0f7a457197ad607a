package runner

import (
	"bytes"
	"context"
	"encoding/base64"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/validation"
)

// classScore measures an image against the two classes: the share of pixels nearest to the
// red and the blue class colour (among red, blue and the grey background), and which class
// mean image (over the training set) it is closest to in L2.
type classScore struct {
	red, blue float64
	nearest   string
}

func imageVec(img image.Image) []float64 {
	b := img.Bounds()
	var v []float64
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			v = append(v, float64(r>>8), float64(g>>8), float64(bb>>8))
		}
	}
	return v
}

func score(img image.Image, means map[string][]float64) classScore {
	v := imageVec(img)
	var s classScore
	n := float64(len(v) / 3)
	for i := 0; i < len(v); i += 3 {
		best, bestD := "", 1e18
		for name, c := range map[string][3]float64{"red": {230, 20, 20}, "blue": {20, 20, 230}, "grey": {128, 128, 128}} {
			d := (v[i]-c[0])*(v[i]-c[0]) + (v[i+1]-c[1])*(v[i+1]-c[1]) + (v[i+2]-c[2])*(v[i+2]-c[2])
			if d < bestD {
				best, bestD = name, d
			}
		}
		switch best {
		case "red":
			s.red += 1 / n
		case "blue":
			s.blue += 1 / n
		}
	}
	bestD := 1e18
	for name, m := range means {
		d := 0.0
		for i := range v {
			d += (v[i] - m[i]) * (v[i] - m[i])
		}
		if d < bestD {
			s.nearest, bestD = name, d
		}
	}
	return s
}

// matches reports whether an image generated for class is recognisably that class.
func (s classScore) matches(class string) bool {
	own, other := s.red, s.blue
	if class == "blue" {
		own, other = s.blue, s.red
	}
	return s.nearest == class && own >= 0.15 && own > 3*other
}

func classMeans(t testing.TB, dir string) map[string][]float64 {
	means := map[string][]float64{}
	counts := map[string]int{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".png") {
			continue
		}
		class, _, _ := strings.Cut(e.Name(), "_")
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		v := imageVec(img)
		if means[class] == nil {
			means[class] = make([]float64, len(v))
		}
		for i := range v {
			means[class][i] += v[i]
		}
		counts[class]++
	}
	for c, m := range means {
		for i := range m {
			m[i] /= float64(counts[c])
		}
	}
	return means
}

// checkValidationClasses checks that the final validation image (step, res×res) of each
// prompt of the library {"red": …, "blue": …} in out is recognisably its class.
func checkValidationClasses(t *testing.T, out string, step, res int, means map[string][]float64) {
	t.Helper()
	for _, class := range []string{"red", "blue"} {
		s := score(validationImage(t, out, step, class, res), means)
		t.Logf("validation image %q: red %.2f blue %.2f nearest class mean %q", class, s.red, s.blue, s.nearest)
		if !s.matches(class) {
			t.Errorf("validation image for %q does not match its class: %+v", class, s)
		}
	}
}

// validationImage reads the validation image of prompt shortName at step (res×res) in out.
func validationImage(t *testing.T, out string, step int, shortName string, res int) image.Image {
	t.Helper()
	p := filepath.Join(out, ValidationDir, validation.FileName(step, shortName, validation.Resolution{W: res, H: res}))
	f, err := os.Open(p)
	if err != nil {
		t.Fatalf("validation image: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("validation image %s: %v", p, err)
	}
	return img
}

// lossFell checks that a run logged steps losses and that the mean of its last 20 is below
// fraction × the mean of its first 20.
func lossFell(t *testing.T, evs []plugins.Event, steps int, fraction float64) {
	t.Helper()
	ls := losses(t, evs)
	if len(ls) != steps {
		t.Fatalf("%d step events, want %d", len(ls), steps)
	}
	first, last := meanOf(ls[:20]), meanOf(ls[len(ls)-20:])
	t.Logf("loss: first 20 steps %.4f → last 20 steps %.4f (%.1f%%)", first, last, 100*last/first)
	if !(last < fraction*first) {
		t.Errorf("loss did not fall below %.0f%%: %.4f → %.4f", 100*fraction, first, last)
	}
}

func meanOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// TestLearnsTwoCaptionedClasses trains the tiny model on red squares captioned "red" and blue
// circles captioned "blue", then checks that the loss fell by more than half and that the
// validation images of each caption are of that caption's class, measured per pixel colour
// and by the nearest class-mean image, for the run's own validation images and for extra
// sampling seeds on the saved final model.
func TestLearnsTwoCaptionedClasses(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for a few hundred steps")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 8, 16)
	out := filepath.Join(t.TempDir(), "out")
	cfg := baseConfig(out, dataDir)
	const steps = 300
	cfg["--max_train_steps"] = steps
	cfg["--learning_rate"] = 2e-3
	cfg["--lr_scheduler"] = "constant_with_warmup"
	cfg["--lr_warmup_steps"] = 20
	cfg["--user_prompt_library"] = `{"red": "red", "blue": "blue"}`
	cfg["--validation_negative_prompt"] = ""
	cfg["--validation_guidance"] = 3.0
	cfg["--validation_num_inference_steps"] = 20
	cfg["--validation_resolution"] = "16"
	cfg["--validation_step_interval"] = 1000
	cfg["--validation_preview"] = true
	cfg["--validation_preview_steps"] = 4
	cfg["--validation_seed"] = 11
	evs := runJob(t, cfg, plugins.StateCompleted)

	lossFell(t, evs, steps, 0.5)

	means := classMeans(t, dataDir)
	// The run's own final validation images.
	checkValidationClasses(t, out, steps, 16, means)
	// Previews: the seed cadence for 20 steps every 4, per prompt, as data-URI PNGs.
	var previewSteps []int
	for _, e := range eventsOf(evs, "validation.image") {
		d := dataOf(t, e)
		if d["shortname"] == "red" {
			previewSteps = append(previewSteps, int(d["step"].(float64)))
		}
		img := d["images"].([]any)[0].(map[string]any)
		src := img["src"].(string)
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(src, "data:image/png;base64,"))
		if img["mime_type"] != "image/png" || err != nil {
			t.Fatalf("preview asset %v", img["mime_type"])
		}
		if _, err := png.Decode(bytes.NewReader(raw)); err != nil {
			t.Fatalf("preview is not a PNG: %v", err)
		}
	}
	if !slices.Equal(previewSteps, []int{1, 5, 9, 13, 17, 20}) {
		t.Errorf("preview steps %v, want 1,5,9,13,17,20", previewSteps)
	}
	if n := len(eventsOf(evs, "training.validation")); n != 2 {
		t.Errorf("%d training.validation events, want 2 (one per prompt)", n)
	}

	// More seeds on the saved final model.
	be, err := cpu.New(cpu.Options{Threads: 2, BLAS: blas.ChoiceAuto})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	m, err := model.Load(engine.New(be), out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	tok, _ := data.NewTokenizer(m.Config().MaxTokens)
	smp := &validation.Sampler{Model: m, Tokenizer: tok}
	matched, total := 0, 0
	for seed := uint64(100); seed < 104; seed++ {
		for _, class := range []string{"red", "blue"} {
			img, err := smp.Sample(context.Background(), validation.Request{Prompt: class, Resolution: validation.Resolution{W: 16, H: 16},
				Steps: 20, Guidance: 3, Seed: seed})
			if err != nil {
				t.Fatal(err)
			}
			s := score(img, means)
			total++
			if s.matches(class) {
				matched++
			} else {
				t.Logf("seed %d %q: red %.2f blue %.2f nearest %q", seed, class, s.red, s.blue, s.nearest)
			}
		}
	}
	t.Logf("final model: %d/%d sampled images match their caption's class", matched, total)
	if matched < total-1 {
		t.Errorf("only %d/%d sampled images match their class", matched, total)
	}
}
