package dataloader

// Defaults fill what a dataset object leaves out, the way SimpleTuner falls back to the
// trainer's command-line options. Zero fields take SimpleTuner's defaults.
type Defaults struct {
	Resolution      float64 // --resolution; 0 means 1024
	ResolutionType  string  // --resolution_type; "" means pixel_area
	CaptionStrategy string  // --caption_strategy; "" means filename
	CacheDirVAE     string  // --cache_dir_vae; used as <dir>/<dataset id> when a dataset has none
}

// Document is a parsed dataloader document.
type Document struct {
	// Datasets in document order, disabled ones included (with Disabled set); list
	// items that are not objects are left out (Dataset.Index keeps the position).
	Datasets []Dataset
}

// Dataset is one dataset object of the document, typed and defaulted.
type Dataset struct {
	// Index is the object's position in the document's list.
	Index int

	ID          string
	Type        string // storage backend: local, or memory for embeds
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

// Name is how messages name the dataset: by its id, else by its position.
func (ds *Dataset) Name() string { return name(ds.Index, ds.ID) }

// HasSamples reports whether the dataset's samples live in InstanceDataDir (image and
// conditioning datasets), as opposed to an embeds cache.
func (ds *Dataset) HasSamples() bool {
	return ds.DatasetType == TypeImage || ds.DatasetType == TypeConditioning
}

// Dataset returns the dataset with the given id.
func (d *Document) Dataset(id string) (*Dataset, bool) {
	for i := range d.Datasets {
		if d.Datasets[i].ID == id {
			return &d.Datasets[i], true
		}
	}
	return nil, false
}

// DefaultTextEmbeds returns the enabled text_embeds dataset marked default.
func (d *Document) DefaultTextEmbeds() (*Dataset, bool) {
	for i := range d.Datasets {
		ds := &d.Datasets[i]
		if !ds.Disabled && ds.DatasetType == TypeTextEmbeds && ds.Default {
			return ds, true
		}
	}
	return nil, false
}
