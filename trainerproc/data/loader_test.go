package data

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func imgDS(id, dir string, extra map[string]any) map[string]any {
	m := map[string]any{"id": id, "type": "local", "dataset_type": "image", "instance_data_dir": dir,
		"resolution": 32, "resolution_type": "pixel"}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestCaptionStrategies(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "imgs")
	writePNG(t, filepath.Join(dir, "a_red_square.png"), 32, 32, solid(red))
	writeFile(t, filepath.Join(dir, "a_red_square.txt"), "first caption\n\nsecond caption\n")
	writeJPEG(t, filepath.Join(dir, "sub", "blue__thing.JPG"), 32, 32, solid(blue))
	writeFile(t, filepath.Join(dir, "sub", "blue__thing.txt"), "only one")
	te := textEmbeds(filepath.Join(root, "text"))

	caps := func(l *Loader, rel string) []string { return sampleByRel(l, "d", rel).captions }

	l := open(t, parse(t, imgDS("d", dir, map[string]any{"caption_strategy": "filename"}), te), nil)
	if got := caps(l, "a_red_square.png"); !slices.Equal(got, []string{"a red square"}) {
		t.Errorf("filename caption = %q", got)
	}
	if got := caps(l, "sub/blue__thing.JPG"); !slices.Equal(got, []string{"blue thing"}) {
		t.Errorf("filename caption = %q", got)
	}

	l = open(t, parse(t, imgDS("d", dir, map[string]any{"caption_strategy": "textfile"}), te), nil)
	if got := caps(l, "a_red_square.png"); !slices.Equal(got, []string{"first caption", "second caption"}) {
		t.Errorf("textfile captions = %q", got)
	}
	l = open(t, parse(t, imgDS("d", dir, map[string]any{"caption_strategy": "textfile", "disable_multiline_split": true}), te), nil)
	if got := caps(l, "a_red_square.png"); len(got) != 1 || !strings.Contains(got[0], "\n") {
		t.Errorf("disable_multiline_split captions = %q", got)
	}
	l = open(t, parse(t, imgDS("d", dir, map[string]any{"caption_strategy": "textfile", "prepend_instance_prompt": true, "instance_prompt": "sks"}), te), nil)
	if got := caps(l, "sub/blue__thing.JPG"); !slices.Equal(got, []string{"sks only one"}) {
		t.Errorf("prepended caption = %q", got)
	}
	l = open(t, parse(t, imgDS("d", dir, map[string]any{"caption_strategy": "instanceprompt", "instance_prompt": "a photo of sks"}), te), nil)
	if got := caps(l, "a_red_square.png"); !slices.Equal(got, []string{"a photo of sks"}) {
		t.Errorf("instanceprompt caption = %q", got)
	}

	// textfile without a caption file: skipped with a warning.
	writePNG(t, filepath.Join(dir, "nocap.png"), 32, 32, solid(green))
	var w warnings
	l = open(t, parse(t, imgDS("d", dir, map[string]any{"caption_strategy": "textfile"}), te), &w)
	if sampleByRel(l, "d", "nocap.png") != nil || w.reasons()["no_caption"] != 1 {
		t.Errorf("missing caption file: warnings %v", w.reasons())
	}

	// Tokens in a batch match the caption.
	s, err := l.NewSampler(SamplerOptions{Seed: 1, BatchSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range allBatches(t, s) {
		want, wantMask := l.Tokenizer().EncodeNew(b.Captions[0])
		if !slices.Equal(b.Tokens, want) || !slices.Equal(b.Mask, wantMask) || b.L != 16 {
			t.Errorf("tokens for %q = %v / %v", b.Captions[0], b.Tokens, b.Mask)
		}
	}
}

func TestPlanResolutionTypes(t *testing.T) {
	cases := []struct {
		name         string
		ds           DatasetConfig
		w0, h0       int
		wantW, wantH int
	}{
		{"pixel shorter edge", DatasetConfig{Resolution: 32, ResolutionType: ResPixel}, 200, 100, 64, 32},
		{"pixel tall", DatasetConfig{Resolution: 32, ResolutionType: ResPixel}, 100, 300, 32, 96},
		{"pixel_area", DatasetConfig{Resolution: 32, ResolutionType: ResPixelArea}, 200, 100, 48, 24},
		{"area megapixels", DatasetConfig{Resolution: 0.001024, ResolutionType: ResArea}, 200, 100, 48, 24},
		{"square crop", DatasetConfig{Resolution: 32, ResolutionType: ResPixelArea, Crop: true, CropAspect: AspectSquare, CropStyle: CropCenter}, 200, 100, 32, 32},
		{"preserve crop", DatasetConfig{Resolution: 32, ResolutionType: ResPixel, Crop: true, CropAspect: AspectPreserve, CropStyle: CropCenter}, 200, 100, 64, 32},
		{"closest", DatasetConfig{Resolution: 32, ResolutionType: ResPixel, Crop: true, CropAspect: AspectClosest, CropStyle: CropCenter, CropAspectBuckets: []float64{1, 1.5}}, 210, 100, 48, 32},
	}
	for _, c := range cases {
		c.ds.MaxUpscaleThreshold = -1
		p, err := makePlan(&c.ds, c.w0, c.h0, 8, 1)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if p.W != c.wantW || p.H != c.wantH {
			t.Errorf("%s: bucket %dx%d, want %dx%d", c.name, p.W, p.H, c.wantW, c.wantH)
		}
		if p.InterW < p.W || p.InterH < p.H || p.CropX+p.W > p.InterW || p.CropY+p.H > p.InterH {
			t.Errorf("%s: crop outside the image: %+v", c.name, p)
		}
	}
}

func TestPlanFilters(t *testing.T) {
	ds := DatasetConfig{Resolution: 32, ResolutionType: ResPixelArea, MinimumImageSize: 40, MaxUpscaleThreshold: -1}
	_, err := makePlan(&ds, 32, 32, 8, 1)
	var fe *errFiltered
	if !errors.As(err, &fe) || fe.reason != "too_small" {
		t.Fatalf("32x32 under minimum 40 (pixel_area): %v", err)
	}
	if _, err := makePlan(&ds, 64, 30, 8, 1); err != nil { // sqrt(1920) ≈ 43.8 ≥ 40
		t.Fatalf("64x30 should pass the area minimum: %v", err)
	}
	ds = DatasetConfig{Resolution: 32, ResolutionType: ResPixel, MaximumAspectRatio: 1.5, MaxUpscaleThreshold: -1}
	if _, err := makePlan(&ds, 64, 32, 8, 1); !errors.As(err, &fe) || fe.reason != "aspect" {
		t.Fatalf("2:1 over maximum_aspect_ratio: %v", err)
	}
	ds = DatasetConfig{Resolution: 32, ResolutionType: ResPixel, MaxUpscaleThreshold: 0.2}
	if _, err := makePlan(&ds, 16, 16, 8, 1); !errors.As(err, &fe) || fe.reason != "upscale" {
		t.Fatalf("2x upscale over threshold: %v", err)
	}
	// maximum_image_size + target_downsample_size: a big image is first brought to the target.
	ds = DatasetConfig{Resolution: 32, ResolutionType: ResPixel, MaximumImageSize: 100, TargetDownsampleSize: 64, MaxUpscaleThreshold: -1}
	p, err := makePlan(&ds, 400, 200, 8, 1)
	if err != nil || p.DownW != 128 || p.DownH != 64 || p.W != 64 || p.H != 32 {
		t.Fatalf("downsample plan %+v, %v", p, err)
	}
	if p, _ := makePlan(&ds, 90, 90, 8, 1); p.DownW != 0 {
		t.Fatalf("image under maximum_image_size was downsampled: %+v", p)
	}
}

// pixelAt returns the RGB value (in [-1,1]) of sample j at (x, y).
func pixelAt(b *Batch, j, x, y int) [3]float32 {
	plane := b.W * b.H
	base := j * 3 * plane
	i := y*b.W + x
	return [3]float32{b.Pixels[base+i], b.Pixels[base+plane+i], b.Pixels[base+2*plane+i]}
}

func isColour(p [3]float32, r, g, b float32) bool {
	return math.Abs(float64(p[0]-r)) < 0.05 && math.Abs(float64(p[1]-g)) < 0.05 && math.Abs(float64(p[2]-b)) < 0.05
}

func TestCropStyles(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "imgs")
	// 64x32: left half red, right half blue. With resolution 32 (pixel) and a square crop the
	// bucket is 32x32 and the intermediate image stays 64x32.
	writePNG(t, filepath.Join(dir, "x.png"), 64, 32, halves(64, red, blue))
	te := textEmbeds("")
	first := func(style string) *Batch {
		l := open(t, parse(t, imgDS("d", dir, map[string]any{"crop": true, "crop_aspect": "square", "crop_style": style}), te), nil)
		s, err := l.NewSampler(SamplerOptions{BatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if b.W != 32 || b.H != 32 || len(b.Pixels) != 3*32*32 {
			t.Fatalf("%s: bucket %dx%d", style, b.W, b.H)
		}
		return b
	}
	b := first("corner")
	if !isColour(pixelAt(b, 0, 0, 0), 1, -1, -1) || !isColour(pixelAt(b, 0, 31, 31), 1, -1, -1) {
		t.Errorf("corner crop should be all red (top-left): %v %v", pixelAt(b, 0, 0, 0), pixelAt(b, 0, 31, 31))
	}
	b = first("center")
	if !isColour(pixelAt(b, 0, 2, 5), 1, -1, -1) || !isColour(pixelAt(b, 0, 29, 5), -1, -1, 1) {
		t.Errorf("center crop should be red then blue: %v %v", pixelAt(b, 0, 2, 5), pixelAt(b, 0, 29, 5))
	}
	r1, r2 := first("random"), first("random")
	if !slices.Equal(r1.Pixels, r2.Pixels) {
		t.Error("random crop is not stable across opens")
	}
	// Preserve: the whole image, resized to 64x32.
	l := open(t, parse(t, imgDS("d", dir, map[string]any{"crop": true, "crop_aspect": "preserve"}), te), nil)
	s, _ := l.NewSampler(SamplerOptions{BatchSize: 1})
	b, _ = s.Next()
	if b.W != 64 || b.H != 32 || !isColour(pixelAt(b, 0, 0, 0), 1, -1, -1) || !isColour(pixelAt(b, 0, 63, 0), -1, -1, 1) {
		t.Errorf("preserve: %dx%d %v %v", b.W, b.H, pixelAt(b, 0, 0, 0), pixelAt(b, 0, 63, 0))
	}
	for _, v := range b.Pixels {
		if v < -1 || v > 1 {
			t.Fatalf("pixel %v outside [-1, 1]", v)
		}
	}
}

func TestBucketsNeverMix(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "imgs")
	for i := range 5 {
		writePNG(t, filepath.Join(dir, "sq"+string(rune('a'+i))+".png"), 32, 32, solid(red))
		writePNG(t, filepath.Join(dir, "wide"+string(rune('a'+i))+".png"), 64, 32, solid(blue))
	}
	writePNG(t, filepath.Join(dir, "tall.png"), 32, 64, solid(green)) // a bucket of one: never a full batch
	l := open(t, parse(t, imgDS("d", dir, nil), textEmbeds("")), nil)
	if got := l.Stats()[0].Buckets; got[[2]int{32, 32}] != 5 || got[[2]int{64, 32}] != 5 || got[[2]int{32, 64}] != 1 {
		t.Fatalf("buckets %v", got)
	}
	s, err := l.NewSampler(SamplerOptions{Seed: 3, BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	batches := allBatches(t, s)
	if len(batches) != 4 { // 5/2 + 5/2 full batches; leftovers and the lone tall image dropped
		t.Fatalf("%d batches, want 4", len(batches))
	}
	for _, b := range batches {
		for _, p := range b.Paths {
			wide := strings.Contains(p, "wide")
			if wide != (b.W == 64) || strings.Contains(p, "tall") {
				t.Fatalf("batch %dx%d mixes buckets: %v", b.W, b.H, b.Paths)
			}
		}
		if len(b.Pixels) != b.B*3*b.W*b.H || len(b.Tokens) != b.B*b.L {
			t.Fatalf("tensor sizes wrong for %dx%d B=%d", b.W, b.H, b.B)
		}
	}
	if _, err := l.NewSampler(SamplerOptions{BatchSize: 6}); !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "lower train_batch_size") {
		t.Fatalf("batch size larger than every bucket: %v", err)
	}
}

func TestRepeatsAndMultipleDatasets(t *testing.T) {
	root := t.TempDir()
	for i := range 3 {
		writePNG(t, filepath.Join(root, "a", string(rune('a'+i))+".png"), 32, 32, solid(red))
	}
	for i := range 6 {
		writePNG(t, filepath.Join(root, "b", string(rune('a'+i))+".png"), 32, 32, solid(blue))
	}
	cfg := parse(t, imgDS("A", filepath.Join(root, "a"), map[string]any{"repeats": 1}),
		imgDS("B", filepath.Join(root, "b"), nil), textEmbeds(""))
	l := open(t, cfg, nil)
	s, err := l.NewSampler(SamplerOptions{Seed: 9, BatchSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	perDS := map[string]int{}
	for _, b := range allBatches(t, s) {
		seen[b.Paths[0]]++
		perDS[b.DatasetID]++
		if b.DatasetIDs[0] != b.DatasetID {
			t.Fatal("DatasetIDs disagree with DatasetID")
		}
	}
	if perDS["A"] != 6 || perDS["B"] != 6 {
		t.Fatalf("per-dataset batches %v, want A:6 (3 images × 2) B:6", perDS)
	}
	for p, n := range seen {
		want := 1
		if strings.Contains(p, string(filepath.Separator)+"a"+string(filepath.Separator)) {
			want = 2
		}
		if n != want {
			t.Errorf("%s seen %d times, want %d", p, n, want)
		}
	}

	// Batches never mix datasets even when both share a bucket.
	s, _ = l.NewSampler(SamplerOptions{Seed: 9, BatchSize: 3})
	for _, b := range allBatches(t, s) {
		for _, id := range b.DatasetIDs {
			if id != b.DatasetID {
				t.Fatalf("batch mixes datasets: %v", b.DatasetIDs)
			}
		}
	}

	// probability 0 removes a dataset from sampling; a per-dataset train_batch_size overrides.
	cfg = parse(t, imgDS("A", filepath.Join(root, "a"), map[string]any{"probability": 0}),
		imgDS("B", filepath.Join(root, "b"), map[string]any{"train_batch_size": 2}), textEmbeds(""))
	l = open(t, cfg, nil)
	s, _ = l.NewSampler(SamplerOptions{Seed: 9, BatchSize: 1})
	for _, b := range allBatches(t, s) {
		if b.DatasetID != "B" || b.B != 2 {
			t.Fatalf("got batch from %s with B=%d", b.DatasetID, b.B)
		}
	}
	if s.EpochBatches() != 3 {
		t.Fatalf("epoch has %d batches, want 3", s.EpochBatches())
	}
}

func TestDeterminismAndRestore(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "imgs")
	for i := range 7 {
		w := 32 + 32*(i%2)
		writePNG(t, filepath.Join(dir, string(rune('a'+i))+".png"), w, 32, solid(red))
		writeFile(t, filepath.Join(dir, string(rune('a'+i))+".txt"), "one\ntwo\nthree")
	}
	cfg := parse(t, imgDS("d", dir, map[string]any{"caption_strategy": "textfile", "repeats": 2,
		"cache_dir_vae": filepath.Join(root, "vae")}), textEmbeds(filepath.Join(root, "text")))
	l := open(t, cfg, nil)
	sig := func(b *Batch) string {
		return strings.Join(b.Paths, ",") + "|" + strings.Join(b.Captions, ",")
	}
	run := func(seed uint64, n int) []string {
		s, err := l.NewSampler(SamplerOptions{Seed: seed, BatchSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for range n {
			b, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, sig(b))
		}
		return out
	}
	a, b := run(5, 25), run(5, 25)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different batches")
	}
	if slices.Equal(a, run(6, 25)) {
		t.Fatal("different seeds gave identical batches")
	}

	// Restore mid-epoch and across the epoch boundary continues bit-identically.
	s1, _ := l.NewSampler(SamplerOptions{Seed: 5, BatchSize: 2})
	perEpoch := s1.EpochBatches()
	for _, cut := range []int{3, perEpoch, perEpoch + 1} {
		s1, _ = l.NewSampler(SamplerOptions{Seed: 5, BatchSize: 2})
		for range cut {
			if _, err := s1.Next(); err != nil {
				t.Fatal(err)
			}
		}
		state := s1.State()
		// A fresh loader and sampler, as after a restart.
		l2 := open(t, cfg, nil)
		s2, _ := l2.NewSampler(SamplerOptions{Seed: 999, BatchSize: 7})
		if err := s2.Restore(state); err != nil {
			t.Fatal(err)
		}
		for i := range perEpoch + 2 {
			x, err1 := s1.Next()
			y, err2 := s2.Next()
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if sig(x) != sig(y) || !slices.Equal(x.Pixels, y.Pixels) || !slices.Equal(x.Tokens, y.Tokens) || x.Epoch != y.Epoch || x.Index != y.Index {
				t.Fatalf("cut %d: batch %d differs after restore: %s vs %s", cut, i, sig(x), sig(y))
			}
		}
	}
	if err := s1.Restore([]byte(`{"version": 2}`)); !errors.Is(err, ErrState) {
		t.Fatalf("bad state accepted: %v", err)
	}
	if err := s1.Restore([]byte(`nope`)); !errors.Is(err, ErrState) {
		t.Fatalf("garbage state accepted: %v", err)
	}
}

func TestCacheHitMissInvalidation(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "imgs")
	for i := range 3 {
		writePNG(t, filepath.Join(dir, string(rune('a'+i))+".png"), 60, 40, solid(green))
	}
	vae, text := filepath.Join(root, "vae"), filepath.Join(root, "text")
	mk := func(style string) *Config {
		return parse(t, imgDS("d", dir, map[string]any{"cache_dir_vae": vae, "crop": true, "crop_style": style}), textEmbeds(text))
	}
	st := func(l *Loader) Stats { return l.Stats()[0] }

	l := open(t, mk("center"), nil)
	if s := st(l); s.CacheMisses != 3 || s.CacheHits != 0 || s.TextMisses != 3 {
		t.Fatalf("first open: %+v", s)
	}
	files, _ := filepath.Glob(filepath.Join(vae, "*.px"))
	if len(files) != 3 {
		t.Fatalf("%d cache files, want 3", len(files))
	}
	s0, _ := l.NewSampler(SamplerOptions{BatchSize: 3})
	before, _ := s0.Next()

	l = open(t, mk("center"), nil)
	if s := st(l); s.CacheHits != 3 || s.CacheMisses != 0 || s.TextHits != 3 || s.TextMisses != 0 {
		t.Fatalf("second open: %+v", s)
	}
	s1, _ := l.NewSampler(SamplerOptions{BatchSize: 3})
	after, _ := s1.Next()
	if !slices.Equal(before.Pixels, after.Pixels) {
		t.Fatal("cached pixels differ from freshly computed ones")
	}

	// Touching a source invalidates that entry only, and replaces (not adds) its file.
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "b.png"), future, future); err != nil {
		t.Fatal(err)
	}
	l = open(t, mk("center"), nil)
	if s := st(l); s.CacheHits != 2 || s.CacheMisses != 1 {
		t.Fatalf("after touch: %+v", s)
	}
	files, _ = filepath.Glob(filepath.Join(vae, "*.px"))
	if len(files) != 3 {
		t.Fatalf("%d cache files after touch, want 3", len(files))
	}

	// Changing a preprocessing parameter that changes the output invalidates every entry
	// (the key holds the full geometry; a setting that leaves it unchanged keeps the entry).
	l = open(t, mk("corner"), nil)
	if s := st(l); s.CacheMisses != 3 {
		t.Fatalf("after crop_style change: %+v", s)
	}

	// A corrupt entry is detected at startup and recomputed.
	b, _ := os.ReadFile(files[0])
	b[headerSize+5] ^= 0xff
	if err := os.WriteFile(files[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	l = open(t, mk("corner"), nil)
	if s := st(l); s.CacheHits != 2 || s.CacheMisses != 1 {
		t.Fatalf("after corruption: %+v", s)
	}
}

func TestFloat16Cache(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "imgs")
	writePNG(t, filepath.Join(dir, "a.png"), 48, 32, halves(48, red, white))
	cfg := parse(t, imgDS("d", dir, map[string]any{"cache_dir_vae": filepath.Join(root, "vae")}), textEmbeds(""))
	load := func(dt DType) []float32 {
		l, err := Open(context.Background(), cfg, Options{CacheDType: dt})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := l.NewSampler(SamplerOptions{BatchSize: 1})
		b, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		return b.Pixels
	}
	f32, f16 := load(Float32), load(Float16)
	for i := range f32 {
		if d := math.Abs(float64(f32[i] - f16[i])); d > 1e-3 {
			t.Fatalf("float16 cache differs by %g at %d", d, i)
		}
	}
	for _, v := range []float32{0, 1, -1, 0.5, 1.0 / 3, 65504, 1e-7, -2.5e-5, float32(math.Inf(1))} {
		got := f16to32(f32to16(v))
		if math.Abs(float64(got-v)) > math.Abs(float64(v))/1000+6e-8 && !(math.IsInf(float64(v), 1) && math.IsInf(float64(got), 1)) {
			t.Errorf("f16 round trip %g → %g", v, got)
		}
	}
}

func TestCorruptImagesSkipped(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "imgs")
	writePNG(t, filepath.Join(dir, "good.png"), 32, 32, solid(red))
	writeFile(t, filepath.Join(dir, "garbage.png"), "this is not an image")
	// A truncated JPEG: the header decodes, the pixels do not.
	var buf bytes.Buffer
	writeJPEG(t, filepath.Join(root, "full.jpg"), 64, 64, solid(blue))
	full, _ := os.ReadFile(filepath.Join(root, "full.jpg"))
	buf.Write(full[:len(full)/3])
	writeFile(t, filepath.Join(dir, "truncated.jpg"), buf.String())
	// A PNG header claiming 20000x20000 pixels: refused before any allocation.
	writeFile(t, filepath.Join(dir, "huge.png"), string(hugePNGHeader(20000, 20000)))
	writeFile(t, filepath.Join(dir, "empty.webp"), "")
	writeFile(t, filepath.Join(dir, "notes.md"), "ignored: not an image")

	var w warnings
	l := open(t, parse(t, imgDS("d", dir, map[string]any{"cache_dir_vae": filepath.Join(root, "vae")}), textEmbeds("")), &w)
	if st := l.Stats()[0]; st.Samples != 1 || st.Discovered != 5 {
		t.Fatalf("stats %+v", st)
	}
	if n := w.reasons()["unreadable"]; n != 4 {
		t.Fatalf("unreadable warnings %d (%v), want 4", n, w.list)
	}
	var sawLimit bool
	for _, x := range w.list {
		if !errors.Is(x.Err, ErrBadImage) {
			t.Errorf("warning without ErrBadImage: %v", x)
		}
		sawLimit = sawLimit || strings.Contains(x.String(), "pixel limit")
	}
	if !sawLimit {
		t.Error("no warning names the pixel limit")
	}

	// Nothing usable at all → ErrNoData.
	bad := filepath.Join(root, "bad")
	writeFile(t, filepath.Join(bad, "x.png"), "nope")
	if _, err := Open(context.Background(), parse(t, imgDS("d", bad, nil), textEmbeds("")), Options{}); !errors.Is(err, ErrNoData) {
		t.Fatalf("all-corrupt dataset: %v", err)
	}
}

// hugePNGHeader is a PNG signature and IHDR chunk claiming w×h, with no image data.
func hugePNGHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	binary.Write(&b, binary.BigEndian, uint32(13))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestConditioningStrict(t *testing.T) {
	root := t.TempDir()
	edit, ref := filepath.Join(root, "edit"), filepath.Join(root, "ref")
	writePNG(t, filepath.Join(edit, "one.png"), 64, 32, halves(64, red, blue))
	writePNG(t, filepath.Join(edit, "two.png"), 64, 32, halves(64, green, white))
	writePNG(t, filepath.Join(edit, "lonely.png"), 64, 32, solid(red))
	// Same content; one at twice the resolution and another format: still pixel-aligned.
	writePNG(t, filepath.Join(ref, "one.png"), 64, 32, halves(64, red, blue))
	writeJPEG(t, filepath.Join(ref, "two.jpg"), 128, 64, halves(128, green, white))
	cfg := parse(t,
		imgDS("edit", edit, map[string]any{"conditioning_data": []string{"ref"}, "crop": true, "crop_style": "random", "crop_aspect": "square", "cache_dir_vae": filepath.Join(root, "vae")}),
		map[string]any{"id": "ref", "type": "local", "dataset_type": "conditioning", "instance_data_dir": ref,
			"conditioning_type": "reference_strict", "cache_dir_vae": filepath.Join(root, "vae-ref")},
		textEmbeds(""))
	var w warnings
	l := open(t, cfg, &w)
	if w.reasons()["no_pair"] != 1 || sampleByRel(l, "edit", "lonely.png") != nil {
		t.Fatalf("strict pairing without a pair must skip the sample: %v", w.list)
	}
	s, _ := l.NewSampler(SamplerOptions{Seed: 2, BatchSize: 2})
	b, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Cond) != 1 || b.Cond[0].DatasetID != "ref" || b.Cond[0].W != b.W || b.Cond[0].H != b.H || len(b.Cond[0].Stacked) != len(b.Pixels) {
		t.Fatalf("conditioning %+v", b.Cond)
	}
	for j, p := range b.Paths {
		img := b.Cond[0].Images[j]
		var maxDiff float64
		for i, v := range img.Pixels {
			maxDiff = max(maxDiff, math.Abs(float64(v-b.Pixels[j*len(img.Pixels)+i])))
		}
		// The crop is identical (same random position), so only resampling/JPEG error remains.
		if strings.HasSuffix(p, "one.png") && maxDiff > 1e-6 || maxDiff > 0.35 {
			t.Errorf("%s: conditioning differs from its target by %g", p, maxDiff)
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, "vae-ref", "*.px"))
	if len(files) != 2 {
		t.Errorf("%d conditioning cache files, want 2", len(files))
	}
}

