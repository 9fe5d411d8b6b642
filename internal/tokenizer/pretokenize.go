package tokenizer

import (
	"encoding/json"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// piece is one pre-token (or a not-yet-split chunk) of normalized text.
type piece struct {
	s string
	// first is true when the piece begins at offset 0 of the original input
	// (Metaspace's prepend_scheme "first" needs it).
	first bool
	// bl marks a piece whose byte-level mapping (bytes -> GPT-2 runes) is
	// still pending: s holds the raw bytes. The model maps it only on a
	// cache miss, which is where most of the speed comes from.
	bl bool
}

// materialize applies pending byte-level mappings in place.
func materialize(ps []piece) {
	for i := range ps {
		if ps[i].bl {
			ps[i].s = byteLevelString(ps[i].s)
			ps[i].bl = false
		}
	}
}

// preTokenizer splits pieces further and may rewrite them.
type preTokenizer interface {
	preTokenize(in []piece) []piece
}

type splitBehavior uint8

const (
	behRemoved splitBehavior = iota
	behIsolated
	behMergedWithPrevious
	behMergedWithNext
	behContiguous
)

func parseBehavior(s string, path string) (splitBehavior, error) {
	switch s {
	case "Removed":
		return behRemoved, nil
	case "Isolated":
		return behIsolated, nil
	case "MergedWithPrevious":
		return behMergedWithPrevious, nil
	case "MergedWithNext":
		return behMergedWithNext, nil
	case "Contiguous":
		return behContiguous, nil
	}
	return 0, perr(path, "unknown split behavior %q", s)
}

type span struct {
	a, b  int
	match bool
}

// splitByMatches applies an HF SplitDelimiterBehavior to s, given the
// delimiter matches, appending the resulting pieces to out.
func splitByMatches(p piece, matches [][2]int, beh splitBehavior, invert bool, out []piece) []piece {
	s := p.s
	if len(s) == 0 {
		return out
	}
	if beh == behIsolated {
		// Every span is kept: emit gaps and matches in order.
		prev := 0
		for _, m := range matches {
			if m[0] > prev {
				out = append(out, piece{s: s[prev:m[0]], first: p.first && prev == 0, bl: p.bl})
			}
			if m[1] > m[0] {
				out = append(out, piece{s: s[m[0]:m[1]], first: p.first && m[0] == 0, bl: p.bl})
			}
			prev = m[1]
		}
		if prev < len(s) {
			out = append(out, piece{s: s[prev:], first: p.first && prev == 0, bl: p.bl})
		}
		return out
	}
	spans := make([]span, 0, 2*len(matches)+1)
	prev := 0
	for _, m := range matches {
		if m[0] > prev {
			spans = append(spans, span{prev, m[0], false})
		}
		if m[1] > m[0] {
			spans = append(spans, span{m[0], m[1], true})
		}
		prev = m[1]
	}
	if prev < len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	if invert {
		for i := range spans {
			spans[i].match = !spans[i].match
		}
	}
	var res []span
	switch beh {
	case behIsolated:
		res = spans
		for i := range res {
			res[i].match = false
		}
	case behRemoved:
		res = spans
	case behContiguous:
		prevMatch := false
		for i, sp := range spans {
			if i > 0 && sp.match == prevMatch {
				res[len(res)-1].b = sp.b
			} else {
				res = append(res, span{sp.a, sp.b, false})
			}
			prevMatch = sp.match
		}
	case behMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(res) > 0 {
				res[len(res)-1].b = sp.b
			} else {
				res = append(res, span{sp.a, sp.b, false})
			}
			prevMatch = sp.match
		}
	case behMergedWithNext:
		prevMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !prevMatch && len(res) > 0 {
				res[len(res)-1].a = sp.a
			} else {
				res = append(res, span{sp.a, sp.b, false})
			}
			prevMatch = sp.match
		}
		for i, j := 0, len(res)-1; i < j; i, j = i+1, j-1 {
			res[i], res[j] = res[j], res[i]
		}
	}
	for _, sp := range res {
		if sp.match || sp.b <= sp.a {
			continue
		}
		out = append(out, piece{s: s[sp.a:sp.b], first: p.first && sp.a == 0, bl: p.bl})
	}
	return out
}

