package data

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// LatentItem is one (image, crop, bucket) the loader trains on, as the loader planned it:
// the unit of the latent cache. Items come from Loader.LatentItems and Batch.Items, never
// from a second derivation of the geometry, so the latents are those of the pixels the loader
// would produce.
type LatentItem struct {
	// DatasetID is the dataset the image belongs to (the conditioning dataset for a
	// conditioning image).
	DatasetID string
	// Path is the source image.
	Path string
	// Role is "target" for a training image, "strict" or "loose" for a conditioning image.
	Role string
	// W, H are the bucket: the pixel size of the crop that is encoded.
	W, H int
	// Crop is the bucket-sized rectangle cut from the image once resized to cover the bucket.
	Crop image.Rectangle

	plan plan
	dir  string // the dataset's cache_dir_vae; "" keeps the latents in memory
	name string // file name inside dir, unique per (dataset, image, role, paired source)
}

// newLatentItem describes the latents of the image at path under plan p; parts name the
// entry (dataset id, relative path, role, …).
func newLatentItem(datasetID, path, role string, p plan, dir string, parts ...string) LatentItem {
	return LatentItem{
		DatasetID: datasetID, Path: path, Role: role, W: p.W, H: p.H,
		Crop: image.Rect(p.CropX, p.CropY, p.CropX+p.W, p.CropY+p.H),
		plan: p, dir: dir, name: cacheName(".lat", parts...),
	}
}

// File is the item's cache file, "" when its dataset keeps latents in memory.
func (it *LatentItem) File() string {
	if it.dir == "" {
		return ""
	}
	return filepath.Join(it.dir, it.name)
}

// id identifies the item in a LatentCache.
func (it *LatentItem) id() string { return filepath.Join(it.dir, it.name) }

// LatentEncoder is the VAE as the latent cache needs it. The VAE package implements it.
type LatentEncoder interface {
	// Encode encodes b images of h×w pixels, pixels [b,3,h,w] RGB in [-1, 1], and returns
	// their posteriors, before any scaling_factor or shift_factor.
	Encode(pixels []float32, b, h, w int) (*Posterior, error)
	// Identity names the VAE: a hash of its config and of its weight files' hashes or
	// etags. Latents made by another identity are stale.
	Identity() string
}

// Posterior is the VAE encoder's diagonal Gaussian for a batch of images: the mean and the
// log-variance, both [B,C,H,W]. The cache keeps both (not a sample), so training draws a new
// sample from the distribution at every step, as SimpleTuner does.
type Posterior struct {
	B, C, H, W   int
	Mean, LogVar []float32
}

// EncodeOptions tunes EnsureLatents and EnsureTextEmbeds. Zero values take the defaults.
type EncodeOptions struct {
	// DType is the element type of new entry files; default Float32. An entry of the other
	// type is stale. Entries kept in memory (no cache directory) stay float32.
	DType DType
	// BatchSize is the number of images (latents) or captions (text embeddings, the
	// text_embeds dataset's write_batch_size) per Encode call; default 4 images, 128 captions.
	BatchSize int
	// Workers bounds parallel hashing, checking and decoding; default min(GOMAXPROCS, 4).
	Workers int
	// MaxImagePixels refuses images whose header claims more pixels; default 100 megapixels.
	MaxImagePixels int64
	// Warn receives every skipped image (reason "unreadable"); calls are serialised. Nil
	// discards warnings.
	Warn func(Warning)
	// Progress is called after the check and after each encoded batch; calls are serialised.
	Progress func(EncodeProgress)
}

// EncodeProgress reports the filling of a cache.
type EncodeProgress struct {
	// Total entries wanted; Hits of them found valid; ToEncode the rest (less skipped
	// images); Encoded so far.
	Total, Hits, ToEncode, Encoded int
}

// EncodeStats counts what EnsureLatents or EnsureTextEmbeds did.
type EncodeStats struct {
	Hits    int // valid entries reused
	Built   int // entries encoded and written: missing, stale or corrupt before
	Stale   int // of Built, entries that existed for another image, crop, bucket, encoder or dtype
	Corrupt int // of Built, entries that were unreadable (bad CRC, truncated)
	Skipped int // images that could not be read (latents only; warned)
}

func (o *EncodeOptions) defaults(batch int) error {
	if o.DType != Float32 && o.DType != Float16 {
		return fmt.Errorf("%w: cache dtype %d", ErrInvalidConfig, o.DType)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = batch
	}
	if o.Workers <= 0 {
		o.Workers = min(runtime.GOMAXPROCS(0), 4)
	}
	if o.MaxImagePixels <= 0 {
		o.MaxImagePixels = 100_000_000
	}
	mu := new(sync.Mutex) // serialises the callbacks
	o.Warn, o.Progress = serialised(mu, o.Warn), serialised(mu, o.Progress)
	return nil
}

