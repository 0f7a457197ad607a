package data

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Options tunes Open. Zero values take the documented defaults.
type Options struct {
	// BaseDir resolves relative instance_data_dir and cache paths ("" = working directory).
	BaseDir string
	// Align is the multiple both bucket edges are rounded to (the model's patch size times
	// any downsampling); default 8.
	Align int
	// MaxTokens is the caption sequence length L; default 77.
	MaxTokens int
	// CacheDType is the element type of cached pixel tensors; default Float32.
	CacheDType DType
	// Workers bounds parallel preprocessing; default min(GOMAXPROCS, 4).
	Workers int
	// MaxImagePixels refuses images whose header claims more pixels; default 100 megapixels.
	MaxImagePixels int64
	// Warn receives every skipped file and ignored setting. Open serialises the calls, so it
	// need not be safe for concurrent use. Nil discards warnings.
	Warn func(Warning)
	// Progress receives preprocessing progress, serialised like Warn.
	Progress func(Progress)
	// Latents is set for models that train on cached latents: Open plans, captions and
	// tokenizes as usual but decodes no image and writes no pixel cache; batches carry Items
	// (for LatentCache.Load) instead of Pixels and conditioning images. The caller then runs
	// EnsureLatents on LatentItems and DropUncached before drawing batches.
	Latents bool
}

// Warning reports something skipped or ignored; training goes on without it.
type Warning struct {
	DatasetID string
	Path      string // the file concerned, if any
	// Reason is a short stable code: unreadable, too_small, aspect, upscale, no_caption,
	// no_pair, bad_pair, cache, ignored_key, empty_dataset, state.
	Reason string
	Err    error
}

// String renders the warning on one line: dataset, reason, file and cause.
func (w Warning) String() string {
	s := w.DatasetID + ": " + w.Reason
	if w.Path != "" {
		s += ": " + w.Path
	}
	if w.Err != nil {
		s += ": " + w.Err.Error()
	}
	return s
}

// Progress reports preprocessing of one dataset.
type Progress struct {
	DatasetID   string
	Done, Total int
	CacheHits   int
}

// Stats counts what Open did for one image dataset.
type Stats struct {
	DatasetID   string
	Discovered  int
	Samples     int // usable samples after filters and failures
	Skipped     int
	CacheHits   int // pixel tensors (targets and conditioning) found valid in the cache
	CacheMisses int // pixel tensors computed and written
	TextHits    int
	TextMisses  int
	Buckets     map[[2]int]int // (W, H) → samples
}

// Loader holds the preprocessed, cached datasets. It is safe for concurrent use by several
// Samplers; a Sampler itself is not.
type Loader struct {
	opts  Options
	tok   *Tokenizer
	sets  []*imageSet
	stats []Stats
	fp    string
}

type imageSet struct {
	cfg     DatasetConfig
	conds   []*DatasetConfig
	samples []*sample
	buckets [][2]int // sorted
}

// pixelRef locates one preprocessed tensor: a cache file, or memory when there is no cache.
type pixelRef struct {
	file string
	key  [32]byte
	mem  []float32
	w, h int
	// planLoose is the conditioning image's own geometry (reference_loose only).
	planLoose plan
	// lat is the same image, crop and bucket as an item of the latent cache.
	lat LatentItem
}

type sample struct {
	rel, path string
	captions  []string
	tokens    [][]int32 // one per caption
	plan      plan
	px        pixelRef
	cond      []*pixelRef // one per conditioning dataset; nil where a loose pair is missing
	condPath  []string
}

// pixelParams are the preprocessing settings that enter every pixel cache key.
type pixelParams struct {
	V          int
	Role       string
	Path       string
	Size       int64
	MTime      int64
	SrcW, SrcH int
	Plan       plan
	DType      DType
	Source     string // strict pairs: the source image's key, hex
}

