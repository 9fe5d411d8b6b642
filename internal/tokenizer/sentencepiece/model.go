package sentencepiece

import (
	"fmt"
	"math"
	"os"
)

// Model is a loaded SentencePiece model, ready to encode and decode. It is
// immutable after Load and safe for concurrent use.
type Model struct {
	proto *ModelProto

	pieces   map[string]int // NORMAL, USER_DEFINED and UNUSED pieces
	reserved map[string]int // CONTROL, UNKNOWN and BYTE pieces
	unkID    int
	byteIDs  [256]int

	trie     *byteTrie // over pieces (unigram lattice)
	userDefs *byteTrie // user-defined symbols, nil when there are none
	norm     *normalizer
	denorm   *normalizer // nil unless a denormalizer charsmap is present
	minScore float32
	maxScore float32
}

// Load reads and parses a SentencePiece model file (tokenizer.model).
func Load(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sentencepiece: %w", err)
	}
	m, err := LoadBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// LoadBytes parses a serialized ModelProto.
func LoadBytes(data []byte) (*Model, error) {
	mp, err := ParseModelProto(data)
	if err != nil {
		return nil, err
	}
	return NewModel(mp)
}

// NewModel validates a parsed ModelProto and builds the encoder for it,
// applying the same checks as SentencePiece's model loader.
func NewModel(mp *ModelProto) (*Model, error) {
	switch mp.Trainer.ModelType {
	case Unigram, BPE, Word, Char:
	default:
		return nil, fmt.Errorf("sentencepiece: trainer_spec.model_type: unknown model type %v", mp.Trainer.ModelType)
	}
	m := &Model{
		proto:    mp,
		pieces:   make(map[string]int, len(mp.Pieces)),
		reserved: make(map[string]int),
		unkID:    -1,
		trie:     newByteTrie(),
		minScore: math.MaxFloat32,
		maxScore: math.SmallestNonzeroFloat32 * (1 << 23), // FLT_MIN, the smallest normal float32
	}
	for i := range m.byteIDs {
		m.byteIDs[i] = -1
	}
	var userDefs []int
	for i, p := range mp.Pieces {
		if p.Piece == "" {
			return nil, fmt.Errorf("sentencepiece: pieces[%d].piece: empty", i)
		}
		dst := m.reserved
		switch p.Type {
		case Normal, UserDefined, Unused:
			dst = m.pieces
		case Unknown, Control, Byte:
		default:
			return nil, fmt.Errorf("sentencepiece: pieces[%d].type: unknown type %d", i, int32(p.Type))
		}
		if _, dup := dst[p.Piece]; dup {
			return nil, fmt.Errorf("sentencepiece: pieces[%d].piece: %q is already defined", i, p.Piece)
		}
		dst[p.Piece] = i
		switch p.Type {
		case UserDefined:
			userDefs = append(userDefs, i)
		case Unknown:
			if m.unkID >= 0 {
				return nil, fmt.Errorf("sentencepiece: pieces[%d]: unk is already defined (pieces[%d])", i, m.unkID)
			}
			m.unkID = i
		case Byte:
			if !mp.Trainer.ByteFallback {
				return nil, fmt.Errorf("sentencepiece: pieces[%d]: byte piece %q although trainer_spec.byte_fallback is false", i, p.Piece)
			}
			b, ok := pieceToByte(p.Piece)
			if !ok {
				return nil, fmt.Errorf("sentencepiece: pieces[%d].piece: invalid byte piece %q", i, p.Piece)
			}
			m.byteIDs[b] = i
		case Normal:
			m.minScore = min(m.minScore, p.Score)
			m.maxScore = max(m.maxScore, p.Score)
		}
	}
	if m.unkID < 0 {
		return nil, fmt.Errorf("sentencepiece: pieces: no UNKNOWN piece")
	}
	if mp.Trainer.ByteFallback {
		for b, id := range m.byteIDs {
			if id < 0 {
				return nil, fmt.Errorf("sentencepiece: pieces: byte piece <0x%02X> missing although trainer_spec.byte_fallback is true", b)
			}
		}
	}
	for piece, id := range m.pieces {
		m.trie.insert(piece, id)
	}
	if len(userDefs) > 0 {
		m.userDefs = newByteTrie()
		for _, id := range userDefs {
			m.userDefs.insert(mp.Pieces[id].Piece, id)
		}
	}
	var err error
	m.norm, err = newNormalizer(mp.Normalizer, "normalizer_spec", m.userDefs, mp.Trainer.TreatWhitespaceAsSuffix)
	if err != nil {
		return nil, err
	}
	if mp.Denormalizer.present && len(mp.Denormalizer.PrecompiledCharsmap) > 0 {
		m.denorm, err = newNormalizer(mp.Denormalizer, "denormalizer_spec", nil, false)
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// pieceToByte parses a byte piece "<0xXX>".
func pieceToByte(p string) (byte, bool) {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return 0, false
	}
	v := 0
	for _, c := range []byte(p[3:5]) {
		var d int
		switch {
		case c >= '0' && c <= '9':
			d = int(c - '0')
		case c >= 'A' && c <= 'F':
			d = int(c-'A') + 10
		case c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		default:
			return 0, false
		}
		v = v*16 + d
	}
	return byte(v), true
}

// Proto returns the parsed model file. Callers must not modify it.
func (m *Model) Proto() *ModelProto { return m.proto }

// VocabSize is the number of pieces.
func (m *Model) VocabSize() int { return len(m.proto.Pieces) }

// PieceToID returns the id of piece, or the unknown id when it is not in the
// vocabulary (as SentencePiece does).
func (m *Model) PieceToID(piece string) int {
	if id, ok := m.reserved[piece]; ok {
		return id
	}
	if id, ok := m.pieces[piece]; ok {
		return id
	}
	return m.unkID
}

// Lookup returns the id of piece and whether the vocabulary has it (unlike
// PieceToID, an unknown piece is not mapped to the unknown id).
func (m *Model) Lookup(piece string) (int, bool) {
	if id, ok := m.reserved[piece]; ok {
		return id, true
	}
	id, ok := m.pieces[piece]
	return id, ok
}

// IDToPiece returns the piece of id, or "" when id is out of range.
func (m *Model) IDToPiece(id int) string {
	if id < 0 || id >= len(m.proto.Pieces) {
		return ""
	}
	return m.proto.Pieces[id].Piece
}

// Type returns the type of piece id (0 when id is out of range).
func (m *Model) Type(id int) PieceType {
	if id < 0 || id >= len(m.proto.Pieces) {
		return 0
	}
	return m.proto.Pieces[id].Type
}

// Score returns the score of piece id (0 when id is out of range).
func (m *Model) Score(id int) float32 {
	if id < 0 || id >= len(m.proto.Pieces) {
		return 0
	}
	return m.proto.Pieces[id].Score
}

// UnkID is the id of the UNKNOWN piece.
func (m *Model) UnkID() int { return m.unkID }

// BOSID returns the id of the BOS piece, -1 when the model has none.
func (m *Model) BOSID() int { return m.specialID(m.proto.Trainer.BOSPiece) }

// EOSID returns the id of the EOS piece, -1 when the model has none.
func (m *Model) EOSID() int { return m.specialID(m.proto.Trainer.EOSPiece) }

// PadID returns the id of the padding piece, -1 when the model has none.
func (m *Model) PadID() int { return m.specialID(m.proto.Trainer.PadPiece) }

// specialID looks a control piece up by name, as SentencePiece's bos_id()
// and eos_id() do; the trainer_spec ids are only what training asked for.
func (m *Model) specialID(piece string) int {
	if id, ok := m.reserved[piece]; ok && m.proto.Pieces[id].Type == Control {
		return id
	}
	return -1
}

// ByteFallback reports whether unknown characters become byte pieces.
func (m *Model) ByteFallback() bool { return m.proto.Trainer.ByteFallback }

// Normalize returns text as the model's normalizer rewrites it (U+2581 for
// spaces, dummy prefix added).
func (m *Model) Normalize(text string) string { return m.norm.normalize(text) }

type segment struct {
	piece string
	id    int
}

// Encode normalizes text and splits it into piece ids. It adds no BOS/EOS.
func (m *Model) Encode(text string) []int {
	ids := []int{}
	for _, s := range m.EncodePieces(text) {
		ids = append(ids, s.ID)
	}
	return ids
}

// Token is one encoded piece.
type Token struct {
	Piece string
	ID    int
}

// EncodePieces is Encode returning pieces with their ids. Unknown runs are
// merged into one <unk> token whose Piece is the unknown text; with byte
// fallback they become one <0xXX> token per byte.
func (m *Model) EncodePieces(text string) []Token {
	normalized := m.norm.normalize(text)
	if normalized == "" {
		return nil
	}
	var segs []segment
	switch m.proto.Trainer.ModelType {
	case BPE:
		segs = m.encodeBPE(normalized)
	case Word:
		segs = m.encodeWord(normalized)
	case Char:
		segs = m.encodeChar(normalized)
	default:
		segs = m.encodeUnigram(normalized)
	}
	out := make([]Token, 0, len(segs))
	prevUnk := false
	for _, s := range segs {
		isUnk := s.id == m.unkID
		if isUnk && m.proto.Trainer.ByteFallback {
			for i := 0; i < len(s.piece); i++ {
				b := s.piece[i]
				out = append(out, Token{Piece: m.proto.Pieces[m.byteIDs[b]].Piece, ID: m.byteIDs[b]})
			}
		} else if isUnk && prevUnk && len(out) > 0 {
			out[len(out)-1].Piece += s.piece
		} else {
			out = append(out, Token{Piece: s.piece, ID: s.id})
		}
		prevUnk = isUnk
	}
	return out
}
