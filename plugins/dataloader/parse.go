package dataloader

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"simpletuner/internal/errmsg"
	"simpletuner/internal/jsondoc"
)

// Parse decodes a dataloader document and reads it (see Decode and Read).
func Parse(data []byte, d Defaults) (*Document, Problems) {
	raw, probs := Decode(data)
	if probs != nil {
		return nil, probs
	}
	return Read(raw, d)
}

// Decode decodes a dataloader document for Read: one JSON value, nested at most
// jsondoc.MaxDepth deep, with nothing after it; numbers stay json.Number.
func Decode(data []byte) (any, Problems) {
	var raw any
	switch err := jsondoc.DecodeNumbers(data, &raw); {
	case errors.Is(err, jsondoc.ErrTrailing):
		return nil, Problems{docProblem("Dataloader config has extra data after the JSON list")}
	case err != nil:
		return nil, Problems{docProblem("Dataloader config is not valid JSON: %v", err)}
	}
	return raw, nil
}

// Read checks a decoded dataloader document (numbers as json.Number or float64) and
// returns its datasets with every problem found, in document order. The document is
// usable only when there is no problem; the datasets are returned either way (nil only
// when the document is not a non-empty list), so a caller can check more of them.
func Read(raw any, d Defaults) (*Document, Problems) {
	list, ok := raw.([]any)
	if !ok {
		return nil, Problems{docProblem("Dataloader config must be a JSON list of datasets, like [{\"id\": \"my-images\", \"type\": \"local\", ...}]")}
	}
	if len(list) == 0 {
		return nil, Problems{docProblem("Dataloader config must contain at least one dataset")}
	}
	if d.Resolution <= 0 || math.IsNaN(d.Resolution) || math.IsInf(d.Resolution, 0) {
		d.Resolution = 1024
	}
	if d.ResolutionType == "" {
		d.ResolutionType = ResPixelArea
	}
	if d.CaptionStrategy == "" {
		d.CaptionStrategy = CaptionFilename
	}
	doc := &Document{}
	var probs Problems
	seen := map[string]bool{}
	// unread: a dataset whose kind is unknown, so the counts of kinds are too; other: a
	// dataset of a kind SimpleTuner trains but this trainer does not.
	unread, other := false, false
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			probs = append(probs, Problem{Dataset: i, Message: fmt.Sprintf("Dataset #%d must be a JSON object", i+1), Err: ErrInvalid})
			unread = true
			continue
		}
		r := &reader{i: i, m: m}
		ds, kindOK := r.dataset(d)
		if ds.ID != "" {
			if seen[ds.ID] {
				r.fail(ErrInvalid, "id", "You can only have one backend named %s", errmsg.Clip(ds.ID))
			}
			seen[ds.ID] = true
		}
		unread = unread || (!kindOK && !ds.Disabled)
		other = other || (kindOK && !ds.Disabled && !slices.Contains(datasetTypeEnum.supported, ds.DatasetType))
		probs = append(probs, r.probs...)
		doc.Datasets = append(doc.Datasets, ds)
	}
	return doc, append(probs, doc.crossCheck(!unread, other)...)
}

