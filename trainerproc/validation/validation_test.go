package validation

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/model"
)

func TestPreviewSteps(t *testing.T) {
	tests := []struct {
		total, every int
		want         []int
	}{
		{20, 4, []int{1, 5, 9, 13, 17, 20}}, // the seed tutorial's example
		{20, 1, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}},
		{20, 0, PreviewSteps(20, 1)},
		{9, 4, []int{1, 5, 9}}, // the last step is already on the cadence
		{1, 4, []int{1}},
		{3, 10, []int{1, 3}},
		{0, 4, nil},
	}
	for _, tc := range tests {
		got := PreviewSteps(tc.total, tc.every)
		if !slices.Equal(got, tc.want) {
			t.Errorf("PreviewSteps(%d, %d) = %v, want %v", tc.total, tc.every, got, tc.want)
		}
		for s := 0; s <= tc.total+1; s++ {
			if IsPreviewStep(s, tc.total, tc.every) != slices.Contains(tc.want, s) {
				t.Errorf("IsPreviewStep(%d, %d, %d) disagrees with PreviewSteps", s, tc.total, tc.every)
			}
		}
	}
}

func TestParseResolutions(t *testing.T) {
	tests := []struct {
		in   string
		want []Resolution
		bad  bool
	}{
		{"32", []Resolution{{32, 32}}, false},
		{"48x32", []Resolution{{48, 32}}, false},
		{"32, 48x32,16X16", []Resolution{{32, 32}, {48, 32}, {16, 16}}, false},
		{"31", nil, true},
		{"", nil, true},
		{"axb", nil, true},
		{"0", nil, true},
		{"32x", nil, true},
	}
	for _, tc := range tests {
		got, err := ParseResolutions(tc.in, 2)
		if tc.bad != (err != nil) || (!tc.bad && !slices.Equal(got, tc.want)) {
			t.Errorf("ParseResolutions(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("error %v does not wrap ErrConfig", err)
		}
	}
}

func TestPromptsAndNames(t *testing.T) {
	lib, err := LoadPromptLibrary(`{"b": "blue circle", "a": "red square"}`)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "lib.json")
	os.WriteFile(p, []byte(`{"x": "y"}`), 0o644)
	if fromFile, err := LoadPromptLibrary(p); err != nil || fromFile["x"] != "y" {
		t.Fatalf("library from file: %v %v", fromFile, err)
	}
	if _, err := LoadPromptLibrary(`{"a": ""}`); !errors.Is(err, ErrConfig) {
		t.Fatalf("empty prompt accepted: %v", err)
	}
	got := Prompts("hello", lib)
	want := []Prompt{{"validation", "hello"}, {"a", "red square"}, {"b", "blue circle"}}
	if !slices.Equal(got, want) {
		t.Fatalf("Prompts = %v", got)
	}
	if n := FileName(40, "night bench/../x", Resolution{48, 32}); n != "step_40_night_bench____x_48x32.png" {
		t.Fatalf("FileName = %q", n)
	}
}

func tinyModel(t *testing.T) (*model.Model, *data.Tokenizer) {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 2, BLAS: blas.ChoiceGonum})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(be)
	cfg, _ := model.Flavour("tiny")
	m, err := model.New(e, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Free(); be.Close() })
	tok, err := data.NewTokenizer(cfg.MaxTokens)
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

func TestSamplerDeterministicWithPreviews(t *testing.T) {
	m, tok := tinyModel(t)
	s := &Sampler{Model: m, Tokenizer: tok}
	var steps []int
	req := Request{Prompt: "red", Resolution: Resolution{16, 8}, Steps: 10, Guidance: 3, Seed: 7, PreviewEvery: 4,
		Preview: func(p Preview) { steps = append(steps, p.Step); _ = p.Image }}
	a, err := s.Sample(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(steps, []int{1, 5, 9, 10}) {
		t.Fatalf("previews at %v", steps)
	}
	if a.Bounds().Dx() != 16 || a.Bounds().Dy() != 8 {
		t.Fatalf("image %v", a.Bounds())
	}
	req.Preview = nil
	b, _ := s.Sample(context.Background(), req)
	if !bytes.Equal(a.Pix, b.Pix) {
		t.Fatal("same seed, different image")
	}
	req.Seed = 8
	c, _ := s.Sample(context.Background(), req)
	if bytes.Equal(a.Pix, c.Pix) {
		t.Fatal("different seeds, same image")
	}
	if _, err := s.Sample(context.Background(), Request{Resolution: Resolution{15, 16}, Steps: 1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("odd resolution: %v", err)
	}
	// A PNG asset round-trips.
	pngData, err := EncodePNG(a)
	if err != nil {
		t.Fatal(err)
	}
	asset := PNGAsset(pngData)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(asset.Src, "data:image/png;base64,"))
	if err != nil || asset.MimeType != "image/png" {
		t.Fatal(err)
	}
	if img, err := png.Decode(bytes.NewReader(raw)); err != nil || img.Bounds() != a.Bounds() {
		t.Fatalf("decode: %v", err)
	}
}
