package tokenizer

import (
	"encoding/json"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// splitPattern is an HF pattern: a literal string or a regex.
type splitPattern struct {
	isLit bool
	lit   string
	re    *regex
	src   string
	// fast, when set, is a hand-written matcher equivalent to re.
	fast func(s string, out [][2]int) [][2]int
}

// find returns byte-offset [start,end) pairs of non-overlapping matches.
func (p *splitPattern) find(s string, out [][2]int) [][2]int {
	if p.isLit {
		if p.lit == "" {
			return out
		}
		off := 0
		for {
			i := strings.Index(s[off:], p.lit)
			if i < 0 {
				return out
			}
			out = append(out, [2]int{off + i, off + i + len(p.lit)})
			off += i + len(p.lit)
		}
	}
	if p.fast != nil {
		return p.fast(s, out)
	}
	runes := make([]rune, 0, len(s))
	offs := make([]int, 0, len(s)+1) // rune index -> byte offset
	for i, r := range s {
		runes = append(runes, r)
		offs = append(offs, i)
	}
	offs = append(offs, len(s))
	base := len(out)
	out = p.re.findAll(runes, out)
	for i := base; i < len(out); i++ {
		out[i][0] = offs[out[i][0]]
		out[i][1] = offs[out[i][1]]
	}
	return out
}

// normalizer transforms text before pre-tokenization.
type normalizer interface {
	normalize(s string) string
}

type nfNorm struct{ form norm.Form }

func (n nfNorm) normalize(s string) string { return n.form.String(s) }

type lowercaseNorm struct{}

func (lowercaseNorm) normalize(s string) string { return strings.ToLower(s) }

type stripNorm struct{ left, right bool }

func (n stripNorm) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, isRustWhitespace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, isRustWhitespace)
	}
	return s
}

type prependNorm struct{ prepend string }

func (n prependNorm) normalize(s string) string {
	if s == "" {
		return s
	}
	return n.prepend + s
}

type replaceNorm struct {
	pat     *splitPattern
	content string
}

func (n replaceNorm) normalize(s string) string { return n.pat.replaceAll(s, n.content) }

func (p *splitPattern) replaceAll(s, content string) string {
	if p.isLit {
		if p.lit == "" {
			return s
		}
		return strings.ReplaceAll(s, p.lit, content)
	}
	m := p.find(s, nil)
	if len(m) == 0 {
		return s
	}
	var b strings.Builder
	prev := 0
	for _, r := range m {
		b.WriteString(s[prev:r[0]])
		b.WriteString(content)
		prev = r[1]
	}
	b.WriteString(s[prev:])
	return b.String()
}

type seqNorm []normalizer

func (n seqNorm) normalize(s string) string {
	for _, x := range n {
		s = x.normalize(s)
	}
	return s
}

// isRustWhitespace matches Rust's char::is_whitespace (Unicode White_Space).
func isRustWhitespace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	if r < 0x80 {
		return false
	}
	return isUnicodeWhiteSpace(r)
}

func parseNormalizer(raw json.RawMessage, path string) (normalizer, error) {
	o, typ, ok, err := component(raw, path)
	if !ok || err != nil {
		return nil, err
	}
	switch typ {
	case "NFC":
		return nfNorm{norm.NFC}, nil
	case "NFD":
		return nfNorm{norm.NFD}, nil
	case "NFKC":
		return nfNorm{norm.NFKC}, nil
	case "NFKD":
		return nfNorm{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNorm{}, nil
	case "Strip":
		l, err := o.boolean("strip_left", true)
		if err != nil {
			return nil, err
		}
		r, err := o.boolean("strip_right", true)
		if err != nil {
			return nil, err
		}
		return stripNorm{l, r}, nil
	case "Prepend":
		p, err := o.str("prepend", "", true)
		if err != nil {
			return nil, err
		}
		return prependNorm{p}, nil
	case "Replace":
		pat, err := o.pattern("pattern")
		if err != nil {
			return nil, err
		}
		c, err := o.str("content", "", false)
		if err != nil {
			return nil, err
		}
		return replaceNorm{pat, c}, nil
	case "Sequence":
		seq, err := sequence(o, "normalizers", parseNormalizer)
		if err != nil {
			return nil, err
		}
		return seqNorm(seq), nil
	}
	return nil, perr(o.sub("type"), "unsupported normalizer %q", typ)
}

func indexPath(p string, i int) string {
	return p + "[" + itoa(i) + "]"
}

func itoa(i int) string {
	var buf [20]byte
	n := len(buf)
	neg := i < 0
	if neg {
		i = -i
	}
	for {
		n--
		buf[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			break
		}
	}
	if neg {
		n--
		buf[n] = '-'
	}
	return string(buf[n:])
}