// Open discovers, filters, captions and preprocesses every enabled image dataset of cfg,
// filling the caches. Unreadable files are skipped with a Warning; Open fails only on
// configuration, I/O errors on the caches, cancellation, or when nothing usable remains.
func Open(ctx context.Context, cfg *Config, opts Options) (*Loader, error) {
	if opts.Align <= 0 {
		opts.Align = 8
	}
	if opts.MaxTokens == 0 {
		opts.MaxTokens = 77
	}
	if opts.Workers <= 0 {
		opts.Workers = min(runtime.GOMAXPROCS(0), 4)
	}
	if opts.MaxImagePixels <= 0 {
		opts.MaxImagePixels = 100_000_000
	}
	if opts.CacheDType != Float32 && opts.CacheDType != Float16 {
		return nil, fmt.Errorf("%w: cache dtype %d", ErrInvalidConfig, opts.CacheDType)
	}
	tok, err := NewTokenizer(opts.MaxTokens)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex // serialises the callbacks
	opts.Warn, opts.Progress = serialised(&mu, opts.Warn), serialised(&mu, opts.Progress)
	l := &Loader{opts: opts, tok: tok}
	for i := range cfg.Datasets {
		ds := cfg.Datasets[i]
		if ds.Disabled {
			continue
		}
		for _, k := range ds.Ignored {
			opts.Warn(Warning{DatasetID: ds.ID, Reason: "ignored_key", Err: fmt.Errorf("%q is not implemented by this trainer and has no effect", k)})
		}
		if ds.DatasetType != TypeImage {
			continue
		}
		set, st, err := l.openSet(ctx, cfg, ds)
		if err != nil {
			return nil, err
		}
		l.stats = append(l.stats, st)
		if len(set.samples) == 0 {
			opts.Warn(Warning{DatasetID: ds.ID, Reason: "empty_dataset", Err: fmt.Errorf("%w: no usable images in %s", ErrNoData, ds.InstanceDataDir)})
			continue
		}
		l.sets = append(l.sets, set)
	}
	if len(l.sets) == 0 {
		return nil, fmt.Errorf("%w: no image dataset has a usable image (see the warnings)", ErrNoData)
	}
	l.fp = l.fingerprint()
	return l, nil
}

func (l *Loader) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.opts.BaseDir, p)
}

// serialised wraps a caller's callback so that calls from several workers are made one at a
// time, under mu; a nil callback becomes a no-op.
func serialised[T any](mu *sync.Mutex, fn func(T)) func(T) {
	return func(v T) {
		if fn != nil {
			mu.Lock()
			defer mu.Unlock()
			fn(v)
		}
	}
}

// fileEntry is a discovered image.
type fileEntry struct {
	rel, path string
	size      int64
	mtime     int64
}