func docProblem(format string, args ...any) Problem {
	return Problem{Dataset: -1, Message: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

// name is how messages name a dataset: by its id, else by its position.
func name(i int, id string) string {
	if id != "" {
		return "Dataset '" + errmsg.Clip(id) + "'"
	}
	return "Dataset #" + strconv.Itoa(i+1)
}

// crossCheck checks what no single dataset can: the default text embeds, an image
// dataset to train on (both only when counts is set: every dataset's kind was read), and
// the references between datasets. Disabled datasets do not count. other says a dataset
// is of a kind this trainer does not implement: without an image dataset the document is
// then one for another trainer (ErrUnsupported), not a wrong one.
func (d *Document) crossCheck(counts, other bool) Problems {
	var probs Problems
	fail := func(ds *Dataset, key, format string, args ...any) {
		probs = append(probs, Problem{Dataset: ds.Index, Key: key, Err: ErrInvalid,
			Message: name(ds.Index, ds.ID) + ": " + fmt.Sprintf(format, args...)})
	}
	defaults, textEmbeds, images := 0, 0, 0
	for _, ds := range d.Datasets {
		if ds.Disabled {
			continue
		}
		switch ds.DatasetType {
		case TypeTextEmbeds:
			textEmbeds++
			if ds.Default {
				defaults++
			}
		case TypeImage:
			images++
		}
	}
	if counts {
		switch {
		case defaults > 1:
			probs = append(probs, docProblem("Only one text embed backend can be marked as default."))
		case textEmbeds == 0:
			probs = append(probs, docProblem(`The dataloader needs a text_embeds dataset with "default": true (e.g. {"id": "text-embeds", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": "cache/text"})`))
		case defaults == 0:
			probs = append(probs, docProblem(`No text_embeds dataset is marked as default: set "default": true on exactly one of them`))
		}
		if images == 0 {
			p := docProblem(`The dataloader has no enabled dataset with dataset_type "image" to train on`)
			if other {
				p.Err = ErrUnsupported
			}
			probs = append(probs, p)
		}
	}
	for i := range d.Datasets {
		ds := &d.Datasets[i]
		if ds.Disabled || ds.DatasetType != TypeImage {
			continue
		}
		for _, ref := range ds.ConditioningData {
			other, ok := d.Dataset(ref)
			switch {
			case !ok:
				fail(ds, "conditioning_data", "conditioning_data refers to '%s', which is not the id of any dataset in this file", errmsg.Clip(ref))
			case other.Disabled:
				fail(ds, "conditioning_data", "conditioning_data refers to '%s', which is disabled", errmsg.Clip(ref))
			case other.DatasetType != TypeConditioning:
				fail(ds, "conditioning_data", "conditioning_data refers to '%s', whose dataset_type is '%s', not 'conditioning'", errmsg.Clip(ref), other.DatasetType)
			}
		}
		if ds.TextEmbeds != "" {
			if other, ok := d.Dataset(ds.TextEmbeds); !ok || other.DatasetType != TypeTextEmbeds || other.Disabled {
				fail(ds, "text_embeds", "text_embeds refers to '%s', which is not an enabled text_embeds dataset", errmsg.Clip(ds.TextEmbeds))
			}
		}
		if ds.ImageEmbeds != "" {
			if other, ok := d.Dataset(ds.ImageEmbeds); !ok || other.DatasetType != TypeImageEmbeds || other.Disabled {
				fail(ds, "image_embeds", "image_embeds refers to '%s', which is not an enabled image_embeds dataset", errmsg.Clip(ds.ImageEmbeds))
			}
		}
	}
	return probs
}

// reader reads one dataset object, collecting its problems.
type reader struct {
	i     int
	m     map[string]any
	name  string // Dataset 'id', or Dataset #n while the id is unknown
	probs Problems
}

func (r *reader) fail(kind error, key, format string, args ...any) {
	r.probs = append(r.probs, Problem{Dataset: r.i, Key: key, Message: fmt.Sprintf(format, args...), Err: kind})
}

// value returns a present, non-null value.
func (r *reader) value(key string) (any, bool) {
	v, ok := r.m[key]
	return v, ok && v != nil
}

// dataset reads the object. Every key present is checked for its type on every dataset;
// what a key means, and whether this trainer implements its value, only where it is used.
// kindOK is false when dataset_type could not be read.
func (r *reader) dataset(d Defaults) (ds Dataset, kindOK bool) {
	ds = Dataset{Index: r.i, MaxUpscaleThreshold: -1, Probability: 1}
	ds.ID = r.id()
	r.name = name(r.i, ds.ID)
	disabled, disable := r.boolean("disabled", false), r.boolean("disable", false)
	ds.Disabled = disabled || disable

	// Types, on every dataset.
	var typ string
	typOK := true
	if v, ok := r.value("type"); !ok || v == "" {
		r.fail(ErrInvalid, "type", "%s is missing 'type' (one of %s)", r.name, strings.Join(backendEnum.known, ", "))
		typOK = false
	} else {
		typ, typOK = r.enum(&backendEnum)
	}
	dtype, kindOK := r.enum(&datasetTypeEnum)
	caption, captionOK := r.enum(&captionEnum)
	resType, resTypeOK := r.enum(&resolutionTypeEnum)
	cropStyle, cropStyleOK := r.enum(&cropStyleEnum)
	cropAspect, cropAspectOK := r.enum(&cropAspectEnum)
	condType, condTypeOK := r.enum(&conditioningTypeEnum)
	metadata, metadataOK := r.enum(&metadataEnum)
	ds.InstanceDataDir = r.folder("instance_data_dir")
	ds.CacheDirVAE = r.folder("cache_dir_vae")
	ds.CacheDir = r.folder("cache_dir")
	for _, k := range r.sortedKeys() {
		if IsFolderKey(k) && k != "instance_data_dir" && k != "cache_dir_vae" && k != "cache_dir" {
			r.folder(k)
		}
	}
	ds.InstancePrompt = r.str("instance_prompt")
	ds.TextEmbeds = r.str("text_embeds")
	ds.ImageEmbeds = r.str("image_embeds")
	r.str("source_dataset_id")
	ds.PrependInstance = r.boolean("prepend_instance_prompt", false)
	ds.OnlyInstance = r.boolean("only_instance_prompt", false)
	ds.DisableMultilineSplit = r.boolean("disable_multiline_split", false)
	ds.Crop = r.boolean("crop", false)
	ds.Default = r.boolean("default", false)
	_, resolutionSet := r.value("resolution")
	ds.Resolution = r.num("resolution", d.Resolution)
	ds.MinimumImageSize = r.num("minimum_image_size", 0)
	ds.MaximumImageSize = r.num("maximum_image_size", 0)
	ds.TargetDownsampleSize = r.num("target_downsample_size", 0)
	ds.MinimumAspectRatio = r.num("minimum_aspect_ratio", 0)
	ds.MaximumAspectRatio = r.num("maximum_aspect_ratio", 0)
	ds.MaxUpscaleThreshold = r.num("max_upscale_threshold", -1)
	ds.Probability = r.num("probability", 1)
	ds.Repeats = r.integer("repeats", 0)
	ds.MaxNumSamples = r.integer("max_num_samples", 0)
	ds.TrainBatchSize = r.integer("train_batch_size", 0)
	ds.WriteBatchSize = r.integer("write_batch_size", 128)
	ds.CropAspectBuckets = r.buckets()
	ds.ConditioningData = r.ids("conditioning_data")

	// Meaning, where the key is used.
	ds.Type = BackendLocal
	if typOK {
		ds.Type = typ
	}
	ds.DatasetType = TypeImage
	if dtype != "" {
		ds.DatasetType = dtype
	}
	known := kindOK && r.supported(&datasetTypeEnum, ds.DatasetType)
	embeds := ds.DatasetType == TypeTextEmbeds || ds.DatasetType == TypeImageEmbeds
	if typOK && r.supported(&backendEnum, ds.Type) && ds.Type == BackendMemory && known && !embeds {
		r.fail(ErrInvalid, "type", "%s: type 'memory' is only for text_embeds and image_embeds datasets", r.name)
	}
	if known && ds.Default && ds.DatasetType != TypeTextEmbeds {
		r.fail(ErrInvalid, "default", "%s: only a text_embeds dataset can be the default (\"default\": true)", r.name)
	}
	if known && ds.HasSamples() {
		r.samples(&ds, d, typ)
		ds.CaptionStrategy = pick(captionOK && r.supported(&captionEnum, caption), caption, d.CaptionStrategy)
		ds.ResolutionType = pick(resTypeOK && r.supported(&resolutionTypeEnum, resType), resType, d.ResolutionType)
		_, resTypeSet := r.value("resolution_type")
		ds.ResolutionSet = resolutionSet || resTypeSet
		ds.CropStyle = pick(cropStyleOK && r.supported(&cropStyleEnum, cropStyle), cropStyle, CropRandom)
		ds.CropAspect = pick(cropAspectOK && r.supported(&cropAspectEnum, cropAspect), cropAspect, AspectSquare)
		if metadataOK {
			r.supported(&metadataEnum, metadata)
		}
		if ds.DatasetType == TypeConditioning {
			ds.ConditioningType = pick(condTypeOK && r.supported(&conditioningTypeEnum, condType), condType, CondReferenceStrict)
			ds.ConditioningData = nil
		}
		r.sampleValues(&ds, resolutionSet)
		if ds.CacheDirVAE == "" && d.CacheDirVAE != "" && ds.ID != "" {
			ds.CacheDirVAE = strings.TrimRight(d.CacheDirVAE, "/") + "/" + ds.ID
		}
	}
	if !ds.HasSamples() {
		ds.ConditioningData = nil
	}
	for key := range r.m {
		if !slices.Contains(knownKeys, key) && !slices.Contains(acceptedKeys, key) {
			ds.Ignored = append(ds.Ignored, key)
		}
	}
	sort.Strings(ds.Ignored)
	if ds.Disabled {
		// SimpleTuner skips a disabled dataset entirely; so do its problems.
		r.probs = nil
	}
	return ds, kindOK
}

// samples checks what an image or conditioning dataset needs besides its values: its
// folder (for a local one) and, for an image dataset, the prompt its captions come from.
func (r *reader) samples(ds *Dataset, d Defaults, typ string) {
	v := r.m["instance_data_dir"]
	if _, isStr := v.(string); typ == BackendLocal && (v == nil || isStr) && strings.TrimSpace(ds.InstanceDataDir) == "" {
		r.fail(ErrIncomplete, "instance_data_dir", "%s: instance_data_dir is empty; point it at the folder that holds the training files", r.name)
	}
	if ds.DatasetType != TypeImage || strings.TrimSpace(ds.InstancePrompt) != "" {
		return
	}
	cs, _ := r.m["caption_strategy"].(string)
	if cs == "" {
		cs = d.CaptionStrategy
	}
	switch {
	case captionEnum.aliases[cs] == CaptionInstancePrompt || cs == CaptionInstancePrompt:
		r.fail(ErrInvalid, "instance_prompt", "%s uses caption_strategy=%s but has no instance_prompt", r.name, errmsg.Clip(cs))
	case ds.PrependInstance:
		r.fail(ErrInvalid, "instance_prompt", "%s uses prepend_instance_prompt but has no instance_prompt", r.name)
	case ds.OnlyInstance:
		r.fail(ErrInvalid, "instance_prompt", "%s uses only_instance_prompt but has no instance_prompt", r.name)
	}
}

// sampleValues checks the values of an image or conditioning dataset against each other.
func (r *reader) sampleValues(ds *Dataset, resolutionSet bool) {
	switch {
	case resolutionSet && ds.Resolution == 0:
		r.fail(ErrInvalid, "resolution", "%s: resolution must be greater than 0", r.name)
	case ds.ResolutionType != ResArea && ds.Resolution < 8:
		r.fail(ErrInvalid, "resolution", "%s: resolution %g is below 8 pixels; with resolution_type=%s the unit is pixels (megapixels need resolution_type=area)", r.name, ds.Resolution, ds.ResolutionType)
	case ds.ResolutionType == ResArea && ds.Resolution > 100:
		r.fail(ErrInvalid, "resolution", "%s: resolution %g megapixels is too large; with resolution_type=area the unit is megapixels (pixels need pixel or pixel_area)", r.name, ds.Resolution)
	}
	if ds.MaximumAspectRatio > 0 && ds.MinimumAspectRatio > ds.MaximumAspectRatio {
		r.fail(ErrInvalid, "minimum_aspect_ratio", "%s: minimum_aspect_ratio %g is above maximum_aspect_ratio %g", r.name, ds.MinimumAspectRatio, ds.MaximumAspectRatio)
	}
}

func pick(ok bool, v, def string) string {
	if ok && v != "" {
		return v
	}
	return def
}

func (r *reader) sortedKeys() []string {
	keys := make([]string, 0, len(r.m))
	for k := range r.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// id reads the id, trimmed; "" when it is missing or not a string (a problem either way).
func (r *reader) id() string {
	v, ok := r.value("id")
	s, isStr := v.(string)
	switch {
	case isStr && strings.TrimSpace(s) != "":
		return strings.TrimSpace(s)
	case !ok || isStr:
		r.fail(ErrInvalid, "id", "Dataset #%d is missing 'id': give every dataset a unique id", r.i+1)
	default:
		r.fail(ErrInvalid, "id", "Dataset #%d: id must be a string, a unique name for the dataset; got %s", r.i+1, show(v))
	}
	return ""
}

// enum reads an enumerated key: "" when it is absent, else its canonical value (aliases
// resolved). ok is false when the value is not one of SimpleTuner's.
func (r *reader) enum(e *enum) (string, bool) {
	v, present := r.value(e.key)
	if !present {
		return "", true
	}
	s, isStr := v.(string)
	if !isStr {
		r.fail(ErrInvalid, e.key, "%s: %s must be a string (one of %s); got %s", r.name, e.key, strings.Join(e.known, ", "), show(v))
		return "", false
	}
	if !slices.Contains(e.known, s) {
		r.fail(ErrInvalid, e.key, "%s: unknown %s '%s' (known: %s)", r.name, e.key, errmsg.Clip(s), strings.Join(e.known, ", "))
		return "", false
	}
	if a, ok := e.aliases[s]; ok {
		s = a
	}
	return s, true
}

// supported reports whether this trainer implements v, a known value of e ("" is the
// default, always implemented); a problem says so when not.
func (r *reader) supported(e *enum, v string) bool {
	if v == "" || slices.Contains(e.supported, v) {
		return true
	}
	r.fail(ErrUnsupported, e.key, "%s: %s '%s' is not supported by this trainer (supported: %s)", r.name, e.key, errmsg.Clip(v), strings.Join(e.supported, ", "))
	return false
}

func (r *reader) str(key string) string {
	v, ok := r.value(key)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		r.fail(ErrInvalid, key, "%s: %s must be a string; got %s", r.name, key, show(v))
	}
	return s
}

func (r *reader) folder(key string) string {
	v, ok := r.value(key)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		r.fail(ErrInvalid, key, "%s: %s must be a folder path; got %s", r.name, key, show(v))
	}
	return s
}

// boolean reads true or false; "true", "false" (any case, as strconv.ParseBool reads
// them) are accepted, as form-edited configs carry booleans as strings.
func (r *reader) boolean(key string, def bool) bool {
	v, ok := r.value(key)
	if !ok {
		return def
	}
	switch x := v.(type) {
	case bool:
		return x
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
			return b
		}
	}
	r.fail(ErrInvalid, key, "%s: %s must be true or false; got %s", r.name, key, show(v))
	return def
}

