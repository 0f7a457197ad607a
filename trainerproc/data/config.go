package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Dataset types (contract §14 dataset_type) this trainer implements.
const (
	TypeImage        = "image"
	TypeConditioning = "conditioning"
	TypeTextEmbeds   = "text_embeds"
	TypeImageEmbeds  = "image_embeds"
)

// Resolution types (contract §14 resolution_type).
const (
	ResPixel     = "pixel"      // resolution is the shorter edge in pixels
	ResPixelArea = "pixel_area" // resolution² is the target area in pixels
	ResArea      = "area"       // resolution is the target area in megapixels
)

// Caption strategies this trainer implements.
const (
	CaptionFilename       = "filename"
	CaptionTextfile       = "textfile"
	CaptionInstancePrompt = "instanceprompt"
)

// Crop styles and aspects.
const (
	CropCenter = "center"
	CropRandom = "random"
	CropCorner = "corner"

	AspectSquare   = "square"
	AspectPreserve = "preserve"
	AspectClosest  = "closest"
	AspectRandom   = "random"
)

// Conditioning types this trainer implements.
const (
	CondReferenceStrict = "reference_strict"
	CondReferenceLoose  = "reference_loose"
)

// Defaults fills what a dataset object leaves out, the way SimpleTuner falls back to the
// trainer's command-line options. Zero fields take SimpleTuner's defaults.
type Defaults struct {
	Resolution      float64 // --resolution; 0 means 1024
	ResolutionType  string  // --resolution_type; "" means pixel_area
	CaptionStrategy string  // --caption_strategy; "" means filename
	CacheDirVAE     string  // --cache_dir_vae; used as <dir>/<dataset id> when a dataset has none
}

// Config is a parsed, validated dataloader document.
type Config struct {
	// Datasets in document order, disabled ones included (with Disabled set).
	Datasets []DatasetConfig
}

// DatasetConfig is one dataset object of the dataloader JSON, typed and defaulted.
type DatasetConfig struct {
	ID          string
	Type        string // local or memory
	DatasetType string
	Disabled    bool

	InstanceDataDir string
	CaptionStrategy string
	InstancePrompt  string
	PrependInstance bool
	OnlyInstance    bool
	// DisableMultilineSplit keeps a caption file whole instead of one caption per line.
	DisableMultilineSplit bool

	Resolution     float64
	ResolutionType string
	// ResolutionSet is true when the object sets resolution or resolution_type itself
	// (else --resolution and --resolution_type apply).
	ResolutionSet        bool
	MinimumImageSize     float64 // 0 = no minimum; unit of ResolutionType
	MaximumImageSize     float64 // with TargetDownsampleSize: downsample larger images first
	TargetDownsampleSize float64
	MinimumAspectRatio   float64 // 0 = none
	MaximumAspectRatio   float64 // 0 = none
	MaxUpscaleThreshold  float64 // <0 = unlimited; else the largest allowed upscale (0.2 = 20%)

	Crop              bool
	CropStyle         string
	CropAspect        string
	CropAspectBuckets []float64

	Repeats        int
	Probability    float64
	MaxNumSamples  int // 0 = all
	TrainBatchSize int // 0 = the sampler's batch size

	CacheDirVAE string // image/conditioning: preprocessed pixel cache ("" = in memory)
	CacheDir    string // text_embeds/image_embeds: cache location
	Default     bool   // text_embeds: the default text cache
	// WriteBatchSize is accepted for compatibility; token files are small and written one
	// at a time.
	WriteBatchSize int

	TextEmbeds  string // id of the text_embeds dataset ("" = the default one)
	ImageEmbeds string // id of an image_embeds dataset holding this dataset's pixel cache

	ConditioningData []string // ids of conditioning datasets paired with this image dataset
	ConditioningType string   // on conditioning datasets

	// Ignored lists keys present in the object that this trainer accepts but does not act
	// on (so the caller can warn about them), sorted.
	Ignored []string
}

