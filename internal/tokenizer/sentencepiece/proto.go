package sentencepiece

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

var errTruncated = errors.New("truncated")

// wireReader walks one protobuf message's fields.
type wireReader struct {
	buf []byte
	pos int
}

// next returns the next field number and wire type, or ok=false at the end.
func (r *wireReader) next() (field int, wt int, ok bool, err error) {
	if r.pos >= len(r.buf) {
		return 0, 0, false, nil
	}
	key, err := r.varint()
	if err != nil {
		return 0, 0, false, fmt.Errorf("field key: %w", err)
	}
	field = int(key >> 3)
	wt = int(key & 7)
	if field <= 0 || key>>3 > math.MaxInt32 {
		return 0, 0, false, fmt.Errorf("invalid field number %d", key>>3)
	}
	return field, wt, true, nil
}

func (r *wireReader) varint() (uint64, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		if r.pos >= len(r.buf) {
			return 0, errTruncated
		}
		b := r.buf[r.pos]
		r.pos++
		if i == 9 && b > 1 {
			return 0, errors.New("varint overflows 64 bits")
		}
		v |= uint64(b&0x7f) << (7 * uint(i))
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("varint longer than 10 bytes")
}

func (r *wireReader) bytes() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.buf)-r.pos) {
		return nil, fmt.Errorf("length %d exceeds the %d bytes left: %w", n, len(r.buf)-r.pos, errTruncated)
	}
	b := r.buf[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return b, nil
}

func (r *wireReader) fixed32() (uint32, error) {
	if len(r.buf)-r.pos < 4 {
		return 0, errTruncated
	}
	v := binary.LittleEndian.Uint32(r.buf[r.pos:])
	r.pos += 4
	return v, nil
}

// skip skips a field of wire type wt.
func (r *wireReader) skip(wt int) error {
	switch wt {
	case wireVarint:
		_, err := r.varint()
		return err
	case wireFixed64:
		if len(r.buf)-r.pos < 8 {
			return errTruncated
		}
		r.pos += 8
		return nil
	case wireBytes:
		_, err := r.bytes()
		return err
	case wireFixed32:
		_, err := r.fixed32()
		return err
	default:
		return fmt.Errorf("unsupported wire type %d", wt)
	}
}

// fieldReader wraps a wireReader with typed getters that check the wire type
// and name the field in errors.
type fieldReader struct {
	wireReader
	msg string // message path for errors, e.g. "ModelProto.trainer_spec"
}

func (r *fieldReader) fail(name string, err error) error {
	return fmt.Errorf("sentencepiece: %s.%s: %w", r.msg, name, err)
}

func (r *fieldReader) expect(name string, wt, want int) error {
	if wt != want {
		return r.fail(name, fmt.Errorf("wire type %d, want %d", wt, want))
	}
	return nil
}

func (r *fieldReader) getString(name string, wt int) (string, error) {
	b, err := r.getBytes(name, wt)
	return string(b), err
}

func (r *fieldReader) getBytes(name string, wt int) ([]byte, error) {
	if err := r.expect(name, wt, wireBytes); err != nil {
		return nil, err
	}
	b, err := r.bytes()
	if err != nil {
		return nil, r.fail(name, err)
	}
	return b, nil
}

func (r *fieldReader) getBool(name string, wt int) (bool, error) {
	v, err := r.getVarint(name, wt)
	return v != 0, err
}

func (r *fieldReader) getInt32(name string, wt int) (int32, error) {
	v, err := r.getVarint(name, wt)
	return int32(v), err // proto int32: negative values are sign-extended to 64 bits
}

func (r *fieldReader) getVarint(name string, wt int) (uint64, error) {
	if err := r.expect(name, wt, wireVarint); err != nil {
		return 0, err
	}
	v, err := r.varint()
	if err != nil {
		return 0, r.fail(name, err)
	}
	return v, nil
}

func (r *fieldReader) getFloat(name string, wt int) (float32, error) {
	if err := r.expect(name, wt, wireFixed32); err != nil {
		return 0, err
	}
	v, err := r.fixed32()
	if err != nil {
		return 0, r.fail(name, err)
	}
	return math.Float32frombits(v), nil
}

func (r *fieldReader) skipField(field, wt int) error {
	if err := r.skip(wt); err != nil {
		return r.fail(fmt.Sprintf("field %d", field), err)
	}
	return nil
}

// PieceType is ModelProto.SentencePiece.Type.
type PieceType int32

// Piece types, numbered as in sentencepiece_model.proto.
const (
	Normal      PieceType = 1
	Unknown     PieceType = 2
	Control     PieceType = 3
	UserDefined PieceType = 4
	Unused      PieceType = 5
	Byte        PieceType = 6
)