// num reads a finite number ≥ 0.
func (r *reader) num(key string, def float64) float64 {
	v, ok := r.value(key)
	if !ok {
		return def
	}
	f, ok := number(v)
	if !ok || f < 0 {
		r.fail(ErrInvalid, key, "%s: %s must be a number of at least 0; got %s", r.name, key, show(v))
		return def
	}
	return f
}

// integer reads a whole number ≥ 0.
func (r *reader) integer(key string, def int) int {
	v, ok := r.value(key)
	if !ok {
		return def
	}
	n := len(r.probs)
	f := r.num(key, float64(def))
	if len(r.probs) > n {
		return def
	}
	if f != math.Trunc(f) || f > 1<<30 {
		r.fail(ErrInvalid, key, "%s: %s must be a whole number; got %s", r.name, key, show(v))
		return def
	}
	return int(f)
}

// ids reads conditioning_data: a dataset id or a list of them.
func (r *reader) ids(key string) []string {
	v, ok := r.value(key)
	if !ok {
		return nil
	}
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil
		}
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok || s == "" {
				r.fail(ErrInvalid, key, "%s: %s must be a dataset id or a list of ids; got %s", r.name, key, show(v))
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	r.fail(ErrInvalid, key, "%s: %s must be a dataset id or a list of ids; got %s", r.name, key, show(v))
	return nil
}