// knownKeys are honoured; acceptedKeys are SimpleTuner keys accepted but without effect here.
var (
	knownKeys = []string{
		"id", "type", "dataset_type", "disabled", "disable", "instance_data_dir", "caption_strategy",
		"instance_prompt", "prepend_instance_prompt", "only_instance_prompt", "disable_multiline_split",
		"resolution", "resolution_type", "minimum_image_size", "maximum_image_size", "target_downsample_size",
		"minimum_aspect_ratio", "maximum_aspect_ratio", "max_upscale_threshold", "crop", "crop_style",
		"crop_aspect", "crop_aspect_buckets", "repeats", "probability", "max_num_samples", "train_batch_size",
		"cache_dir_vae", "cache_dir", "default", "write_batch_size", "text_embeds", "image_embeds",
		"conditioning_data", "conditioning_type", "metadata_backend", "source_dataset_id",
	}
	// Keys whose only effect in SimpleTuner is on caching strategy or startup speed; the
	// data they describe is the same here.
	acceptedKeys = []string{
		"vae_cache_clear_each_epoch", "skip_file_discovery", "preserve_data_backend_cache", "hash_filenames",
		"vae_cache_ondemand", "metadata_update_interval", "aws_data_prefix", "text_encoder_batch_size",
		"scan_for_errors", "is_regularisation_data", "is_regularization_data",
	}
	unsupportedTypes        = []string{"aws", "csv", "huggingface", "webshart"}
	unsupportedDatasetTypes = []string{"video", "audio", "conditioning_image_embeds", "caption", "eval"}
	unsupportedCaptions     = []string{"parquet", "webshart", "huggingface", "csv"}
	unsupportedMetadata     = []string{"parquet", "huggingface", "webshart"}
	unsupportedCondTypes    = []string{"controlnet", "mask"}
)