// ---- Split ----

type splitPre struct {
	pat    *splitPattern
	beh    splitBehavior
	invert bool
}

var matchPool = sync.Pool{New: func() any { b := make([][2]int, 0, 256); return &b }}

func (sp *splitPre) preTokenize(in []piece) []piece {
	mp := matchPool.Get().(*[][2]int)
	m := *mp
	var out []piece
	for _, p := range in {
		m = sp.pat.find(p.s, m[:0])
		if out == nil {
			out = make([]piece, 0, 2*len(m)+len(in)+1)
		}
		out = splitByMatches(p, m, sp.beh, sp.invert, out)
	}
	*mp = m[:0]
	matchPool.Put(mp)
	return out
}

// ---- ByteLevel ----

// gpt2Pattern is the GPT-2 pre-tokenization regex used by ByteLevel when
// use_regex is true.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

var byteToRune, runeToByte = buildByteMap()

// buildByteMap builds GPT-2's reversible byte <-> printable-rune table.
func buildByteMap() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = rune(256 + n)
			n++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}

// byteLevelString maps every byte of s to its printable rune.
func byteLevelString(s string) string {
	var b strings.Builder
	b.Grow(len(s) * 2)
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteToRune[s[i]])
	}
	return b.String()
}

type byteLevelPre struct {
	addPrefixSpace bool
	useRegex       bool
	pat            *splitPattern
}

func (bl *byteLevelPre) preTokenize(in []piece) []piece {
	out := make([]piece, 0, len(in)*4)
	var m [][2]int
	for _, p := range in {
		if p.bl {
			p.s, p.bl = byteLevelString(p.s), false
		}
		if bl.addPrefixSpace && !strings.HasPrefix(p.s, " ") {
			p.s = " " + p.s
		}
		if bl.useRegex {
			m = bl.pat.find(p.s, m[:0])
			start := len(out)
			out = splitByMatches(p, m, behIsolated, false, out)
			for i := start; i < len(out); i++ {
				out[i].bl = true
			}
		} else if p.s != "" {
			out = append(out, piece{s: p.s, first: p.first, bl: true})
		}
	}
	return out
}

// ---- Metaspace ----

type prependScheme uint8

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

type metaspacePre struct {
	replacement rune
	rep         string
	scheme      prependScheme
	split       bool
}

func (ms *metaspacePre) preTokenize(in []piece) []piece {
	out := make([]piece, 0, len(in)*4)
	var m [][2]int
	for _, p := range in {
		p.s = strings.ReplaceAll(p.s, " ", ms.rep)
		switch ms.scheme {
		case prependAlways:
			if !strings.HasPrefix(p.s, ms.rep) {
				p.s = ms.rep + p.s
			}
		case prependFirst:
			if p.first && !strings.HasPrefix(p.s, ms.rep) {
				p.s = ms.rep + p.s
			}
		}
		if !ms.split {
			if p.s != "" {
				out = append(out, p)
			}
			continue
		}
		m = m[:0]
		for i := 0; i < len(p.s); {
			j := strings.Index(p.s[i:], ms.rep)
			if j < 0 {
				break
			}
			m = append(m, [2]int{i + j, i + j + len(ms.rep)})
			i += j + len(ms.rep)
		}
		out = splitByMatches(p, m, behMergedWithNext, false, out)
	}
	return out
}

// ---- Digits, Whitespace, WhitespaceSplit, Punctuation ----

// runePredPre splits on runes satisfying pred with the given behavior.
type runePredPre struct {
	pred func(rune) bool
	beh  splitBehavior
}

func (rp *runePredPre) preTokenize(in []piece) []piece {
	out := make([]piece, 0, len(in)*4)
	var m [][2]int
	for _, p := range in {
		m = m[:0]
		for i, r := range p.s {
			if rp.pred(r) {
				m = append(m, [2]int{i, i + utf8.RuneLen(r)})
			}
		}
		out = splitByMatches(p, m, rp.beh, false, out)
	}
	return out
}

func isASCIIDigit(r rune) bool { return r >= '0' && r <= '9' }

func isUnicodeWhiteSpace(r rune) bool { return unicode.Is(unicode.White_Space, r) }

