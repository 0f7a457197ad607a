package data

import (
	"simpletuner/plugins/dataloader"
)

// The dataloader document is the contract's (plugins/dataloader): the daemon validates
// it with the same parser, so what it accepts at start is what this package trains.
// These are its names as this package uses them.
type (
	// Config is a parsed, validated dataloader document.
	Config = dataloader.Document
	// DatasetConfig is one dataset object of the dataloader JSON, typed and defaulted.
	DatasetConfig = dataloader.Dataset
	// Defaults fill what a dataset object leaves out (--resolution, …).
	Defaults = dataloader.Defaults
)

// Dataset types, resolution types, caption strategies, crops and conditioning types this
// trainer implements (see plugins/dataloader).
const (
	TypeImage        = dataloader.TypeImage
	TypeConditioning = dataloader.TypeConditioning
	TypeTextEmbeds   = dataloader.TypeTextEmbeds
	TypeImageEmbeds  = dataloader.TypeImageEmbeds

	ResPixel     = dataloader.ResPixel
	ResPixelArea = dataloader.ResPixelArea
	ResArea      = dataloader.ResArea

	CaptionFilename       = dataloader.CaptionFilename
	CaptionTextfile       = dataloader.CaptionTextfile
	CaptionInstancePrompt = dataloader.CaptionInstancePrompt

	CropCenter = dataloader.CropCenter
	CropRandom = dataloader.CropRandom
	CropCorner = dataloader.CropCorner

	AspectSquare   = dataloader.AspectSquare
	AspectPreserve = dataloader.AspectPreserve
	AspectClosest  = dataloader.AspectClosest
	AspectRandom   = dataloader.AspectRandom

	CondReferenceStrict = dataloader.CondReferenceStrict
	CondReferenceLoose  = dataloader.CondReferenceLoose
)

// ParseConfig decodes and validates a dataloader document (a JSON array of dataset
// objects) with the contract's parser. Every problem found is reported, joined, in the
// words the daemon uses for it; each is a dataloader.Problem wrapping ErrInvalidConfig
// (dataloader.ErrIncomplete among them) or ErrUnsupported.
func ParseConfig(data []byte, d Defaults) (*Config, error) {
	doc, probs := dataloader.Parse(data, d)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return doc, nil
}
