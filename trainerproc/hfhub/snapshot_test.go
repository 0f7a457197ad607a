package hfhub

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"simpletuner/trainerproc/hfhub/hfhubtest"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"vae/*", "vae/config.json", true},
		{"vae/*", "vae/sub/x.bin", true},
		{"vae/", "vae/config.json", true},
		{"*.json", "vae/config.json", true},
		{"*.json", "model.safetensors", false},
		{"model_index.json", "model_index.json", true},
		{"model_index.json", "xmodel_index.json", false},
		{"text_encoder/model-0000?-of-00002.safetensors", "text_encoder/model-00001-of-00002.safetensors", true},
		{"[!v]*/config.json", "vae/config.json", false},
		{"[!v]*/config.json", "unet/config.json", true},
		{"a.b", "aXb", false},
		{`vae\*`, "vae/x", true},
	}
	for _, tt := range tests {
		if got := globRE(tt.pattern).MatchString(tt.name); got != tt.want {
			t.Errorf("glob %q on %q = %v", tt.pattern, tt.name, got)
		}
	}
}

func TestWeightVariant(t *testing.T) {
	tests := []struct {
		name, variant string
		weight        bool
	}{
		{"vae/diffusion_pytorch_model.safetensors", "", true},
		{"vae/diffusion_pytorch_model.fp16.safetensors", "fp16", true},
		{"te/model-00001-of-00002.safetensors", "", true},
		{"te/model.fp16-00001-of-00002.safetensors", "fp16", true},
		{"te/model.safetensors.index.json", "", true},
		{"te/model.safetensors.index.fp16.json", "fp16", true},
		{"te/config.json", "", false},
		{"te/pytorch_model.bin", "", false},
	}
	for _, tt := range tests {
		v, w := weightVariant(tt.name)
		if v != tt.variant || w != tt.weight {
			t.Errorf("weightVariant(%q) = %q, %v", tt.name, v, w)
		}
	}
}

func TestPipelineFiles(t *testing.T) {
	files := []string{
		"model_index.json", "README.md",
		"scheduler/scheduler_config.json",
		"text_encoder/config.json", "text_encoder/model.safetensors.index.json",
		"text_encoder/model-00001-of-00002.safetensors", "text_encoder/model-00002-of-00002.safetensors",
		"text_encoder/pytorch_model.bin",
		"tokenizer/spiece.model", "tokenizer/tokenizer_config.json",
		"transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
		"transformer/diffusion_pytorch_model.fp16.safetensors",
		"vae/config.json", "vae/diffusion_pytorch_model.safetensors",
	}
	comps := []string{"scheduler", "text_encoder", "tokenizer", "transformer", "vae"}
	plain := pipelineFiles(files, comps, "")
	// Configs first, then the weights of the component in listing order (the shard index
	// counts as a weight file of its variant).
	want := []string{
		"scheduler/scheduler_config.json",
		"text_encoder/config.json", "text_encoder/model.safetensors.index.json",
		"text_encoder/model-00001-of-00002.safetensors", "text_encoder/model-00002-of-00002.safetensors",
		"tokenizer/spiece.model", "tokenizer/tokenizer_config.json",
		"transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
		"vae/config.json", "vae/diffusion_pytorch_model.safetensors",
	}
	if !reflect.DeepEqual(plain, want) {
		t.Fatalf("plain:\n got %q\nwant %q", plain, want)
	}
	fp16 := pipelineFiles(files, []string{"transformer", "vae"}, "fp16")
	wantFP16 := []string{
		"transformer/config.json", "transformer/diffusion_pytorch_model.fp16.safetensors",
		"vae/config.json", "vae/diffusion_pytorch_model.safetensors", // no fp16 vae: plain one
	}
	if !reflect.DeepEqual(fp16, wantFP16) {
		t.Fatalf("fp16:\n got %q\nwant %q", fp16, wantFP16)
	}
}

