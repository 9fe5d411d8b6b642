package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// AddedToken is an entry of tokenizer.json "added_tokens".
type AddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// trie matches added tokens leftmost-longest, like the aho-corasick
// automaton HF builds with MatchKind::LeftmostLongest.
type trie struct {
	nodes []trieNode
	first [256]bool
	empty bool
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index into tokens, -1 if none
}

func newTrie() *trie {
	return &trie{nodes: []trieNode{{tok: -1}}, empty: true}
}

func (t *trie) add(s string, idx int) {
	if s == "" {
		return
	}
	t.empty = false
	t.first[s[0]] = true
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		nx, ok := t.nodes[n].next[c]
		if !ok {
			if t.nodes[n].next == nil {
				t.nodes[n].next = make(map[byte]int32)
			}
			t.nodes = append(t.nodes, trieNode{tok: -1})
			nx = int32(len(t.nodes) - 1)
			t.nodes[n].next[c] = nx
		}
		n = int(nx)
	}
	if t.nodes[n].tok < 0 {
		t.nodes[n].tok = int32(idx)
	}
}

// longestAt returns the token index and length of the longest token that
// starts at s[i:], or -1.
func (t *trie) longestAt(s string, i int) (int, int) {
	n := 0
	best, bestLen := -1, 0
	for j := i; j < len(s); j++ {
		nx, ok := t.nodes[n].next[s[j]]
		if !ok {
			break
		}
		n = int(nx)
		if tk := t.nodes[n].tok; tk >= 0 {
			best, bestLen = int(tk), j-i+1
		}
	}
	return best, bestLen
}

type tokMatch struct {
	start, end int
	tok        int // index into addedVocab.tokens
}

type addedVocab struct {
	tokens  []AddedToken
	byID    map[int]int    // id -> index in tokens
	byStr   map[string]int // content -> index
	raw     *trie          // normalized == false
	normed  *trie          // normalized == true
	special map[int]bool
}

func newAddedVocab(toks []AddedToken) *addedVocab {
	av := &addedVocab{
		tokens:  toks,
		byID:    make(map[int]int, len(toks)),
		byStr:   make(map[string]int, len(toks)),
		raw:     newTrie(),
		normed:  newTrie(),
		special: make(map[int]bool),
	}
	for i, t := range toks {
		av.byID[t.ID] = i
		av.byStr[t.Content] = i
		if t.Special {
			av.special[t.ID] = true
		}
		if t.Normalized {
			av.normed.add(t.Content, i)
		} else {
			av.raw.add(t.Content, i)
		}
	}
	return av
}

func isAlnum(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Other_Alphabetic, r)
}

// findMatches implements HF AddedVocabulary::find_matches.
func (av *addedVocab) findMatches(t *trie, s string) []tokMatch {
	if t.empty {
		return nil
	}
	var out []tokMatch
	startOffset := 0
	for i := 0; i < len(s); {
		if !t.first[s[i]] {
			i++
			continue
		}
		idx, l := t.longestAt(s, i)
		if idx < 0 {
			i++
			continue
		}
		start, stop := i, i+l
		tok := av.tokens[idx]
		if tok.SingleWord {
			startSpace := start == 0
			if !startSpace {
				r, _ := utf8.DecodeLastRuneInString(s[:start])
				startSpace = !isAlnum(r)
			}
			stopSpace := stop == len(s)
			if !stopSpace {
				r, _ := utf8.DecodeRuneInString(s[stop:])
				stopSpace = !isAlnum(r)
			}
			if !startSpace || !stopSpace {
				// Discarded; like HF's non-overlapping iterator the scan
				// resumes after the discarded match.
				i = stop
				continue
			}
		}
		if tok.LStrip {
			ns := len(strings.TrimRightFunc(s[:start], isRustWhitespace))
			start = max(ns, startOffset)
		}
		if tok.RStrip {
			stop += len(s[stop:]) - len(strings.TrimLeftFunc(s[stop:], isRustWhitespace))
		}
		out = append(out, tokMatch{start, stop, idx})
		startOffset = stop
		i = stop
	}
	return out
}
