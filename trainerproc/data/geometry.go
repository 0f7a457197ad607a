package data

import (
	"fmt"
	"math"
)

// plan is the geometry that turns one source image into one training tensor. It depends only
// on the image's dimensions, the dataset's settings and the file's identity, so it can be
// computed from the image header before any pixel is decoded.
type plan struct {
	// DownW, DownH: size after the maximum_image_size → target_downsample_size step; zero
	// when the step does not apply.
	DownW, DownH int
	// InterW, InterH: size the image is resized to so that it covers the bucket.
	InterW, InterH int
	// CropX, CropY: top-left corner of the bucket-sized crop inside the intermediate image.
	CropX, CropY int
	// W, H: the aspect bucket, i.e. the output tensor's spatial size.
	W, H int
}

// measure expresses an image size in the unit of the resolution type: shorter edge (pixel),
// square-root of the area (pixel_area, so 1024 means ≈1024×1024), or megapixels (area).
func measure(resType string, w, h float64) float64 {
	switch resType {
	case ResPixel:
		return math.Min(w, h)
	case ResArea:
		return w * h / 1e6
	default:
		return math.Sqrt(w * h)
	}
}

// scaleTo is the factor that brings a w×h image to measure target.
func scaleTo(resType string, w, h, target float64) float64 {
	switch resType {
	case ResPixel:
		return target / math.Min(w, h)
	case ResArea:
		return math.Sqrt(target * 1e6 / (w * h))
	default:
		return target / math.Sqrt(w*h)
	}
}

// bucketFor returns the bucket (multiple of align on both edges) for aspect ratio r = w/h.
func bucketFor(ds *DatasetConfig, r float64, align int) (int, int) {
	var w, h float64
	switch ds.ResolutionType {
	case ResPixel:
		if r >= 1 {
			h, w = ds.Resolution, ds.Resolution*r
		} else {
			w, h = ds.Resolution, ds.Resolution/r
		}
	default:
		area := ds.Resolution * ds.Resolution
		if ds.ResolutionType == ResArea {
			area = ds.Resolution * 1e6
		}
		w, h = math.Sqrt(area*r), math.Sqrt(area/r)
	}
	return roundTo(w, align), roundTo(h, align)
}

func roundTo(x float64, align int) int {
	n := int(math.Round(x/float64(align))) * align
	return max(n, align)
}

// chooseAspect picks the output aspect ratio for an image of aspect r.
func chooseAspect(ds *DatasetConfig, r float64, ident uint64) float64 {
	if !ds.Crop {
		return r
	}
	switch ds.CropAspect {
	case AspectSquare:
		return 1
	case AspectClosest:
		if len(ds.CropAspectBuckets) == 0 {
			return r
		}
		best := ds.CropAspectBuckets[0]
		for _, b := range ds.CropAspectBuckets[1:] {
			if math.Abs(math.Log(b/r)) < math.Abs(math.Log(best/r)) {
				best = b
			}
		}
		return best
	case AspectRandom:
		if len(ds.CropAspectBuckets) == 0 {
			return r
		}
		return ds.CropAspectBuckets[newRNG(ident, 0xa5).intn(len(ds.CropAspectBuckets))]
	}
	return r // preserve
}

// errFiltered is returned by makePlan for images a dataset's filters exclude; the reason is
// in the message.
type errFiltered struct{ reason, msg string }

func (e *errFiltered) Error() string { return e.msg }

