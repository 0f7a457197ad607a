// Package encoderstest lays out small diffusers pipeline directories for tests of latent
// families: the tiny VAE fixture of trainerproc/vae as vae/, a small random T5 encoder as
// text_encoder/ and a SentencePiece model with T5's ids as tokenizer/spiece.model.
package encoderstest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/t5"
	"simpletuner/trainerproc/text/sentencepiece"
	"simpletuner/trainerproc/text/sentencepiece/spmtest"
)

// Fixture files, relative to trainerproc/.
const (
	// tinyVAE is the VAE fixture (4 latent channels, downscale 4, scaling_factor 0.13025).
	tinyVAE = "vae/testdata/tiny"
	// tinyT5Config is the T5 fixture's config (d_model 32, 3 layers, 4 heads); its
	// vocabulary is widened to the tokenizer's.
	tinyT5Config = "t5/testdata/tiny/config.json"
)

// trainerproc is the trainerproc/ directory of this source tree: the fixtures are read from
// there whatever package's test calls in.
func trainerproc() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// PipelineDir writes a pipeline directory (model_index.json, vae/, text_encoder/, tokenizer/) into a new
// temporary directory and returns it. The T5 weights are drawn from seed.
func PipelineDir(t testing.TB, seed uint64) string {
	t.Helper()
	dir := t.TempDir()
	root := trainerproc()
	index := `{"_class_name": "ToyLatentPipeline", "vae": ["diffusers", "AutoencoderKL"], ` +
		`"text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5Tokenizer"]}`
	if err := os.WriteFile(filepath.Join(dir, "model_index.json"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"config.json", "diffusion_pytorch_model.safetensors"} {
		copyFile(t, filepath.Join(root, tinyVAE, name), filepath.Join(dir, "vae", name))
	}
	tokPath := filepath.Join(dir, filepath.FromSlash(t5.TokenizerModel))
	spmtest.WriteModel(t, spmtest.T5Model, tokPath)
	tok, err := sentencepiece.LoadTokenizer(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, tinyT5Config))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["vocab_size"] = tok.VocabSize()
	if raw, err = json.MarshalIndent(doc, "", "  "); err != nil {
		t.Fatal(err)
	}
	cfg, err := t5.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	m, err := t5.NewRandom(NewEngine(t), cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	enc := filepath.Join(dir, t5.TextEncoderDir)
	if err := os.MkdirAll(enc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(enc); err != nil {
		t.Fatal(err)
	}
	return dir
}

// NewEngine is a one-thread float32 CPU engine, closed when the test ends.
func NewEngine(t testing.TB) *engine.Engine {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: blas.ChoiceGonum})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return engine.New(be)
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