func (t PieceType) String() string {
	switch t {
	case Normal:
		return "NORMAL"
	case Unknown:
		return "UNKNOWN"
	case Control:
		return "CONTROL"
	case UserDefined:
		return "USER_DEFINED"
	case Unused:
		return "UNUSED"
	case Byte:
		return "BYTE"
	}
	return fmt.Sprintf("PieceType(%d)", int32(t))
}

// ModelType is TrainerSpec.ModelType.
type ModelType int32

// Model types, numbered as in sentencepiece_model.proto.
const (
	Unigram ModelType = 1
	BPE     ModelType = 2
	Word    ModelType = 3
	Char    ModelType = 4
)

func (t ModelType) String() string {
	switch t {
	case Unigram:
		return "UNIGRAM"
	case BPE:
		return "BPE"
	case Word:
		return "WORD"
	case Char:
		return "CHAR"
	}
	return fmt.Sprintf("ModelType(%d)", int32(t))
}

// Piece is one vocabulary entry.
type Piece struct {
	Piece string
	Score float32
	Type  PieceType
}

// TrainerSpec holds the trainer_spec fields that matter for encoding and
// decoding (and a few informative ones). Absent fields take the proto
// defaults.
type TrainerSpec struct {
	ModelType               ModelType
	VocabSize               int32
	SplitDigits             bool
	TreatWhitespaceAsSuffix bool
	AllowWhitespaceOnly     bool
	ByteFallback            bool
	UnkID, BOSID, EOSID     int32
	PadID                   int32
	UnkPiece, BOSPiece      string
	EOSPiece, PadPiece      string
	UnkSurface              string
	ControlSymbols          []string
	UserDefinedSymbols      []string
	present                 bool
}

// NormalizerSpec is normalizer_spec (or denormalizer_spec).
type NormalizerSpec struct {
	Name                   string
	PrecompiledCharsmap    []byte
	AddDummyPrefix         bool
	RemoveExtraWhitespaces bool
	EscapeWhitespaces      bool
	NormalizationRuleTSV   string
	present                bool
}

// ModelProto is the parsed model file.
type ModelProto struct {
	Pieces       []Piece
	Trainer      TrainerSpec
	Normalizer   NormalizerSpec
	Denormalizer NormalizerSpec
}

func defaultTrainerSpec() TrainerSpec {
	return TrainerSpec{
		ModelType: Unigram, VocabSize: 8000,
		UnkID: 0, BOSID: 1, EOSID: 2, PadID: -1,
		UnkPiece: "<unk>", BOSPiece: "<s>", EOSPiece: "</s>", PadPiece: "<pad>",
		UnkSurface: " \u2047 ",
	}
}

func defaultNormalizerSpec() NormalizerSpec {
	return NormalizerSpec{AddDummyPrefix: true, RemoveExtraWhitespaces: true, EscapeWhitespaces: true}
}

// CheckComplete reports an error when the model lacks the trainer_spec or
// the normalizer_spec, which SentencePiece always writes after the pieces:
// such a file was cut off (a protobuf message has no end marker, so a file
// truncated between two pieces parses).
func (mp *ModelProto) CheckComplete() error {
	switch {
	case !mp.Trainer.present:
		return fmt.Errorf("sentencepiece: no trainer_spec after %d pieces (a truncated file?)", len(mp.Pieces))
	case !mp.Normalizer.present:
		return fmt.Errorf("sentencepiece: no normalizer_spec after the trainer_spec (a truncated file?)")
	}
	return nil
}

// ParseModelProto decodes a serialized ModelProto.
func ParseModelProto(data []byte) (*ModelProto, error) {
	mp := &ModelProto{
		Trainer:      defaultTrainerSpec(),
		Normalizer:   defaultNormalizerSpec(),
		Denormalizer: defaultNormalizerSpec(),
	}
	r := &fieldReader{wireReader: wireReader{buf: data}, msg: "ModelProto"}
	for {
		field, wt, ok, err := r.next()
		if err != nil {
			return nil, r.fail("key", err)
		}
		if !ok {
			break
		}
		switch field {
		case 1:
			name := fmt.Sprintf("pieces[%d]", len(mp.Pieces))
			b, err := r.getBytes(name, wt)
			if err != nil {
				return nil, err
			}
			p, err := parsePiece(b, "ModelProto."+name)
			if err != nil {
				return nil, err
			}
			mp.Pieces = append(mp.Pieces, p)
		case 2:
			b, err := r.getBytes("trainer_spec", wt)
			if err != nil {
				return nil, err
			}
			if err := parseTrainerSpec(b, &mp.Trainer); err != nil {
				return nil, err
			}
			mp.Trainer.present = true
		case 3, 5:
			name, dst := "normalizer_spec", &mp.Normalizer
			if field == 5 {
				name, dst = "denormalizer_spec", &mp.Denormalizer
			}
			b, err := r.getBytes(name, wt)
			if err != nil {
				return nil, err
			}
			if err := parseNormalizerSpec(b, dst, "ModelProto."+name); err != nil {
				return nil, err
			}
		default:
			if err := r.skipField(field, wt); err != nil {
				return nil, err
			}
		}
	}
	return mp, nil
}

