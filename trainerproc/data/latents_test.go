package data

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeVAE is a LatentEncoder that downsamples by 8 and counts its calls. Its mean is the
// block average of a channel (so it depends on every pixel of the crop) and its log-variance
// a function of the mean, so tests can predict both.
type fakeVAE struct {
	id     string
	mu     sync.Mutex // guards the fields below; EnsureLatents may run in several goroutines
	calls  int
	images int
	seen   map[[2]int]int    // bucket (w, h) → images encoded
	pixels map[int][]float32 // first image's pixels of each call, by call number
	fail   error
}

func (v *fakeVAE) Identity() string { return v.id }

func (v *fakeVAE) Encode(pixels []float32, b, h, w int) (*Posterior, error) {
	v.mu.Lock()
	v.calls++
	v.images += b
	if v.seen == nil {
		v.seen = map[[2]int]int{}
		v.pixels = map[int][]float32{}
	}
	v.seen[[2]int{w, h}] += b
	v.pixels[v.calls] = slices.Clone(pixels[:3*h*w])
	fail := v.fail
	v.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	if len(pixels) != b*3*h*w {
		return nil, errors.New("pixels do not match the batch")
	}
	return fakePosterior(pixels, b, h, w), nil
}

func fakePosterior(pixels []float32, b, h, w int) *Posterior {
	const c = 4
	lh, lw := h/8, w/8
	p := &Posterior{B: b, C: c, H: lh, W: lw, Mean: make([]float32, b*c*lh*lw), LogVar: make([]float32, b*c*lh*lw)}
	for i := range b {
		for ch := range c {
			src := pixels[(i*3+ch%3)*h*w:]
			for y := range lh {
				for x := range lw {
					var s float32
					for dy := range 8 {
						for dx := range 8 {
							s += src[(8*y+dy)*w+8*x+dx]
						}
					}
					o := ((i*c+ch)*lh+y)*lw + x
					p.Mean[o] = s/64 + float32(ch)
					p.LogVar[o] = -1 - p.Mean[o]/4
				}
			}
		}
	}
	return p
}

// latentFixture is a dataset of three images in two buckets, with a vae cache.
type latentFixture struct {
	root, imgs, vae string
	extra           map[string]any
}

func newLatentFixture(t *testing.T) *latentFixture {
	f := latentFixtureAt(t.TempDir())
	writePNG(t, filepath.Join(f.imgs, "a.png"), 48, 32, halves(48, red, blue))
	writePNG(t, filepath.Join(f.imgs, "b.png"), 48, 32, halves(48, green, white))
	writePNG(t, filepath.Join(f.imgs, "c.png"), 32, 32, solid(blue))
	return f
}

// latentFixtureAt describes the fixture whose images are (or will be) in root.
func latentFixtureAt(root string) *latentFixture {
	f := &latentFixture{root: root, imgs: filepath.Join(root, "imgs"), vae: filepath.Join(root, "vae")}
	f.extra = map[string]any{"cache_dir_vae": f.vae, "crop": true, "crop_style": "center", "crop_aspect": "preserve"}
	return f
}

func (f *latentFixture) loader(t *testing.T) *Loader {
	return open(t, parse(t, imgDS("d", f.imgs, f.extra), textEmbeds("")), nil)
}

func ensure(t *testing.T, l *Loader, vae LatentEncoder, o EncodeOptions) *LatentCache {
	t.Helper()
	c, err := EnsureLatents(context.Background(), l.LatentItems(), vae, o)
	if err != nil {
		t.Fatalf("EnsureLatents: %v", err)
	}
	return c
}

