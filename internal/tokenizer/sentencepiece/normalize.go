package sentencepiece

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

const spaceSymbol = "\u2581"

// maxCharsmapResults mirrors SentencePiece's kMaxTrieResultsSize: only the
// first 32 prefix matches of a rule lookup are considered.
const maxCharsmapResults = 32

// dartsArray is a read-only Darts-clone double array, the trie format of the
// precompiled_charsmap. Lookups are bounds-checked, so a corrupt blob gives
// "no match" instead of a crash.
type dartsArray []uint32

func dartsHasLeaf(u uint32) bool  { return (u>>8)&1 == 1 }
func dartsValue(u uint32) uint32  { return u & (1<<31 - 1) }
func dartsLabel(u uint32) uint32  { return u & (1<<31 | 0xff) }
func dartsOffset(u uint32) uint32 { return (u >> 10) << ((u & (1 << 9)) >> 6) }

// commonPrefixSearch calls fn(value, length) for every key that is a prefix
// of key, shortest first, stopping after max results.
func (a dartsArray) commonPrefixSearch(key string, max int, fn func(value uint32, length int)) {
	if len(a) == 0 {
		return
	}
	n := 0
	pos := uint32(0)
	pos ^= dartsOffset(a[pos])
	for i := 0; i < len(key); i++ {
		c := uint32(key[i])
		pos ^= c
		if int(pos) >= len(a) {
			return
		}
		u := a[pos]
		if dartsLabel(u) != c {
			return
		}
		pos ^= dartsOffset(u)
		if dartsHasLeaf(u) {
			if int(pos) >= len(a) {
				return
			}
			if n < max {
				fn(dartsValue(a[pos]), i+1)
			}
			n++
		}
	}
}

// normalizer applies a NormalizerSpec: the charsmap rules, whitespace
// handling and the dummy prefix.
type normalizer struct {
	spec            NormalizerSpec
	trie            dartsArray
	replacements    []byte // NUL-separated replacement strings
	matcher         *byteTrie
	treatWSAsSuffix bool
}

func newNormalizer(spec NormalizerSpec, field string, matcher *byteTrie, treatWSAsSuffix bool) (*normalizer, error) {
	n := &normalizer{spec: spec, matcher: matcher, treatWSAsSuffix: treatWSAsSuffix}
	blob := spec.PrecompiledCharsmap
	if len(blob) == 0 {
		return n, nil
	}
	if len(blob) <= 4 {
		return nil, fmt.Errorf("sentencepiece: %s.precompiled_charsmap: %d bytes, too short", field, len(blob))
	}
	size := binary.LittleEndian.Uint32(blob)
	if uint64(size) >= uint64(len(blob)) || size > uint32(len(blob)-4) {
		return nil, fmt.Errorf("sentencepiece: %s.precompiled_charsmap: trie size %d exceeds the %d-byte blob", field, size, len(blob))
	}
	trieBlob := blob[4 : 4+size]
	n.trie = make(dartsArray, len(trieBlob)/4)
	for i := range n.trie {
		n.trie[i] = binary.LittleEndian.Uint32(trieBlob[4*i:])
	}
	n.replacements = blob[4+size:]
	return n, nil
}

// normalizePrefix returns the normalized form of the longest rule (or one
// character) at the start of s and how many input bytes it consumed.
func (n *normalizer) normalizePrefix(s string) (string, int) {
	if s == "" {
		return "", 0
	}
	if n.matcher != nil {
		if l, _, ok := n.matcher.longestPrefix(s); ok {
			return s[:l], l
		}
	}
	longestLen, longestVal := 0, uint32(0)
	n.trie.commonPrefixSearch(s, maxCharsmapResults, func(v uint32, l int) {
		if longestLen == 0 || l > longestLen {
			longestLen, longestVal = l, v
		}
	})
	if longestLen > 0 && int(longestVal) < len(n.replacements) {
		rep := n.replacements[longestVal:]
		if i := indexByte(rep, 0); i >= 0 {
			rep = rep[:i]
		}
		return string(rep), longestLen
	}
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size == 1 {
		return "\uFFFD", 1
	}
	return s[:size], size
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// normalize mirrors sentencepiece::normalizer::Normalizer::Normalize.
func (n *normalizer) normalize(input string) string {
	if input == "" {
		return ""
	}
	if n.spec.RemoveExtraWhitespaces {
		for input != "" {
			sp, consumed := n.normalizePrefix(input)
			if sp != " " {
				break
			}
			input = input[consumed:]
		}
	}
	if input == "" {
		return ""
	}
	var b strings.Builder
	b.Grow(len(input) * 3)
	addWS := func() {
		if n.spec.EscapeWhitespaces {
			b.WriteString(spaceSymbol)
		} else {
			b.WriteByte(' ')
		}
	}
	if !n.treatWSAsSuffix && n.spec.AddDummyPrefix {
		addWS()
	}
	isPrevSpace := n.spec.RemoveExtraWhitespaces
	for input != "" {
		sp, consumed := n.normalizePrefix(input)
		for isPrevSpace && strings.HasPrefix(sp, " ") {
			sp = sp[1:]
		}
		if sp != "" {
			for i := 0; i < len(sp); i++ {
				if n.spec.EscapeWhitespaces && sp[i] == ' ' {
					b.WriteString(spaceSymbol)
				} else {
					b.WriteByte(sp[i])
				}
			}
			isPrevSpace = strings.HasSuffix(sp, " ")
		}
		input = input[consumed:]
		if !n.spec.RemoveExtraWhitespaces {
			isPrevSpace = false
		}
	}
	out := b.String()
	if n.spec.RemoveExtraWhitespaces {
		space := " "
		if n.spec.EscapeWhitespaces {
			space = spaceSymbol
		}
		for strings.HasSuffix(out, space) {
			out = out[:len(out)-len(space)]
		}
	}
	if n.treatWSAsSuffix && n.spec.AddDummyPrefix {
		if n.spec.EscapeWhitespaces {
			out += spaceSymbol
		} else {
			out += " "
		}
	}
	return out
}

// byteTrie is a plain byte trie mapping strings to ids.
type byteTrie struct {
	nodes []trieNode
}

type trieNode struct {
	next map[byte]int32
	id   int32 // -1 when no key ends here
}

func newByteTrie() *byteTrie {
	return &byteTrie{nodes: []trieNode{{id: -1}}}
}

func (t *byteTrie) insert(key string, id int) {
	cur := int32(0)
	for i := 0; i < len(key); i++ {
		nd := &t.nodes[cur]
		nx, ok := nd.next[key[i]]
		if !ok {
			if nd.next == nil {
				nd.next = make(map[byte]int32)
			}
			nx = int32(len(t.nodes))
			nd.next[key[i]] = nx
			t.nodes = append(t.nodes, trieNode{id: -1})
		}
		cur = nx
	}
	t.nodes[cur].id = int32(id)
}

// prefixes calls fn(id, length) for each key that is a prefix of s, shortest first.
func (t *byteTrie) prefixes(s string, fn func(id, length int)) {
	cur := int32(0)
	for i := 0; i < len(s); i++ {
		nx, ok := t.nodes[cur].next[s[i]]
		if !ok {
			return
		}
		cur = nx
		if id := t.nodes[cur].id; id >= 0 {
			fn(int(id), i+1)
		}
	}
}

// longestPrefix returns the length and id of the longest key that prefixes s.
func (t *byteTrie) longestPrefix(s string) (length, id int, ok bool) {
	t.prefixes(s, func(i, l int) { length, id, ok = l, i, true })
	return
}
