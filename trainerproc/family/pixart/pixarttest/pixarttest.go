// Package pixarttest lays out a tiny PixArt-Σ pipeline in the diffusers layout for tests:
// model_index.json (PixArtSigmaPipeline), transformer/ (a PixArtTransformer2DModel of 2 layers,
// 2 heads × 16, caption channels 32, in 4 / out 8, patch 2, sample_size 16, stored bf16 as
// the real v0.6 checkpoint is), scheduler/scheduler_config.json (the PixArt-Σ original:
// DPMSolverMultistep, linear 1e-4 → 0.02, epsilon), and the VAE, T5 text encoder and
// tokenizer of encoderstest. The transformer, scheduler config and model_index.json were
// written by diffusers' own code (testdata/gen_pipeline.py says how to rerun it). Serve puts
// the pipeline on a fake Hub as a repo id. ColourPipelineDir is the same pipeline with a VAE
// whose decode(encode(x)) keeps colours (ColourVAEFactor), for tests that read a generated
// image's colour.
package pixarttest

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"simpletuner/trainerproc/family/encoders/encoderstest"
	"simpletuner/trainerproc/hfhub/hfhubtest"
)

// RepoID is the repo id Serve publishes the pipeline under: the tutorial's model, so a test
// can run the tutorial's configuration with only the Hub endpoint changed.
const RepoID = "terminusresearch/pixart-900m-1024-ft-v0.6"

// Facts of the tiny pipeline that tests size their inputs by.
const (
	// SampleSize is the transformer's sample_size in pixels (16 latent pixels × the tiny
	// VAE's downscale factor 4).
	SampleSize = 64
	// VAEFactor is the tiny VAE's downscale factor (three levels).
	VAEFactor = 4
	// CaptionChannels is the tiny T5's d_model, the transformer's caption_channels.
	CaptionChannels = 32
	// ColourVAEFactor is the colour VAE's downscale factor (ColourPipelineDir).
	ColourVAEFactor = 8
	// DefaultT5Seed is the seed PipelineDir draws the T5 weights from.
	DefaultT5Seed = 14
)

// testdata is this package's testdata directory, found from the source file so that any
// package's test can call in.
func testdata() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata")
}

// PipelineDir writes the tiny pipeline into a new temporary directory and returns it; its
// T5 weights are drawn from DefaultT5Seed, so every call gives the same files.
func PipelineDir(t testing.TB) string {
	t.Helper()
	return PipelineDirSeed(t, DefaultT5Seed)
}

// PipelineDirSeed is PipelineDir with the T5 weights drawn from t5Seed: the learning test
// picks a text encoder whose states for its prompts differ enough (a random T5 is all the
// tiny pipeline has).
func PipelineDirSeed(t testing.TB, t5Seed uint64) string {
	t.Helper()
	dir := encoderstest.PipelineDir(t, t5Seed)
	src := filepath.Join(testdata(), "tiny")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		// model_index.json replaces encoderstest's toy pipeline index.
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatalf("pixarttest: %v", err)
	}
	return dir
}

// ColourPipelineDir is PipelineDirSeed with vae/ replaced by the colour VAE
// (testdata/colourvae, constructed by gen_pipeline.py): an AutoencoderKL of four levels
// (downscale 8, 4 latent channels) whose latents are the image's RGB averaged over 8×8
// pixels (and a zero channel), scaled by its scaling_factor 2, and whose decoder returns
// them, so decode(encode(x)) keeps x's colours to about 1e-3. The random tiny VAE does not:
// a test that asks whether generated images have their prompt's colour needs this one.
func ColourPipelineDir(t testing.TB, t5Seed uint64) string {
	t.Helper()
	dir := PipelineDirSeed(t, t5Seed)
	vae := filepath.Join(dir, "vae")
	if err := os.RemoveAll(vae); err != nil {
		t.Fatalf("pixarttest: %v", err)
	}
	if err := os.MkdirAll(vae, 0o755); err != nil {
		t.Fatalf("pixarttest: %v", err)
	}
	src := filepath.Join(testdata(), "colourvae")
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatalf("pixarttest: %v", err)
	}
	if err := os.WriteFile(filepath.Join(vae, "config.json"), cfg, 0o644); err != nil {
		t.Fatalf("pixarttest: %v", err)
	}
	gz, err := os.ReadFile(filepath.Join(src, "diffusion_pytorch_model.safetensors.gz"))
	if err != nil {
		t.Fatalf("pixarttest: %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("pixarttest: colour VAE weights: %v", err)
	}
	weights, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("pixarttest: colour VAE weights: %v", err)
	}
	if err := os.WriteFile(filepath.Join(vae, "diffusion_pytorch_model.safetensors"), weights, 0o644); err != nil {
		t.Fatalf("pixarttest: %v", err)
	}
	return dir
}

// Serve starts a fake Hub holding the tiny pipeline (PipelineDir's files) as RepoID on its
// main branch and returns the Hub (its URL is the HF_ENDPOINT to give the trainer) and the
// commit.
func Serve(t testing.TB) (*hfhubtest.Hub, string) {
	t.Helper()
	return ServeDir(t, PipelineDir(t), RepoID)
}

// ServeDir starts a fake Hub holding the pipeline directory dir as repoID on its main branch
// and returns the Hub and the commit.
func ServeDir(t testing.TB, dir, repoID string) (*hfhubtest.Hub, string) {
	t.Helper()
	files, err := hfhubtest.DirFiles(dir)
	if err != nil {
		t.Fatalf("pixarttest: %v", err)
	}
	hub := hfhubtest.New(t)
	return hub, hub.Commit(repoID, "main", files)
}
