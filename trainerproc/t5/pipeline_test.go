package t5

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/trainerproc/text/sentencepiece"
	"simpletuner/trainerproc/text/sentencepiece/spmtest"
)

// pipelineDir lays out a diffusers pipeline directory with a random encoder whose
// vocabulary covers the tokenizer's.
func pipelineDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	tokPath := filepath.Join(dir, filepath.FromSlash(TokenizerModel))
	spmtest.WriteModel(t, spmtest.T5Model, tokPath)
	tok, err := sentencepiece.LoadTokenizer(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := smallConfig(t, "gated-gelu")
	cfg.VocabSize = tok.VocabSize()
	cfg.raw = nil
	e, _ := newEngine(t)
	m := randomEncoder(t, e, cfg, 9)
	enc := filepath.Join(dir, TextEncoderDir)
	if err := os.Mkdir(enc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(enc); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPipelineEncode checks Encode against the tokenizer and the encoder run by hand: the
// preprocessing is applied, each caption is cut to maxLen with </s> and padding, the mask
// marks the real tokens, and the hidden states are the encoder's for those ids and mask.
func TestPipelineEncode(t *testing.T) {
	dir := pipelineDir(t)
	e, _ := newEngine(t)
	p, err := LoadPipeline(e, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	p.Preprocess = func(s string) string { return PixArtPrompt(s, true) }
	captions := []string{
		"A “Photo” of a CAT sitting on a mat",
		"tiny",
		strings.Repeat("a very long caption that will not fit ", 10),
	}
	const maxLen = 24
	out, err := p.Encode(captions, maxLen)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	if got := out.Hidden.Shape(); !slices.Equal(got, []int{3, maxLen, p.Encoder.Config().DModel}) {
		t.Fatalf("hidden shape %v", got)
	}
	var ids, mask []int32
	for i, c := range captions {
		enc, err := p.Tokenizer.EncodeT5(PixArtPrompt(c, true), maxLen)
		if err != nil {
			t.Fatal(err)
		}
		for j := range enc.IDs {
			ids = append(ids, int32(enc.IDs[j]))
			mask = append(mask, int32(enc.AttentionMask[j]))
		}
		if out.Truncated[i] != enc.Truncated {
			t.Errorf("caption %d: truncated %v, want %v", i, out.Truncated[i], enc.Truncated)
		}
	}
	if !out.Truncated[2] || out.Truncated[1] {
		t.Errorf("truncation flags %v", out.Truncated)
	}
	if !slices.Equal(out.IDs, ids) {
		t.Fatalf("ids %v, want %v", out.IDs, ids)
	}
	gotMask := hostOf(t, out.Mask)
	for i, v := range mask {
		if gotMask[i] != float32(v) {
			t.Fatalf("mask[%d] = %v, want %d", i, gotMask[i], v)
		}
	}
	want, err := p.Encoder.Forward(ids, mask, len(captions))
	if err != nil {
		t.Fatal(err)
	}
	defer want.Free()
	if !slices.Equal(hostOf(t, out.Hidden), hostOf(t, want)) {
		t.Error("hidden states differ from the encoder run on the same ids and mask")
	}
	if _, err := p.Encode(nil, maxLen); !errors.Is(err, ErrInput) {
		t.Errorf("empty batch: err = %v, want ErrInput", err)
	}
}
