package data

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // registers the JPEG decoder with image.Decode
	_ "image/png"  // registers the PNG decoder
	"io"
	"os"
	"path/filepath"
	"strings"

	xdraw "golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers the WebP decoder
)

// imageExts are the file extensions discovery picks up (compared lower-cased).
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".webp": true}

func isImage(name string) bool { return imageExts[strings.ToLower(filepath.Ext(name))] }

// readConfig reads only the image header. It refuses images above maxPixels before anything
// large is allocated, since a tiny file can claim enormous dimensions.
func readConfig(path string, maxPixels int64) (w, h int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrBadImage, err)
	}
	defer f.Close()
	return checkConfig(f, path, maxPixels)
}

// checkConfig reads the image header from r (path names it in errors) and applies the
// limits of readConfig.
func checkConfig(r io.Reader, path string, maxPixels int64) (w, h int, err error) {
	cfg, err := safeDecodeConfig(bufio.NewReader(r))
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s: %v", ErrBadImage, filepath.Base(path), err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return 0, 0, fmt.Errorf("%w: %s: empty image (%dx%d)", ErrBadImage, filepath.Base(path), cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return 0, 0, fmt.Errorf("%w: %s: %dx%d exceeds the %d-pixel limit", ErrBadImage, filepath.Base(path), cfg.Width, cfg.Height, maxPixels)
	}
	return cfg.Width, cfg.Height, nil
}

// safeDecodeConfig and safeDecode turn a decoder panic on hostile input into an error: one
// bad file must never take the trainer down.
func safeDecodeConfig(r *bufio.Reader) (cfg image.Config, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoder panic: %v", p)
		}
	}()
	cfg, _, err = image.DecodeConfig(r)
	return cfg, err
}

func safeDecode(r *bufio.Reader) (img image.Image, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoder panic: %v", p)
		}
	}()
	img, _, err = image.Decode(r)
	return img, err
}

// decodeFile decodes an image after re-checking its header (the file may have changed since
// discovery).
func decodeFile(path string, maxPixels int64) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadImage, err)
	}
	defer f.Close()
	return decodeChecked(f, path, maxPixels)
}

// decodeChecked decodes the image in r (path names it in errors) after checking its header
// against maxPixels.
func decodeChecked(r io.ReadSeeker, path string, maxPixels int64) (image.Image, error) {
	if _, _, err := checkConfig(r, path, maxPixels); err != nil {
		return nil, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadImage, err)
	}
	img, err := safeDecode(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadImage, filepath.Base(path), err)
	}
	return img, nil
}

// resizeOnWhite renders src into a new opaque w×h RGBA image. Transparent pixels are
// composited over white so that an alpha channel never leaks arbitrary hidden colours.
// Catmull-Rom widens its support when shrinking, so large reductions are antialiased.
func resizeOnWhite(src image.Image, w, h int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	b := src.Bounds()
	if b.Dx() == w && b.Dy() == h {
		draw.Draw(dst, dst.Bounds(), src, b.Min, draw.Over)
	} else {
		xdraw.CatmullRom.Scale(dst, dst.Bounds(), src, b, xdraw.Over, nil)
	}
	return dst
}

// applyPlan runs the geometry of p on img and returns the CHW tensor normalised to [-1, 1].
// Any input size works: a strictly paired conditioning image of a different resolution is
// brought to the same frame as its source by the same steps.
func applyPlan(img image.Image, p plan) []float32 {
	cur := img
	if p.DownW > 0 {
		cur = resizeOnWhite(cur, p.DownW, p.DownH)
	}
	inter := resizeOnWhite(cur, p.InterW, p.InterH)
	out := make([]float32, 3*p.W*p.H)
	plane := p.W * p.H
	for y := 0; y < p.H; y++ {
		row := inter.Pix[(p.CropY+y)*inter.Stride+p.CropX*4:]
		for x := 0; x < p.W; x++ {
			i := y*p.W + x
			out[i] = float32(row[4*x])/127.5 - 1
			out[plane+i] = float32(row[4*x+1])/127.5 - 1
			out[2*plane+i] = float32(row[4*x+2])/127.5 - 1
		}
	}
	return out
}