// latentParams is everything a latent entry depends on; its keyOf is the entry's key. The
// image enters by its content hash (not its mtime), so a copied or touched file keeps its
// latents and an edited one loses them.
type latentParams struct {
	V       int
	Content string // SHA-256 of the image file, hex
	Role    string
	Plan    plan // resize steps, crop rectangle and bucket
	VAE     string
	DType   DType
}

// entry states found by a check.
const (
	entryMissing = iota
	entryValid
	entryStale
	entryCorrupt
)

// latentEntry is where a checked or built latent lives.
type latentEntry struct {
	key     [32]byte
	c, h, w int
	mem     []float32 // mean then logvar, when the item's dataset has no cache directory
}

// LatentCache is the result of EnsureLatents: the keys of the entries it checked or built,
// so that Load can refuse an entry changed since. It holds no reference to the encoder. It
// is safe for concurrent use (read-only after EnsureLatents).
type LatentCache struct {
	entries map[string]latentEntry // by LatentItem.id
	stats   EncodeStats
}

// Stats returns what EnsureLatents did.
func (c *LatentCache) Stats() EncodeStats { return c.stats }

// Has reports whether the cache holds the latents of it.
func (c *LatentCache) Has(it LatentItem) bool {
	_, ok := c.entries[it.id()]
	return ok
}

