package sentencepiece

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// goldenModels are the models testdata/gen_golden.py trains; the fixture
// holds the reference ids of every caption for each of them.
var goldenModels = []string{"uni1k", "uni2k_bytes", "uni800_cf_udef", "uni600_ident"}

func readGzip(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func loadGoldenTokenizer(t testing.TB, name string) *Tokenizer {
	t.Helper()
	m, err := ParseModel(readGzip(t, filepath.Join("testdata", "models", name+".model.gz")))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := NewTokenizer(m)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type goldenRecord struct {
	Text string
	IDs  map[string][]int
}

func readGolden(t testing.TB) []goldenRecord {
	t.Helper()
	data := readGzip(t, filepath.Join("testdata", "golden.jsonl.gz"))
	var recs []goldenRecord
	sc := bufio.NewScanner(bytesReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatal(err)
		}
		r := goldenRecord{IDs: map[string][]int{}}
		if err := json.Unmarshal(raw["text"], &r.Text); err != nil {
			t.Fatal(err)
		}
		for _, name := range goldenModels {
			var ids []int
			if err := json.Unmarshal(raw[name], &ids); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			r.IDs[name] = ids
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestGoldenEncode checks Encode against the reference library, id for id,
// on every caption of the fixture and every model.
func TestGoldenEncode(t *testing.T) {
	recs := readGolden(t)
	if len(recs) < 2000 {
		t.Fatalf("fixture has %d captions, want at least 2000", len(recs))
	}
	for _, name := range goldenModels {
		t.Run(name, func(t *testing.T) {
			tok := loadGoldenTokenizer(t, name)
			bad := 0
			for _, r := range recs {
				got := tok.Encode(r.Text)
				if want := r.IDs[name]; !slices.Equal(got, want) {
					if bad++; bad <= 5 {
						t.Errorf("Encode(%q)\n normalized %q\n pieces %q\n got  %v\n want %v", r.Text, tok.Normalize(r.Text), tok.EncodePieces(r.Text), got, want)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d captions differ", bad, len(recs))
			}
		})
	}
}

// TestGoldenT5 checks the T5 post-processing on the reference ids: pieces
// cut to maxLen-1, </s>, padding; the long captions of the fixture exercise
// the truncation.
func TestGoldenT5(t *testing.T) {
	recs := readGolden(t)
	for _, name := range goldenModels {
		tok := loadGoldenTokenizer(t, name)
		for _, maxLen := range []int{1, 2, 64, 300} {
			truncated := 0
			for _, r := range recs {
				got, err := tok.EncodeT5(r.Text, maxLen)
				if err != nil {
					t.Fatal(err)
				}
				want := r.IDs[name]
				if len(want) > maxLen-1 {
					want = want[:maxLen-1]
					truncated++
				}
				n := len(want)
				want = append(slices.Clone(want), 1) // </s>: eos id 1 in every fixture model
				mask := make([]int, maxLen)
				for i := range mask {
					if i <= n {
						mask[i] = 1
					} else {
						want = append(want, 0) // pad id 0
					}
				}
				if !slices.Equal(got.IDs, want) || !slices.Equal(got.AttentionMask, mask) || got.Truncated != (len(r.IDs[name]) > maxLen-1) {
					t.Fatalf("%s EncodeT5(%q, %d) = %+v, want ids %v mask %v", name, r.Text, maxLen, got, want, mask)
				}
			}
			if maxLen == 64 && truncated == 0 {
				t.Errorf("%s: no caption longer than %d pieces; the fixture should exercise truncation", name, maxLen)
			}
		}
	}
}

func TestLoadTokenizer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spiece.model")
	if err := os.WriteFile(path, readGzip(t, filepath.Join("testdata", "models", "uni1k.model.gz")), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != len(tok.Model().Pieces) || tok.VocabSize() == 0 {
		t.Errorf("VocabSize = %d", tok.VocabSize())
	}
	if _, err := LoadTokenizer(filepath.Join(t.TempDir(), "missing.model")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.model")
	if err := os.WriteFile(bad, []byte{0xff}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokenizer(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad file: err = %v, want ErrMalformed", err)
	}
}

// TestConcurrentEncode runs one tokenizer from several goroutines (meant
// for -race): encoding must not mutate shared state.
func TestConcurrentEncode(t *testing.T) {
	recs := readGolden(t)[:200]
	tok := loadGoldenTokenizer(t, "uni2k_bytes")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, r := range recs {
				if got := tok.Encode(r.Text); !slices.Equal(got, r.IDs["uni2k_bytes"]) {
					t.Errorf("Encode(%q) differs under concurrency", r.Text)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkEncodeT5(b *testing.B) {
	recs := readGolden(b)
	tok := loadGoldenTokenizer(b, "uni2k_bytes")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := tok.EncodeT5(recs[i%len(recs)].Text, 300); err != nil {
			b.Fatal(err)
		}
	}
}
