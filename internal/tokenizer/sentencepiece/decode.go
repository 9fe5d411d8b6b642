package sentencepiece

import (
	"strings"
	"unicode/utf8"
)

// Decode turns ids back into text as SentencePiece's DecodeIds does: control
// pieces (BOS/EOS/PAD) vanish, the unknown piece becomes the unk surface
// (" ⁇ " by default), runs of byte pieces are reassembled as UTF-8 with
// U+FFFD for each invalid byte, U+2581 becomes a space and the leading space
// that the dummy prefix added is dropped. Ids out of range are skipped
// (SentencePiece rejects the whole call).
func (m *Model) Decode(ids []int) string {
	var text strings.Builder
	var bytes []byte
	flushBytes := func() {
		for len(bytes) > 0 {
			r, size := utf8.DecodeRune(bytes)
			if r == utf8.RuneError && size <= 1 {
				text.WriteString("\uFFFD")
				size = 1
			} else {
				text.Write(bytes[:size])
			}
			bytes = bytes[size:]
		}
	}
	ns := m.proto.Normalizer
	isBOSWS, bosWSSeen := true, false
	for _, id := range ids {
		if id < 0 || id >= len(m.proto.Pieces) {
			continue
		}
		p := m.proto.Pieces[id]
		if p.Type == Byte {
			b, _ := pieceToByte(p.Piece)
			bytes = append(bytes, b)
			continue
		}
		flushBytes()
		if bosWSSeen || text.Len() > 0 {
			isBOSWS = false
		}
		bosWSSeen = false
		switch p.Type {
		case Control:
		case Unknown:
			text.WriteString(m.proto.Trainer.UnkSurface)
		default:
			piece := p.Piece
			if isBOSWS && (ns.AddDummyPrefix || ns.RemoveExtraWhitespaces) {
				if strings.HasPrefix(piece, spaceSymbol) {
					piece = piece[len(spaceSymbol):]
					bosWSSeen = !ns.RemoveExtraWhitespaces
				}
			}
			text.WriteString(strings.ReplaceAll(piece, spaceSymbol, " "))
		}
	}
	flushBytes()
	out := text.String()
	if m.denorm != nil {
		out = m.denorm.normalize(out)
	}
	return out
}