// makePlan computes the geometry for a w0×h0 image. ident is a stable per-file identity that
// seeds the random choices (random crop position and random aspect), so a file always gets
// the same crop and its cache entry stays valid.
func makePlan(ds *DatasetConfig, w0, h0, align int, ident uint64) (plan, error) {
	var p plan
	fw, fh := float64(w0), float64(h0)
	m := measure(ds.ResolutionType, fw, fh)
	if ds.MinimumImageSize > 0 && m < ds.MinimumImageSize {
		return p, &errFiltered{"too_small", fmt.Sprintf("%dx%d is below minimum_image_size %g (%s)", w0, h0, ds.MinimumImageSize, ds.ResolutionType)}
	}
	ar := fw / fh
	if ds.MinimumAspectRatio > 0 && ar < ds.MinimumAspectRatio {
		return p, &errFiltered{"aspect", fmt.Sprintf("aspect ratio %.3f is below minimum_aspect_ratio %g", ar, ds.MinimumAspectRatio)}
	}
	if ds.MaximumAspectRatio > 0 && ar > ds.MaximumAspectRatio {
		return p, &errFiltered{"aspect", fmt.Sprintf("aspect ratio %.3f is above maximum_aspect_ratio %g", ar, ds.MaximumAspectRatio)}
	}
	w1, h1 := w0, h0
	if ds.MaximumImageSize > 0 && ds.TargetDownsampleSize > 0 && m > ds.MaximumImageSize {
		s := scaleTo(ds.ResolutionType, fw, fh, ds.TargetDownsampleSize)
		if s < 1 {
			w1, h1 = max(1, int(math.Round(fw*s))), max(1, int(math.Round(fh*s)))
			p.DownW, p.DownH = w1, h1
		}
	}
	p.W, p.H = bucketFor(ds, chooseAspect(ds, float64(w1)/float64(h1), ident), align)
	// Resize to cover the bucket, keeping the aspect ratio, then crop the excess.
	s := math.Max(float64(p.W)/float64(w1), float64(p.H)/float64(h1))
	if ds.MaxUpscaleThreshold >= 0 {
		if up := s * float64(w1) / fw; up > 1+ds.MaxUpscaleThreshold+1e-9 {
			return p, &errFiltered{"upscale", fmt.Sprintf("%dx%d would need %.0f%% upscaling to %dx%d, above max_upscale_threshold %g", w0, h0, (up-1)*100, p.W, p.H, ds.MaxUpscaleThreshold)}
		}
	}
	p.InterW = max(p.W, int(math.Round(float64(w1)*s)))
	p.InterH = max(p.H, int(math.Round(float64(h1)*s)))
	dx, dy := p.InterW-p.W, p.InterH-p.H
	style := ds.CropStyle
	if !ds.Crop {
		style = CropCenter // only rounding slack is cut
	}
	switch style {
	case CropCorner:
		// SimpleTuner's corner crop keeps the top-left corner.
	case CropRandom:
		r := newRNG(ident, 0xc0)
		p.CropX, p.CropY = r.intn(dx+1), r.intn(dy+1)
	default:
		p.CropX, p.CropY = dx/2, dy/2
	}
	return p, nil
}

// BatchPlan is the largest micro-batch one image dataset can produce, for memory planning:
// the bucket of the largest area its settings allow, its batch size and the reference
// images paired with each sample.
type BatchPlan struct {
	// DatasetID, Resolution and ResolutionType name the dataset and the settings that
	// decided the bucket, for messages; FromOptions is set when they are --resolution's
	// (the dataset object does not set its own).
	DatasetID      string
	Resolution     float64
	ResolutionType string
	FromOptions    bool
	// W and H are the bucket in pixels; Batch the images per micro-batch.
	W, H, Batch int
	// Cond are the sizes (width, height) of the reference images paired with each sample.
	Cond [][2]int
}

// BatchPlans returns a plan for every enabled image dataset; batch is --train_batch_size
// and align the model's patch size. Square images are assumed unless the settings allow a
// larger bucket: crop_aspect_buckets, or (resolution_type pixel, where the shorter edge is
// fixed) maximum_aspect_ratio and minimum_aspect_ratio.
func BatchPlans(c *Config, batch, align int) []BatchPlan {
	byID := map[string]*DatasetConfig{}
	for i := range c.Datasets {
		byID[c.Datasets[i].ID] = &c.Datasets[i]
	}
	var out []BatchPlan
	for i := range c.Datasets {
		ds := &c.Datasets[i]
		if ds.Disabled || ds.DatasetType != TypeImage {
			continue
		}
		p := BatchPlan{DatasetID: ds.ID, Resolution: ds.Resolution, ResolutionType: ds.ResolutionType, FromOptions: !ds.ResolutionSet, Batch: batch}
		if ds.TrainBatchSize > 0 {
			p.Batch = ds.TrainBatchSize
		}
		p.W, p.H = largestBucket(ds, align)
		for _, id := range ds.ConditioningData {
			cd := byID[id]
			if cd == nil || cd.Disabled {
				continue
			}
			if cd.ConditioningType == CondReferenceLoose {
				w, h := largestBucket(cd, align)
				p.Cond = append(p.Cond, [2]int{w, h})
			} else {
				p.Cond = append(p.Cond, [2]int{p.W, p.H}) // strict pairs share the target's bucket
			}
		}
		out = append(out, p)
	}
	return out
}

// largestBucket is the bucket of the largest area among the aspect ratios ds can produce
// (see BatchPlans).
func largestBucket(ds *DatasetConfig, align int) (int, int) {
	ratios := []float64{1}
	if ds.Crop && (ds.CropAspect == AspectClosest || ds.CropAspect == AspectRandom) {
		ratios = append(ratios, ds.CropAspectBuckets...)
	}
	if ds.ResolutionType == ResPixel {
		if ds.MaximumAspectRatio > 0 {
			ratios = append(ratios, ds.MaximumAspectRatio)
		}
		if ds.MinimumAspectRatio > 0 {
			ratios = append(ratios, ds.MinimumAspectRatio)
		}
	}
	bw, bh := 0, 0
	for _, r := range ratios {
		if w, h := bucketFor(ds, r, align); w*h > bw*bh {
			bw, bh = w, h
		}
	}
	return bw, bh
}
