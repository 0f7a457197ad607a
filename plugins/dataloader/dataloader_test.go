package dataloader

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const textEmbeds = `{"id": "te", "type": "local", "dataset_type": "text_embeds", "default": true}`

// image is an image dataset with extra members spliced in (a later member wins).
func image(extra string) string {
	s := `{"id": "a", "type": "local", "instance_data_dir": "/data/a"`
	if extra != "" {
		s += ", " + extra
	}
	return s + "}"
}

func list(items ...string) string { return "[" + strings.Join(items, ", ") + "]" }

// want is one expected problem: where, what kind, what it says.
type want struct {
	path string
	kind error
	msg  string
}

// TestParseProblems is the schema both sides apply, problem by problem: where it is, its
// kind (what the daemon may store and what nothing trains) and its words.
func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []want
	}{
		{name: "valid", doc: list(image(`"caption_strategy": "textfile", "resolution": 1024, "resolution_type": "pixel_area", "crop": true, "crop_style": "center", "crop_aspect": "square"`), textEmbeds)},
		// Numbers and booleans as strings, as SimpleTuner converts them.
		{name: "numeric strings", doc: list(image(`"resolution": "64", "repeats": " 2 ", "probability": "0.5", "minimum_image_size": "1e1"`), textEmbeds)},
		{name: "boolean strings", doc: list(image(`"crop": "true", "disabled": "false"`), `{"id": "te", "type": "local", "dataset_type": "text_embeds", "default": "TRUE"}`)},
		{name: "a word is not a number", doc: list(image(`"resolution": "big"`), textEmbeds),
			want: []want{{"datasets[0].resolution", ErrInvalid, `Dataset 'a': resolution must be a number of at least 0; got "big"`}}},
		{name: "hexadecimal, infinity and NaN are not numbers", doc: list(image(`"resolution": "0x40", "repeats": "inf", "probability": "NaN"`), textEmbeds),
			want: []want{
				{"datasets[0].resolution", ErrInvalid, `Dataset 'a': resolution must be a number of at least 0; got "0x40"`},
				{"datasets[0].probability", ErrInvalid, `Dataset 'a': probability must be a number of at least 0; got "NaN"`},
				{"datasets[0].repeats", ErrInvalid, `Dataset 'a': repeats must be a number of at least 0; got "inf"`}}},
		{name: "negative", doc: list(image(`"maximum_image_size": -1`), textEmbeds),
			want: []want{{"datasets[0].maximum_image_size", ErrInvalid, "Dataset 'a': maximum_image_size must be a number of at least 0; got -1"}}},
		{name: "too large for a float", doc: list(image(`"resolution": 1e999`), textEmbeds),
			want: []want{{"datasets[0].resolution", ErrInvalid, "Dataset 'a': resolution must be a number of at least 0; got 1e999"}}},
		{name: "whole numbers", doc: list(image(`"repeats": "1.5"`), textEmbeds),
			want: []want{{"datasets[0].repeats", ErrInvalid, `Dataset 'a': repeats must be a whole number; got "1.5"`}}},
		{name: "a word is not a boolean", doc: list(image(`"crop": "yes"`), textEmbeds),
			want: []want{{"datasets[0].crop", ErrInvalid, `Dataset 'a': crop must be true or false; got "yes"`}}},
		{name: "resolution in pixels below 8", doc: list(image(`"resolution": 1.0`), textEmbeds),
			want: []want{{"datasets[0].resolution", ErrInvalid, "Dataset 'a': resolution 1 is below 8 pixels; with resolution_type=pixel_area the unit is pixels (megapixels need resolution_type=area)"}}},
		{name: "resolution in megapixels", doc: list(image(`"resolution": 1.0, "resolution_type": "area"`), textEmbeds)},
		{name: "resolution in megapixels above 100", doc: list(image(`"resolution": 1024, "resolution_type": "area"`), textEmbeds),
			want: []want{{"datasets[0].resolution", ErrInvalid, "Dataset 'a': resolution 1024 megapixels is too large; with resolution_type=area the unit is megapixels (pixels need pixel or pixel_area)"}}},
		{name: "resolution 0", doc: list(image(`"resolution": 0`), textEmbeds),
			want: []want{{"datasets[0].resolution", ErrInvalid, "Dataset 'a': resolution must be greater than 0"}}},
		// SimpleTuner's values that this trainer does not implement.
		{name: "aws", doc: list(image(`"type": "aws"`), textEmbeds),
			want: []want{{"datasets[0].type", ErrUnsupported, "Dataset 'a': type 'aws' is not supported by this trainer (supported: local, memory)"}}},
		{name: "parquet captions", doc: list(image(`"caption_strategy": "parquet"`), textEmbeds),
			want: []want{{"datasets[0].caption_strategy", ErrUnsupported, "Dataset 'a': caption_strategy 'parquet' is not supported by this trainer (supported: filename, textfile, instanceprompt)"}}},
		{name: "face crops", doc: list(image(`"crop_style": "face"`), textEmbeds),
			want: []want{{"datasets[0].crop_style", ErrUnsupported, "Dataset 'a': crop_style 'face' is not supported by this trainer (supported: center, random, corner)"}}},
		{name: "controlnet", doc: list(image(`"conditioning_data": "c"`), `{"id": "c", "type": "local", "dataset_type": "conditioning", "instance_data_dir": "/data/c", "conditioning_type": "controlnet"}`, textEmbeds),
			want: []want{{"datasets[1].conditioning_type", ErrUnsupported, "Dataset 'c': conditioning_type 'controlnet' is not supported by this trainer (supported: reference_strict, reference_loose)"}}},
		{name: "only video: a document for another trainer", doc: list(image(`"dataset_type": "video"`), textEmbeds),
			want: []want{
				{"datasets[0].dataset_type", ErrUnsupported, "Dataset 'a': dataset_type 'video' is not supported by this trainer (supported: image, conditioning, text_embeds, image_embeds)"},
				{"", ErrUnsupported, `The dataloader has no enabled dataset with dataset_type "image" to train on`}}},
		{name: "unsupported values on a dataset that does not use them", doc: list(image(""), `{"id": "te", "type": "local", "dataset_type": "text_embeds", "default": true, "crop_style": "face", "caption_strategy": "parquet"}`)},
		// Aliases SimpleTuner accepts.
		{name: "aliases", doc: list(image(`"caption_strategy": "instance_prompt", "instance_prompt": "sks", "crop_style": "centre", "metadata_backend": "json"`), textEmbeds)},
		// Unknown values are wrong on any dataset.
		{name: "unknown value anywhere", doc: list(image(""), `{"id": "te", "type": "local", "dataset_type": "text_embeds", "default": true, "crop_style": "middle"}`),
			want: []want{{"datasets[1].crop_style", ErrInvalid, "Dataset 'te': unknown crop_style 'middle' (known: random, center, centre, corner, face)"}}},
		{name: "enum not a string", doc: list(image(`"resolution_type": 2`), textEmbeds),
			want: []want{{"datasets[0].resolution_type", ErrInvalid, "Dataset 'a': resolution_type must be a string (one of pixel_area, pixel, area); got 2"}}},
		// The folder a starter dataloader leaves empty.
		{name: "no folder", doc: list(`{"id": "a", "type": "local", "instance_data_dir": ""}`, textEmbeds),
			want: []want{{"datasets[0].instance_data_dir", ErrIncomplete, "Dataset 'a': instance_data_dir is empty; point it at the folder that holds the training files"}}},
		{name: "folder not a string", doc: list(image(`"instance_data_dir": 1, "cache_dir_text": ["x"]`), textEmbeds),
			want: []want{
				{"datasets[0].instance_data_dir", ErrInvalid, "Dataset 'a': instance_data_dir must be a folder path; got 1"},
				{"datasets[0].cache_dir_text", ErrInvalid, `Dataset 'a': cache_dir_text must be a folder path; got ["x"]`}}},
		// Ids.
		{name: "missing id", doc: list(`{"type": "local", "instance_data_dir": "/d"}`, textEmbeds),
			want: []want{{"datasets[0].id", ErrInvalid, "Dataset #1 is missing 'id': give every dataset a unique id"}}},
		{name: "duplicate id, even when disabled", doc: list(image(""), image(`"disabled": true`), textEmbeds),
			want: []want{{"datasets[1].id", ErrInvalid, "You can only have one backend named a"}}},
		{name: "control characters are shown escaped", doc: list(image(`"id": "a\u0007", "type": "x"`), textEmbeds),
			want: []want{{"datasets[0].type", ErrInvalid, `Dataset 'a\a': unknown type 'x' (known: local, aws, memory, csv, huggingface, webshart)`}}},
		// Prompts.
		{name: "instanceprompt without a prompt", doc: list(image(`"caption_strategy": "instanceprompt"`), textEmbeds),
			want: []want{{"datasets[0].instance_prompt", ErrInvalid, "Dataset 'a' uses caption_strategy=instanceprompt but has no instance_prompt"}}},
		{name: "only_instance_prompt without a prompt", doc: list(image(`"only_instance_prompt": "true"`), textEmbeds),
			want: []want{{"datasets[0].instance_prompt", ErrInvalid, "Dataset 'a' uses only_instance_prompt but has no instance_prompt"}}},
		// Disabled datasets are skipped, as SimpleTuner skips them.
		{name: "disabled dataset not checked", doc: list(`{"id": "old", "type": "ftp", "resolution": -1, "disable": true}`, image(""), textEmbeds)},
		{name: "disabled text embeds do not count", doc: list(image(""), `{"id": "te", "type": "local", "dataset_type": "text_embeds", "default": true, "disabled": true}`),
			want: []want{{"", ErrInvalid, `The dataloader needs a text_embeds dataset with "default": true (e.g. {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": "cache/text"})`}}},
		// The document as a whole.
		{name: "two defaults", doc: list(image(""), textEmbeds, `{"id": "te2", "type": "local", "dataset_type": "text_embeds", "default": true}`),
			want: []want{{"", ErrInvalid, "Only one text embed backend can be marked as default."}}},
		{name: "no images", doc: list(textEmbeds),
			want: []want{{"", ErrInvalid, `The dataloader has no enabled dataset with dataset_type "image" to train on`}}},
		{name: "counts are not guessed past an unreadable item", doc: list(`3`, textEmbeds),
			want: []want{{"datasets[0]", ErrInvalid, "Dataset #1 must be a JSON object"}}},
		{name: "references", doc: list(image(`"conditioning_data": ["te", "gone"], "text_embeds": "a", "image_embeds": "te"`), textEmbeds),
			want: []want{
				{"datasets[0].conditioning_data", ErrInvalid, "Dataset 'a': conditioning_data refers to 'te', whose dataset_type is 'text_embeds', not 'conditioning'"},
				{"datasets[0].conditioning_data", ErrInvalid, "Dataset 'a': conditioning_data refers to 'gone', which is not the id of any dataset in this file"},
				{"datasets[0].text_embeds", ErrInvalid, "Dataset 'a': text_embeds refers to 'a', which is not an enabled text_embeds dataset"},
				{"datasets[0].image_embeds", ErrInvalid, "Dataset 'a': image_embeds refers to 'te', which is not an enabled image_embeds dataset"}}},
		{name: "not JSON", doc: `[{`, want: []want{{"", ErrInvalid, "Dataloader config is not valid JSON: unexpected EOF"}}},
		{name: "trailing data", doc: `[{"id": "a"}]]`, want: []want{{"", ErrInvalid, "Dataloader config has extra data after the JSON list"}}},
		{name: "nested past the cap", doc: strings.Repeat("[", 40) + strings.Repeat("]", 40),
			want: []want{{"", ErrInvalid, "Dataloader config is not valid JSON: JSON nests too deeply: more than 32 levels of arrays and objects inside each other (at byte 32)"}}},
		{name: "not a list", doc: `{"id": "a"}`, want: []want{{"", ErrInvalid, `Dataloader config must be a JSON list of datasets, like [{"id": "my-images", "type": "local", ...}]`}}},
		{name: "empty", doc: `[]`, want: []want{{"", ErrInvalid, "Dataloader config must contain at least one dataset"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, probs := Parse([]byte(tt.doc), Defaults{})
			var got []want
			for _, p := range probs {
				kind := ErrInvalid
				switch {
				case errors.Is(p, ErrIncomplete):
					kind = ErrIncomplete
				case errors.Is(p, ErrUnsupported):
					kind = ErrUnsupported
				case !errors.Is(p, ErrInvalid):
					t.Errorf("problem %q is of no kind", p.Message)
				}
				got = append(got, want{p.Path(), kind, p.Message})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

// TestParseValues: what a valid document reads as, defaults and conversions included.
func TestParseValues(t *testing.T) {
	doc, probs := Parse([]byte(list(
		image(`"resolution": "64", "repeats": "2", "crop": "true", "crop_style": "centre", "caption_strategy": "instance_prompt", "instance_prompt": "sks", "start_step": 5, "vae_cache_ondemand": true`),
		`{"id": "c", "type": "local", "dataset_type": "conditioning", "instance_data_dir": "/data/c", "cache_dir_vae": "/cache/c"}`,
		`{"id": "te", "type": "memory", "dataset_type": "text_embeds", "default": "true", "cache_dir": "/cache/te"}`)),
		Defaults{ResolutionType: ResPixel, CacheDirVAE: "/cache/vae/"})
	if len(probs) != 0 {
		t.Fatal(probs.Err())
	}
	a, c := doc.Datasets[0], doc.Datasets[1]
	if a.Resolution != 64 || a.ResolutionType != ResPixel || a.Repeats != 2 || !a.Crop || a.CropStyle != CropCenter ||
		a.CaptionStrategy != CaptionInstancePrompt || a.CacheDirVAE != "/cache/vae/a" || a.Probability != 1 || a.MaxUpscaleThreshold != -1 {
		t.Errorf("a = %+v", a)
	}
	if !slices.Equal(a.Ignored, []string{"start_step"}) {
		t.Errorf("Ignored = %q, want start_step only (vae_cache_ondemand is accepted)", a.Ignored)
	}
	if c.Resolution != 1024 || c.ConditioningType != CondReferenceStrict || c.CacheDirVAE != "/cache/c" || c.Index != 1 {
		t.Errorf("c = %+v", c)
	}
	if te, ok := doc.DefaultTextEmbeds(); !ok || te.ID != "te" || te.Type != BackendMemory || te.WriteBatchSize != 128 {
		t.Errorf("default text embeds = %+v, %v", te, ok)
	}
	if ds, ok := doc.Dataset("c"); !ok || ds.Name() != "Dataset 'c'" {
		t.Errorf("Dataset(c) = %+v, %v", ds, ok)
	}
}

func TestProblemsErr(t *testing.T) {
	if err := Problems(nil).Err(); err != nil {
		t.Fatalf("no problems: %v", err)
	}
	_, probs := Parse([]byte(list(image(`"type": "aws", "resolution": "big"`), `{"id": "b", "type": "local"}`, textEmbeds)), Defaults{})
	err := probs.Err()
	for _, kind := range []error{ErrInvalid, ErrUnsupported, ErrIncomplete} {
		if !errors.Is(err, kind) {
			t.Errorf("%v does not wrap %v", err, kind)
		}
	}
	if want := strings.Join(probs.messages(), "\n"); err.Error() != want {
		t.Errorf("Err() = %q, want the messages one a line", err)
	}
}

func (ps Problems) messages() []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Message)
	}
	return out
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(list(image(`"conditioning_data": ["c", 1]`), textEmbeds)))
	f.Add([]byte(`[{"id": "a", "type": "local", "dataset_type": "text_embeds", "default": true}, {"id": "a"}]`))
	f.Add([]byte(`[null, [], {"id": 1, "type": {}}, {"id": "x", "resolution": 1e999, "repeats": "1e30"}]`))
	f.Add([]byte(`[{"id":"\u0000","type":"local","instance_data_dir":"\u0000/..","caption_strategy":"instanceprompt"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, a := Parse(data, Defaults{})
		_, b := Parse(data, Defaults{})
		if !slices.Equal(a.messages(), b.messages()) {
			t.Fatalf("not deterministic: %q vs %q", a.messages(), b.messages())
		}
		if len(a) == 0 && (doc == nil || len(doc.Datasets) == 0) {
			t.Fatal("no datasets and no problem")
		}
		for _, p := range a {
			if p.Message == "" || !(errors.Is(p, ErrInvalid) || errors.Is(p, ErrUnsupported)) {
				t.Fatalf("problem %+v: no message or no kind", p)
			}
		}
	})
}