// TestLatentItemsAreTheLoadersPlan: the items are the loader's own crops and buckets, and the
// encoder sees exactly the pixels a batch of the loader holds.
func TestLatentItemsAreTheLoadersPlan(t *testing.T) {
	f := newLatentFixture(t)
	l := f.loader(t)
	items := l.LatentItems()
	if len(items) != 3 {
		t.Fatalf("%d items, want 3", len(items))
	}
	for _, it := range items {
		s := sampleByRel(l, "d", filepath.Base(it.Path))
		if it.W != s.plan.W || it.H != s.plan.H || it.Crop.Min.X != s.plan.CropX || it.Crop.Dx() != s.plan.W || it.Role != "target" || it.DatasetID != "d" {
			t.Errorf("%s: item %+v, plan %+v", it.Path, it, s.plan)
		}
		if !strings.HasPrefix(it.File(), f.vae) {
			t.Errorf("item file %s is not in cache_dir_vae %s", it.File(), f.vae)
		}
	}
	vae := &fakeVAE{id: "vae-1"}
	ensure(t, l, vae, EncodeOptions{BatchSize: 1})
	s, _ := l.NewSampler(SamplerOptions{BatchSize: 1})
	for range s.EpochBatches() {
		b, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, px := range vae.pixels {
			found = found || slices.Equal(px, b.Pixels)
		}
		if !found {
			t.Errorf("%s: the encoder never saw the loader's pixels", b.Paths[0])
		}
		if len(b.Items) != 1 || b.Items[0].Path != b.Paths[0] {
			t.Errorf("batch items %+v for %v", b.Items, b.Paths)
		}
	}
}

// TestLatentCacheInvalidation walks the cache through the changes that must and must not
// rebuild entries.
func TestLatentCacheInvalidation(t *testing.T) {
	f := newLatentFixture(t)
	vae := &fakeVAE{id: "vae-1"}
	steps := []struct {
		name   string
		change func(t *testing.T)
		vae    string
		dtype  DType
		want   EncodeStats
	}{
		{"first run", func(*testing.T) {}, "vae-1", Float32, EncodeStats{Built: 3}},
		{"second run", func(*testing.T) {}, "vae-1", Float32, EncodeStats{Hits: 3}},
		{"touched, same bytes", func(t *testing.T) {
			future := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(f.imgs, "a.png"), future, future); err != nil {
				t.Fatal(err)
			}
		}, "vae-1", Float32, EncodeStats{Hits: 3}},
		{"image bytes changed", func(t *testing.T) {
			writePNG(t, filepath.Join(f.imgs, "b.png"), 48, 32, halves(48, white, green))
		}, "vae-1", Float32, EncodeStats{Hits: 2, Built: 1, Stale: 1}},
		// The square image keeps its bucket and crop in the next two steps.
		{"bucket changed", func(*testing.T) { f.extra["crop_aspect"] = "square" }, "vae-1", Float32, EncodeStats{Hits: 1, Built: 2, Stale: 2}},
		{"crop changed, same bucket", func(*testing.T) { f.extra["crop_style"] = "corner" }, "vae-1", Float32, EncodeStats{Hits: 1, Built: 2, Stale: 2}},
		{"resolution changed", func(*testing.T) { f.extra["resolution"] = 40 }, "vae-1", Float32, EncodeStats{Built: 3, Stale: 3}},
		{"VAE changed", func(*testing.T) {}, "vae-2", Float32, EncodeStats{Built: 3, Stale: 3}},
		{"dtype changed", func(*testing.T) {}, "vae-2", Float16, EncodeStats{Built: 3, Stale: 3}},
		{"all unchanged", func(*testing.T) {}, "vae-2", Float16, EncodeStats{Hits: 3}},
	}
	for _, st := range steps {
		st.change(t)
		vae.id = st.vae
		before := vae.images
		c := ensure(t, f.loader(t), vae, EncodeOptions{DType: st.dtype})
		if c.Stats() != st.want {
			t.Errorf("%s: stats %+v, want %+v", st.name, c.Stats(), st.want)
		}
		if got := vae.images - before; got != st.want.Built {
			t.Errorf("%s: encoded %d images, want %d", st.name, got, st.want.Built)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(f.vae, "*.lat")); len(files) != 3 {
		t.Errorf("%d latent files, want 3 (stale entries are replaced in place)", len(files))
	}
}