func TestPipelineComponents(t *testing.T) {
	got, err := PipelineComponents([]byte(`{"_class_name":"PixArtSigmaPipeline","_diffusers_version":"0.30.0",
		"scheduler":["diffusers","DPMSolverMultistepScheduler"],"text_encoder":["transformers","T5EncoderModel"],
		"tokenizer":["transformers","T5Tokenizer"],"transformer":["diffusers","PixArtTransformer2DModel"],
		"vae":["diffusers","AutoencoderKL"],"safety_checker":[null,null],"requires_safety_checker":false}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"scheduler", "text_encoder", "tokenizer", "transformer", "vae"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q", got)
	}
	if _, err := PipelineComponents([]byte("nope")); err == nil {
		t.Fatal("bad json accepted")
	}
}

func TestDownloadPipelineAndSnapshot(t *testing.T) {
	hub := hfhubtest.New(t)
	files := map[string]hfhubtest.File{
		"model_index.json": {Content: []byte(`{"_class_name":"PixArtSigmaPipeline",
			"scheduler":["diffusers","DPMSolverMultistepScheduler"],"text_encoder":["transformers","T5EncoderModel"],
			"tokenizer":["transformers","T5Tokenizer"],"transformer":["diffusers","PixArtTransformer2DModel"],
			"vae":["diffusers","AutoencoderKL"]}`)},
		"README.md":                                            {Content: []byte("# card")},
		"scheduler/scheduler_config.json":                      {Content: []byte(`{}`)},
		"text_encoder/config.json":                             {Content: []byte(`{"d_model":8}`)},
		"text_encoder/model.safetensors":                       {Content: content(4000, 3), LFS: true},
		"tokenizer/spiece.model":                               {Content: content(900, 4), LFS: true},
		"transformer/config.json":                              {Content: []byte(`{"t":1}`)},
		"transformer/diffusion_pytorch_model.safetensors":      {Content: content(6000, 5), LFS: true},
		"transformer/diffusion_pytorch_model.bf16.safetensors": {Content: content(3000, 6), LFS: true},
		"vae/config.json":                                      {Content: []byte(`{"v":1}`)},
		"vae/diffusion_pytorch_model.safetensors":              {Content: content(2000, 7), LFS: true},
	}
	commit := hub.Commit("org/pixart", "main", files)
	cacheDir := t.TempDir()
	c := NewClient(Config{CacheDir: cacheDir, Endpoint: hub.URL})
	ctx := context.Background()
	dir, err := c.DownloadPipeline(ctx, "org/pixart", "main", PipelineOptions{Variant: "bf16"})
	if err != nil {
		t.Fatal(err)
	}
	if dir != (Cache{Dir: cacheDir}).SnapshotDir("org/pixart", commit) {
		t.Fatalf("dir %s", dir)
	}
	var got []string
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"model_index.json", "scheduler/scheduler_config.json",
		"text_encoder/config.json", "text_encoder/model.safetensors",
		"tokenizer/spiece.model",
		"transformer/config.json", "transformer/diffusion_pytorch_model.bf16.safetensors",
		"vae/config.json", "vae/diffusion_pytorch_model.safetensors",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("pipeline files:\n got %q\nwant %q", got, want)
	}

	// Offline, the same pipeline resolves from the cache without a request.
	before := len(hub.Requests())
	off := NewClient(Config{CacheDir: cacheDir, Endpoint: hub.URL, Offline: true})
	if d, err := off.DownloadPipeline(ctx, "org/pixart", "main", PipelineOptions{Components: []string{"vae"}}); err != nil || d != dir {
		t.Fatalf("offline pipeline: %s %v", d, err)
	}
	if n := len(hub.Requests()) - before; n != 0 {
		t.Fatalf("offline made %d requests", n)
	}
	if _, err := off.DownloadPipeline(ctx, "org/other", "main", PipelineOptions{}); !errors.Is(err, ErrOffline) {
		t.Fatalf("offline missing pipeline: %v", err)
	}
	// No revision means main, as for Download (the revision listing needs a name).
	if d, err := c.DownloadPipeline(ctx, "org/pixart", "", PipelineOptions{Variant: "bf16"}); err != nil || d != dir {
		t.Fatalf("pipeline without a revision: %s %v", d, err)
	}
	if _, err := c.DownloadPipeline(ctx, "org/pixart", "main", PipelineOptions{Components: []string{"unet"}}); !errors.Is(err, ErrEntryNotFound) {
		t.Fatalf("unknown component: %v", err)
	}

	// Snapshot with allow patterns fetches just those files.
	c2 := NewClient(Config{CacheDir: t.TempDir(), Endpoint: hub.URL})
	d2, err := c2.Snapshot(ctx, "org/pixart", "main", []string{"vae/*", "*.md"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"README.md", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"} {
		if _, err := os.Stat(filepath.Join(d2, f)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(d2, "model_index.json")); err == nil {
		t.Fatal("a file outside the patterns was downloaded")
	}

	// One bad file among many fails the whole snapshot with that file's error.
	hub.Corrupt("org/pixart", "transformer/diffusion_pytorch_model.safetensors", true)
	c3 := NewClient(Config{CacheDir: t.TempDir(), Endpoint: hub.URL})
	c3.Workers = 3
	if _, err := c3.Snapshot(ctx, "org/pixart", "main", nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("snapshot with a corrupted file: %v", err)
	}
}