func TestConditioningLoose(t *testing.T) {
	root := t.TempDir()
	edit, ref := filepath.Join(root, "edit"), filepath.Join(root, "ref")
	writePNG(t, filepath.Join(edit, "one.png"), 32, 32, solid(red))
	writePNG(t, filepath.Join(edit, "two.png"), 32, 32, solid(red))
	writePNG(t, filepath.Join(ref, "one.png"), 64, 32, solid(blue)) // different aspect: fine for loose
	cfg := parse(t,
		imgDS("edit", edit, map[string]any{"conditioning_data": "ref"}),
		map[string]any{"id": "ref", "type": "local", "dataset_type": "conditioning", "instance_data_dir": ref,
			"conditioning_type": "reference_loose", "resolution": 16, "resolution_type": "pixel"},
		textEmbeds(""))
	l := open(t, cfg, nil)
	s, _ := l.NewSampler(SamplerOptions{Seed: 1, BatchSize: 2})
	b, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	c := b.Cond[0]
	if c.Type != CondReferenceLoose || c.Stacked != nil {
		t.Fatalf("loose conditioning with a missing pair: %+v", c)
	}
	for j, p := range b.Paths {
		img := c.Images[j]
		if strings.HasSuffix(p, "two.png") != (img == nil) {
			t.Fatalf("%s: conditioning image %v", p, img)
		}
		if img != nil && (img.W != 32 || img.H != 16 || !isColour([3]float32{img.Pixels[0], img.Pixels[512], img.Pixels[1024]}, -1, -1, 1)) {
			t.Fatalf("loose image %dx%d", img.W, img.H)
		}
	}
}

