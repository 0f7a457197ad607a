package sentencepiece

import (
	"strings"
	"testing"
)

// FuzzEncode checks invariants on arbitrary text (invalid UTF-8 included):
// no panic, ids in range, and the pieces spell the normalized text.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"", " ", "a\xffb", "Ⅻ ｶﾀｶﾅ 😀", "<sks>\t\n4k", "\x00\u2581"} {
		f.Add(s)
	}
	tok := loadGoldenTokenizer(f, "uni800_cf_udef")
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s)
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode(%q) gave id %d", s, id)
			}
		}
		if got, want := strings.Join(tok.EncodePieces(s), ""), tok.Normalize(s); got != want {
			t.Fatalf("pieces of %q spell %q, normalized %q", s, got, want)
		}
		if enc, err := tok.EncodeT5(s, 16); err != nil || len(enc.IDs) != 16 {
			t.Fatalf("EncodeT5(%q) = %v, %v", s, enc, err)
		}
	})
}

// FuzzParseModel feeds arbitrary bytes to the reader and the tokenizer
// constructor: they may refuse, never panic.
func FuzzParseModel(f *testing.F) {
	f.Add(buildModel(basePieces, t5Trainer(nil), nil))
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseModel(data)
		if err != nil {
			return
		}
		if tok, err := NewTokenizer(m); err == nil {
			tok.Encode("a b\xff")
		}
	})
}
