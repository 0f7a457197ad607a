// Package sentencepiece is a pure-Go SentencePiece Unigram tokenizer: it reads
// a spiece.model file (as shipped in the tokenizer/ folder of T5-based
// diffusers pipelines), normalizes text with the model's precompiled
// character map, segments it with the Viterbi algorithm over the pieces'
// scores, and applies T5's post-processing (</s>, truncation, padding, the
// attention mask). Its output matches the reference sentencepiece library id
// for id (see testdata/gen_golden.py).
package sentencepiece

import (
	"errors"
	"fmt"
	"math"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// Sentinel errors of the model reader and the tokenizer.
var (
	// ErrMalformed means the model file is not a valid SentencePiece ModelProto.
	ErrMalformed = errors.New("sentencepiece: malformed model")
	// ErrUnsupported means the model is valid but uses a feature this package
	// does not implement (a model type other than Unigram, for instance).
	ErrUnsupported = errors.New("sentencepiece: unsupported model")
)

// PieceType is the kind of a vocabulary entry, numbered as in the model file.
type PieceType int32

// Piece types, with the numbers the model file uses.
const (
	Normal      PieceType = 1 // an ordinary piece, found by segmentation
	Unknown     PieceType = 2 // the unknown piece (<unk>)
	Control     PieceType = 3 // a control symbol (<s>, </s>, <pad>): never produced from text
	UserDefined PieceType = 4 // always segmented as one piece when it occurs in text
	Unused      PieceType = 5 // in the vocabulary but never produced
	Byte        PieceType = 6 // a byte-fallback piece <0xXX>
)

// ModelType is the segmentation algorithm of a model, numbered as in the model file.
type ModelType int32

// Model types; only Unigram is implemented.
const (
	UnigramModel ModelType = 1
	BPEModel     ModelType = 2
	WordModel    ModelType = 3
	CharModel    ModelType = 4
)

// Piece is one vocabulary entry.
type Piece struct {
	Text  string
	Score float32
	Type  PieceType
}

// TrainerSpec holds the trainer settings the encoder needs. Ids are -1 when
// the model has no such symbol.
type TrainerSpec struct {
	ModelType    ModelType
	UnkID        int
	BOSID        int
	EOSID        int
	PadID        int
	ByteFallback bool
	// TreatWhitespaceAsSuffix puts the whitespace marker at the end of words
	// instead of the beginning.
	TreatWhitespaceAsSuffix bool
}

// NormalizerSpec holds the normalization settings of a model.
type NormalizerSpec struct {
	Name string
	// PrecompiledCharsmap is the compiled normalization rule: a double-array
	// trie of source strings and a pool of their replacements. Empty means
	// no replacement (the "identity" rule).
	PrecompiledCharsmap    []byte
	AddDummyPrefix         bool
	RemoveExtraWhitespaces bool
	EscapeWhitespaces      bool
}

// ModelProto is the part of a SentencePiece model file this package uses.
type ModelProto struct {
	Pieces     []Piece
	Trainer    TrainerSpec
	Normalizer NormalizerSpec
}

// Field numbers of sentencepiece_model.proto (only those read here).
const (
	fieldModelPieces     = 1
	fieldModelTrainer    = 2
	fieldModelNormalizer = 3

	fieldPieceText  = 1
	fieldPieceScore = 2
	fieldPieceType  = 3

	fieldTrainerModelType      = 3
	fieldTrainerWSAsSuffix     = 24
	fieldTrainerByteFallback   = 35
	fieldTrainerUnkID          = 40
	fieldTrainerBOSID          = 41
	fieldTrainerEOSID          = 42
	fieldTrainerPadID          = 43
	fieldNormName              = 1
	fieldNormCharsmap          = 2
	fieldNormAddDummyPrefix    = 3
	fieldNormRemoveExtraSpaces = 4
	fieldNormEscapeSpaces      = 5
)

// ReadModelFile reads and parses a spiece.model file.
func ReadModelFile(path string) (*ModelProto, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sentencepiece: read model: %w", err)
	}
	m, err := ParseModel(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ParseModel decodes a serialized ModelProto. Fields absent from the data
// take the defaults the proto file declares.
func ParseModel(data []byte) (*ModelProto, error) {
	m := &ModelProto{
		Trainer: TrainerSpec{ModelType: UnigramModel, UnkID: 0, BOSID: 1, EOSID: 2, PadID: -1},
		Normalizer: NormalizerSpec{
			AddDummyPrefix: true, RemoveExtraWhitespaces: true, EscapeWhitespaces: true,
		},
	}
	err := walk(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == fieldModelPieces && typ == protowire.BytesType:
			p, err := parsePiece(b)
			if err != nil {
				return err
			}
			m.Pieces = append(m.Pieces, p)
		case num == fieldModelTrainer && typ == protowire.BytesType:
			return parseTrainer(b, &m.Trainer)
		case num == fieldModelNormalizer && typ == protowire.BytesType:
			return parseNormalizer(b, &m.Normalizer)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(m.Pieces) == 0 {
		return nil, fmt.Errorf("%w: no pieces", ErrMalformed)
	}
	return m, nil
}

// walk calls fn for every field of one message; v holds varint and fixed
// values, b the payload of length-delimited fields.
func walk(data []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(n))
		}
		data = data[n:]
		var v uint64
		var b []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(data)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(data)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(data)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(data)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %w", ErrMalformed, num, protowire.ParseError(n))
		}
		data = data[n:]
		if err := fn(num, typ, v, b); err != nil {
			return err
		}
	}
	return nil
}

