package dataloader

import "strings"

// Dataset types (dataset_type) this trainer implements.
const (
	TypeImage        = "image"
	TypeConditioning = "conditioning"
	TypeTextEmbeds   = "text_embeds"
	TypeImageEmbeds  = "image_embeds"
)

// Storage backends (type) this trainer implements.
const (
	BackendLocal  = "local"
	BackendMemory = "memory" // text_embeds and image_embeds only
)

// Resolution types (resolution_type).
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

// MetadataDiscovery is the metadata backend this trainer implements: it scans the folder.
const MetadataDiscovery = "discovery"

// enum is a key with a fixed set of values: known are SimpleTuner's (as messages list
// them), supported the canonical values this trainer implements, aliases the other
// spellings SimpleTuner accepts for them.
type enum struct {
	key       string
	known     []string
	supported []string
	aliases   map[string]string
}

var (
	backendEnum = enum{key: "type",
		known:     []string{BackendLocal, "aws", BackendMemory, "csv", "huggingface", "webshart"},
		supported: []string{BackendLocal, BackendMemory}}
	datasetTypeEnum = enum{key: "dataset_type",
		known:     []string{TypeImage, "video", "audio", TypeTextEmbeds, TypeImageEmbeds, "conditioning_image_embeds", TypeConditioning, "caption", "eval"},
		supported: []string{TypeImage, TypeConditioning, TypeTextEmbeds, TypeImageEmbeds}}
	captionEnum = enum{key: "caption_strategy",
		known:     []string{CaptionFilename, CaptionTextfile, CaptionInstancePrompt, "instance_prompt", "parquet", "webshart", "huggingface", "csv"},
		supported: []string{CaptionFilename, CaptionTextfile, CaptionInstancePrompt},
		aliases:   map[string]string{"instance_prompt": CaptionInstancePrompt}}
	resolutionTypeEnum = enum{key: "resolution_type",
		known:     []string{ResPixelArea, ResPixel, ResArea},
		supported: []string{ResPixelArea, ResPixel, ResArea}}
	cropStyleEnum = enum{key: "crop_style",
		known:     []string{CropRandom, CropCenter, "centre", CropCorner, "face"},
		supported: []string{CropCenter, CropRandom, CropCorner},
		aliases:   map[string]string{"centre": CropCenter}}
	cropAspectEnum = enum{key: "crop_aspect",
		known:     []string{AspectClosest, AspectRandom, AspectSquare, AspectPreserve},
		supported: []string{AspectClosest, AspectRandom, AspectSquare, AspectPreserve}}
	conditioningTypeEnum = enum{key: "conditioning_type",
		known:     []string{"controlnet", "mask", CondReferenceStrict, CondReferenceLoose},
		supported: []string{CondReferenceStrict, CondReferenceLoose}}
	metadataEnum = enum{key: "metadata_backend",
		known:     []string{MetadataDiscovery, "json", "parquet", "huggingface", "webshart"},
		supported: []string{MetadataDiscovery},
		aliases:   map[string]string{"json": MetadataDiscovery}}
)

// enums are checked against SimpleTuner's values on every dataset (a typo is a typo
// anywhere); whether this trainer implements the value matters only where the key is used.
var enums = []*enum{&backendEnum, &datasetTypeEnum, &captionEnum, &resolutionTypeEnum, &cropStyleEnum,
	&cropAspectEnum, &conditioningTypeEnum, &metadataEnum}

// Keys of each JSON type; a present value of another type is refused on any dataset.
var (
	boolKeys = []string{"disabled", "disable", "prepend_instance_prompt", "only_instance_prompt",
		"disable_multiline_split", "crop", "default"}
	stringKeys = []string{"instance_prompt", "text_embeds", "image_embeds", "source_dataset_id"}
	// numberKeys hold finite numbers ≥ 0; intKeys among them whole numbers.
	numberKeys = []string{"resolution", "minimum_image_size", "maximum_image_size", "target_downsample_size",
		"minimum_aspect_ratio", "maximum_aspect_ratio", "max_upscale_threshold", "probability",
		"repeats", "max_num_samples", "train_batch_size", "write_batch_size"}
	intKeys = []string{"repeats", "max_num_samples", "train_batch_size", "write_batch_size"}
)

// knownKeys are honoured; acceptedKeys are SimpleTuner keys accepted but without effect
// here: their only effect in SimpleTuner is on caching strategy or startup speed, and the
// data they describe is the same. Any other key is listed in Dataset.Ignored.
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
	acceptedKeys = []string{
		"vae_cache_clear_each_epoch", "skip_file_discovery", "preserve_data_backend_cache", "hash_filenames",
		"vae_cache_ondemand", "metadata_update_interval", "aws_data_prefix", "text_encoder_batch_size",
		"scan_for_errors", "is_regularisation_data", "is_regularization_data",
	}
)

// IsFolderKey reports whether a dataset key names a folder: instance_data_dir, and
// cache_dir and every other cache_dir* key (SimpleTuner has one per cache). Their values
// must be strings; the daemon checks where they point.
func IsFolderKey(key string) bool {
	return key == "instance_data_dir" || strings.HasPrefix(key, "cache_dir")
}