// TestLatentBatchesByBucket: images are encoded in batches of one bucket, at most BatchSize.
func TestLatentBatchesByBucket(t *testing.T) {
	f := newLatentFixture(t)
	writePNG(t, filepath.Join(f.imgs, "d.png"), 48, 32, solid(red))
	writePNG(t, filepath.Join(f.imgs, "e.png"), 48, 32, solid(green))
	vae := &fakeVAE{id: "v"}
	var progress []EncodeProgress
	c := ensure(t, f.loader(t), vae, EncodeOptions{BatchSize: 3, Progress: func(p EncodeProgress) { progress = append(progress, p) }})
	// Buckets 48x32 (4 images: 3 + 1) and 32x32 (1 image): three calls.
	if vae.calls != 3 || vae.seen[[2]int{48, 32}] != 4 || vae.seen[[2]int{32, 32}] != 1 || c.Stats().Built != 5 {
		t.Fatalf("calls %d, per bucket %v, stats %+v", vae.calls, vae.seen, c.Stats())
	}
	last := progress[len(progress)-1]
	if len(progress) != 4 || last != (EncodeProgress{Total: 5, ToEncode: 5, Encoded: 5}) {
		t.Errorf("progress %+v", progress)
	}
}

// TestLatentLoad: Load returns what the encoder produced (exactly in float32, within float16
// precision otherwise), and names the file when an entry is missing.
func TestLatentLoad(t *testing.T) {
	for _, dt := range []DType{Float32, Float16} {
		f := newLatentFixture(t)
		l := f.loader(t)
		vae := &fakeVAE{id: "v"}
		c := ensure(t, l, vae, EncodeOptions{DType: dt})
		s, _ := l.NewSampler(SamplerOptions{BatchSize: 2})
		// One epoch: the 48x32 bucket holds a batch of 2, the 32x32 one none.
		b, err := s.Next()
		if err != nil || s.EpochBatches() != 1 || b.W != 48 {
			t.Fatalf("batch %+v, %d batches: %v", b, s.EpochBatches(), err)
		}
		lb, err := c.Load(b.Items)
		if err != nil {
			t.Fatal(err)
		}
		want := fakePosterior(b.Pixels, b.B, b.H, b.W)
		tol := 0.0
		if dt == Float16 {
			tol = 4e-3
		}
		if lb.B != 2 || lb.C != 4 || lb.H != 4 || lb.W != 6 || !close32(lb.Mean, want.Mean, tol) || !close32(lb.LogVar, want.LogVar, tol) {
			t.Fatalf("%v: loaded %dx%dx%dx%d differs from the encoder's output", dt, lb.B, lb.C, lb.H, lb.W)
		}
		// Sampling: zero noise gives the mean; unit noise adds the standard deviation.
		z := make([]float32, len(lb.Mean))
		lb.Sample(z, make([]float32, len(z)))
		if !slices.Equal(z, lb.Mean) {
			t.Error("a sample with zero noise is not the mean")
		}
		ones := make([]float32, len(z))
		for i := range ones {
			ones[i] = 1
		}
		lb.Sample(z, ones)
		if d := z[5] - lb.Mean[5]; math.Abs(float64(d)-math.Exp(float64(lb.LogVar[5])/2)) > 1e-6 {
			t.Errorf("sample - mean = %g, want exp(logvar/2) = %g", d, math.Exp(float64(lb.LogVar[5])/2))
		}

		// Mixed buckets are refused; a deleted entry is an error naming its file.
		all := l.LatentItems()
		if _, err := c.Load(all); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("mixed buckets: %v", err)
		}
		if err := os.Remove(b.Items[1].File()); err != nil {
			t.Fatal(err)
		}
		_, err = c.Load(b.Items)
		if !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), b.Items[1].File()) {
			t.Errorf("deleted entry: %v", err)
		}
		// An item the cache was not built for.
		other := b.Items[0]
		other.name = "elsewhere.lat"
		if _, err := c.Load([]LatentItem{other}); !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "elsewhere.lat") {
			t.Errorf("unknown item: %v", err)
		}
	}
}

func close32(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > tol*(1+math.Abs(float64(b[i]))) {
			return false
		}
	}
	return true
}