func TestTokenizer(t *testing.T) {
	tok, err := NewTokenizer(6)
	if err != nil {
		t.Fatal(err)
	}
	ids, mask := tok.EncodeNew("ab")
	if !slices.Equal(ids, []int32{TokenBOS, ByteOffset + 'a', ByteOffset + 'b', TokenEOS, TokenPad, TokenPad}) ||
		!slices.Equal(mask, []float32{1, 1, 1, 1, 0, 0}) {
		t.Fatalf("encode ab = %v %v", ids, mask)
	}
	ids, _ = tok.EncodeNew("abcdefgh")
	if ids[5] != TokenEOS || ids[4] != ByteOffset+'d' {
		t.Fatalf("truncation = %v", ids)
	}
	ids, mask = tok.Empty()
	if !slices.Equal(ids[:2], []int32{TokenBOS, TokenEOS}) || mask[2] != 0 {
		t.Fatalf("empty = %v %v", ids, mask)
	}
	if _, err := NewTokenizer(1); !errors.Is(err, ErrInvalidConfig) {
		t.Fatal("length 1 accepted")
	}
}

func TestOpenCancelled(t *testing.T) {
	root := t.TempDir()
	writePNG(t, filepath.Join(root, "i", "a.png"), 32, 32, solid(red))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, parse(t, imgDS("d", filepath.Join(root, "i"), nil), textEmbeds("")), Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Open: %v", err)
	}
}
