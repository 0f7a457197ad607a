package validation

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
)

// ToImage converts a CHW float32 image in [-1, 1] (3 channels) to RGBA, clamping and
// rounding each channel to 8 bits.
func ToImage(chw []float32, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	plane := w * h
	conv := func(v float32) uint8 {
		x := (float64(v) + 1) * 127.5
		if math.IsNaN(x) {
			return 0
		}
		return uint8(math.Round(min(255, max(0, x))))
	}
	for y := range h {
		for x := range w {
			i := y*w + x
			img.SetRGBA(x, y, color.RGBA{conv(chw[i]), conv(chw[plane+i]), conv(chw[2*plane+i]), 255})
		}
	}
	return img
}

// EncodePNG encodes an image as PNG.
func EncodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("validation: encode png: %w", err)
	}
	return buf.Bytes(), nil
}

// Asset is an image as the event contract carries it: {"src": "data:image/png;base64,…",
// "mime_type": "image/png"}.
type Asset struct {
	Src      string `json:"src"`
	MimeType string `json:"mime_type"`
}

// PNGAsset wraps PNG bytes as a data-URI Asset.
func PNGAsset(pngData []byte) Asset {
	return Asset{Src: "data:image/png;base64," + base64.StdEncoding.EncodeToString(pngData), MimeType: "image/png"}
}
