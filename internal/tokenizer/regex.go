package tokenizer

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// This file holds a small backtracking regular-expression engine for the
// Oniguruma-flavoured patterns that Hugging Face tokenizer.json files carry.
// Go's regexp (RE2) has no lookahead, and those patterns rely on it, e.g.
// `\s+(?!\S)`. Supported: literals and escapes, `.`, character classes with
// ranges, negation and the shorthands \s \S \d \D \w \W \p{..} \P{..},
// groups `(...)`, `(?:...)`, `(?i:...)`, `(?i)`, lookahead `(?=...)`,
// `(?!...)`, alternation, and the quantifiers ? * + {n} {n,} {n,m} in greedy,
// lazy (`?`) and possessive (`+`, treated as greedy) forms, plus the anchors
// ^ $ \A \z. Semantics are Perl/Oniguruma leftmost-first. Anything else is
// rejected at compile time with an error, never silently mis-matched.

type instKind uint8

const (
	iChar  instKind = iota // one rune matching cls
	iStar                  // cls repeated min..max times (greedy or lazy), single-rune body
	iSplit                 // try x, then y
	iLook                  // lookahead sub-program; neg inverts
	iBegin                 // ^ / \A: position 0 (line start for ^ after '\n')
	iEnd                   // $ / \z
	iMatch                 // success
	iJump                  // goto x
)

type inst struct {
	kind     instKind
	cls      *charClass
	min, max int // iStar; max < 0 means unbounded
	lazy     bool
	neg      bool // iLook
	line     bool // iBegin/iEnd: line anchors (^ $) rather than absolute
	x, y     int  // successors (iSplit: x first); for iChar/iStar/iLook/iBegin/iEnd: x = next
	sub      int  // iLook: start of the sub-program (ends in iMatch)
}

// regex is a compiled pattern.
type regex struct {
	src   string
	prog  []inst
	start int
	// lit is set when the whole pattern is a literal string (fast path).
	lit string
}

// charClass is a set of runes.
type charClass struct {
	ascii  [128]bool
	ranges []rune // pairs lo,hi (non-ASCII part is decided by these and tabs)
	tabs   []*unicode.RangeTable
	ntabs  []*unicode.RangeTable // negated tables (\P{..}, \S, \W inside classes)
	negate bool
	fold   bool
}

func (c *charClass) has(r rune) bool {
	if r < 128 {
		return c.ascii[r]
	}
	if c.hasRaw(r) {
		return true
	}
	if c.fold {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if c.hasRaw(f) {
				return true
			}
		}
	}
	return false
}

// hasRaw evaluates membership without case folding, applying negation.
func (c *charClass) hasRaw(r rune) bool {
	return c.member(r) != c.negate
}

func (c *charClass) member(r rune) bool {
	for i := 0; i+1 < len(c.ranges); i += 2 {
		if r >= c.ranges[i] && r <= c.ranges[i+1] {
			return true
		}
	}
	for _, t := range c.tabs {
		if unicode.Is(t, r) {
			return true
		}
	}
	for _, t := range c.ntabs {
		if !unicode.Is(t, r) {
			return true
		}
	}
	return false
}

// finish precomputes the ASCII bitmap (after negation and folding).
func (c *charClass) finish() {
	for r := rune(0); r < 128; r++ {
		m := c.member(r) != c.negate
		if !m && c.fold {
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				if c.member(f) != c.negate {
					m = true
					break
				}
			}
		}
		c.ascii[r] = m
	}
}

// ---- parsing ----

type reNode struct {
	op       byte // 'c' class, 'a' alt, 's' concat, 'r' repeat, 'l' lookahead, '^', '$', 'A', 'z'
	cls      *charClass
	subs     []*reNode
	min, max int
	lazy     bool
	neg      bool
}

type reParser struct {
	src []rune
	pos int
}

func (p *reParser) errf(format string, a ...any) error {
	return fmt.Errorf("regex %q at offset %d: %s", string(p.src), p.pos, fmt.Sprintf(format, a...))
}

func (p *reParser) more() bool { return p.pos < len(p.src) }
func (p *reParser) peek() rune { return p.src[p.pos] }

