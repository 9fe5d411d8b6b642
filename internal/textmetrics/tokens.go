package textmetrics

import "strings"

// Tokens returns the words that ROUGE scores for s: the tokens of
// segment(s) (a dictionary-free stand-in for jieba.cut, see the package
// comment), joined with single spaces and passed through rouge_chinese's own
// pre-processing (sentence splitting after 。！？? and the other cut_sent
// rules, whitespace normalisation, splitting each sentence on " ").
//
// Nothing is lower-cased and no punctuation is dropped: rouge_chinese does
// neither. Whitespace never survives as a word, with one exception copied
// from rouge_chinese: where its sentence splitter leaves a sentence made of
// whitespace only (a blank line, or a line break right after a 。！？?), that
// sentence becomes one empty-string word, and it is scored like any other
// word. Tokens returns an empty slice for an empty or all-whitespace s.
func Tokens(s string) []string {
	return rougeWords(strings.Join(segment(s), " "))
}

// segment splits s into the pieces jieba.cut(s) (default mode, HMM on)
// yields, except inside runs of CJK ideographs, which it splits into single
// ideographs where jieba would look words up in its dictionary.
//
// jieba first splits s into "han blocks", maximal runs of
// [\u4E00-\u9FD5a-zA-Z0-9+#&._%-], and the text between them. Between the
// blocks each "\r\n" and each other whitespace character is a piece, and so
// is every other character (punctuation, kana, hangul, accented or
// non-Latin letters, emoji: one code point each). Inside a block, ASCII text
// that is not part of a dictionary word goes through jieba.finalseg, which
// keeps runs matching [a-zA-Z0-9]+(?:\.\d+)?%? whole and yields the text
// between them as one piece; the only ASCII-only words in jieba's dictionary
// are AT&T, c#, C#, c++ and C++, and they are pieces of their own.
func segment(s string) []string {
	rs := []rune(s)
	var out []string
	for i := 0; i < len(rs); {
		if inHanBlock(rs[i]) {
			j := i
			for j < len(rs) && inHanBlock(rs[j]) {
				j++
			}
			out = segmentHanBlock(out, rs[i:j])
			i = j
			continue
		}
		if rs[i] == '\r' && i+1 < len(rs) && rs[i+1] == '\n' {
			out = append(out, "\r\n")
			i += 2
			continue
		}
		out = append(out, string(rs[i]))
		i++
	}
	return out
}

// inHanBlock reports whether r belongs to jieba's re_han_default class
// [\u4E00-\u9FD5a-zA-Z0-9+#&._%-].
func inHanBlock(r rune) bool {
	return isJiebaHan(r) || isASCIIAlnum(r) || strings.ContainsRune("+#&._%-", r)
}

// isJiebaHan reports whether r is in the ideograph range jieba segments with
// its dictionary, U+4E00..U+9FD5. Ideographs outside it (extension A, the
// compatibility block, ...) are single-character pieces in jieba too.
func isJiebaHan(r rune) bool { return r >= 0x4E00 && r <= 0x9FD5 }

func isASCIIAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || isASCIIDigit(r)
}

func isASCIIDigit(r rune) bool { return r >= '0' && r <= '9' }

// jiebaASCIIWords are the entries of jieba's dict.txt (0.42.1) made of ASCII
// characters only. None can overlap another, so taking them left to right
// is what jieba's maximum-probability route does.
var jiebaASCIIWords = []string{"AT&T", "c#", "C#", "c++", "C++"}

// segmentHanBlock appends the pieces of one han block: each ideograph alone,
// each dictionary word alone, and the ASCII text between them split the
// way jieba.finalseg splits it.
func segmentHanBlock(out []string, blk []rune) []string {
	start := 0 // start of the pending ASCII text
	flush := func(end int) {
		if end > start {
			out = finalsegASCII(out, string(blk[start:end]))
		}
	}
	for i := 0; i < len(blk); {
		if isJiebaHan(blk[i]) {
			flush(i)
			out = append(out, string(blk[i]))
			i++
			start = i
			continue
		}
		if w := asciiWordAt(blk[i:]); w != "" {
			flush(i)
			out = append(out, w)
			i += len(w)
			start = i
			continue
		}
		i++
	}
	flush(len(blk))
	return out
}

