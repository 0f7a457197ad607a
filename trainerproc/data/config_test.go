package data

import (
	"errors"
	"strings"
	"testing"
)

const pixartExample = `[
  {"id": "pixart-camera", "type": "local", "dataset_type": "image",
   "instance_data_dir": "/data/datasets/pseudo-camera-10k", "caption_strategy": "filename",
   "resolution": 1.0, "resolution_type": "area", "minimum_image_size": 0.25,
   "maximum_image_size": 1.0, "target_downsample_size": 1.0,
   "cache_dir_vae": "/data/cache/vae/pixart/pseudo-camera-10k",
   "crop": true, "crop_style": "random", "crop_aspect": "square", "metadata_backend": "discovery"},
  {"id": "pixart-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true,
   "cache_dir": "/data/cache/text/pixart/pseudo-camera-10k", "write_batch_size": 128}
]`

const kontextExample = `[
  {"id": "kontext-edit", "type": "local", "dataset_type": "image",
   "instance_data_dir": "/data/datasets/kontext/edit", "conditioning_data": ["kontext-reference"],
   "resolution": 1024, "resolution_type": "pixel_area", "caption_strategy": "textfile",
   "minimum_image_size": 768, "maximum_image_size": 1536, "target_downsample_size": 1024,
   "cache_dir_vae": "/data/cache/vae/kontext/edit", "crop": true, "crop_style": "random", "crop_aspect": "square"},
  {"id": "kontext-reference", "type": "local", "dataset_type": "conditioning",
   "instance_data_dir": "/data/datasets/kontext/reference", "conditioning_type": "reference_strict",
   "resolution": 1024, "resolution_type": "pixel_area", "cache_dir_vae": "/data/cache/vae/kontext/reference"},
  {"id": "kontext-text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": "/data/cache/text/kontext"}
]`