func (p *reParser) parseAlt(fold bool, depth int) (*reNode, error) {
	if depth > 200 {
		return nil, p.errf("nesting too deep")
	}
	var alts []*reNode
	for {
		seq, err := p.parseSeq(fold, depth)
		if err != nil {
			return nil, err
		}
		alts = append(alts, seq)
		if p.more() && p.peek() == '|' {
			p.pos++
			continue
		}
		break
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return &reNode{op: 'a', subs: alts}, nil
}

func (p *reParser) parseSeq(fold bool, depth int) (*reNode, error) {
	seq := &reNode{op: 's'}
	for p.more() {
		c := p.peek()
		if c == '|' || c == ')' {
			break
		}
		atom, newFold, err := p.parseAtom(fold, depth)
		if err != nil {
			return nil, err
		}
		if atom == nil { // inline flag group like (?i)
			fold = newFold
			continue
		}
		atom, err = p.parseQuant(atom)
		if err != nil {
			return nil, err
		}
		seq.subs = append(seq.subs, atom)
	}
	return seq, nil
}

func (p *reParser) parseQuant(atom *reNode) (*reNode, error) {
	for p.more() {
		c := p.peek()
		min, max := -1, -1
		switch c {
		case '?':
			min, max = 0, 1
			p.pos++
		case '*':
			min, max = 0, -1
			p.pos++
		case '+':
			min, max = 1, -1
			p.pos++
		case '{':
			save := p.pos
			lo, hi, ok := p.parseBraces()
			if !ok {
				p.pos = save
				return atom, nil // literal '{' follows; handled by next atom
			}
			min, max = lo, hi
		default:
			return atom, nil
		}
		if atom.op == '^' || atom.op == '$' || atom.op == 'A' || atom.op == 'z' || atom.op == 'l' {
			return nil, p.errf("quantifier on zero-width assertion")
		}
		n := &reNode{op: 'r', subs: []*reNode{atom}, min: min, max: max}
		if p.more() && p.peek() == '?' {
			n.lazy = true
			p.pos++
		} else if p.more() && p.peek() == '+' {
			p.pos++ // possessive: treated as greedy
		}
		if max >= 0 && max < min {
			return nil, p.errf("bad repetition range {%d,%d}", min, max)
		}
		if min > 1000 || max > 1000 {
			return nil, p.errf("repetition count too large")
		}
		atom = n
	}
	return atom, nil
}

func (p *reParser) parseBraces() (int, int, bool) {
	// at '{'
	end := p.pos + 1
	for end < len(p.src) && p.src[end] != '}' {
		end++
	}
	if end >= len(p.src) {
		return 0, 0, false
	}
	body := string(p.src[p.pos+1 : end])
	var lo, hi int
	var err error
	if i := strings.IndexByte(body, ','); i >= 0 {
		if i == 0 {
			lo = 0
		} else if lo, err = strconv.Atoi(body[:i]); err != nil {
			return 0, 0, false
		}
		if i == len(body)-1 {
			hi = -1
		} else if hi, err = strconv.Atoi(body[i+1:]); err != nil {
			return 0, 0, false
		}
	} else {
		if lo, err = strconv.Atoi(body); err != nil {
			return 0, 0, false
		}
		hi = lo
	}
	if lo < 0 {
		return 0, 0, false
	}
	p.pos = end + 1
	return lo, hi, true
}

func litClass(r rune, fold bool) *charClass {
	c := &charClass{ranges: []rune{r, r}, fold: fold}
	c.finish()
	return c
}

func (p *reParser) parseAtom(fold bool, depth int) (*reNode, bool, error) {
	c := p.peek()
	switch c {
	case '(':
		p.pos++
		if p.more() && p.peek() == '?' {
			p.pos++
			if !p.more() {
				return nil, fold, p.errf("unterminated group")
			}
			switch p.peek() {
			case ':':
				p.pos++
				return p.group(fold, depth)
			case '=', '!':
				neg := p.peek() == '!'
				p.pos++
				sub, err := p.parseAlt(fold, depth+1)
				if err != nil {
					return nil, fold, err
				}
				if !p.more() || p.peek() != ')' {
					return nil, fold, p.errf("missing )")
				}
				p.pos++
				return &reNode{op: 'l', subs: []*reNode{sub}, neg: neg}, fold, nil
			case '>':
				p.pos++ // atomic group: treated as a plain group
				return p.group(fold, depth)
			case 'i', '-':
				on := true
				f := fold
				for p.more() && p.peek() != ':' && p.peek() != ')' {
					switch p.peek() {
					case 'i':
						f = on
					case '-':
						on = false
					default:
						return nil, fold, p.errf("unsupported inline flag %q", p.peek())
					}
					p.pos++
				}
				if !p.more() {
					return nil, fold, p.errf("unterminated group")
				}
				if p.peek() == ')' {
					p.pos++
					return nil, f, nil
				}
				p.pos++ // ':'
				n, _, err := p.group(f, depth)
				return n, fold, err
			default:
				return nil, fold, p.errf("unsupported group syntax (?%c", p.peek())
			}
		}
		return p.group(fold, depth)
	case ')':
		return nil, fold, p.errf("unexpected )")
	case '[':
		cls, err := p.parseClass(fold)
		if err != nil {
			return nil, fold, err
		}
		return &reNode{op: 'c', cls: cls}, fold, nil
	case '.':
		p.pos++
		cls := &charClass{ranges: []rune{'\n', '\n'}, negate: true}
		cls.finish()
		return &reNode{op: 'c', cls: cls}, fold, nil
	case '^':
		p.pos++
		return &reNode{op: '^'}, fold, nil
	case '$':
		p.pos++
		return &reNode{op: '$'}, fold, nil
	case '*', '+', '?':
		return nil, fold, p.errf("quantifier without operand")
	case '\\':
		p.pos++
		if !p.more() {
			return nil, fold, p.errf("trailing backslash")
		}
		e := p.peek()
		switch e {
		case 'A':
			p.pos++
			return &reNode{op: 'A'}, fold, nil
		case 'z':
			p.pos++
			return &reNode{op: 'z'}, fold, nil
		}
		cls := &charClass{fold: fold}
		if err := p.parseEscapeInto(cls); err != nil {
			return nil, fold, err
		}
		cls.finish()
		return &reNode{op: 'c', cls: cls}, fold, nil
	}
	p.pos++
	return &reNode{op: 'c', cls: litClass(c, fold)}, fold, nil
}

func (p *reParser) group(fold bool, depth int) (*reNode, bool, error) {
	sub, err := p.parseAlt(fold, depth+1)
	if err != nil {
		return nil, fold, err
	}
	if !p.more() || p.peek() != ')' {
		return nil, fold, p.errf("missing )")
	}
	p.pos++
	return sub, fold, nil
}

var (
	spaceTable = unicode.White_Space
	wordTables = []*unicode.RangeTable{unicode.L, unicode.M, unicode.Nd, unicode.Pc}
)

// parseEscapeInto parses the escape after a backslash (p.pos at the letter)
// and adds its set to cls. Shorthand negations inside a class go to ntabs.
func (p *reParser) parseEscapeInto(cls *charClass) error {
	e := p.peek()
	p.pos++
	add := func(r rune) { cls.ranges = append(cls.ranges, r, r) }
	switch e {
	case 'n':
		add('\n')
	case 'r':
		add('\r')
	case 't':
		add('\t')
	case 'f':
		add('\f')
	case 'v':
		add('\v')
	case 'e':
		add(0x1b)
	case 'a':
		add(0x07)
	case '0':
		add(0)
	case 's':
		cls.tabs = append(cls.tabs, spaceTable)
	case 'S':
		cls.ntabs = append(cls.ntabs, spaceTable)
	case 'd':
		cls.tabs = append(cls.tabs, unicode.Nd)
	case 'D':
		cls.ntabs = append(cls.ntabs, unicode.Nd)
	case 'w':
		cls.tabs = append(cls.tabs, wordTables...)
	case 'W':
		if len(cls.ranges) == 0 && len(cls.tabs) == 0 && len(cls.ntabs) == 0 && !cls.negate {
			cls.tabs = append(cls.tabs, wordTables...)
			cls.negate = true
			return nil
		}
		return p.errf(`\W inside a character class is not supported`)
	case 'p', 'P':
		name := ""
		if p.more() && p.peek() == '{' {
			end := p.pos + 1
			for end < len(p.src) && p.src[end] != '}' {
				end++
			}
			if end >= len(p.src) {
				return p.errf("unterminated \\p{")
			}
			name = string(p.src[p.pos+1 : end])
			p.pos = end + 1
		} else if p.more() {
			name = string(p.peek())
			p.pos++
		}
		neg := e == 'P'
		if strings.HasPrefix(name, "^") {
			neg = !neg
			name = name[1:]
		}
		t := unicodeTable(name)
		if t == nil {
			return p.errf("unknown Unicode property %q", name)
		}
		if neg {
			cls.ntabs = append(cls.ntabs, t)
		} else {
			cls.tabs = append(cls.tabs, t)
		}
	case 'x':
		var hex string
		if p.more() && p.peek() == '{' {
			end := p.pos + 1
			for end < len(p.src) && p.src[end] != '}' {
				end++
			}
			if end >= len(p.src) {
				return p.errf("unterminated \\x{")
			}
			hex = string(p.src[p.pos+1 : end])
			p.pos = end + 1
		} else {
			if p.pos+2 > len(p.src) {
				return p.errf("short \\x escape")
			}
			hex = string(p.src[p.pos : p.pos+2])
			p.pos += 2
		}
		v, err := strconv.ParseUint(hex, 16, 32)
		if err != nil || v > unicode.MaxRune {
			return p.errf("bad \\x escape %q", hex)
		}
		add(rune(v))
	case 'u':
		if p.pos+4 > len(p.src) {
			return p.errf("short \\u escape")
		}
		v, err := strconv.ParseUint(string(p.src[p.pos:p.pos+4]), 16, 32)
		if err != nil {
			return p.errf("bad \\u escape")
		}
		p.pos += 4
		add(rune(v))
	default:
		if e < 128 && (unicode.IsLetter(e) || unicode.IsDigit(e)) {
			return p.errf("unsupported escape \\%c", e)
		}
		add(e)
	}
	return nil
}

func unicodeTable(name string) *unicode.RangeTable {
	switch name {
	case "Letter":
		name = "L"
	case "Number":
		name = "N"
	case "Punctuation":
		name = "P"
	case "Symbol":
		name = "S"
	case "Mark":
		name = "M"
	case "Separator":
		name = "Z"
	case "Other":
		name = "C"
	}
	if t, ok := unicode.Categories[name]; ok {
		return t
	}
	if t, ok := unicode.Scripts[name]; ok {
		return t
	}
	if t, ok := unicode.Properties[name]; ok {
		return t
	}
	return nil
}

func (p *reParser) parseClass(fold bool) (*charClass, error) {
	p.pos++ // '['
	cls := &charClass{fold: fold}
	if p.more() && p.peek() == '^' {
		cls.negate = true
		p.pos++
	}
	first := true
	for {
		if !p.more() {
			return nil, p.errf("unterminated character class")
		}
		c := p.peek()
		if c == ']' && !first {
			p.pos++
			break
		}
		first = false
		if c == '[' {
			return nil, p.errf("nested character classes are not supported")
		}
		if c == '&' && p.pos+1 < len(p.src) && p.src[p.pos+1] == '&' {
			return nil, p.errf("class intersection is not supported")
		}
		var lo rune
		if c == '\\' {
			p.pos++
			if !p.more() {
				return nil, p.errf("trailing backslash")
			}
			before := len(cls.ranges)
			nt, nn := len(cls.tabs), len(cls.ntabs)
			save := cls.negate
			if err := p.parseEscapeInto(cls); err != nil {
				return nil, err
			}
			if cls.negate != save {
				return nil, p.errf(`\W inside a character class is not supported`)
			}
			if len(cls.ranges) != before+2 || len(cls.tabs) != nt || len(cls.ntabs) != nn {
				continue // a set escape, cannot start a range
			}
			lo = cls.ranges[before]
			cls.ranges = cls.ranges[:before]
		} else {
			p.pos++
			lo = c
		}
		hi := lo
		if p.pos+1 < len(p.src) && p.peek() == '-' && p.src[p.pos+1] != ']' {
			p.pos++
			h := p.peek()
			if h == '\\' {
				p.pos++
				if !p.more() {
					return nil, p.errf("trailing backslash")
				}
				tmp := &charClass{}
				if err := p.parseEscapeInto(tmp); err != nil {
					return nil, err
				}
				if len(tmp.ranges) != 2 || len(tmp.tabs) != 0 || len(tmp.ntabs) != 0 {
					return nil, p.errf("bad range end")
				}
				hi = tmp.ranges[0]
			} else {
				p.pos++
				hi = h
			}
			if hi < lo {
				return nil, p.errf("bad range %q-%q", lo, hi)
			}
		}
		cls.ranges = append(cls.ranges, lo, hi)
	}
	cls.finish()
	return cls, nil
}

// ---- compiling ----

type reCompiler struct {
	prog []inst
}

func (c *reCompiler) emit(in inst) int {
	c.prog = append(c.prog, in)
	return len(c.prog) - 1
}

// compile emits code for n that continues at next; returns the entry pc.
func (c *reCompiler) compile(n *reNode, next int) int {
	switch n.op {
	case 'c':
		return c.emit(inst{kind: iChar, cls: n.cls, x: next})
	case 's':
		for i := len(n.subs) - 1; i >= 0; i-- {
			next = c.compile(n.subs[i], next)
		}
		return next
	case 'a':
		entries := make([]int, len(n.subs))
		for i, s := range n.subs {
			entries[i] = c.compile(s, next)
		}
		pc := entries[len(entries)-1]
		for i := len(entries) - 2; i >= 0; i-- {
			pc = c.emit(inst{kind: iSplit, x: entries[i], y: pc})
		}
		return pc
	case 'l':
		m := c.emit(inst{kind: iMatch})
		sub := c.compile(n.subs[0], m)
		return c.emit(inst{kind: iLook, neg: n.neg, sub: sub, x: next})
	case '^', 'A':
		return c.emit(inst{kind: iBegin, line: n.op == '^', x: next})
	case '$', 'z':
		return c.emit(inst{kind: iEnd, line: n.op == '$', x: next})
	case 'r':
		body := n.subs[0]
		if body.op == 'c' {
			return c.emit(inst{kind: iStar, cls: body.cls, min: n.min, max: n.max, lazy: n.lazy, x: next})
		}
		// General body: optional tail first, then min mandatory copies.
		pc := next
		if n.max < 0 {
			loop := c.emit(inst{kind: iSplit})
			bodyPC := c.compile(body, loop)
			if n.lazy {
				c.prog[loop].x, c.prog[loop].y = next, bodyPC
			} else {
				c.prog[loop].x, c.prog[loop].y = bodyPC, next
			}
			pc = loop
		} else {
			for i := n.min; i < n.max; i++ {
				bodyPC := c.compile(body, pc)
				if n.lazy {
					pc = c.emit(inst{kind: iSplit, x: next, y: bodyPC})
				} else {
					pc = c.emit(inst{kind: iSplit, x: bodyPC, y: next})
				}
				next = pc
			}
		}
		for i := 0; i < n.min; i++ {
			pc = c.compile(body, pc)
		}
		return pc
	}
	panic("tokenizer: unknown regex node")
}

// compileRegex compiles an Oniguruma-style pattern.
func compileRegex(src string) (*regex, error) {
	p := &reParser{src: []rune(src)}
	n, err := p.parseAlt(false, 0)
	if err != nil {
		return nil, err
	}
	if p.more() {
		return nil, p.errf("unexpected %q", p.peek())
	}
	if containsEmptyLoop(n) {
		return nil, fmt.Errorf("regex %q: repetition of a group that can match the empty string is not supported", src)
	}
	c := &reCompiler{}
	m := c.emit(inst{kind: iMatch})
	start := c.compile(n, m)
	re := &regex{src: src, prog: c.prog, start: start}
	if lit, ok := literalOf(n); ok && lit != "" {
		re.lit = lit
	}
	return re, nil
}

func literalOf(n *reNode) (string, bool) {
	switch n.op {
	case 'c':
		c := n.cls
		if len(c.ranges) == 2 && c.ranges[0] == c.ranges[1] && len(c.tabs) == 0 && len(c.ntabs) == 0 && !c.negate && !c.fold {
			return string(c.ranges[0]), true
		}
	case 's':
		var b strings.Builder
		for _, s := range n.subs {
			l, ok := literalOf(s)
			if !ok {
				return "", false
			}
			b.WriteString(l)
		}
		return b.String(), true
	}
	return "", false
}

func canBeEmpty(n *reNode) bool {
	switch n.op {
	case 'c':
		return false
	case 's':
		for _, s := range n.subs {
			if !canBeEmpty(s) {
				return false
			}
		}
		return true
	case 'a':
		for _, s := range n.subs {
			if canBeEmpty(s) {
				return true
			}
		}
		return false
	case 'r':
		return n.min == 0 || canBeEmpty(n.subs[0])
	}
	return true // assertions
}

func containsEmptyLoop(n *reNode) bool {
	if n.op == 'r' && n.subs[0].op != 'c' && n.max < 0 && canBeEmpty(n.subs[0]) {
		return true
	}
	for _, s := range n.subs {
		if containsEmptyLoop(s) {
			return true
		}
	}
	return false
}

// ---- matching ----

// maxRegexSteps bounds the work of one match attempt.
const maxRegexSteps = 1 << 20

// run executes the program from pc at position pos and returns the end of
// the first (leftmost-first) match or -1.
func (re *regex) run(in []rune, pc, pos int, steps *int) int {
	for {
		*steps++
		if *steps > maxRegexSteps {
			// Like Oniguruma's retry limit: give up on pathological
			// backtracking instead of hanging (treated as no match here).
			return -1
		}
		ins := &re.prog[pc]
		switch ins.kind {
		case iMatch:
			return pos
		case iJump:
			pc = ins.x
		case iChar:
			if pos >= len(in) || !ins.cls.has(in[pos]) {
				return -1
			}
			pos++
			pc = ins.x
		case iStar:
			limit := len(in) - pos
			if ins.max >= 0 && ins.max < limit {
				limit = ins.max
			}
			if ins.lazy {
				k := 0
				for ; k < ins.min; k++ {
					if k >= limit || !ins.cls.has(in[pos+k]) {
						return -1
					}
				}
				for {
					if e := re.run(in, ins.x, pos+k, steps); e >= 0 {
						return e
					}
					if k >= limit || !ins.cls.has(in[pos+k]) {
						return -1
					}
					k++
				}
			}
			k := 0
			for k < limit && ins.cls.has(in[pos+k]) {
				k++
			}
			if k < ins.min {
				return -1
			}
			next := &re.prog[ins.x]
			if next.kind == iMatch {
				return pos + k
			}
			for ; k > ins.min; k-- {
				if e := re.run(in, ins.x, pos+k, steps); e >= 0 {
					return e
				}
			}
			pos += ins.min
			pc = ins.x
		case iSplit:
			if e := re.run(in, ins.x, pos, steps); e >= 0 {
				return e
			}
			pc = ins.y
		case iLook:
			ok := re.run(in, ins.sub, pos, steps) >= 0
			if ok == ins.neg {
				return -1
			}
			pc = ins.x
		case iBegin:
			if !(pos == 0 || (ins.line && in[pos-1] == '\n')) {
				return -1
			}
			pc = ins.x
		case iEnd:
			if !(pos == len(in) || (ins.line && in[pos] == '\n')) {
				return -1
			}
			pc = ins.x
		}
	}
}

// findAll returns the [start,end) rune index pairs of successive
// non-overlapping matches in in. Empty matches are skipped (as the HF
// tokenizers splitter does).
func (re *regex) findAll(in []rune, out [][2]int) [][2]int {
	var steps int
	pos := 0
	for pos <= len(in) {
		found := false
		for s := pos; s <= len(in); s++ {
			steps = 0
			e := re.run(in, re.start, s, &steps)
			if e >= 0 {
				if e == s { // empty match: advance
					if s == len(in) {
						return out
					}
					pos = s + 1
					found = true
					break
				}
				out = append(out, [2]int{s, e})
				pos = e
				found = true
				break
			}
		}
		if !found {
			break
		}
	}
	return out
}