// ParseConfig decodes and validates a dataloader document (a JSON array of dataset objects).
// Every problem found is reported, joined; each wraps ErrInvalidConfig or ErrUnsupported and
// names the dataset id and field.
func ParseConfig(data []byte, d Defaults) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: dataloader config is not valid JSON: %v", ErrInvalidConfig, err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("%w: dataloader config has extra data after the JSON list", ErrInvalidConfig)
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: dataloader config must be a JSON list of dataset objects", ErrInvalidConfig)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("%w: dataloader config must contain at least one dataset", ErrInvalidConfig)
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
	var errs []error
	cfg := &Config{}
	seen := map[string]bool{}
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("%w: dataset #%d must be a JSON object", ErrInvalidConfig, i+1))
			continue
		}
		p := &fieldParser{m: m, name: fmt.Sprintf("dataset #%d", i+1)}
		ds := p.dataset(d)
		if ds.ID != "" {
			if seen[ds.ID] {
				p.fail(ErrInvalidConfig, "id", "You can only have one backend named %s", ds.ID)
			}
			seen[ds.ID] = true
		}
		errs = append(errs, p.errs...)
		cfg.Datasets = append(cfg.Datasets, ds)
	}
	errs = append(errs, cfg.crossCheck()...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// Dataset returns the dataset with the given id.
func (c *Config) Dataset(id string) (*DatasetConfig, bool) {
	for i := range c.Datasets {
		if c.Datasets[i].ID == id {
			return &c.Datasets[i], true
		}
	}
	return nil, false
}

// DefaultTextEmbeds returns the text_embeds dataset marked default.
func (c *Config) DefaultTextEmbeds() (*DatasetConfig, bool) {
	for i := range c.Datasets {
		ds := &c.Datasets[i]
		if !ds.Disabled && ds.DatasetType == TypeTextEmbeds && ds.Default {
			return ds, true
		}
	}
	return nil, false
}

// crossCheck validates references between datasets.
func (c *Config) crossCheck() []error {
	var errs []error
	fail := func(sentinel error, id, field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: dataset %q: %s: %s", sentinel, id, field, fmt.Sprintf(format, args...)))
	}
	defaults, textEmbeds, images := 0, 0, 0
	for _, ds := range c.Datasets {
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
	switch {
	case defaults > 1:
		errs = append(errs, fmt.Errorf("%w: Only one text embed backend can be marked as default.", ErrInvalidConfig))
	case textEmbeds == 0:
		errs = append(errs, fmt.Errorf("%w: the dataloader needs a text_embeds dataset with \"default\": true (e.g. {\"id\": \"text-embeds\", \"type\": \"local\", \"dataset_type\": \"text_embeds\", \"default\": true, \"cache_dir\": \"cache/text\"})", ErrInvalidConfig))
	case defaults == 0:
		errs = append(errs, fmt.Errorf("%w: no text_embeds dataset is marked as default: set \"default\": true on exactly one of them", ErrInvalidConfig))
	}
	if images == 0 {
		errs = append(errs, fmt.Errorf("%w: the dataloader has no enabled dataset with dataset_type \"image\"", ErrInvalidConfig))
	}
	for _, ds := range c.Datasets {
		if ds.Disabled || ds.DatasetType != TypeImage {
			continue
		}
		for _, ref := range ds.ConditioningData {
			other, ok := c.Dataset(ref)
			switch {
			case !ok:
				fail(ErrInvalidConfig, ds.ID, "conditioning_data", "refers to %q, which is not the id of any dataset in this file", ref)
			case other.Disabled:
				fail(ErrInvalidConfig, ds.ID, "conditioning_data", "refers to %q, which is disabled", ref)
			case other.DatasetType != TypeConditioning:
				fail(ErrInvalidConfig, ds.ID, "conditioning_data", "refers to %q, whose dataset_type is %q, not \"conditioning\"", ref, other.DatasetType)
			}
		}
		if ds.TextEmbeds != "" {
			if other, ok := c.Dataset(ds.TextEmbeds); !ok || other.DatasetType != TypeTextEmbeds || other.Disabled {
				fail(ErrInvalidConfig, ds.ID, "text_embeds", "refers to %q, which is not an enabled text_embeds dataset", ds.TextEmbeds)
			}
		}
		if ds.ImageEmbeds != "" {
			if other, ok := c.Dataset(ds.ImageEmbeds); !ok || other.DatasetType != TypeImageEmbeds || other.Disabled {
				fail(ErrInvalidConfig, ds.ID, "image_embeds", "refers to %q, which is not an enabled image_embeds dataset", ds.ImageEmbeds)
			}
		}
	}
	return errs
}

// fieldParser reads typed fields out of one decoded dataset object, collecting errors.
type fieldParser struct {
	m    map[string]any
	name string // "dataset \"id\"" once the id is known
	errs []error
}

func (p *fieldParser) fail(sentinel error, field, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%w: %s: %s: %s", sentinel, p.name, field, fmt.Sprintf(format, args...)))
}

func (p *fieldParser) present(key string) bool {
	v, ok := p.m[key]
	return ok && v != nil
}

func (p *fieldParser) str(key, def string) string {
	v, ok := p.m[key]
	if !ok || v == nil {
		return def
	}
	s, ok := v.(string)
	if !ok {
		p.fail(ErrInvalidConfig, key, "must be a string; got %s", show(v))
		return def
	}
	return s
}

func (p *fieldParser) boolean(key string, def bool) bool {
	v, ok := p.m[key]
	if !ok || v == nil {
		return def
	}
	switch x := v.(type) {
	case bool:
		return x
	case string:
		// Form-edited configs sometimes carry booleans as strings.
		if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
			return b
		}
	}
	p.fail(ErrInvalidConfig, key, "must be true or false; got %s", show(v))
	return def
}

// num reads a finite number ≥ 0.
func (p *fieldParser) num(key string, def float64) float64 {
	v, ok := p.m[key]
	if !ok || v == nil {
		return def
	}
	f, ok := number(v)
	if !ok || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		p.fail(ErrInvalidConfig, key, "must be a number of at least 0; got %s", show(v))
		return def
	}
	return f
}

func (p *fieldParser) integer(key string, def int) int {
	if !p.present(key) {
		return def
	}
	f := p.num(key, float64(def))
	if f != math.Trunc(f) || f > 1<<30 {
		p.fail(ErrInvalidConfig, key, "must be a whole number; got %s", show(p.m[key]))
		return def
	}
	return int(f)
}

func (p *fieldParser) enum(key, def string, allowed, unsupported []string, aliases map[string]string) string {
	s := p.str(key, def)
	if a, ok := aliases[s]; ok {
		s = a
	}
	switch {
	case slices.Contains(allowed, s):
		return s
	case slices.Contains(unsupported, s):
		p.fail(ErrUnsupported, key, "%q is not supported by this trainer (supported: %s)", s, strings.Join(allowed, ", "))
	default:
		p.fail(ErrInvalidConfig, key, "unknown value %q (supported: %s)", s, strings.Join(allowed, ", "))
	}
	return def
}