// discover lists images under dir recursively in a stable order. Hidden files and folders
// are skipped, as are our own cache files.
func discover(dir string) ([]fileEntry, error) {
	var out []fileEntry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isImage(d.Name()) {
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, fileEntry{rel: filepath.ToSlash(rel), path: p, size: info.Size(), mtime: info.ModTime().UnixNano()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: scanning %s: %v", ErrNoData, dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out, nil
}

// stem is the pairing key: the relative path without its extension.
func stem(rel string) string { return strings.TrimSuffix(rel, filepath.Ext(rel)) }

func (l *Loader) openSet(ctx context.Context, cfg *Config, ds DatasetConfig) (*imageSet, Stats, error) {
	st := Stats{DatasetID: ds.ID, Buckets: map[[2]int]int{}}
	set := &imageSet{cfg: ds}
	files, err := discover(l.abs(ds.InstanceDataDir))
	if err != nil {
		return nil, st, fmt.Errorf("dataset %q: %w", ds.ID, err)
	}
	st.Discovered = len(files)
	if ds.MaxNumSamples > 0 && len(files) > ds.MaxNumSamples {
		// A deterministic subset seeded by the dataset id, as SimpleTuner does.
		r := newRNG(hashString(ds.ID), 0x5e1ec7)
		r.shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
		files = files[:ds.MaxNumSamples]
		sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	}
	vaeDir := l.abs(ds.CacheDirVAE)
	if ds.ImageEmbeds != "" {
		if ie, ok := cfg.Dataset(ds.ImageEmbeds); ok && ie.Type != "memory" {
			vaeDir = l.abs(ie.CacheDir)
		} else {
			vaeDir = ""
		}
	}
	// Conditioning datasets: index their files by pairing key.
	type condIndex struct {
		cfg   *DatasetConfig
		dir   string
		files map[string]fileEntry
	}
	var conds []condIndex
	for _, id := range ds.ConditioningData {
		c, _ := cfg.Dataset(id)
		cf, err := discover(l.abs(c.InstanceDataDir))
		if err != nil {
			return nil, st, fmt.Errorf("dataset %q: %w", c.ID, err)
		}
		idx := map[string]fileEntry{}
		for _, f := range cf {
			if _, dup := idx[stem(f.rel)]; !dup {
				idx[stem(f.rel)] = f
			}
		}
		conds = append(conds, condIndex{cfg: c, dir: l.abs(c.CacheDirVAE), files: idx})
		set.conds = append(set.conds, c)
	}
	warn := func(reason, path string, err error) {
		l.opts.Warn(Warning{DatasetID: ds.ID, Path: path, Reason: reason, Err: err})
	}

	// Pass 1 (headers only, cheap): captions, filters, geometry and pairing.
	var cands []*sample
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, st, err
		}
		caps, err := captionsFor(&ds, f)
		if err != nil {
			warn("no_caption", f.path, err)
			continue
		}
		w, h, err := readConfig(f.path, l.opts.MaxImagePixels)
		if err != nil {
			warn("unreadable", f.path, err)
			continue
		}
		ident := hashString(ds.ID + "\x00" + f.rel)
		p, err := makePlan(&ds, w, h, l.opts.Align, ident)
		if err != nil {
			var fe *errFiltered
			if errors.As(err, &fe) {
				warn(fe.reason, f.path, err)
				continue
			}
			return nil, st, err
		}
		s := &sample{rel: f.rel, path: f.path, captions: caps, plan: p}
		key := keyOf(pixelParams{V: 1, Role: "target", Path: f.path, Size: f.size, MTime: f.mtime, SrcW: w, SrcH: h, Plan: p, DType: l.opts.CacheDType})
		s.px = pixelRef{key: key, w: p.W, h: p.H}
		if vaeDir != "" {
			s.px.file = filepath.Join(vaeDir, cacheName(".px", ds.ID, f.rel, "target"))
		}
		s.px.lat = newLatentItem(ds.ID, f.path, "target", p, vaeDir, ds.ID, f.rel, "target")
		ok := true
		for _, c := range conds {
			cf, found := c.files[stem(f.rel)]
			if !found {
				if c.cfg.ConditioningType == CondReferenceStrict {
					warn("no_pair", f.path, fmt.Errorf("no image named %s.* in conditioning dataset %q (reference_strict needs one for every training image)", stem(f.rel), c.cfg.ID))
					ok = false
					break
				}
				s.cond = append(s.cond, nil)
				s.condPath = append(s.condPath, "")
				continue
			}
			ref, err := l.condRef(ds.ID, c.cfg, c.dir, cf, s)
			if err != nil {
				if c.cfg.ConditioningType == CondReferenceStrict {
					warn("bad_pair", cf.path, err)
					ok = false
					break
				}
				warn("bad_pair", cf.path, err)
				s.cond = append(s.cond, nil)
				s.condPath = append(s.condPath, "")
				continue
			}
			s.cond = append(s.cond, ref)
			s.condPath = append(s.condPath, cf.path)
		}
		if ok {
			cands = append(cands, s)
		}
	}

	// Pass 2 (parallel, bounded): make sure every tensor is cached. Results land by index, so
	// the outcome does not depend on scheduling.
	type job struct {
		s    *sample
		ref  *pixelRef
		path string
		cond int // -1 for the target
	}
	var jobs []job
	for _, s := range cands {
		if l.opts.Latents {
			break // no pixels: EnsureLatents decodes the images, DropUncached the bad ones
		}
		jobs = append(jobs, job{s: s, ref: &s.px, path: s.path, cond: -1})
		for ci, r := range s.cond {
			if r != nil {
				jobs = append(jobs, job{s: s, ref: r, path: s.condPath[ci], cond: ci})
			}
		}
	}
	errs := make([]error, len(jobs))
	hits := make([]bool, len(jobs))
	var (
		next    int
		done    int
		nhits   int
		jobMu   sync.Mutex
		wg      sync.WaitGroup
		workers = min(l.opts.Workers, max(1, len(jobs)))
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				jobMu.Lock()
				i := next
				next++
				jobMu.Unlock()
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				j := jobs[i]
				p := j.s.plan
				if j.cond >= 0 && conds[j.cond].cfg.ConditioningType == CondReferenceLoose {
					p = j.ref.planLoose
				}
				hits[i], errs[i] = l.ensure(j.ref, j.path, p)
				jobMu.Lock()
				done++
				if hits[i] {
					nhits++
				}
				if done%64 == 0 || done == len(jobs) {
					l.opts.Progress(Progress{DatasetID: ds.ID, Done: done, Total: len(jobs), CacheHits: nhits})
				}
				jobMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, st, err
	}
	bad := map[*sample]bool{}
	for i, j := range jobs {
		switch {
		case errs[i] == nil:
			if hits[i] {
				st.CacheHits++
			} else {
				st.CacheMisses++
			}
		case errors.Is(errs[i], ErrBadImage):
			warn("unreadable", j.path, errs[i])
			if j.cond < 0 || conds[j.cond].cfg.ConditioningType == CondReferenceStrict {
				bad[j.s] = true
			} else {
				j.s.cond[j.cond] = nil
			}
		default:
			return nil, st, fmt.Errorf("dataset %q: %w", ds.ID, errs[i])
		}
	}
	for _, s := range cands {
		if !bad[s] {
			set.samples = append(set.samples, s)
		}
	}
	// Captions → token ids through the text cache.
	textDir := ""
	te := ds.TextEmbeds
	var tds *DatasetConfig
	if te != "" {
		tds, _ = cfg.Dataset(te)
	} else {
		tds, _ = cfg.DefaultTextEmbeds()
	}
	if tds != nil && tds.Type != "memory" {
		textDir = l.abs(tds.CacheDir)
	}
	for _, s := range set.samples {
		for _, c := range s.captions {
			ids, hit, err := l.tokens(textDir, c)
			if err != nil {
				return nil, st, fmt.Errorf("dataset %q: %w", ds.ID, err)
			}
			if hit {
				st.TextHits++
			} else {
				st.TextMisses++
			}
			s.tokens = append(s.tokens, ids)
		}
	}
	set.index(&st)
	return set, st, nil
}