func asciiWordAt(rs []rune) string {
	for _, w := range jiebaASCIIWords {
		if len(rs) < len(w) {
			continue
		}
		match := true
		for k := 0; k < len(w); k++ {
			if rs[k] != rune(w[k]) {
				match = false
				break
			}
		}
		if match {
			return w
		}
	}
	return ""
}

// finalsegASCII appends the non-empty parts of
// re.split(r"([a-zA-Z0-9]+(?:\.\d+)?%?)", s) for an ASCII string s: the
// matches and the text between them.
func finalsegASCII(out []string, s string) []string {
	last := 0
	for i := 0; i < len(s); {
		if !isASCIIAlnum(rune(s[i])) {
			i++
			continue
		}
		start := i
		for i < len(s) && isASCIIAlnum(rune(s[i])) {
			i++
		}
		if i+1 < len(s) && s[i] == '.' && isASCIIDigit(rune(s[i+1])) {
			i++
			for i < len(s) && isASCIIDigit(rune(s[i])) {
				i++
			}
		}
		if i < len(s) && s[i] == '%' {
			i++
		}
		if start > last {
			out = append(out, s[last:start])
		}
		out = append(out, s[start:i])
		last = i
	}
	if last < len(s) {
		out = append(out, s[last:])
	}
	return out
}

// isPySpace reports whether Python's str.isspace() (and so str.split(),
// str.rstrip() and the regex \s) treats r as whitespace. It differs from
// unicode.IsSpace in counting U+001C..U+001F.
func isPySpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0x1C, 0x1D, 0x1E, 0x1F, ' ',
		0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// pyFields is Python's str.split() with no argument.
func pyFields(s string) []string { return strings.FieldsFunc(s, isPySpace) }

// rougeWords reproduces what rouge_chinese's Rouge.get_scores does to one
// text before scoring:
//
//	sents = [" ".join(s.split()) for s in cut_sent(text) if len(s) > 0]
//	words = [w for s in sents for w in s.split(" ")]
func rougeWords(text string) []string {
	var words []string
	for _, seg := range cutSent(text) {
		if seg == "" {
			continue
		}
		words = append(words, strings.Split(strings.Join(pyFields(seg), " "), " ")...)
	}
	return words
}

// cutSent is rouge_chinese's Rouge.cut_sent:
//
//	para = re.sub('([。！？\?])([^”’])', r"\1\n\2", para)
//	para = re.sub('(\.{6})([^”’])', r"\1\n\2", para)
//	para = re.sub('(\…{2})([^”’])', r"\1\n\2", para)
//	para = re.sub('([。！？\?][”’])([^，。！？\?])', r'\1\n\2', para)
//	para = para.rstrip()
//	return para.split("\n")
func cutSent(para string) []string {
	rs := []rune(para)
	rs = insertBreaks(rs, 1, func(g []rune) bool { return isSentEnd(g[0]) }, notCloseQuote)
	rs = insertBreaks(rs, 6, func(g []rune) bool { return allRune(g, '.') }, notCloseQuote)
	rs = insertBreaks(rs, 2, func(g []rune) bool { return allRune(g, '…') }, notCloseQuote)
	rs = insertBreaks(rs, 2, func(g []rune) bool { return isSentEnd(g[0]) && !notCloseQuote(g[1]) },
		func(r rune) bool { return !isSentEnd(r) && r != '，' })
	end := len(rs)
	for end > 0 && isPySpace(rs[end-1]) {
		end--
	}
	return strings.Split(string(rs[:end]), "\n")
}

func isSentEnd(r rune) bool { return r == '。' || r == '！' || r == '？' || r == '?' }

func notCloseQuote(r rune) bool { return r != '”' && r != '’' }

func allRune(g []rune, r rune) bool {
	for _, c := range g {
		if c != r {
			return false
		}
	}
	return true
}

// insertBreaks is re.sub(pattern, r"\1\n\2", s) for a pattern made of a
// group of n characters accepted by head followed by one character accepted
// by next: matches are found left to right without overlapping, and a line
// break goes between the group and that character.
func insertBreaks(rs []rune, n int, head func([]rune) bool, next func(rune) bool) []rune {
	out := make([]rune, 0, len(rs)+8)
	i := 0
	for i < len(rs) {
		if i+n < len(rs) && head(rs[i:i+n]) && next(rs[i+n]) {
			out = append(out, rs[i:i+n]...)
			out = append(out, '\n', rs[i+n])
			i += n + 1
			continue
		}
		out = append(out, rs[i])
		i++
	}
	return out
}
