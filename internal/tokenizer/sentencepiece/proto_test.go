package sentencepiece

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tiny protobuf writer for building test inputs.
func pbVarint(v uint64) []byte   { return binary.AppendUvarint(nil, v) }
func pbKey(field, wt int) []byte { return pbVarint(uint64(field)<<3 | uint64(wt)) }
func pbBytes(field int, b []byte) []byte {
	return append(append(pbKey(field, wireBytes), pbVarint(uint64(len(b)))...), b...)
}
func pbUint(field int, v uint64) []byte { return append(pbKey(field, wireVarint), pbVarint(v)...) }
func pbFloat(field int, f float32) []byte {
	return binary.LittleEndian.AppendUint32(pbKey(field, wireFixed32), math.Float32bits(f))
}
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
func pbPiece(s string, score float32, typ PieceType) []byte {
	return pbBytes(1, cat(pbBytes(1, []byte(s)), pbFloat(2, score), pbUint(3, uint64(typ))))
}

func TestParseModelProto(t *testing.T) {
	trainer := pbBytes(2, cat(pbUint(3, uint64(BPE)), pbUint(43, math.MaxUint64), pbUint(35, 1), pbBytes(44, []byte("??")),
		pbBytes(31, []byte("<x>")), pbUint(999, 7)))
	norm := pbBytes(3, cat(pbBytes(1, []byte("identity")), pbUint(3, 0), pbUint(5, 0)))
	data := cat(pbPiece("<unk>", 0, Unknown), pbPiece("ab", -1.5, Normal), trainer, norm,
		pbKey(77, wireFixed64), make([]byte, 8)) // an unknown fixed64 field is skipped
	mp, err := ParseModelProto(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(mp.Pieces) != 2 || mp.Pieces[1] != (Piece{"ab", -1.5, Normal}) || mp.Pieces[0].Type != Unknown {
		t.Errorf("pieces = %+v", mp.Pieces)
	}
	tr := mp.Trainer
	if tr.ModelType != BPE || tr.PadID != -1 || !tr.ByteFallback || tr.UnkSurface != "??" || tr.BOSID != 1 || tr.EOSPiece != "</s>" ||
		len(tr.UserDefinedSymbols) != 1 {
		t.Errorf("trainer = %+v", tr)
	}
	ns := mp.Normalizer
	if ns.Name != "identity" || ns.AddDummyPrefix || !ns.RemoveExtraWhitespaces || ns.EscapeWhitespaces {
		t.Errorf("normalizer = %+v", ns)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string // substring naming the field
	}{
		{"truncated key", []byte{0x80}, "ModelProto.key"},
		{"field zero", []byte{0x00}, "invalid field number 0"},
		{"piece length past end", cat(pbKey(1, wireBytes), pbVarint(50), []byte("ab")), "ModelProto.pieces[0]"},
		{"piece wrong wire type", cat(pbUint(1, 3)), "ModelProto.pieces[0]: wire type 0"},
		{"score truncated", pbBytes(1, cat(pbBytes(1, []byte("a")), pbKey(2, wireFixed32), []byte{1, 2})), "ModelProto.pieces[0].score"},
		{"score as varint", pbBytes(1, cat(pbBytes(1, []byte("a")), pbUint(2, 1))), "ModelProto.pieces[0].score: wire type"},
		{"second piece broken", cat(pbPiece("a", 0, Normal), pbBytes(1, pbKey(3, wireVarint))), "ModelProto.pieces[1].type"},
		{"trainer vocab truncated", pbBytes(2, cat(pbKey(4, wireVarint), []byte{0xff})), "ModelProto.trainer_spec.vocab_size"},
		{"normalizer charsmap", pbBytes(3, cat(pbKey(2, wireBytes), pbVarint(9))), "ModelProto.normalizer_spec.precompiled_charsmap"},
		{"denormalizer name", pbBytes(5, cat(pbUint(1, 1))), "ModelProto.denormalizer_spec.name"},
		{"group wire type", cat(pbKey(9, 3)), "unsupported wire type 3"},
		{"overlong varint", cat(pbKey(1, wireVarint), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), "ModelProto.pieces[0]"},
	}
	for _, tc := range tests {
		_, err := ParseModelProto(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}

func TestModelErrors(t *testing.T) {
	unk := pbPiece("<unk>", 0, Unknown)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"no unk", pbPiece("a", 0, Normal), "no UNKNOWN piece"},
		{"two unk", cat(unk, pbPiece("<u2>", 0, Unknown)), "unk is already defined"},
		{"duplicate", cat(unk, pbPiece("a", 0, Normal), pbPiece("a", 0, Normal)), "pieces[2].piece: \"a\" is already defined"},
		{"empty piece", cat(unk, pbPiece("", 0, Normal)), "pieces[1].piece: empty"},
		{"bad type", cat(unk, pbPiece("a", 0, 9)), "pieces[1].type"},
		{"byte without fallback", cat(unk, pbPiece("<0x41>", 0, Byte)), "byte_fallback is false"},
		{"missing bytes", cat(unk, pbBytes(2, pbUint(35, 1))), "byte piece <0x00> missing"},
		{"bad byte piece", cat(unk, pbPiece("<0xZZ>", 0, Byte), pbBytes(2, pbUint(35, 1))), "invalid byte piece"},
		{"unknown model type", cat(unk, pbBytes(2, pbUint(3, 7))), "trainer_spec.model_type: unknown model type ModelType(7)"},
		{"short charsmap", cat(unk, pbBytes(3, pbBytes(2, []byte{1, 2}))), "normalizer_spec.precompiled_charsmap"},
		{"charsmap size", cat(unk, pbBytes(3, pbBytes(2, []byte{0xff, 0, 0, 0, 1, 2}))), "trie size 255"},
	}
	for _, tc := range tests {
		_, err := LoadBytes(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.model")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

// FuzzLoad checks that no input makes Load, Encode or Decode panic.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"bpe_identity_user"} {
		data, err := os.ReadFile(filepath.Join("testdata", name+".model"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "Hello <|im_end|> 안녕 \xff")
	}
	unk := pbPiece("<unk>", 0, Unknown)
	f.Add(cat(unk, pbPiece("▁a", -1, Normal), pbPiece("a", -2, UserDefined), pbPiece("b", 0, Unused)), " a ab b")
	f.Add(cat(unk, pbPiece("ab", -1, Unused), pbPiece("abc", -0.5, Normal), pbBytes(2, pbUint(3, uint64(BPE)))), "abcab")
	f.Add(cat(unk, pbBytes(3, pbBytes(2, []byte{8, 0, 0, 0, 0, 3, 0, 0, 0x61, 0x61, 0x61, 0x61, 'x', 0}))), "aaa")
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		m, err := LoadBytes(data)
		if err != nil {
			return
		}
		ids := m.Encode(text)
		for _, id := range ids {
			if id < 0 || id >= m.VocabSize() {
				t.Fatalf("Encode produced id %d outside [0,%d)", id, m.VocabSize())
			}
		}
		_ = m.Decode(ids)
		_ = m.Decode([]int{-1, 0, m.VocabSize(), 1 << 40})
	})
}

// TestCheckComplete: a file cut between two pieces parses, and
// CheckComplete tells it from a whole model file.
func TestCheckComplete(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bpe_identity_user.model"))
	if err != nil {
		t.Fatal(err)
	}
	mp, err := ParseModelProto(data)
	if err != nil || mp.CheckComplete() != nil {
		t.Fatalf("whole model: %v, %v", err, mp.CheckComplete())
	}
	unk := pbPiece("<unk>", 0, Unknown)
	for _, tc := range []struct {
		data []byte
		want string
	}{
		{cat(unk, pbPiece("a", 0, Normal)), "no trainer_spec after 2 pieces"},
		{cat(unk, pbBytes(2, pbUint(3, uint64(BPE)))), "no normalizer_spec"},
	} {
		mp, err := ParseModelProto(tc.data)
		if err != nil {
			t.Fatal(err)
		}
		if err := mp.CheckComplete(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckComplete = %v, want %q", err, tc.want)
		}
	}
}