func (p *fieldParser) stringList(key string) []string {
	v, ok := p.m[key]
	if !ok || v == nil {
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
				p.fail(ErrInvalidConfig, key, "must be a dataset id or a list of ids; got %s", show(v))
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	p.fail(ErrInvalidConfig, key, "must be a dataset id or a list of ids; got %s", show(v))
	return nil
}

func (p *fieldParser) floatList(key string) []float64 {
	v, ok := p.m[key]
	if !ok || v == nil {
		return nil
	}
	x, ok := v.([]any)
	if !ok {
		p.fail(ErrInvalidConfig, key, "must be a list of aspect ratios like [0.75, 1.0, 1.33]; got %s", show(v))
		return nil
	}
	out := make([]float64, 0, len(x))
	for _, e := range x {
		f, ok := number(e)
		if !ok || !(f > 0.05 && f < 20) {
			p.fail(ErrInvalidConfig, key, "aspect ratios must be numbers between 0.05 and 20; got %s", show(e))
			return nil
		}
		out = append(out, f)
	}
	return out
}

// dataset parses one object.
func (p *fieldParser) dataset(d Defaults) DatasetConfig {
	var ds DatasetConfig
	ds.ID = strings.TrimSpace(p.str("id", ""))
	if ds.ID == "" {
		p.fail(ErrInvalidConfig, "id", "missing: give every dataset a unique id")
	} else {
		p.name = fmt.Sprintf("dataset %q", ds.ID)
	}
	ds.Disabled = p.boolean("disabled", false) || p.boolean("disable", false)
	ds.DatasetType = p.enum("dataset_type", TypeImage,
		[]string{TypeImage, TypeConditioning, TypeTextEmbeds, TypeImageEmbeds}, unsupportedDatasetTypes, nil)
	if !p.present("type") {
		p.fail(ErrInvalidConfig, "type", "missing (this trainer supports \"local\")")
	}
	ds.Type = p.enum("type", "local", []string{"local", "memory"}, unsupportedTypes, nil)
	if ds.Type == "memory" && ds.DatasetType != TypeTextEmbeds && ds.DatasetType != TypeImageEmbeds {
		p.fail(ErrInvalidConfig, "type", "\"memory\" is only for text_embeds and image_embeds datasets")
	}
	ds.MaxUpscaleThreshold = -1
	ds.Probability = 1
	switch ds.DatasetType {
	case TypeTextEmbeds, TypeImageEmbeds:
		ds.CacheDir = p.str("cache_dir", "")
		ds.Default = p.boolean("default", false)
		ds.WriteBatchSize = p.integer("write_batch_size", 128)
		if ds.Default && ds.DatasetType != TypeTextEmbeds {
			p.fail(ErrInvalidConfig, "default", "only text_embeds datasets can be the default")
		}
	case TypeImage, TypeConditioning:
		p.sampleFields(&ds, d)
	}
	for key := range p.m {
		if !slices.Contains(knownKeys, key) && !acceptedWithoutEffect(key) {
			ds.Ignored = append(ds.Ignored, key)
		}
	}
	sort.Strings(ds.Ignored)
	if ds.Disabled {
		// SimpleTuner skips a disabled dataset entirely; so do its value errors.
		p.errs = nil
	}
	return ds
}

func (p *fieldParser) sampleFields(ds *DatasetConfig, d Defaults) {
	ds.InstanceDataDir = p.str("instance_data_dir", "")
	if strings.TrimSpace(ds.InstanceDataDir) == "" {
		p.fail(ErrInvalidConfig, "instance_data_dir", "missing: point it at the folder that holds the images")
	}
	p.enum("metadata_backend", "discovery", []string{"discovery"}, unsupportedMetadata, map[string]string{"json": "discovery"})
	ds.CaptionStrategy = p.enum("caption_strategy", d.CaptionStrategy,
		[]string{CaptionFilename, CaptionTextfile, CaptionInstancePrompt}, unsupportedCaptions,
		map[string]string{"instance_prompt": CaptionInstancePrompt})
	ds.InstancePrompt = p.str("instance_prompt", "")
	ds.PrependInstance = p.boolean("prepend_instance_prompt", false)
	ds.OnlyInstance = p.boolean("only_instance_prompt", false)
	ds.DisableMultilineSplit = p.boolean("disable_multiline_split", false)
	if ds.DatasetType == TypeImage && (ds.CaptionStrategy == CaptionInstancePrompt || ds.OnlyInstance || ds.PrependInstance) && strings.TrimSpace(ds.InstancePrompt) == "" {
		p.fail(ErrInvalidConfig, "instance_prompt", "required by caption_strategy=%s / prepend_instance_prompt / only_instance_prompt", ds.CaptionStrategy)
	}

	ds.ResolutionType = p.enum("resolution_type", d.ResolutionType, []string{ResPixel, ResPixelArea, ResArea}, nil, nil)
	ds.Resolution = p.num("resolution", d.Resolution)
	ds.ResolutionSet = p.present("resolution") || p.present("resolution_type")
	if ds.Resolution == 0 {
		p.fail(ErrInvalidConfig, "resolution", "must be greater than 0")
		ds.Resolution = d.Resolution
	}
	if ds.ResolutionType != ResArea && ds.Resolution < 8 {
		p.fail(ErrInvalidConfig, "resolution", "%g is below 8 pixels; with resolution_type=%s the unit is pixels (megapixels need resolution_type=area)", ds.Resolution, ds.ResolutionType)
	}
	if ds.ResolutionType == ResArea && ds.Resolution > 100 {
		p.fail(ErrInvalidConfig, "resolution", "%g megapixels is too large; with resolution_type=area the unit is megapixels (pixels need pixel or pixel_area)", ds.Resolution)
	}
	ds.MinimumImageSize = p.num("minimum_image_size", 0)
	ds.MaximumImageSize = p.num("maximum_image_size", 0)
	ds.TargetDownsampleSize = p.num("target_downsample_size", 0)
	ds.MinimumAspectRatio = p.num("minimum_aspect_ratio", 0)
	ds.MaximumAspectRatio = p.num("maximum_aspect_ratio", 0)
	if ds.MaximumAspectRatio > 0 && ds.MinimumAspectRatio > ds.MaximumAspectRatio {
		p.fail(ErrInvalidConfig, "minimum_aspect_ratio", "%g is above maximum_aspect_ratio %g", ds.MinimumAspectRatio, ds.MaximumAspectRatio)
	}
	if p.present("max_upscale_threshold") {
		ds.MaxUpscaleThreshold = p.num("max_upscale_threshold", -1)
	}

	ds.Crop = p.boolean("crop", false)
	ds.CropStyle = p.enum("crop_style", CropRandom, []string{CropCenter, CropRandom, CropCorner}, []string{"face"}, map[string]string{"centre": CropCenter})
	ds.CropAspect = p.enum("crop_aspect", AspectSquare, []string{AspectSquare, AspectPreserve, AspectClosest, AspectRandom}, nil, nil)
	ds.CropAspectBuckets = p.floatList("crop_aspect_buckets")

	ds.Repeats = p.integer("repeats", 0)
	ds.Probability = p.num("probability", 1)
	ds.MaxNumSamples = p.integer("max_num_samples", 0)
	ds.TrainBatchSize = p.integer("train_batch_size", 0)
	ds.CacheDirVAE = p.str("cache_dir_vae", "")
	if ds.CacheDirVAE == "" && d.CacheDirVAE != "" && ds.ID != "" {
		ds.CacheDirVAE = strings.TrimRight(d.CacheDirVAE, "/") + "/" + ds.ID
	}
	ds.TextEmbeds = p.str("text_embeds", "")
	ds.ImageEmbeds = p.str("image_embeds", "")
	p.str("source_dataset_id", "")
	if ds.DatasetType == TypeImage {
		ds.ConditioningData = p.stringList("conditioning_data")
	} else {
		ds.ConditioningType = p.enum("conditioning_type", CondReferenceStrict,
			[]string{CondReferenceStrict, CondReferenceLoose}, unsupportedCondTypes, nil)
	}
}

// number accepts JSON numbers and numeric strings (form-edited configs carry those).
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

// show renders a value for an error message, clipped.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	s := string(b)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// acceptedWithoutEffect reports whether key is a SimpleTuner key this trainer accepts
// silently (its effect is on caching strategy only).
func acceptedWithoutEffect(key string) bool { return slices.Contains(acceptedKeys, key) }