// EnsureLatents makes sure every item has a valid latent entry for enc: each image is hashed,
// valid entries are kept, and the others are encoded in batches of same-bucket images of at
// most o.BatchSize and written atomically. Items whose image cannot be read are skipped with
// a Warning (Load then fails for them). It fails on cache I/O errors, encoder errors and
// cancellation.
func EnsureLatents(ctx context.Context, items []LatentItem, enc LatentEncoder, o EncodeOptions) (*LatentCache, error) {
	if err := o.defaults(4); err != nil {
		return nil, err
	}
	vae := enc.Identity()
	if vae == "" {
		return nil, fmt.Errorf("%w: the VAE has an empty identity", ErrInvalidConfig)
	}
	c := &LatentCache{entries: make(map[string]latentEntry, len(items))}
	// Items are deduplicated by entry: the same image may be listed twice.
	var uniq []LatentItem
	seen := map[string]bool{}
	for _, it := range items {
		if !seen[it.id()] {
			seen[it.id()] = true
			uniq = append(uniq, it)
		}
	}
	keyFor := func(it *LatentItem, content [32]byte) [32]byte {
		return keyOf(latentParams{V: 1, Content: hex.EncodeToString(content[:]), Role: it.Role, Plan: it.plan, VAE: vae, DType: o.DType})
	}

	// Check: hash every image and look at its entry.
	states := make([]int, len(uniq))
	found := make([]latentEntry, len(uniq))
	errs := make([]error, len(uniq))
	err := forEach(ctx, len(uniq), o.Workers, func(i int) {
		it := &uniq[i]
		if it.dir == "" {
			states[i] = entryMissing // kept in memory: built in every run
			return
		}
		content, err := hashFile(it.Path)
		if err != nil {
			errs[i] = err
			return
		}
		found[i], states[i] = checkLatent(it.File(), keyFor(it, content))
	})
	if err != nil {
		return nil, err
	}
	var todo []int
	for i := range uniq {
		switch {
		case errs[i] != nil:
			c.stats.Skipped++
			o.Warn(Warning{DatasetID: uniq[i].DatasetID, Path: uniq[i].Path, Reason: "unreadable", Err: errs[i]})
		case states[i] == entryValid:
			c.stats.Hits++
			c.entries[uniq[i].id()] = found[i]
		default:
			todo = append(todo, i)
		}
	}
	prog := EncodeProgress{Total: len(uniq), Hits: c.stats.Hits, ToEncode: len(todo)}
	o.Progress(prog)

	// Build: group by bucket, in item order, and encode batch by batch.
	var order [][2]int
	groups := map[[2]int][]int{}
	for _, i := range todo {
		k := [2]int{uniq[i].W, uniq[i].H}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range order {
		g := groups[k]
		for off := 0; off < len(g); off += o.BatchSize {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			batch := g[off:min(off+o.BatchSize, len(g))]
			built, err := c.buildLatents(ctx, uniq, batch, states, enc, keyFor, &o)
			if err != nil {
				return nil, err
			}
			prog.Encoded += built
			o.Progress(prog)
		}
	}
	return c, nil
}

// buildLatents decodes, encodes and stores the items uniq[batch], all of one bucket, and
// returns how many it stored (unreadable images are skipped).
func (c *LatentCache) buildLatents(ctx context.Context, uniq []LatentItem, batch []int, states []int, enc LatentEncoder, keyFor func(*LatentItem, [32]byte) [32]byte, o *EncodeOptions) (int, error) {
	w, h := uniq[batch[0]].W, uniq[batch[0]].H
	px := make([][]float32, len(batch))
	keys := make([][32]byte, len(batch))
	errs := make([]error, len(batch))
	err := forEach(ctx, len(batch), o.Workers, func(j int) {
		it := &uniq[batch[j]]
		// Hash the bytes that are decoded, so the key always describes the pixels encoded,
		// even when the file changes during the run.
		b, err := os.ReadFile(it.Path)
		if err != nil {
			errs[j] = fmt.Errorf("%w: %v", ErrBadImage, err)
			return
		}
		img, err := decodeChecked(bytes.NewReader(b), it.Path, o.MaxImagePixels)
		if err != nil {
			errs[j] = err
			return
		}
		keys[j] = keyFor(it, sha256.Sum256(b))
		px[j] = applyPlan(img, it.plan)
	})
	if err != nil {
		return 0, err
	}
	var ok []int // positions in batch of decoded images
	var pixels []float32
	for j := range batch {
		if errs[j] != nil {
			c.stats.Skipped++
			o.Warn(Warning{DatasetID: uniq[batch[j]].DatasetID, Path: uniq[batch[j]].Path, Reason: "unreadable", Err: errs[j]})
			continue
		}
		ok = append(ok, j)
		pixels = append(pixels, px[j]...)
	}
	if len(ok) == 0 {
		return 0, nil
	}
	post, err := enc.Encode(pixels, len(ok), h, w)
	if err != nil {
		return 0, fmt.Errorf("encoding %d images of %dx%d: %w", len(ok), w, h, err)
	}
	n := post.C * post.H * post.W
	if post.B != len(ok) || n <= 0 || len(post.Mean) != post.B*n || len(post.LogVar) != post.B*n {
		return 0, fmt.Errorf("%w: the VAE returned a posterior of %dx%dx%dx%d (mean %d, logvar %d values) for %d images", ErrInvalidConfig, post.B, post.C, post.H, post.W, len(post.Mean), len(post.LogVar), len(ok))
	}
	for bi, j := range ok {
		it := &uniq[batch[j]]
		mean, logvar := post.Mean[bi*n:(bi+1)*n], post.LogVar[bi*n:(bi+1)*n]
		e := latentEntry{key: keys[j], c: post.C, h: post.H, w: post.W}
		if it.dir == "" {
			e.mem = append(append(make([]float32, 0, 2*n), mean...), logvar...)
		} else if err := writeAtomic(it.File(), encodeEntry(latentMagic, e.key, o.DType, e.c, e.h, e.w, nil, mean, logvar)); err != nil {
			return 0, err
		}
		c.entries[it.id()] = e
		c.stats.Built++
		switch states[batch[j]] {
		case entryStale:
			c.stats.Stale++
		case entryCorrupt:
			c.stats.Corrupt++
		}
	}
	return len(ok), nil
}

// checkLatent classifies the entry at path against key and dtype, reading and checksumming
// it whole, so that a corrupt entry is rebuilt now rather than failing a batch mid-run.
func checkLatent(path string, key [32]byte) (latentEntry, int) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return latentEntry{}, entryMissing
	}
	if err != nil {
		return latentEntry{}, entryCorrupt
	}
	e, err := parseLatent(path, b)
	switch {
	case err != nil:
		return latentEntry{}, entryCorrupt
	case e.key != key: // the key covers the dtype
		return latentEntry{}, entryStale
	}
	return e, entryValid
}

// parseLatent validates a whole latent entry (header, size, CRC) and returns its key and shape.
func parseLatent(path string, b []byte) (latentEntry, error) {
	ph, err := parseHeader(b, latentMagic)
	if err != nil {
		return latentEntry{}, fmt.Errorf("%s: %w", path, err)
	}
	n := ph.c * ph.h * ph.w
	if n <= 0 || len(b) != headerSize+2*n*ph.dtype.size()+4 {
		return latentEntry{}, fmt.Errorf("%w: %s: size %d does not match %dx%dx%d", ErrCache, path, len(b), ph.c, ph.h, ph.w)
	}
	if _, err := checkPayload(path, b); err != nil {
		return latentEntry{}, err
	}
	return latentEntry{key: ph.key, c: ph.c, h: ph.h, w: ph.w}, nil
}

