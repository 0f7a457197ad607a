package hfhub

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"simpletuner/trainerproc/hfhub/hfhubtest"
)

func TestResolveLocalOrRepo(t *testing.T) {
	local := t.TempDir()
	if err := os.WriteFile(filepath.Join(local, "model_index.json"), []byte(`{"vae":["diffusers","AutoencoderKL"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(local, "vae"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, "vae", "config.json"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(local, "model_index.json")
	// No Hub at all: local answers must not need one, and bad names must fail before it.
	c := NewClient(Config{CacheDir: t.TempDir(), Endpoint: "http://127.0.0.1:1", Offline: true})
	ctx := context.Background()
	tests := []struct {
		name, in, sub string
		pipeline      bool
		want          string
		err           error
	}{
		{"local pipeline", local, "", true, local, nil},
		{"local component", local, "vae", false, filepath.Join(local, "vae"), nil},
		{"local without index", filepath.Join(local, "vae"), "", true, "", ErrNotAModel},
		{"local component without config", local, "", false, "", ErrNotAModel},
		{"a file", file, "", true, "", ErrNotAModel},
		{"missing absolute path", filepath.Join(local, "nope"), "", true, "", ErrNotAModel},
		{"missing relative path", "./nope-dir", "", true, "", ErrNotAModel},
		{"not a repo id", "a/b/c", "", true, "", ErrNotAModel},
		{"repo id offline, not cached", "org/model", "", true, "", ErrOffline},
		{"component repo offline, not cached", "org/vae", "", false, "", ErrOffline},
		{"subfolder escaping", local, "../x", false, "", ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			var err error
			if tt.pipeline {
				got, err = c.ResolvePipeline(ctx, tt.in, "", PipelineOptions{})
			} else {
				got, err = c.ResolveComponent(ctx, tt.in, "", tt.sub, "")
			}
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestResolveComponentFromHub(t *testing.T) {
	hub := hfhubtest.New(t)
	hub.Commit("org/vae-fix", "main", map[string]hfhubtest.File{
		"README.md":                                 {Content: []byte("# vae")},
		"config.json":                               {Content: []byte(`{"scaling_factor":0.13025}`)},
		"diffusion_pytorch_model.safetensors":       {Content: content(1500, 8), LFS: true},
		"diffusion_pytorch_model.fp16.safetensors":  {Content: content(800, 9), LFS: true},
		"sdxl_vae.safetensors":                      {Content: content(700, 10), LFS: true},
		"other/config.json":                         {Content: []byte(`{}`)},
		"other/diffusion_pytorch_model.safetensors": {Content: content(300, 11), LFS: true},
	})
	cacheDir := t.TempDir()
	c := NewClient(Config{CacheDir: cacheDir, Endpoint: hub.URL})
	ctx := context.Background()
	dir, err := c.ResolveComponent(ctx, "org/vae-fix", "main", "", "fp16")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"config.json", "diffusion_pytorch_model.fp16.safetensors"}
	if len(names) != len(want) || names[0] != want[0] || names[1] != want[1] {
		t.Fatalf("root component files %q, want %q", names, want)
	}
	sub, err := c.ResolveComponent(ctx, "org/vae-fix", "main", "other", "fp16")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sub, "diffusion_pytorch_model.safetensors")); err != nil {
		t.Fatalf("fallback to plain weights: %v", err)
	}
	if _, err := c.ResolveComponent(ctx, "org/vae-fix", "main", "missing", ""); !errors.Is(err, ErrEntryNotFound) {
		t.Fatalf("missing subfolder: %v", err)
	}
	off := NewClient(Config{CacheDir: cacheDir, Endpoint: hub.URL, Offline: true})
	before := len(hub.Requests())
	if d, err := off.ResolveComponent(ctx, "org/vae-fix", "main", "", "fp16"); err != nil || d != dir {
		t.Fatalf("offline: %s %v", d, err)
	}
	if n := len(hub.Requests()) - before; n != 0 {
		t.Fatalf("offline made %d requests", n)
	}
}
