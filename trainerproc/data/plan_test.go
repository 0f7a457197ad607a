package data

import (
	"testing"
)

func TestBatchPlans(t *testing.T) {
	const doc = `[
  {"id": "tutorial", "type": "local", "dataset_type": "image", "instance_data_dir": "/d/a", "resolution": 1024, "resolution_type": "pixel_area"},
  {"id": "edit", "type": "local", "dataset_type": "image", "instance_data_dir": "/d/b", "conditioning_data": ["strict", "loose"],
   "resolution": 64, "resolution_type": "pixel", "maximum_aspect_ratio": 2, "train_batch_size": 3},
  {"id": "strict", "type": "local", "dataset_type": "conditioning", "instance_data_dir": "/d/c", "conditioning_type": "reference_strict"},
  {"id": "loose", "type": "local", "dataset_type": "conditioning", "instance_data_dir": "/d/d", "conditioning_type": "reference_loose",
   "resolution": 0.0625, "resolution_type": "area"},
  {"id": "off", "type": "local", "dataset_type": "image", "instance_data_dir": "/d/e", "disabled": true},
  {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": "/c/t"}
]`
	cfg, err := ParseConfig([]byte(doc), Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	plans := BatchPlans(cfg, 1, 2)
	if len(plans) != 2 {
		t.Fatalf("plans %+v, want the two enabled image datasets", plans)
	}
	if p := plans[0]; p.DatasetID != "tutorial" || p.W != 1024 || p.H != 1024 || p.Batch != 1 || len(p.Cond) != 0 || p.FromOptions {
		t.Errorf("tutorial plan %+v, want 1024x1024 batch 1", p)
	}
	// pixel 64 with aspect up to 2: the longer edge may be 128; a strict pair shares the
	// bucket, a loose one has its own (0.0625 Mpx = 250x250, aligned to 2).
	if p := plans[1]; p.FromOptions || p.W != 128 || p.H != 64 || p.Batch != 3 || len(p.Cond) != 2 || p.Cond[0] != [2]int{128, 64} || p.Cond[1] != [2]int{250, 250} {
		t.Errorf("edit plan %+v", p)
	}
}

// TestLargestBucketBoundsEveryImage: whatever the image's size, the bucket makePlan picks
// is no larger than the dataset's planning bucket, but for the rounding of its edges to the
// alignment (under 1% of the area here).
func TestLargestBucketBoundsEveryImage(t *testing.T) {
	for _, ds := range []DatasetConfig{
		{Resolution: 1024, ResolutionType: ResPixelArea, MaxUpscaleThreshold: -1},
		{Resolution: 1, ResolutionType: ResArea, MaxUpscaleThreshold: -1},
		{Resolution: 64, ResolutionType: ResPixel, MaximumAspectRatio: 3, MinimumAspectRatio: 0.5, MaxUpscaleThreshold: -1},
		{Resolution: 512, ResolutionType: ResPixelArea, Crop: true, CropAspect: AspectClosest, CropAspectBuckets: []float64{0.5, 1, 1.5}, MaxUpscaleThreshold: -1},
	} {
		bw, bh := largestBucket(&ds, 16)
		for _, wh := range [][2]int{{640, 480}, {480, 640}, {1000, 1000}, {4000, 2000}, {100, 300}, {3000, 1000}} {
			p, err := makePlan(&ds, wh[0], wh[1], 16, 7)
			if err != nil {
				continue // filtered by the dataset's own limits
			}
			if float64(p.W*p.H) > 1.01*float64(bw*bh) {
				t.Errorf("%s %g: a %dx%d image gets bucket %dx%d, above the planning bucket %dx%d", ds.ResolutionType, ds.Resolution, wh[0], wh[1], p.W, p.H, bw, bh)
			}
		}
	}
}