func parsePiece(data []byte) (Piece, error) {
	p := Piece{Type: Normal}
	err := walk(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == fieldPieceText && typ == protowire.BytesType:
			p.Text = string(b)
		case num == fieldPieceScore && typ == protowire.Fixed32Type:
			p.Score = math.Float32frombits(uint32(v))
		case num == fieldPieceType && typ == protowire.VarintType:
			p.Type = PieceType(int32(v))
		}
		return nil
	})
	if err != nil {
		return p, err
	}
	if p.Type < Normal || p.Type > Byte {
		return p, fmt.Errorf("%w: piece %q has type %d", ErrMalformed, p.Text, p.Type)
	}
	return p, nil
}

func parseTrainer(data []byte, t *TrainerSpec) error {
	return walk(data, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
		if typ != protowire.VarintType {
			return nil
		}
		// int32 fields carry negative values sign-extended to 64 bits.
		i := int(int32(v))
		switch num {
		case fieldTrainerModelType:
			t.ModelType = ModelType(i)
		case fieldTrainerWSAsSuffix:
			t.TreatWhitespaceAsSuffix = v != 0
		case fieldTrainerByteFallback:
			t.ByteFallback = v != 0
		case fieldTrainerUnkID:
			t.UnkID = i
		case fieldTrainerBOSID:
			t.BOSID = i
		case fieldTrainerEOSID:
			t.EOSID = i
		case fieldTrainerPadID:
			t.PadID = i
		}
		return nil
	})
}

func parseNormalizer(data []byte, n *NormalizerSpec) error {
	return walk(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == fieldNormName && typ == protowire.BytesType:
			n.Name = string(b)
		case num == fieldNormCharsmap && typ == protowire.BytesType:
			n.PrecompiledCharsmap = append([]byte(nil), b...)
		case num == fieldNormAddDummyPrefix && typ == protowire.VarintType:
			n.AddDummyPrefix = v != 0
		case num == fieldNormRemoveExtraSpaces && typ == protowire.VarintType:
			n.RemoveExtraWhitespaces = v != 0
		case num == fieldNormEscapeSpaces && typ == protowire.VarintType:
			n.EscapeWhitespaces = v != 0
		}
		return nil
	})
}
