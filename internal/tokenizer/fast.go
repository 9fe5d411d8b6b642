package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Hand-written matchers for the pre-tokenization regexes that nearly every
// byte-level tokenizer carries. They are equivalent to the backtracking
// engine on these exact patterns (TestFastMatchers checks that) and run
// without allocation over the UTF-8 string.

const (
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// attachFastMatcher installs a hand-written matcher for the well-known
// pre-tokenization regexes (GPT-2, Llama 3, Qwen 2), falling back to the
// backtracking engine for every other pattern.
func attachFastMatcher(p *splitPattern) {
	if p == nil || p.isLit {
		return
	}
	switch p.src {
	case gpt2Pattern:
		p.fast = func(s string, out [][2]int) [][2]int { return fastSplit(s, out, gpt2At) }
	case llama3Pattern:
		p.fast = func(s string, out [][2]int) [][2]int {
			return fastSplit(s, out, func(s string, i int) int { return llamaAt(s, i, 3) })
		}
	case qwen2Pattern:
		p.fast = func(s string, out [][2]int) [][2]int {
			return fastSplit(s, out, func(s string, i int) int { return llamaAt(s, i, 1) })
		}
	}
}

// fastSplit: in these patterns every character can start a match, so the
// matches tile the string.
func fastSplit(s string, out [][2]int, at func(string, int) int) [][2]int {
	for i := 0; i < len(s); {
		e := at(s, i)
		out = append(out, [2]int{i, e})
		i = e
	}
	return out
}

const (
	clsL     = 1 << iota // \p{L}
	clsN                 // \p{N}
	clsS                 // \s (White_Space)
	clsCRLF              // \r or \n
	clsOther             // none of L, N, \s
)

var asciiCls = func() (t [128]uint8) {
	for r := rune(0); r < 128; r++ {
		t[r] = runeClassSlow(r)
	}
	return
}()

func runeClassSlow(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return clsL
	case unicode.IsNumber(r):
		return clsN
	case r == '\r' || r == '\n':
		return clsS | clsCRLF
	case unicode.Is(unicode.White_Space, r):
		return clsS
	}
	return clsOther
}

// classAt decodes the rune at s[i] and returns its class and width.
func classAt(s string, i int) (uint8, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return asciiCls[c], 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return runeClassSlow(r), w
}

// runOf returns the end of the run of runes of class mask starting at i.
func runOf(s string, i int, mask uint8) int {
	for i < len(s) {
		c, w := classAt(s, i)
		if c&mask == 0 {
			break
		}
		i += w
	}
	return i
}

// contraction matches 's 't 're 've 'm 'll 'd at i (fold: case-insensitive,
// with Unicode simple folding as Oniguruma does: ſ matches s, K matches k).
func contraction(s string, i int, fold bool) int {
	if s[i] != '\'' || i+1 >= len(s) {
		return -1
	}
	r1, w1 := utf8.DecodeRuneInString(s[i+1:])
	eq := func(r rune, want byte) bool {
		if r == rune(want) {
			return true
		}
		if !fold {
			return false
		}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f == rune(want) {
				return true
			}
		}
		return false
	}
	switch {
	case eq(r1, 's'), eq(r1, 't'), eq(r1, 'm'), eq(r1, 'd'):
		return i + 1 + w1
	}
	if i+1+w1 >= len(s) {
		return -1
	}
	r2, w2 := utf8.DecodeRuneInString(s[i+1+w1:])
	if (eq(r1, 'r') && eq(r2, 'e')) || (eq(r1, 'v') && eq(r2, 'e')) || (eq(r1, 'l') && eq(r2, 'l')) {
		return i + 1 + w1 + w2
	}
	return -1
}

// whitespaceTail handles `\s+(?!\S)|\s+` for a whitespace run [i, j).
func whitespaceTail(s string, i, j int) int {
	if j == len(s) {
		return j
	}
	// Back off one rune so that the run is followed by whitespace.
	_, w := utf8.DecodeLastRuneInString(s[:j])
	if j-w > i {
		return j - w
	}
	return j
}

// gpt2At: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func gpt2At(s string, i int) int {
	if e := contraction(s, i, false); e >= 0 {
		return e
	}
	c, _ := classAt(s, i)
	start := i
	if s[i] == ' ' && i+1 < len(s) {
		if c2, _ := classAt(s, i+1); c2&(clsL|clsN|clsOther) != 0 {
			c, start = c2, i+1
		}
	}
	switch {
	case c&clsL != 0:
		return runOf(s, start, clsL)
	case c&clsN != 0:
		return runOf(s, start, clsN)
	case c&clsOther != 0:
		return runOf(s, start, clsOther)
	}
	j := runOf(s, i, clsS)
	return whitespaceTail(s, i, j)
}

// llamaAt: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func llamaAt(s string, i int, maxDigits int) int {
	if e := contraction(s, i, true); e >= 0 {
		return e
	}
	c, w := classAt(s, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c&clsL != 0 {
		return runOf(s, i, clsL)
	}
	if c&(clsN|clsCRLF) == 0 && i+w < len(s) {
		if c2, _ := classAt(s, i+w); c2&clsL != 0 {
			return runOf(s, i+w, clsL)
		}
	}
	// \p{N}{1,maxDigits}
	if c&clsN != 0 {
		j := i
		for n := 0; n < maxDigits && j < len(s); n++ {
			cj, wj := classAt(s, j)
			if cj&clsN == 0 {
				break
			}
			j += wj
		}
		return j
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	start := -1
	if c&clsOther != 0 {
		start = i
	} else if s[i] == ' ' && i+1 < len(s) {
		if c2, _ := classAt(s, i+1); c2&clsOther != 0 {
			start = i + 1
		}
	}
	if start >= 0 {
		j := runOf(s, start, clsOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// Whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
	j := runOf(s, i, clsS)
	last := -1
	for k := i; k < j; k++ {
		if s[k] == '\r' || s[k] == '\n' {
			last = k
		}
	}
	if last >= 0 {
		return last + 1
	}
	return whitespaceTail(s, i, j)
}