// index recomputes the set's sorted bucket list and the sample counts of st from the set's
// samples.
func (set *imageSet) index(st *Stats) {
	st.Buckets = map[[2]int]int{}
	for _, s := range set.samples {
		st.Buckets[[2]int{s.plan.W, s.plan.H}]++
	}
	set.buckets = set.buckets[:0]
	for b := range st.Buckets {
		set.buckets = append(set.buckets, b)
	}
	slices.SortFunc(set.buckets, func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	})
	st.Samples = len(set.samples)
	st.Skipped = max(0, st.Discovered-len(set.samples))
}

// DropUncached removes the samples whose latents c does not hold (EnsureLatents skipped their
// image as unreadable): a training image, or its reference_strict pair; a missing
// reference_loose pair only leaves the sample without that conditioning image. It returns how
// many samples it dropped, and fails with ErrNoData when no dataset keeps a sample. It
// changes the sample population in place, so it must run before the first NewSampler (a
// sampler indexes the population) and not concurrently with any other method.
func (l *Loader) DropUncached(c *LatentCache) (int, error) {
	dropped := 0
	var sets []*imageSet
	for _, set := range l.sets {
		kept := set.samples[:0]
		for _, s := range set.samples {
			ok := c.Has(s.px.lat)
			for ci, r := range s.cond {
				if ok && r != nil && !c.Has(r.lat) {
					if set.conds[ci].ConditioningType == CondReferenceStrict {
						ok = false
					} else {
						s.cond[ci] = nil
					}
				}
			}
			if ok {
				kept = append(kept, s)
			} else {
				dropped++
			}
		}
		set.samples = kept
		for i := range l.stats {
			if l.stats[i].DatasetID == set.cfg.ID {
				set.index(&l.stats[i])
			}
		}
		if len(kept) == 0 {
			l.opts.Warn(Warning{DatasetID: set.cfg.ID, Reason: "empty_dataset", Err: fmt.Errorf("%w: no image of %s has latents", ErrNoData, set.cfg.InstanceDataDir)})
			continue
		}
		sets = append(sets, set)
	}
	l.sets = sets
	l.fp = l.fingerprint()
	if len(sets) == 0 {
		return dropped, fmt.Errorf("%w: no image dataset has an image with latents (see the warnings)", ErrNoData)
	}
	return dropped, nil
}