// LatentBatch is the cached posteriors of a batch of items, [B,C,H,W] each.
type LatentBatch struct {
	B, C, H, W   int
	Mean, LogVar []float32
}

// Sample writes one draw of the posteriors into dst: mean + exp(logvar/2)·noise, where noise
// holds standard normal values; dst, noise and Mean have the same length. The result is the
// raw latent, before the VAE's scaling_factor and shift_factor.
func (lb *LatentBatch) Sample(dst, noise []float32) {
	for i, m := range lb.Mean {
		dst[i] = m + float32(math.Exp(0.5*float64(lb.LogVar[i])))*noise[i]
	}
}

// Load reads the latents of items, which must share a latent shape (the same bucket). An item
// EnsureLatents did not store (its image was unreadable, or it was not passed) fails with
// ErrNotCached, naming the file; an entry deleted, corrupted or rewritten by another job since
// fails with ErrNotCached or ErrCache.
func (c *LatentCache) Load(items []LatentItem) (*LatentBatch, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: no items", ErrInvalidConfig)
	}
	var lb *LatentBatch
	var buf []byte
	for j := range items {
		it := &items[j]
		e, ok := c.entries[it.id()]
		if !ok {
			return nil, fmt.Errorf("%w: latents of %s (dataset %q, %s, file %s): EnsureLatents did not build them (unreadable image, or not among its items)", ErrNotCached, it.Path, it.DatasetID, it.Role, it.File())
		}
		n := e.c * e.h * e.w
		if lb == nil {
			lb = &LatentBatch{B: len(items), C: e.c, H: e.h, W: e.w, Mean: make([]float32, len(items)*n), LogVar: make([]float32, len(items)*n)}
		} else if e.c != lb.C || e.h != lb.H || e.w != lb.W {
			return nil, fmt.Errorf("%w: latents of %s are %dx%dx%d, the batch's %dx%dx%d (items of different buckets)", ErrInvalidConfig, it.Path, e.c, e.h, e.w, lb.C, lb.H, lb.W)
		}
		mean, logvar := lb.Mean[j*n:(j+1)*n], lb.LogVar[j*n:(j+1)*n]
		if e.mem != nil {
			copy(mean, e.mem[:n])
			copy(logvar, e.mem[n:])
			continue
		}
		if err := readLatent(it.File(), e, mean, logvar, &buf); err != nil {
			return nil, fmt.Errorf("latents of %s: %w", it.Path, err)
		}
	}
	return lb, nil
}

// readLatent reads the entry at path, which must still be the one e describes.
func readLatent(path string, e latentEntry, mean, logvar []float32, buf *[]byte) error {
	b, err := readInto(path, buf, headerSize+2*4*len(mean)+4)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: latent cache entry %s is missing (deleted since the cache was built?)", ErrNotCached, path)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCache, err)
	}
	got, err := parseLatent(path, b)
	if err != nil {
		return err
	}
	if got.key != e.key || got.c != e.c || got.h != e.h || got.w != e.w {
		return fmt.Errorf("%w: %s was rewritten since the cache was built (another job with another VAE, image or crop sharing cache_dir_vae?)", ErrCache, path)
	}
	dtype := DType(binary.LittleEndian.Uint16(b[6:]))
	payload := b[headerSize : len(b)-4]
	getElems(mean, dtype, payload)
	getElems(logvar, dtype, payload[len(mean)*dtype.size():])
	return nil
}

// readInto reads the file at path into *buf, growing it as needed, so loading batch after
// batch reuses one buffer. A file larger than maxSize (no valid entry is) is refused before
// anything is allocated for it.
func readInto(path string, buf *[]byte, maxSize int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := int(st.Size())
	if size > maxSize {
		return nil, fmt.Errorf("%w: %s: unexpected size %d", ErrCache, path, size)
	}
	if cap(*buf) < size {
		*buf = make([]byte, size)
	}
	b := (*buf)[:size]
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

// hashFile returns the SHA-256 of the file's content.
func hashFile(path string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, fmt.Errorf("%w: %v", ErrBadImage, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("%w: %s: %v", ErrBadImage, path, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// forEach runs fn(0..n-1) on at most workers goroutines and returns ctx's error if it was
// cancelled (some calls may then not have run). Each call writes only its own index's
// results, so no lock is needed around them.
func forEach(ctx context.Context, n, workers int, fn func(i int)) error {
	var (
		mu   sync.Mutex // guards next
		next int
		wg   sync.WaitGroup
	)
	for range min(workers, max(1, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}