func TestParseTutorialExamples(t *testing.T) {
	cfg, err := ParseConfig([]byte(pixartExample), Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := cfg.Dataset("pixart-camera")
	if ds.ResolutionType != ResArea || ds.Resolution != 1 || ds.MinimumImageSize != 0.25 || !ds.Crop ||
		ds.CropStyle != CropRandom || ds.CropAspect != AspectSquare || ds.CaptionStrategy != CaptionFilename ||
		ds.CacheDirVAE != "/data/cache/vae/pixart/pseudo-camera-10k" || len(ds.Ignored) != 0 {
		t.Fatalf("pixart dataset parsed as %+v", ds)
	}
	te, ok := cfg.DefaultTextEmbeds()
	if !ok || te.ID != "pixart-text-embeds" || te.WriteBatchSize != 128 {
		t.Fatalf("default text embeds = %+v, %v", te, ok)
	}

	cfg, err = ParseConfig([]byte(kontextExample), Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	edit, _ := cfg.Dataset("kontext-edit")
	ref, _ := cfg.Dataset("kontext-reference")
	if len(edit.ConditioningData) != 1 || edit.ConditioningData[0] != "kontext-reference" ||
		ref.DatasetType != TypeConditioning || ref.ConditioningType != CondReferenceStrict || edit.TargetDownsampleSize != 1024 {
		t.Fatalf("kontext parsed as %+v / %+v", edit, ref)
	}
}

func TestParseDefaultsAndAliases(t *testing.T) {
	cfg, err := ParseConfig([]byte(`[
	  {"id": "a", "type": "local", "instance_data_dir": "x", "caption_strategy": "instance_prompt", "instance_prompt": "sks",
	   "crop_style": "centre", "repeats": "2", "crop": "true", "vae_cache_clear_each_epoch": true, "start_step": 5},
	  {"id": "t", "type": "memory", "dataset_type": "text_embeds", "default": true}
	]`), Defaults{Resolution: 64, ResolutionType: ResPixel, CacheDirVAE: "cache/vae"})
	if err != nil {
		t.Fatal(err)
	}
	ds := cfg.Datasets[0]
	if ds.DatasetType != TypeImage || ds.CaptionStrategy != CaptionInstancePrompt || ds.CropStyle != CropCenter ||
		ds.Repeats != 2 || !ds.Crop || ds.Resolution != 64 || ds.ResolutionType != ResPixel || ds.Probability != 1 ||
		ds.CacheDirVAE != "cache/vae/a" {
		t.Fatalf("parsed %+v", ds)
	}
	// vae_cache_clear_each_epoch is accepted silently; start_step is reported as ignored.
	if len(ds.Ignored) != 1 || ds.Ignored[0] != "start_step" {
		t.Fatalf("Ignored = %v", ds.Ignored)
	}
}

func TestParseRejects(t *testing.T) {
	te := `{"id": "t", "type": "local", "dataset_type": "text_embeds", "default": true}`
	img := func(extra string) string {
		return `[{"id": "imgs", "type": "local", "instance_data_dir": "d"` + extra + `}, ` + te + `]`
	}
	cases := []struct {
		name, doc string
		sentinel  error
		want      []string
	}{
		{"aws", img(`, "type": "aws"`), ErrUnsupported, []string{`Dataset 'imgs'`, "type", `'aws' is not supported`}},
		{"parquet", img(`, "caption_strategy": "parquet"`), ErrUnsupported, []string{"caption_strategy", "parquet"}},
		{"face", img(`, "crop_style": "face"`), ErrUnsupported, []string{"crop_style", "face"}},
		{"video", img(`, "dataset_type": "video"`), ErrUnsupported, []string{"dataset_type", "video"}},
		{"metadata", img(`, "metadata_backend": "parquet"`), ErrUnsupported, []string{"metadata_backend"}},
		{"bogus crop_aspect", img(`, "crop_aspect": "wide"`), ErrInvalidConfig, []string{"crop_aspect", `'wide'`}},
		{"resolution_type", img(`, "resolution_type": "inches"`), ErrInvalidConfig, []string{"resolution_type"}},
		{"negative repeats", img(`, "repeats": -1`), ErrInvalidConfig, []string{"repeats", "at least 0"}},
		{"fractional repeats", img(`, "repeats": 1.5`), ErrInvalidConfig, []string{"repeats", "whole number"}},
		{"string resolution", img(`, "resolution": "big"`), ErrInvalidConfig, []string{"resolution"}},
		{"tiny pixel resolution", img(`, "resolution": 1.0`), ErrInvalidConfig, []string{"resolution", "megapixels need resolution_type=area"}},
		{"instance prompt", img(`, "caption_strategy": "instanceprompt"`), ErrInvalidConfig, []string{"instance_prompt"}},
		{"no dir", `[{"id": "imgs", "type": "local"}, ` + te + `]`, ErrInvalidConfig, []string{"instance_data_dir"}},
		{"no type", `[{"id": "imgs", "instance_data_dir": "d"}, ` + te + `]`, ErrInvalidConfig, []string{`Dataset 'imgs'`, "type", "missing"}},
		{"no id", `[{"type": "local", "instance_data_dir": "d"}, ` + te + `]`, ErrInvalidConfig, []string{"Dataset #1", "id"}},
		{"duplicate", `[{"id": "t", "type": "local", "instance_data_dir": "d"}, ` + te + `]`, ErrInvalidConfig, []string{"You can only have one backend named t"}},
		{"two defaults", `[{"id": "i", "type": "local", "instance_data_dir": "d"}, ` + te + `, {"id": "t2", "type": "local", "dataset_type": "text_embeds", "default": true}]`, ErrInvalidConfig, []string{"Only one text embed backend can be marked as default."}},
		{"no text embeds", `[{"id": "i", "type": "local", "instance_data_dir": "d"}]`, ErrInvalidConfig, []string{"text_embeds"}},
		{"no images", `[` + te + `]`, ErrInvalidConfig, []string{"no enabled dataset"}},
		{"dangling conditioning", img(`, "conditioning_data": "nope"`), ErrInvalidConfig, []string{"conditioning_data", `'nope'`}},
		{"conditioning not conditioning", img(`, "conditioning_data": ["t"]`), ErrInvalidConfig, []string{"conditioning_data", "text_embeds"}},
		{"controlnet", `[{"id": "i", "type": "local", "instance_data_dir": "d", "conditioning_data": "c"}, {"id": "c", "type": "local", "dataset_type": "conditioning", "instance_data_dir": "e", "conditioning_type": "controlnet"}, ` + te + `]`, ErrUnsupported, []string{`Dataset 'c'`, "conditioning_type", "controlnet"}},
		{"memory images", img(`, "type": "memory"`), ErrInvalidConfig, []string{"memory"}},
		{"not a list", `{"id": "x"}`, ErrInvalidConfig, []string{"JSON list"}},
		{"empty", `[]`, ErrInvalidConfig, []string{"at least one"}},
		{"trailing", `[` + te + `] []`, ErrInvalidConfig, []string{"extra data"}},
		{"not json", `[{`, ErrInvalidConfig, []string{"not valid JSON"}},
		{"item not object", `[1]`, ErrInvalidConfig, []string{"Dataset #1 must be a JSON object"}},
		{"bad buckets", img(`, "crop_aspect_buckets": [0, 1]`), ErrInvalidConfig, []string{"crop_aspect_buckets"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.doc), Defaults{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, c.sentinel) {
				t.Fatalf("error %q does not wrap %v", err, c.sentinel)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseDisabledDatasetIsNotValidated(t *testing.T) {
	cfg, err := ParseConfig([]byte(`[
	  {"id": "old", "type": "aws", "disabled": true},
	  {"id": "i", "type": "local", "instance_data_dir": "d"},
	  {"id": "t", "type": "local", "dataset_type": "text_embeds", "default": true}]`), Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Datasets[0].Disabled {
		t.Fatal("disabled flag lost")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(pixartExample))
	f.Add([]byte(kontextExample))
	f.Add([]byte(`[{"id": 1, "type": null, "resolution": "1e400", "repeats": 1e30, "crop_aspect_buckets": ["x"]}]`))
	f.Add([]byte(`[{"id":"a","type":"local","instance_data_dir":"d","conditioning_data":[null]},{}]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		cfg, err := ParseConfig(doc, Defaults{})
		if err == nil && (cfg == nil || len(cfg.Datasets) == 0) {
			t.Fatal("nil config without an error")
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("error without a sentinel: %v", err)
		}
	})
}
