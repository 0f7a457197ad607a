package data

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Batch is one training batch. Every sample comes from the same dataset and the same aspect
// bucket, so the tensors are dense.
type Batch struct {
	Epoch int // 1-based epoch the batch belongs to
	Index int // 0-based position of the batch within its epoch
	// EpochBatches is the number of batches in this epoch.
	EpochBatches int
	DatasetID    string
	W, H         int       // the bucket
	B, L         int       // batch size and caption length
	Pixels       []float32 // [B,3,H,W] in [-1, 1]; nil with Options.Latents (see Items)
	Tokens       []int32   // [B,L]
	Mask         []float32 // [B,L]: 1 for real tokens, 0 for padding
	Captions     []string
	Paths        []string
	DatasetIDs   []string // per sample (all equal to DatasetID; kept for per-sample reporting)
	// Items are the samples as items of the latent cache (LatentCache.Load).
	Items []LatentItem
	// Cond holds one entry per conditioning dataset of the image dataset (conditioning_data
	// order). The model consumes them as extra tokens.
	Cond []Conditioning

	// The fields below are not filled by the Sampler: the trainer adds them from the
	// encoder caches for families that train on latents and text embeddings (the VAE's
	// scaling and the run's random stream are the trainer's). Nil for pixel families.

	// Latents is one draw of each sample's cached VAE posterior, scaled for the model.
	Latents *Latents
	// Text is the captions' cached text embeddings and mask [B,L,D], [B,L].
	Text *TextEmbedBatch
	// EmptyText is the empty caption's embedding [1,L,D] and mask, which caption dropout
	// puts in place of a caption.
	EmptyText *TextEmbedBatch
}

// Latents is a batch of latents as a diffusion model trains on them: (z − shift_factor) ·
// scaling_factor for a sample z of each image's posterior.
type Latents struct {
	C, H, W int
	// Values is [B,C,H,W].
	Values []float32
}

// Conditioning is the conditioning input of one batch from one conditioning dataset.
type Conditioning struct {
	DatasetID string
	Type      string // reference_strict or reference_loose
	// Images has one entry per sample; nil where a reference_loose pair is missing, and
	// all nil with Options.Latents.
	Images []*CondImage
	// Items are the images as items of the latent cache, nil where a pair is missing.
	Items []*LatentItem
	// Stacked is [B,3,H,W] when every sample has an image of the same size (always so for
	// reference_strict, where H, W equal the batch's); nil otherwise.
	Stacked []float32
	W, H    int // size of Stacked's images; 0 when Stacked is nil
}

// CondImage is one conditioning image, CHW in [-1, 1].
type CondImage struct {
	W, H   int
	Pixels []float32
}

// SamplerOptions starts a Sampler.
type SamplerOptions struct {
	Seed      uint64
	BatchSize int // per-dataset train_batch_size overrides it
	Epoch     int // first epoch (1-based); 0 means 1
}

// Sampler yields the batches of successive epochs in a deterministic order. Within an epoch
// each image dataset contributes every sample (1 + repeats) times, shuffled within aspect
// buckets and cut into full batches; a bucket's leftover that cannot fill a batch is dropped
// for that epoch, as SimpleTuner does. Datasets are interleaved at random, weighted by their
// probability, until all are exhausted. It is not safe for concurrent use.
type Sampler struct {
	l     *Loader
	seed  uint64
	bs    int
	epoch int
	pos   int
	plan  []batchRef
	buf   []byte
}

type batchRef struct {
	set     int
	samples []int32
	caption []int32 // caption variant per sample
}

// samplerState is the JSON form of a Sampler's position.
type samplerState struct {
	Version     int    `json:"version"`
	Seed        uint64 `json:"seed"`
	BatchSize   int    `json:"batch_size"`
	Epoch       int    `json:"epoch"`
	Position    int    `json:"position"`
	Fingerprint string `json:"fingerprint"`
}

// NewSampler starts at the beginning of o.Epoch. It fails with ErrNoData when no dataset can
// fill a single batch.
func (l *Loader) NewSampler(o SamplerOptions) (*Sampler, error) {
	if o.BatchSize <= 0 {
		return nil, fmt.Errorf("%w: batch size %d must be at least 1", ErrInvalidConfig, o.BatchSize)
	}
	if o.Epoch <= 0 {
		o.Epoch = 1
	}
	s := &Sampler{l: l, seed: o.Seed, bs: o.BatchSize, epoch: o.Epoch}
	s.plan = l.epochPlan(s.seed, s.epoch, s.bs)
	if len(s.plan) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoData, l.tooSmall(o.BatchSize))
	}
	return s, nil
}

