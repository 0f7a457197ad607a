package data

import (
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	red   = color.RGBA{255, 0, 0, 255}
	blue  = color.RGBA{0, 0, 255, 255}
	green = color.RGBA{0, 255, 0, 255}
	white = color.RGBA{255, 255, 255, 255}
)

func solid(c color.RGBA) func(x, y int) color.RGBA { return func(int, int) color.RGBA { return c } }

// halves paints the left half a, the right half b.
func halves(w int, a, b color.RGBA) func(x, y int) color.RGBA {
	return func(x, _ int) color.RGBA {
		if x < w/2 {
			return a
		}
		return b
	}
}

func mkImage(w, h int, fill func(x, y int) color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetRGBA(x, y, fill(x, y))
		}
	}
	return img
}

func writePNG(t testing.TB, path string, w, h int, fill func(x, y int) color.RGBA) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, mkImage(w, h, fill)); err != nil {
		t.Fatal(err)
	}
}

func writeJPEG(t testing.TB, path string, w, h int, fill func(x, y int) color.RGBA) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := jpeg.Encode(f, mkImage(w, h, fill), &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// textEmbeds is the default text_embeds dataset every test config needs.
func textEmbeds(dir string) map[string]any {
	return map[string]any{"id": "text", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": dir}
}

func parse(t testing.TB, datasets ...map[string]any) *Config {
	t.Helper()
	b, err := json.Marshal(datasets)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(b, Defaults{Resolution: 32})
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return cfg
}

// warnings collects Warning callbacks.
type warnings struct {
	mu   sync.Mutex
	list []Warning
}

func (w *warnings) add(x Warning) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, x)
}

func (w *warnings) reasons() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string]int{}
	for _, x := range w.list {
		m[x.Reason]++
	}
	return m
}

func open(t testing.TB, cfg *Config, w *warnings) *Loader {
	t.Helper()
	opts := Options{Workers: 2, MaxTokens: 16}
	if w != nil {
		opts.Warn = w.add
	}
	l, err := Open(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// allBatches draws one full epoch.
func allBatches(t testing.TB, s *Sampler) []*Batch {
	t.Helper()
	n := s.EpochBatches()
	out := make([]*Batch, 0, n)
	for range n {
		b, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func sampleByRel(l *Loader, id, rel string) *sample {
	for _, set := range l.sets {
		if set.cfg.ID != id {
			continue
		}
		for _, s := range set.samples {
			if s.rel == rel {
				return s
			}
		}
	}
	return nil
}