func parsePiece(b []byte, msg string) (Piece, error) {
	p := Piece{Type: Normal}
	r := &fieldReader{wireReader: wireReader{buf: b}, msg: msg}
	for {
		field, wt, ok, err := r.next()
		if err != nil {
			return p, r.fail("key", err)
		}
		if !ok {
			return p, nil
		}
		switch field {
		case 1:
			p.Piece, err = r.getString("piece", wt)
		case 2:
			p.Score, err = r.getFloat("score", wt)
		case 3:
			var v int32
			v, err = r.getInt32("type", wt)
			p.Type = PieceType(v)
		default:
			err = r.skipField(field, wt)
		}
		if err != nil {
			return p, err
		}
	}
}

func parseTrainerSpec(b []byte, ts *TrainerSpec) error {
	r := &fieldReader{wireReader: wireReader{buf: b}, msg: "ModelProto.trainer_spec"}
	for {
		field, wt, ok, err := r.next()
		if err != nil {
			return r.fail("key", err)
		}
		if !ok {
			return nil
		}
		var v int32
		var s string
		switch field {
		case 3:
			v, err = r.getInt32("model_type", wt)
			ts.ModelType = ModelType(v)
		case 4:
			ts.VocabSize, err = r.getInt32("vocab_size", wt)
		case 24:
			ts.TreatWhitespaceAsSuffix, err = r.getBool("treat_whitespace_as_suffix", wt)
		case 25:
			ts.SplitDigits, err = r.getBool("split_digits", wt)
		case 26:
			ts.AllowWhitespaceOnly, err = r.getBool("allow_whitespace_only_pieces", wt)
		case 30:
			s, err = r.getString("control_symbols", wt)
			ts.ControlSymbols = append(ts.ControlSymbols, s)
		case 31:
			s, err = r.getString("user_defined_symbols", wt)
			ts.UserDefinedSymbols = append(ts.UserDefinedSymbols, s)
		case 35:
			ts.ByteFallback, err = r.getBool("byte_fallback", wt)
		case 40:
			ts.UnkID, err = r.getInt32("unk_id", wt)
		case 41:
			ts.BOSID, err = r.getInt32("bos_id", wt)
		case 42:
			ts.EOSID, err = r.getInt32("eos_id", wt)
		case 43:
			ts.PadID, err = r.getInt32("pad_id", wt)
		case 44:
			ts.UnkSurface, err = r.getString("unk_surface", wt)
		case 45:
			ts.UnkPiece, err = r.getString("unk_piece", wt)
		case 46:
			ts.BOSPiece, err = r.getString("bos_piece", wt)
		case 47:
			ts.EOSPiece, err = r.getString("eos_piece", wt)
		case 48:
			ts.PadPiece, err = r.getString("pad_piece", wt)
		default:
			err = r.skipField(field, wt)
		}
		if err != nil {
			return err
		}
	}
}

func parseNormalizerSpec(b []byte, ns *NormalizerSpec, msg string) error {
	ns.present = true
	r := &fieldReader{wireReader: wireReader{buf: b}, msg: msg}
	for {
		field, wt, ok, err := r.next()
		if err != nil {
			return r.fail("key", err)
		}
		if !ok {
			return nil
		}
		switch field {
		case 1:
			ns.Name, err = r.getString("name", wt)
		case 2:
			ns.PrecompiledCharsmap, err = r.getBytes("precompiled_charsmap", wt)
		case 3:
			ns.AddDummyPrefix, err = r.getBool("add_dummy_prefix", wt)
		case 4:
			ns.RemoveExtraWhitespaces, err = r.getBool("remove_extra_whitespaces", wt)
		case 5:
			ns.EscapeWhitespaces, err = r.getBool("escape_whitespaces", wt)
		case 6:
			ns.NormalizationRuleTSV, err = r.getString("normalization_rule_tsv", wt)
		default:
			err = r.skipField(field, wt)
		}
		if err != nil {
			return err
		}
	}
}