// TestLatentCorruptRebuilt: a flipped byte or a truncated file is rebuilt, not used; an entry
// rewritten after the check is refused by Load.
func TestLatentCorruptRebuilt(t *testing.T) {
	f := newLatentFixture(t)
	vae := &fakeVAE{id: "v"}
	ensure(t, f.loader(t), vae, EncodeOptions{})
	files, _ := filepath.Glob(filepath.Join(f.vae, "*.lat"))
	if len(files) != 3 {
		t.Fatalf("%d files", len(files))
	}
	b, _ := os.ReadFile(files[0])
	b[headerSize+7] ^= 0x10
	if err := os.WriteFile(files[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(files[1], headerSize+10); err != nil {
		t.Fatal(err)
	}
	l := f.loader(t)
	c := ensure(t, l, vae, EncodeOptions{})
	if want := (EncodeStats{Hits: 1, Built: 2, Corrupt: 2}); c.Stats() != want {
		t.Fatalf("stats %+v, want %+v", c.Stats(), want)
	}
	if c2 := ensure(t, l, vae, EncodeOptions{}); c2.Stats() != (EncodeStats{Hits: 3}) {
		t.Fatalf("after rebuild: %+v", c2.Stats())
	}
	// Corrupted after the check: Load refuses it rather than train on it.
	items := l.LatentItems()
	b, _ = os.ReadFile(items[0].File())
	b[len(b)-6] ^= 1
	if err := os.WriteFile(items[0].File(), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(items[:1]); !errors.Is(err, ErrCache) {
		t.Errorf("corrupt entry loaded: %v", err)
	}
}

// TestLatentSkipsUnreadable: an image that cannot be decoded at encoding time is skipped with
// a warning, and Load names it.
func TestLatentSkipsUnreadable(t *testing.T) {
	f := newLatentFixture(t)
	l := f.loader(t)
	// Broken after the loader planned it (the header still parses, the data does not).
	p := filepath.Join(f.imgs, "c.png")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, b[:len(b)-20], 0o644); err != nil {
		t.Fatal(err)
	}
	var w warnings
	c := ensure(t, l, &fakeVAE{id: "v"}, EncodeOptions{Warn: w.add})
	if c.Stats() != (EncodeStats{Built: 2, Skipped: 1}) || w.reasons()["unreadable"] != 1 {
		t.Fatalf("stats %+v, warnings %v", c.Stats(), w.list)
	}
	for _, it := range l.LatentItems() {
		if it.Path == p {
			if _, err := c.Load([]LatentItem{it}); !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), it.File()) {
				t.Errorf("skipped image: %v", err)
			}
		}
	}
}

