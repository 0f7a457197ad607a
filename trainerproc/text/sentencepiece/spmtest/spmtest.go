// Package spmtest gives other packages' tests the SentencePiece models trained for the
// tokenizer's golden tests (trainerproc/text/sentencepiece/testdata/models, gzipped there).
package spmtest

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// T5Model is a Unigram model with T5's ids (pad 0, </s> 1, unk 2) and normalizer
// (nmt_nfkc), 1,000 pieces.
const T5Model = "uni1k"

// WriteModel decompresses the test model name ("uni1k", …) to dst, creating dst's
// directory. The models are found next to this source file, so any package's test can call
// it whatever its working directory.
func WriteModel(t testing.TB, name, dst string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	in, err := os.Open(filepath.Join(filepath.Dir(file), "..", "testdata", "models", name+".model.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
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
