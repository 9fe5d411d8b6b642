package tokenizer

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decoder turns a token-string chain into a new chain (HF decode_chain).
type decoder interface {
	decodeChain(toks []string) []string
}

type byteLevelDec struct{}

func (byteLevelDec) decodeChain(toks []string) []string {
	var buf []byte
	for _, t := range toks {
		start := len(buf)
		ok := true
		for _, r := range t {
			b, found := runeToByte[r]
			if !found {
				ok = false
				break
			}
			buf = append(buf, b)
		}
		if !ok {
			buf = append(buf[:start], t...)
		}
	}
	return []string{lossyUTF8(buf)}
}

// lossyUTF8 mirrors Rust's String::from_utf8_lossy: each maximal invalid
// sequence becomes one U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			// Rust replaces a maximal prefix of a valid sequence as one unit.
			l := invalidPrefixLen(b)
			sb.WriteRune(utf8.RuneError)
			b = b[l:]
			continue
		}
		sb.Write(b[:n])
		b = b[n:]
	}
	return sb.String()
}

// invalidPrefixLen returns how many bytes Rust's lossy decoder consumes for
// one replacement character at the start of b.
func invalidPrefixLen(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	i := 1
	for ; i <= need && i < len(b); i++ {
		x := b[i]
		if i == 1 {
			if x < lo || x > hi {
				return i
			}
		} else if x < 0x80 || x > 0xBF {
			return i
		}
	}
	return i
}

type metaspaceDec struct {
	rep    string
	scheme prependScheme
}

func (d metaspaceDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		t = strings.ReplaceAll(t, d.rep, " ")
		if i == 0 && d.scheme != prependNever {
			t = strings.TrimPrefix(t, " ")
		}
		out[i] = t
	}
	return out
}

type replaceDec struct {
	pat     *splitPattern
	content string
}

func (d replaceDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = d.pat.replaceAll(t, d.content)
	}
	return out
}

type byteFallbackDec struct{}

func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(t[3:5], 16, 8)
	if err != nil {
		return 0, false
	}
	return byte(v), true
}

func (byteFallbackDec) decodeChain(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if b, ok := parseByteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

type fuseDec struct{}

func (fuseDec) decodeChain(toks []string) []string { return []string{strings.Join(toks, "")} }

type stripDec struct {
	content     rune
	start, stop int
}

func (d stripDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		rs := []rune(t)
		a := 0
		for a < d.start && a < len(rs) && rs[a] == d.content {
			a++
		}
		b := len(rs)
		for n := 0; n < d.stop && b > a && rs[b-1] == d.content; n++ {
			b--
		}
		out[i] = string(rs[a:b])
	}
	return out
}

type bpeDec struct{ suffix string }

func (d bpeDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		rep := " "
		if i == len(toks)-1 {
			rep = ""
		}
		out[i] = strings.ReplaceAll(t, d.suffix, rep)
	}
	return out
}

type seqDec []decoder

func (s seqDec) decodeChain(toks []string) []string {
	for _, d := range s {
		toks = d.decodeChain(toks)
	}
	return toks
}

func parseDecoder(raw json.RawMessage, path string) (decoder, error) {
	o, typ, ok, err := component(raw, path)
	if !ok || err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return byteLevelDec{}, nil
	case "Metaspace":
		ms, err := parseMetaspace(o)
		if err != nil {
			return nil, err
		}
		return metaspaceDec{rep: ms.rep, scheme: ms.scheme}, nil
	case "Replace":
		pat, err := o.pattern("pattern")
		if err != nil {
			return nil, err
		}
		c, err := o.str("content", "", false)
		if err != nil {
			return nil, err
		}
		return replaceDec{pat, c}, nil
	case "ByteFallback":
		return byteFallbackDec{}, nil
	case "Fuse":
		return fuseDec{}, nil
	case "Strip":
		c, err := o.str("content", " ", false)
		if err != nil {
			return nil, err
		}
		if utf8.RuneCountInString(c) != 1 {
			return nil, perr(o.sub("content"), "expected a single character, got %q", c)
		}
		r, _ := utf8.DecodeRuneInString(c)
		st, err := o.integer("start", 0, false)
		if err != nil {
			return nil, err
		}
		sp, err := o.integer("stop", 0, false)
		if err != nil {
			return nil, err
		}
		if st < 0 || sp < 0 {
			return nil, perr(path, "start and stop must be >= 0")
		}
		return stripDec{content: r, start: st, stop: sp}, nil
	case "BPEDecoder":
		s, err := o.str("suffix", "</w>", false)
		if err != nil {
			return nil, err
		}
		return bpeDec{s}, nil
	case "Sequence":
		seq, err := sequence(o, "decoders", parseDecoder)
		if err != nil {
			return nil, err
		}
		return seqDec(seq), nil
	}
	return nil, perr(o.sub("type"), "unsupported decoder %q", typ)
}