// condRef prepares the cache reference of a conditioning image paired with target s.
func (l *Loader) condRef(srcID string, c *DatasetConfig, dir string, f fileEntry, s *sample) (*pixelRef, error) {
	w, h, err := readConfig(f.path, l.opts.MaxImagePixels)
	if err != nil {
		return nil, err
	}
	ref := &pixelRef{}
	params := pixelParams{V: 1, Path: f.path, Size: f.size, MTime: f.mtime, SrcW: w, SrcH: h, DType: l.opts.CacheDType}
	if c.ConditioningType == CondReferenceStrict {
		// Pixel-aligned: the same frame as the target, which needs the same aspect ratio.
		sw, sh := s.plan.InterW, s.plan.InterH
		ra, rb := float64(w)/float64(h), float64(sw)/float64(sh)
		if ra/rb > 1.02 || rb/ra > 1.02 {
			return nil, fmt.Errorf("%w: reference_strict pair is %dx%d but its training image has aspect %.3f; use reference_loose for differing aspect ratios", ErrBadImage, w, h, rb)
		}
		params.Role, params.Plan, params.Source = "strict", s.plan, hex.EncodeToString(s.px.key[:])
		ref.w, ref.h = s.plan.W, s.plan.H
		ref.lat = newLatentItem(c.ID, f.path, "strict", s.plan, dir, c.ID, f.rel, "strict", srcID, s.rel)
	} else {
		p, err := makePlan(c, w, h, l.opts.Align, hashString(c.ID+"\x00"+f.rel))
		if err != nil {
			return nil, err
		}
		params.Role, params.Plan = "loose", p
		ref.planLoose = p
		ref.w, ref.h = p.W, p.H
		// A loose pair's geometry is its own, so one entry serves every target it pairs with.
		ref.lat = newLatentItem(c.ID, f.path, "loose", p, dir, c.ID, f.rel, "loose", srcID)
	}
	ref.key = keyOf(params)
	if dir != "" {
		ref.file = filepath.Join(dir, cacheName(".px", c.ID, f.rel, params.Role, srcID))
	}
	return ref, nil
}

// ensure makes ref's tensor available: a valid cache entry is a hit; otherwise the image is
// decoded, processed and written (or kept in memory when there is no cache directory).
func (l *Loader) ensure(ref *pixelRef, path string, p plan) (hit bool, err error) {
	if ref.file != "" && probePixels(ref.file, ref.key, l.opts.CacheDType, 3, ref.h, ref.w) {
		return true, nil
	}
	img, err := decodeFile(path, l.opts.MaxImagePixels)
	if err != nil {
		return false, err
	}
	px := applyPlan(img, p)
	if ref.file == "" {
		ref.mem = px
		return false, nil
	}
	return false, writeAtomic(ref.file, encodePixels(ref.key, l.opts.CacheDType, 3, ref.h, ref.w, px))
}

// tokens returns the ids of caption, from the text cache when it holds them.
func (l *Loader) tokens(dir, caption string) ([]int32, bool, error) {
	key := keyOf(struct {
		V       string
		L       int
		Caption string
	}{TokenizerVersion, l.tok.MaxLen(), caption})
	var file string
	if dir != "" {
		file = filepath.Join(dir, hex.EncodeToString(key[:16])+".tok")
		if ids, err := readTokens(file, key, l.tok.MaxLen()); err == nil {
			return ids, true, nil
		}
	}
	ids, _ := l.tok.EncodeNew(caption)
	if file != "" {
		if err := writeAtomic(file, encodeTokens(key, ids)); err != nil {
			return nil, false, err
		}
	}
	return ids, false, nil
}

