package configs

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"simpletuner/options"
)

const textEmbeds = `{"id": "te", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": "c"}`

// img returns an image dataset with extra JSON members spliced in.
func img(id, extra string) string {
	s := `{"id": "` + id + `", "type": "local", "dataset_type": "image", "instance_data_dir": "/data/` + id + `"`
	if extra != "" {
		s += ", " + extra
	}
	return s + "}"
}

func list(items ...string) string { return "[" + strings.Join(items, ", ") + "]" }

func TestValidateDataloaderMessages(t *testing.T) {
	readable := func(p string) error {
		if strings.HasPrefix(p, "/data/") {
			return nil
		}
		return errors.New("does not exist")
	}
	tests := []struct {
		name     string
		doc      string
		atStart  bool
		errs     []string
		warnings []string
	}{
		{name: "valid", doc: list(img("a", `"caption_strategy": "textfile", "resolution_type": "pixel_area", "crop_style": "center", "crop_aspect": "square"`), textEmbeds)},
		{name: "seed pixart dataloader", doc: `[{"id":"pixart-camera","type":"local","dataset_type":"image","instance_data_dir":"/data/datasets/pseudo-camera-10k","caption_strategy":"filename","resolution":1.0,"resolution_type":"area","minimum_image_size":0.25,"maximum_image_size":1.0,"target_downsample_size":1.0,"cache_dir_vae":"/data/cache/vae","crop":true,"crop_style":"random","crop_aspect":"square","metadata_backend":"discovery"},{"id":"pixart-text-embeds","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":"/data/cache/text","write_batch_size":128}]`},
		{name: "not JSON", doc: `[{`, errs: []string{"Dataloader config is not valid JSON: unexpected EOF"}},
		{name: "trailing data", doc: `[] []`, errs: []string{"Dataloader config has extra data after the JSON list"}},
		{name: "a stray bracket after the list", doc: `[{"id": "a"}]]`, errs: []string{"Dataloader config has extra data after the JSON list"}},
		{name: "nested past the cap", doc: strings.Repeat("[", 40) + strings.Repeat("]", 40), errs: []string{"Dataloader config is not valid JSON: JSON nests too deeply: more than 32 levels of arrays and objects inside each other (at byte 32)"}},
		{name: "object, not list", doc: `{"id": "a"}`, errs: []string{`Dataloader config must be a JSON list of datasets, like [{"id": "my-images", "type": "local", ...}]`}},
		{name: "empty", doc: `[]`, errs: []string{"Dataloader config must contain at least one dataset"}},
		{name: "item not object", doc: list(`3`, textEmbeds), errs: []string{"Dataset #1 must be a JSON object"}},
		{name: "missing id", doc: list(`{"type": "local", "dataset_type": "image", "instance_data_dir": "/data/x"}`, textEmbeds),
			errs: []string{"Dataset #1 is missing 'id': give every dataset a unique id"}},
		{name: "duplicate id", doc: list(img("a", ""), img("a", ""), textEmbeds), errs: []string{"You can only have one backend named a"}},
		{name: "missing type", doc: list(`{"id": "a", "dataset_type": "image", "instance_data_dir": "/data/a"}`, textEmbeds),
			errs: []string{"Dataset 'a' is missing 'type' (one of local, aws, memory, csv, huggingface, webshart)"}},
		{name: "unknown type", doc: list(`{"id": "a", "type": "ftp", "dataset_type": "image"}`, textEmbeds),
			errs: []string{"Dataset 'a': unknown type 'ftp' (known: local, aws, memory, csv, huggingface, webshart)"}},
		{name: "unknown dataset_type", doc: list(img("a", `"dataset_type": "images"`), textEmbeds),
			errs: []string{"Dataset 'a': unknown dataset_type 'images' (known: image, video, audio, text_embeds, image_embeds, conditioning_image_embeds, conditioning, caption, eval)"}},
		{name: "unknown caption_strategy", doc: list(img("a", `"caption_strategy": "captions"`), textEmbeds),
			errs: []string{"Dataset 'a': unknown caption_strategy 'captions' (known: filename, textfile, instanceprompt, instance_prompt, parquet, webshart, huggingface, csv)"}},
		{name: "instanceprompt needs instance_prompt", doc: list(img("a", `"caption_strategy": "instanceprompt"`), textEmbeds),
			errs: []string{"Dataset 'a' uses caption_strategy=instanceprompt but has no instance_prompt"}},
		{name: "unknown resolution_type", doc: list(img("a", `"resolution_type": "megapixel"`), textEmbeds),
			errs: []string{"Dataset 'a': unknown resolution_type 'megapixel' (known: pixel_area, pixel, area)"}},
		{name: "unknown crop_style", doc: list(img("a", `"crop_style": "middle"`), textEmbeds),
			errs: []string{"Dataset 'a': unknown crop_style 'middle' (known: random, center, centre, corner, face)"}},
		{name: "unknown crop_aspect", doc: list(img("a", `"crop_aspect": "wide"`), textEmbeds),
			errs: []string{"Dataset 'a': unknown crop_aspect 'wide' (known: closest, random, square, preserve)"}},
		{name: "unknown conditioning_type", doc: list(img("i", ""), img("a", `"dataset_type": "conditioning", "conditioning_type": "depth"`), textEmbeds),
			errs: []string{"Dataset 'a': unknown conditioning_type 'depth' (known: controlnet, mask, reference_strict, reference_loose)"}},
		{name: "unknown metadata_backend", doc: list(img("a", `"metadata_backend": "sql"`), textEmbeds),
			errs: []string{"Dataset 'a': unknown metadata_backend 'sql' (known: discovery, json, parquet, huggingface, webshart)"}},
		{name: "metadata_backend json is SimpleTuner's older name of discovery", doc: list(img("a", `"metadata_backend": "json"`), textEmbeds)},
		{name: "enum not a string", doc: list(img("a", `"crop_style": 3`), textEmbeds),
			errs: []string{"Dataset 'a': crop_style must be a string (one of random, center, centre, corner, face); got 3"}},
		{name: "resolution not a number", doc: list(img("a", `"resolution": "big"`), textEmbeds),
			errs: []string{`Dataset 'a': resolution must be a number of at least 0; got "big"`}},
		{name: "conditioning_data exists", doc: list(img("a", `"conditioning_data": ["c"]`), img("c", `"dataset_type": "conditioning", "conditioning_type": "reference_strict"`), textEmbeds)},
		{name: "conditioning_data unknown id", doc: list(img("a", `"conditioning_data": "nope"`), textEmbeds),
			errs: []string{"Dataset 'a': conditioning_data refers to 'nope', which is not the id of any dataset in this file"}},
		{name: "conditioning_data wrong type", doc: list(img("a", `"conditioning_data": 5`), textEmbeds),
			errs: []string{"Dataset 'a': conditioning_data must be a dataset id or a list of ids; got 5"}},
		{name: "two defaults", doc: list(img("a", ""), textEmbeds, `{"id": "te2", "type": "local", "dataset_type": "text_embeds", "default": true}`),
			errs: []string{"Only one text embed backend can be marked as default."}},
		{name: "no default", doc: list(img("a", ""), `{"id": "te", "type": "local", "dataset_type": "text_embeds"}`),
			errs: []string{`No text_embeds dataset is marked as default: set "default": true on exactly one of them`}},
		{name: "no text embeds", doc: list(img("a", "")),
			errs: []string{`The dataloader needs a text_embeds dataset with "default": true (e.g. {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": "cache/text"})`}},
		{name: "instance_data_dir missing is a warning at save", doc: list(`{"id": "a", "type": "local", "dataset_type": "image", "instance_data_dir": "/elsewhere"}`, textEmbeds),
			warnings: []string{"Dataset 'a': instance_data_dir '/elsewhere' is not a readable folder (does not exist); upload the data there or fix the path"}},
		{name: "instance_data_dir missing is an error at start", atStart: true, doc: list(`{"id": "a", "type": "local", "dataset_type": "image", "instance_data_dir": "/elsewhere"}`, textEmbeds),
			errs: []string{"Dataset 'a': instance_data_dir '/elsewhere' is not a readable folder (does not exist); upload the data there or fix the path"}},
		{name: "instance_data_dir empty", doc: list(`{"id": "a", "type": "local", "instance_data_dir": ""}`, textEmbeds),
			warnings: []string{"Dataset 'a': instance_data_dir is empty; point it at the folder that holds the training files"}},
		{name: "instance_data_dir not a string", doc: list(`{"id": "a", "type": "local", "instance_data_dir": 1}`, textEmbeds),
			errs: []string{"Dataset 'a': instance_data_dir must be a folder path; got 1"}},
		{name: "aws datasets have no local folder; aws is a warning at save", doc: list(`{"id": "a", "type": "aws", "dataset_type": "image"}`, textEmbeds),
			warnings: []string{"Dataset 'a': type 'aws' is not supported by this trainer (supported: local, memory)"}},
		{name: "aws is an error at start", atStart: true, doc: list(`{"id": "a", "type": "aws", "dataset_type": "image"}`, textEmbeds),
			errs: []string{"Dataset 'a': type 'aws' is not supported by this trainer (supported: local, memory)"}},
		{name: "control characters are shown escaped", doc: list(`{"id": "a\u0007", "type": "x"}`, textEmbeds),
			errs: []string{`Dataset 'a\a': unknown type 'x' (known: local, aws, memory, csv, huggingface, webshart)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issues := ValidateDataloader([]byte(tt.doc), DataloaderCheck{AtStart: tt.atStart, DirReadable: readable})
			if got := issues.Errors().Messages(); !slices.Equal(got, tt.errs) {
				t.Errorf("errors = %q\nwant     %q", got, tt.errs)
			}
			if got := issues.Warnings().Messages(); !slices.Equal(got, tt.warnings) {
				t.Errorf("warnings = %q\nwant       %q", got, tt.warnings)
			}
			for _, i := range issues.Errors() {
				if i.Err == nil {
					t.Errorf("error issue %q wraps no sentinel", i.Message)
				}
			}
		})
	}
}

func FuzzValidateDataloader(f *testing.F) {
	f.Add([]byte(list(img("a", `"conditioning_data": ["c", 1]`), textEmbeds)))
	f.Add([]byte(`[{"id": "a", "type": "local", "dataset_type": "text_embeds", "default": true}, {"id": "a"}]`))
	f.Add([]byte(`[null, [], {"id": 1, "type": {}}, {"id": "x", "resolution": 1e999}]`))
	f.Add([]byte(`{"a": 1}`))
	f.Add([]byte(`[{"id":"\u0000","type":"local","instance_data_dir":"\u0000/..","caption_strategy":"instanceprompt"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		chk := DataloaderCheck{DirReadable: func(p string) error {
			if len(p)%2 == 0 {
				return errors.New("no")
			}
			return nil
		}}
		a := ValidateDataloader(data, chk)
		b := ValidateDataloader(data, chk)
		if !slices.Equal(a.Messages(), b.Messages()) {
			t.Fatalf("not deterministic: %q vs %q", a.Messages(), b.Messages())
		}
		for _, i := range a {
			if i.Message == "" {
				t.Fatal("empty message")
			}
			if i.Severity == options.SevError && i.Err == nil {
				t.Fatalf("error %q wraps no sentinel", i.Message)
			}
		}
	})
}