// tooSmall explains why no batch could be formed.
func (l *Loader) tooSmall(bs int) string {
	var parts []string
	for _, set := range l.sets {
		b := set.batchSize(bs)
		counts := map[[2]int]int{}
		for _, smp := range set.samples {
			counts[[2]int{smp.plan.W, smp.plan.H}] += 1 + set.cfg.Repeats
		}
		for _, k := range set.buckets {
			parts = append(parts, fmt.Sprintf("%s bucket %dx%d has %d samples (with repeats) for batch size %d", set.cfg.ID, k[0], k[1], counts[k], b))
		}
	}
	return "no aspect bucket holds a full batch: " + strings.Join(parts, "; ") + "; lower train_batch_size or raise repeats"
}

func (set *imageSet) batchSize(def int) int {
	if set.cfg.TrainBatchSize > 0 {
		return set.cfg.TrainBatchSize
	}
	return def
}

// EpochBatches returns how many batches the current epoch has.
func (s *Sampler) EpochBatches() int { return len(s.plan) }

// Epoch returns the epoch the next batch belongs to.
func (s *Sampler) Epoch() int {
	if s.pos >= len(s.plan) {
		return s.epoch + 1
	}
	return s.epoch
}

// epochPlan lays out one epoch. It depends only on (seed, epoch, batch size) and the sample
// population, which is what makes State/Restore exact.
func (l *Loader) epochPlan(seed uint64, epoch, bs int) []batchRef {
	e := uint64(epoch)
	perSet := make([][]batchRef, len(l.sets))
	for si, set := range l.sets {
		if set.cfg.Probability <= 0 {
			continue
		}
		b := set.batchSize(bs)
		byBucket := map[[2]int][]int32{}
		for i, smp := range set.samples {
			k := [2]int{smp.plan.W, smp.plan.H}
			for range 1 + set.cfg.Repeats {
				byBucket[k] = append(byBucket[k], int32(i))
			}
		}
		capRNG := newRNG(seed, e, uint64(si), 0xca)
		for _, k := range set.buckets {
			idx := byBucket[k]
			r := newRNG(seed, e, uint64(si), uint64(k[0])<<32|uint64(k[1]))
			r.shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			for off := 0; off+b <= len(idx); off += b {
				br := batchRef{set: si, samples: idx[off : off+b], caption: make([]int32, b)}
				for j, smp := range br.samples {
					br.caption[j] = int32(capRNG.intn(len(set.samples[smp].captions)))
				}
				perSet[si] = append(perSet[si], br)
			}
		}
		r := newRNG(seed, e, uint64(si), 0x0d)
		list := perSet[si]
		r.shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	}
	var out []batchRef
	next := make([]int, len(perSet))
	r := newRNG(seed, e, 0x1e)
	for {
		total := 0.0
		for si, list := range perSet {
			if next[si] < len(list) {
				total += l.sets[si].cfg.Probability
			}
		}
		if total == 0 {
			return out
		}
		x := r.float() * total
		pick := -1
		for si, list := range perSet {
			if next[si] < len(list) {
				pick = si
				if x -= l.sets[si].cfg.Probability; x < 0 {
					break
				}
			}
		}
		out = append(out, perSet[pick][next[pick]])
		next[pick]++
	}
}

// Next loads the next batch, moving on to the next epoch when the current one is done.
func (s *Sampler) Next() (*Batch, error) {
	if s.pos >= len(s.plan) {
		s.epoch++
		s.pos = 0
		s.plan = s.l.epochPlan(s.seed, s.epoch, s.bs)
		if len(s.plan) == 0 {
			return nil, fmt.Errorf("%w: epoch %d has no batches", ErrNoData, s.epoch)
		}
	}
	ref := s.plan[s.pos]
	b, err := s.l.load(ref, &s.buf)
	if err != nil {
		return nil, err
	}
	b.Epoch, b.Index, b.EpochBatches = s.epoch, s.pos, len(s.plan)
	s.pos++
	return b, nil
}

// State returns the sampler's position as JSON, for a checkpoint's training state.
func (s *Sampler) State() json.RawMessage {
	b, _ := json.Marshal(samplerState{Version: 1, Seed: s.seed, BatchSize: s.bs, Epoch: s.epoch, Position: s.pos, Fingerprint: s.l.fp})
	return b
}