// LatentItems lists the images the loader trains on, with the crops and buckets it planned
// for them, as items of the latent cache (EnsureLatents): every training image and every
// paired conditioning image of every dataset that contributes samples, in a stable order.
func (l *Loader) LatentItems() []LatentItem {
	var out []LatentItem
	for _, set := range l.sets {
		for _, s := range set.samples {
			out = append(out, s.px.lat)
			for _, r := range s.cond {
				if r != nil {
					out = append(out, r.lat)
				}
			}
		}
	}
	return out
}

// Captions lists every distinct caption of the datasets that contribute samples, in a stable
// order, for the text-embedding cache (EnsureTextEmbeds).
func (l *Loader) Captions() []string {
	var out []string
	seen := map[string]bool{}
	for _, set := range l.sets {
		for _, s := range set.samples {
			for _, c := range s.captions {
				if !seen[c] {
					seen[c] = true
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// Tokenizer returns the caption tokenizer, e.g. for validation prompts and the empty caption
// used by caption dropout.
func (l *Loader) Tokenizer() *Tokenizer { return l.tok }

// EmptyCaption returns the token ids and mask of the empty caption (caption dropout).
func (l *Loader) EmptyCaption() ([]int32, []float32) { return l.tok.Empty() }

// Stats returns what Open found and did, one entry per enabled image dataset.
func (l *Loader) Stats() []Stats { return slices.Clone(l.stats) }

// DatasetIDs lists the image datasets that contribute samples, in document order.
func (l *Loader) DatasetIDs() []string {
	out := make([]string, len(l.sets))
	for i, s := range l.sets {
		out[i] = s.cfg.ID
	}
	return out
}

// fingerprint identifies the sample population (what the sampler's plan depends on), so a
// restored state can tell whether the data changed underneath it.
func (l *Loader) fingerprint() string {
	h := sha256.New()
	for _, s := range l.sets {
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%g\x00", s.cfg.ID, s.cfg.Repeats, s.cfg.TrainBatchSize, s.cfg.Probability)
		for _, smp := range s.samples {
			fmt.Fprintf(h, "%s\x00%d\x00%x\x00", smp.rel, len(smp.captions), smp.px.key)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// captionsFor derives the caption variants of one image (SimpleTuner: a textfile holds one
// caption per line unless disable_multiline_split is set).
func captionsFor(ds *DatasetConfig, f fileEntry) ([]string, error) {
	var caps []string
	switch {
	case ds.DatasetType != TypeImage:
		return []string{""}, nil
	case ds.OnlyInstance || ds.CaptionStrategy == CaptionInstancePrompt:
		return []string{ds.InstancePrompt}, nil
	case ds.CaptionStrategy == CaptionTextfile:
		txt := strings.TrimSuffix(f.path, filepath.Ext(f.path)) + ".txt"
		b, err := os.ReadFile(txt)
		if err != nil {
			return nil, fmt.Errorf("caption_strategy=textfile needs %s: %w", filepath.Base(txt), err)
		}
		s := strings.TrimPrefix(string(b), "\ufeff")
		if ds.DisableMultilineSplit {
			caps = []string{strings.TrimSpace(s)}
		} else {
			for _, line := range strings.Split(s, "\n") {
				if line = strings.TrimSpace(line); line != "" {
					caps = append(caps, line)
				}
			}
		}
		if len(caps) == 0 {
			caps = []string{""}
		}
	default:
		caps = []string{filenameCaption(f.rel)}
	}
	if ds.PrependInstance {
		for i, c := range caps {
			caps[i] = strings.TrimSpace(ds.InstancePrompt + " " + c)
		}
	}
	return caps, nil
}

// filenameCaption cleans a file name into a caption: the base name without extension, with
// underscores as spaces and runs of whitespace collapsed.
func filenameCaption(rel string) string {
	base := stem(filepath.Base(filepath.FromSlash(rel)))
	return strings.Join(strings.Fields(strings.ReplaceAll(base, "_", " ")), " ")
}