func isPunct(r rune) bool {
	return (r < 128 && unicode.IsPunct(r)) || (r < 128 && unicode.IsSymbol(r)) || unicode.In(r, unicode.P)
}

type seqPre []preTokenizer

func (s seqPre) preTokenize(in []piece) []piece {
	for i, p := range s {
		if i > 0 {
			if _, ok := p.(*byteLevelPre); !ok {
				materialize(in)
			}
		}
		in = p.preTokenize(in)
	}
	return in
}

func parsePreTokenizer(raw json.RawMessage, path string) (preTokenizer, error) {
	o, typ, ok, err := component(raw, path)
	if !ok || err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		seq, err := sequence(o, "pretokenizers", parsePreTokenizer)
		if err != nil {
			return nil, err
		}
		return seqPre(seq), nil
	case "Split":
		pat, err := o.pattern("pattern")
		if err != nil {
			return nil, err
		}
		b, err := o.str("behavior", "", true)
		if err != nil {
			return nil, err
		}
		beh, err := parseBehavior(b, o.sub("behavior"))
		if err != nil {
			return nil, err
		}
		inv, err := o.boolean("invert", false)
		if err != nil {
			return nil, err
		}
		attachFastMatcher(pat)
		return &splitPre{pat: pat, beh: beh, invert: inv}, nil
	case "ByteLevel":
		aps, err := o.boolean("add_prefix_space", true)
		if err != nil {
			return nil, err
		}
		ur, err := o.boolean("use_regex", true)
		if err != nil {
			return nil, err
		}
		bl := &byteLevelPre{addPrefixSpace: aps, useRegex: ur}
		if ur {
			re, err := compileRegex(gpt2Pattern)
			if err != nil {
				return nil, perr(path, "%v", err)
			}
			bl.pat = &splitPattern{re: re, src: gpt2Pattern}
			attachFastMatcher(bl.pat)
		}
		return bl, nil
	case "Metaspace":
		return parseMetaspace(o)
	case "Digits":
		ind, err := o.boolean("individual_digits", false)
		if err != nil {
			return nil, err
		}
		beh := behContiguous
		if ind {
			beh = behIsolated
		}
		return &runePredPre{pred: isASCIIDigit, beh: beh}, nil
	case "WhitespaceSplit":
		return &runePredPre{pred: isRustWhitespace, beh: behRemoved}, nil
	case "Whitespace":
		re, err := compileRegex(`\w+|[^\w\s]+`)
		if err != nil {
			return nil, perr(path, "%v", err)
		}
		return &splitPre{pat: &splitPattern{re: re}, beh: behRemoved, invert: true}, nil
	case "Punctuation":
		b, err := o.str("behavior", "Isolated", false)
		if err != nil {
			return nil, err
		}
		beh, err := parseBehavior(b, o.sub("behavior"))
		if err != nil {
			return nil, err
		}
		return &runePredPre{pred: isPunct, beh: beh}, nil
	}
	return nil, perr(o.sub("type"), "unsupported pre-tokenizer %q", typ)
}

func parseMetaspace(o jobj) (*metaspacePre, error) {
	rep, err := o.str("replacement", "\u2581", false)
	if err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(rep) != 1 {
		return nil, perr(o.sub("replacement"), "expected a single character, got %q", rep)
	}
	r, _ := utf8.DecodeRuneInString(rep)
	ms := &metaspacePre{replacement: r, rep: rep, scheme: prependAlways, split: true}
	if o.has("prepend_scheme") {
		s, err := o.str("prepend_scheme", "", true)
		if err != nil {
			return nil, err
		}
		switch s {
		case "always":
			ms.scheme = prependAlways
		case "first":
			ms.scheme = prependFirst
		case "never":
			ms.scheme = prependNever
		default:
			return nil, perr(o.sub("prepend_scheme"), "unknown prepend scheme %q", s)
		}
	} else if o.has("add_prefix_space") {
		aps, err := o.boolean("add_prefix_space", true)
		if err != nil {
			return nil, err
		}
		if !aps {
			ms.scheme = prependNever
		}
	}
	if ms.split, err = o.boolean("split", true); err != nil {
		return nil, err
	}
	return ms, nil
}
