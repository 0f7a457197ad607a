package sentencepiece

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// protoPiece is a piece for buildModel; typ 0 leaves the type field out.
type protoPiece struct {
	text  string
	score float32
	typ   PieceType
}

// buildModel serializes a ModelProto with the given pieces; trainer and
// normalizer are appended as already-encoded submessages (nil: absent).
func buildModel(pieces []protoPiece, trainer, normalizer []byte) []byte {
	var b []byte
	for _, p := range pieces {
		var m []byte
		m = protowire.AppendTag(m, fieldPieceText, protowire.BytesType)
		m = protowire.AppendString(m, p.text)
		m = protowire.AppendTag(m, fieldPieceScore, protowire.Fixed32Type)
		m = protowire.AppendFixed32(m, math.Float32bits(p.score))
		if p.typ != 0 {
			m = protowire.AppendTag(m, fieldPieceType, protowire.VarintType)
			m = protowire.AppendVarint(m, uint64(p.typ))
		}
		b = protowire.AppendTag(b, fieldModelPieces, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	if trainer != nil {
		b = protowire.AppendTag(b, fieldModelTrainer, protowire.BytesType)
		b = protowire.AppendBytes(b, trainer)
	}
	if normalizer != nil {
		b = protowire.AppendTag(b, fieldModelNormalizer, protowire.BytesType)
		b = protowire.AppendBytes(b, normalizer)
	}
	return b
}

// varints encodes int32 fields the way protobuf does (negatives sign-extended).
func varints(fields map[protowire.Number]int) []byte {
	var b []byte
	nums := make([]protowire.Number, 0, len(fields))
	for n := range fields {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for _, n := range nums {
		b = protowire.AppendTag(b, n, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(fields[n])))
	}
	return b
}

// t5Trainer is a trainer spec with T5's ids: pad 0, eos 1, unk 2, no bos.
func t5Trainer(extra map[protowire.Number]int) []byte {
	f := map[protowire.Number]int{
		fieldTrainerModelType: int(UnigramModel), fieldTrainerUnkID: 2,
		fieldTrainerBOSID: -1, fieldTrainerEOSID: 1, fieldTrainerPadID: 0,
	}
	for k, v := range extra {
		f[k] = v
	}
	return varints(f)
}

// basePieces is a small vocabulary covering the encoder's decisions.
var basePieces = []protoPiece{
	{"<pad>", 0, Control},
	{"</s>", 0, Control},
	{"<unk>", 0, Unknown},
	{"▁a", -1, 0}, // type absent: Normal by default
	{"a", -2, Normal},
	{"b", -2, Normal},
	{"▁", -3, Normal},
	{"ab", -1.5, Normal},
	{"<u>", 0, UserDefined},
	{"x", -0.5, Unused},
}

func TestParseModel(t *testing.T) {
	p, err := ParseModel(buildModel(basePieces, t5Trainer(nil), nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Pieces) != len(basePieces) || p.Pieces[3] != (Piece{"▁a", -1, Normal}) || p.Pieces[8].Type != UserDefined {
		t.Errorf("pieces = %+v", p.Pieces)
	}
	wantTrainer := TrainerSpec{ModelType: UnigramModel, UnkID: 2, BOSID: -1, EOSID: 1, PadID: 0}
	if p.Trainer != wantTrainer {
		t.Errorf("trainer = %+v, want %+v", p.Trainer, wantTrainer)
	}
	// An absent normalizer spec takes the proto defaults.
	if n := p.Normalizer; !n.AddDummyPrefix || !n.RemoveExtraWhitespaces || !n.EscapeWhitespaces || n.PrecompiledCharsmap != nil {
		t.Errorf("normalizer = %+v, want the defaults", n)
	}

	// Absent trainer fields take the proto defaults too.
	d, err := ParseModel(buildModel(basePieces, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := (TrainerSpec{ModelType: UnigramModel, UnkID: 0, BOSID: 1, EOSID: 2, PadID: -1}); d.Trainer != want {
		t.Errorf("default trainer = %+v, want %+v", d.Trainer, want)
	}

	// Unknown fields of every wire type are skipped.
	var extra []byte
	extra = protowire.AppendTag(extra, 99, protowire.Fixed64Type)
	extra = protowire.AppendFixed64(extra, 7)
	extra = protowire.AppendTag(extra, 98, protowire.BytesType)
	extra = protowire.AppendString(extra, "ignored")
	extra = protowire.AppendTag(extra, 97, protowire.StartGroupType)
	extra = protowire.AppendTag(extra, 97, protowire.EndGroupType)
	if _, err := ParseModel(append(buildModel(basePieces, nil, nil), extra...)); err != nil {
		t.Errorf("unknown fields: %v", err)
	}
}

func TestParseModelErrors(t *testing.T) {
	good := buildModel(basePieces, t5Trainer(nil), nil)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-3]},
		{"bad tag", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"piece type out of range", buildModel([]protoPiece{{"z", 0, 9}}, nil, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseModel(tc.data); !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestNewTokenizerErrors(t *testing.T) {
	bytePieces := append(slices.Clone(basePieces), protoPiece{"<0x00>", 0, Byte})
	shortCharsmap := protowire.AppendBytes(protowire.AppendTag(nil, fieldNormCharsmap, protowire.BytesType), []byte{1, 2})
	badSize := protowire.AppendBytes(protowire.AppendTag(nil, fieldNormCharsmap, protowire.BytesType), []byte{0xff, 0, 0, 0, 1, 2, 3, 4})
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"bpe", buildModel(basePieces, t5Trainer(map[protowire.Number]int{fieldTrainerModelType: int(BPEModel)}), nil), ErrUnsupported},
		{"no unk", buildModel(basePieces[3:], t5Trainer(nil), nil), ErrMalformed},
		{"two unk", buildModel(append(slices.Clone(basePieces), protoPiece{"<unk2>", 0, Unknown}), t5Trainer(nil), nil), ErrMalformed},
		{"duplicate", buildModel(append(slices.Clone(basePieces), protoPiece{"ab", -1, Normal}), t5Trainer(nil), nil), ErrMalformed},
		{"bad byte piece", buildModel(append(slices.Clone(basePieces), protoPiece{"<0xZZ>", 0, Byte}), t5Trainer(nil), nil), ErrMalformed},
		{"byte fallback missing bytes", buildModel(bytePieces, t5Trainer(map[protowire.Number]int{fieldTrainerByteFallback: 1}), nil), ErrMalformed},
		{"short charsmap", buildModel(basePieces, t5Trainer(nil), shortCharsmap), ErrMalformed},
		{"charsmap size past end", buildModel(basePieces, t5Trainer(nil), badSize), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseModel(tc.data)
			if err == nil {
				_, err = NewTokenizer(m)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func newTestTokenizer(t *testing.T, pieces []protoPiece, trainer, normalizer []byte) *Tokenizer {
	t.Helper()
	m, err := ParseModel(buildModel(pieces, trainer, normalizer))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := NewTokenizer(m)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestNormalizeWhitespace(t *testing.T) {
	flags := func(dummy, remove, escape int) []byte {
		return varints(map[protowire.Number]int{
			fieldNormAddDummyPrefix: dummy, fieldNormRemoveExtraSpaces: remove, fieldNormEscapeSpaces: escape,
		})
	}
	for _, tc := range []struct {
		name       string
		normalizer []byte
		suffix     bool
		in, want   string
	}{
		{"defaults", nil, false, "  a  b  ", "▁a▁b"},
		{"only spaces", nil, false, "   ", ""},
		{"empty", nil, false, "", ""},
		{"keep extra spaces", flags(1, 0, 1), false, " a  b ", "▁▁a▁▁b▁"},
		{"no dummy prefix", flags(0, 1, 1), false, "a b", "a▁b"},
		{"no escape", flags(1, 1, 0), false, " a  b ", " a b"},
		{"suffix", nil, true, "a  b ", "a▁b▁"},
		{"tab is not a space without a charsmap", nil, false, "a\tb", "▁a\tb"},
		{"invalid utf-8 byte", nil, false, "a\xffb", "▁a\uFFFDb"},
		{"existing marker kept", nil, false, "▁a", "▁▁a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			suffix := 0
			if tc.suffix {
				suffix = 1
			}
			tok := newTestTokenizer(t, basePieces, t5Trainer(map[protowire.Number]int{fieldTrainerWSAsSuffix: suffix}), tc.normalizer)
			if got := tok.Normalize(tc.in); got != tc.want {
				t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestEncodeDecisions(t *testing.T) {
	tok := newTestTokenizer(t, basePieces, t5Trainer(nil), nil)
	for _, tc := range []struct {
		name       string
		in         string
		wantIDs    []int
		wantPieces []string
	}{
		{"best total score", "ab", []int{3, 5}, []string{"▁a", "b"}},
		{"consecutive unknowns merge", "zz", []int{6, 2}, []string{"▁", "zz"}},
		{"unknowns split by a piece", "zaz", []int{6, 2, 4, 2}, []string{"▁", "z", "a", "z"}},
		{"unused piece is never produced", "x", []int{6, 2}, []string{"▁", "x"}},
		{"user-defined piece wins", "<u>b", []int{6, 8, 5}, []string{"▁", "<u>", "b"}},
		{"control piece text is not matched", "</s>", []int{6, 2}, []string{"▁", "</s>"}},
		{"empty", "", []int{}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tok.Encode(tc.in); !slices.Equal(got, tc.wantIDs) {
				t.Errorf("Encode(%q) = %v, want %v", tc.in, got, tc.wantIDs)
			}
			if got := tok.EncodePieces(tc.in); !slices.Equal(got, tc.wantPieces) {
				t.Errorf("EncodePieces(%q) = %q, want %q", tc.in, got, tc.wantPieces)
			}
		})
	}
}

func TestByteFallback(t *testing.T) {
	pieces := slices.Clone(basePieces)
	for b := range 256 {
		pieces = append(pieces, protoPiece{fmt.Sprintf("<0x%02X>", b), 0, Byte})
	}
	tok := newTestTokenizer(t, pieces, t5Trainer(map[protowire.Number]int{fieldTrainerByteFallback: 1}), nil)
	first := len(basePieces)
	got := tok.Encode("aé")
	want := []int{3, first + 0xC3, first + 0xA9}
	if !slices.Equal(got, want) {
		t.Errorf("Encode(aé) = %v, want %v", got, want)
	}
}

func TestEncodeT5Errors(t *testing.T) {
	tok := newTestTokenizer(t, basePieces, t5Trainer(nil), nil)
	if _, err := tok.EncodeT5("a", 0); err == nil {
		t.Error("max length 0 accepted")
	}
	noPad := newTestTokenizer(t, basePieces, t5Trainer(map[protowire.Number]int{fieldTrainerPadID: -1}), nil)
	if _, err := noPad.EncodeT5("a", 8); !errors.Is(err, ErrNoSpecialPiece) {
		t.Errorf("no pad: err = %v, want ErrNoSpecialPiece", err)
	}
	noEOS := newTestTokenizer(t, basePieces, t5Trainer(map[protowire.Number]int{fieldTrainerEOSID: -1}), nil)
	if _, err := noEOS.EncodeT5("a", 8); !errors.Is(err, ErrNoSpecialPiece) {
		t.Errorf("no eos: err = %v, want ErrNoSpecialPiece", err)
	}
	enc, err := tok.EncodeT5("ab", 5)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{3, 5, 1, 0, 0}; !slices.Equal(enc.IDs, want) || !slices.Equal(enc.AttentionMask, []int{1, 1, 1, 0, 0}) || enc.Truncated {
		t.Errorf("EncodeT5(ab, 5) = %+v", enc)
	}
}