// TestLatentConcurrentWriters: several EnsureLatents over one cache directory at once (as
// jobs sharing cache_dir_vae) all succeed and leave valid entries.
func TestLatentConcurrentWriters(t *testing.T) {
	f := newLatentFixture(t)
	l := f.loader(t)
	items := l.LatentItems()
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = EnsureLatents(context.Background(), items, &fakeVAE{id: "v"}, EncodeOptions{BatchSize: 1})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	vae := &fakeVAE{id: "v"}
	if c := ensure(t, l, vae, EncodeOptions{}); c.Stats() != (EncodeStats{Hits: 3}) || vae.calls != 0 {
		t.Fatalf("after concurrent writers: %+v, %d calls", c.Stats(), vae.calls)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(f.vae, ".tmp-*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestLatentConcurrentProcesses: two processes rewriting the same latent entries (each
// alternating between two VAEs) while this one checks them: every entry a reader finds is
// whole, and the entries left behind are valid.
func TestLatentConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	f := newLatentFixture(t)
	done := startWriters(t, 2, "latent", f.root)
	var buf []byte
	reads := raceUntilDone(t, done, 2, func() error {
		files, _ := filepath.Glob(filepath.Join(f.vae, "*.lat"))
		for _, p := range files {
			b, err := readInto(p, &buf, 1<<20)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if _, err := parseLatent(p, b); err != nil {
				return err
			}
		}
		return nil
	})
	l := f.loader(t)
	c := ensure(t, l, &fakeVAE{id: "a"}, EncodeOptions{})
	if st := c.Stats(); st.Hits+st.Stale != 3 || st.Corrupt != 0 {
		t.Fatalf("after the race: %+v (%d reads during it)", st, reads)
	}
	if _, err := c.Load(firstBatch(t, l, 2).Items); err != nil {
		t.Fatal(err)
	}
}

// firstBatch is the first batch of size bs of l's default sampler.
func firstBatch(t *testing.T, l *Loader, bs int) *Batch {
	t.Helper()
	s, err := l.NewSampler(SamplerOptions{BatchSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLatentMemoryAndConditioning: without cache_dir_vae the latents stay in memory; paired
// conditioning images are items too, in their own dataset's cache.
func TestLatentMemoryAndConditioning(t *testing.T) {
	root := t.TempDir()
	edit, ref := filepath.Join(root, "edit"), filepath.Join(root, "ref")
	writePNG(t, filepath.Join(edit, "one.png"), 32, 32, solid(red))
	writePNG(t, filepath.Join(edit, "two.png"), 32, 32, solid(green))
	writePNG(t, filepath.Join(ref, "one.png"), 64, 32, solid(blue))
	cfg := parse(t,
		imgDS("edit", edit, map[string]any{"conditioning_data": "ref"}),
		map[string]any{"id": "ref", "type": "local", "dataset_type": "conditioning", "instance_data_dir": ref,
			"conditioning_type": "reference_loose", "resolution": 16, "resolution_type": "pixel", "cache_dir_vae": filepath.Join(root, "vae-ref")},
		textEmbeds(""))
	l := open(t, cfg, nil)
	items := l.LatentItems()
	if len(items) != 3 || items[1].Role != "loose" || items[1].DatasetID != "ref" || items[1].W != 32 || items[1].H != 16 {
		t.Fatalf("items %+v", items)
	}
	c := ensure(t, l, &fakeVAE{id: "v"}, EncodeOptions{})
	if c.Stats().Built != 3 {
		t.Fatalf("stats %+v", c.Stats())
	}
	if files, _ := filepath.Glob(filepath.Join(root, "vae-ref", "*.lat")); len(files) != 1 {
		t.Errorf("%d conditioning latent files, want 1", len(files))
	}
	b := firstBatch(t, l, 2)
	lb, err := c.Load(b.Items)
	if err != nil {
		t.Fatal(err)
	}
	if want := fakePosterior(b.Pixels, 2, 32, 32); !slices.Equal(lb.Mean, want.Mean) {
		t.Error("in-memory latents differ from the encoder's output")
	}
	for j, it := range b.Cond[0].Items {
		if (it == nil) != (b.Cond[0].Images[j] == nil) {
			t.Fatalf("conditioning items %v", b.Cond[0].Items)
		}
		if it != nil {
			if _, err := c.Load([]LatentItem{*it}); err != nil {
				t.Error(err)
			}
		}
	}
}

// TestLatentEncoderErrors: an encoder failure or a malformed posterior stops EnsureLatents.
func TestLatentEncoderErrors(t *testing.T) {
	f := newLatentFixture(t)
	l := f.loader(t)
	boom := errors.New("out of memory")
	if _, err := EnsureLatents(context.Background(), l.LatentItems(), &fakeVAE{id: "v", fail: boom}, EncodeOptions{}); !errors.Is(err, boom) {
		t.Errorf("encoder error: %v", err)
	}
	if _, err := EnsureLatents(context.Background(), l.LatentItems(), &fakeVAE{}, EncodeOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("empty identity: %v", err)
	}
	if _, err := EnsureLatents(context.Background(), l.LatentItems(), badVAE{}, EncodeOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("short posterior: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := EnsureLatents(ctx, l.LatentItems(), &fakeVAE{id: "v"}, EncodeOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// badVAE returns one image's posterior whatever the batch.
type badVAE struct{}

func (badVAE) Identity() string { return "bad" }
func (badVAE) Encode(pixels []float32, b, h, w int) (*Posterior, error) {
	p := fakePosterior(pixels[:3*h*w], 1, h, w)
	p.B = b
	return p, nil
}

// writeBroken writes a PNG whose header parses but whose pixel data is cut short: the loader
// plans it, EnsureLatents cannot decode it.
func writeBroken(t *testing.T, path string) {
	t.Helper()
	writePNG(t, path, 32, 32, solid(red))
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)-20], 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLatentsMode: with Options.Latents the loader writes no pixel cache, its batches carry
// items instead of pixels, and DropUncached removes the samples whose image (or strict pair)
// EnsureLatents could not read, keeping a sample whose loose pair is missing.
func TestLatentsMode(t *testing.T) {
	root := t.TempDir()
	edit, strict, loose := filepath.Join(root, "edit"), filepath.Join(root, "strict"), filepath.Join(root, "loose")
	for _, n := range []string{"one", "two", "three"} {
		writePNG(t, filepath.Join(edit, n+".png"), 32, 32, solid(green))
	}
	writeBroken(t, filepath.Join(edit, "bad.png"))
	writeBroken(t, filepath.Join(strict, "one.png"))
	for _, n := range []string{"two", "three", "bad"} {
		writePNG(t, filepath.Join(strict, n+".png"), 32, 32, solid(blue))
	}
	writeBroken(t, filepath.Join(loose, "two.png"))
	writePNG(t, filepath.Join(loose, "three.png"), 48, 32, solid(white))
	cond := func(id, dir, typ string) map[string]any {
		return map[string]any{"id": id, "type": "local", "dataset_type": "conditioning", "instance_data_dir": dir,
			"conditioning_type": typ, "cache_dir_vae": filepath.Join(root, "vae-"+id)}
	}
	cfg := parse(t,
		imgDS("edit", edit, map[string]any{"conditioning_data": []string{"strict", "loose"}, "cache_dir_vae": filepath.Join(root, "vae")}),
		cond("strict", strict, CondReferenceStrict), cond("loose", loose, CondReferenceLoose), textEmbeds(""))
	l, err := Open(context.Background(), cfg, Options{Latents: true, Workers: 2, MaxTokens: 16})
	if err != nil {
		t.Fatal(err)
	}
	if px, _ := filepath.Glob(filepath.Join(root, "vae*", "*.px")); len(px) != 0 {
		t.Errorf("pixel cache written in latents mode: %v", px)
	}
	items := l.LatentItems()
	if len(items) != 10 {
		t.Fatalf("%d items, want 4 targets, 4 strict and 2 loose pairs", len(items))
	}
	var w warnings
	c := ensure(t, l, &fakeVAE{id: "v"}, EncodeOptions{Warn: w.add})
	if c.Stats() != (EncodeStats{Built: 7, Skipped: 3}) || w.reasons()["unreadable"] != 3 {
		t.Fatalf("stats %+v, warnings %v", c.Stats(), w.list)
	}
	dropped, err := l.DropUncached(c)
	if err != nil || dropped != 2 || l.Stats()[0].Samples != 2 || l.Stats()[0].Buckets[[2]int{32, 32}] != 2 {
		t.Fatalf("dropped %d (%v), stats %+v", dropped, err, l.Stats())
	}
	b := firstBatch(t, l, 2)
	if b.Pixels != nil || len(b.Items) != 2 || len(b.Cond) != 2 {
		t.Fatalf("batch %+v", b)
	}
	if _, err := c.Load(b.Items); err != nil {
		t.Fatal(err)
	}
	for j, p := range b.Paths {
		s, l := b.Cond[0].Items[j], b.Cond[1].Items[j]
		if s == nil || b.Cond[0].Images[j] != nil || (l == nil) != strings.HasSuffix(p, "two.png") {
			t.Fatalf("%s: strict item %v, loose item %v", p, s, l)
		}
		for _, it := range []*LatentItem{s, l} {
			if it != nil {
				if _, err := c.Load([]LatentItem{*it}); err != nil {
					t.Error(err)
				}
			}
		}
	}
	// Nothing readable at all: no data.
	if _, err := l.DropUncached(&LatentCache{}); !errors.Is(err, ErrNoData) {
		t.Errorf("empty cache: %v", err)
	}
}