// buckets reads crop_aspect_buckets: a list of aspect ratios.
func (r *reader) buckets() []float64 {
	const key = "crop_aspect_buckets"
	v, ok := r.value(key)
	if !ok {
		return nil
	}
	x, ok := v.([]any)
	if !ok {
		r.fail(ErrInvalid, key, "%s: %s must be a list of aspect ratios like [0.75, 1.0, 1.33]; got %s", r.name, key, show(v))
		return nil
	}
	out := make([]float64, 0, len(x))
	for _, e := range x {
		f, ok := number(e)
		if !ok || !(f > 0.05 && f < 20) {
			r.fail(ErrInvalid, key, "%s: %s: aspect ratios must be numbers between 0.05 and 20; got %s", r.name, key, show(e))
			return nil
		}
		out = append(out, f)
	}
	return out
}

// number reads a finite JSON number, or a string holding one in decimal ("64", "1.5e3"),
// as SimpleTuner's readers convert them with float(). Hexadecimal, underscores, "inf" and
// "nan" are not numbers here.
func number(v any) (float64, bool) {
	var f float64
	var err error
	switch x := v.(type) {
	case json.Number:
		f, err = x.Float64()
	case float64:
		f = x
	case string:
		s := strings.TrimSpace(x)
		if s == "" || strings.IndexFunc(s, func(c rune) bool { return !strings.ContainsRune("0123456789+-.eE", c) }) >= 0 {
			return 0, false
		}
		f, err = strconv.ParseFloat(s, 64)
	default:
		return 0, false
	}
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

// show renders a JSON value briefly for a message.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return errmsg.Clip(string(b))
}