// Restore moves the sampler to a position saved by State, so the following batches are
// exactly those the saved sampler would have produced. When the data changed since (other
// files, captions or preprocessing), the position is kept but a Warning with reason "state"
// is emitted, since the continuation can no longer be identical.
func (s *Sampler) Restore(state json.RawMessage) error {
	var st samplerState
	if err := json.Unmarshal(state, &st); err != nil {
		return fmt.Errorf("%w: %v", ErrState, err)
	}
	if st.Version != 1 || st.Epoch < 1 || st.Position < 0 || st.BatchSize < 1 {
		return fmt.Errorf("%w: version %d, epoch %d, position %d, batch size %d", ErrState, st.Version, st.Epoch, st.Position, st.BatchSize)
	}
	plan := s.l.epochPlan(st.Seed, st.Epoch, st.BatchSize)
	if st.Fingerprint != s.l.fp {
		s.l.opts.Warn(Warning{Reason: "state", Err: fmt.Errorf("%w: the datasets changed since the state was saved; the batch order will differ from the original run", ErrState)})
	}
	s.seed, s.bs, s.epoch, s.plan = st.Seed, st.BatchSize, st.Epoch, plan
	s.pos = min(st.Position, len(plan))
	return nil
}

// load reads one batch's tensors from the cache.
func (l *Loader) load(ref batchRef, buf *[]byte) (*Batch, error) {
	set := l.sets[ref.set]
	first := set.samples[ref.samples[0]]
	w, h, n, tl := first.plan.W, first.plan.H, len(ref.samples), l.tok.MaxLen()
	b := &Batch{
		DatasetID: set.cfg.ID, W: w, H: h, B: n, L: tl,
		Tokens: make([]int32, n*tl),
		Mask:   make([]float32, n*tl),
	}
	if !l.opts.Latents {
		b.Pixels = make([]float32, n*3*w*h)
	}
	plane := 3 * w * h
	for j, si := range ref.samples {
		smp := set.samples[si]
		if b.Pixels != nil {
			if err := l.readRef(&smp.px, b.Pixels[j*plane:(j+1)*plane], buf); err != nil {
				return nil, fmt.Errorf("dataset %q: %s: %w", set.cfg.ID, smp.path, err)
			}
		}
		ids := smp.tokens[ref.caption[j]]
		copy(b.Tokens[j*tl:], ids)
		for k, id := range ids {
			if id != TokenPad {
				b.Mask[j*tl+k] = 1
			}
		}
		b.Captions = append(b.Captions, smp.captions[ref.caption[j]])
		b.Paths = append(b.Paths, smp.path)
		b.DatasetIDs = append(b.DatasetIDs, set.cfg.ID)
		b.Items = append(b.Items, smp.px.lat)
	}
	for ci, c := range set.conds {
		cond := Conditioning{DatasetID: c.ID, Type: c.ConditioningType, Images: make([]*CondImage, n), Items: make([]*LatentItem, n)}
		uniform := true
		for j, si := range ref.samples {
			r := set.samples[si].cond[ci]
			if r == nil || l.opts.Latents {
				uniform = false
				if r != nil {
					lat := r.lat // a copy: the loader's own stays untouched
					cond.Items[j] = &lat
				}
				continue
			}
			img := &CondImage{W: r.w, H: r.h, Pixels: make([]float32, 3*r.w*r.h)}
			if err := l.readRef(r, img.Pixels, buf); err != nil {
				return nil, fmt.Errorf("dataset %q: conditioning for %s: %w", c.ID, set.samples[si].path, err)
			}
			cond.Images[j] = img
			lat := r.lat // a copy: the loader's own stays untouched
			cond.Items[j] = &lat
			if j > 0 && cond.Images[0] != nil && (img.W != cond.Images[0].W || img.H != cond.Images[0].H) {
				uniform = false
			}
		}
		if uniform {
			cw, ch := cond.Images[0].W, cond.Images[0].H
			cond.W, cond.H = cw, ch
			cond.Stacked = make([]float32, 0, n*3*cw*ch)
			for _, img := range cond.Images {
				cond.Stacked = append(cond.Stacked, img.Pixels...)
			}
		}
		b.Cond = append(b.Cond, cond)
	}
	return b, nil
}

func (l *Loader) readRef(r *pixelRef, dst []float32, buf *[]byte) error {
	if r.file == "" {
		copy(dst, r.mem)
		return nil
	}
	return readPixels(r.file, r.key, dst, buf)
}
