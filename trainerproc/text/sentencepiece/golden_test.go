package sentencepiece

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// goldenModels are the models testdata/gen_golden.py trains; the fixture
// holds the reference ids of every caption for each of them.
var goldenModels = []string{"uni1k", "uni2k_bytes", "uni800_cf_udef", "uni600_ident"}

func readGzip(t *testing.T, path string) []byte {
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

func loadGoldenTokenizer(t *testing.T, name string) *Tokenizer {
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

func readGolden(t *testing.T) []goldenRecord {
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
