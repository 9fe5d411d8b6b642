package hub

import (
	"fmt"
	"strings"
)

// Match reports whether name matches the fnmatch-style pattern, as Python's
// fnmatch.fnmatchcase does and huggingface_hub's allow_patterns use: '*'
// matches any run of characters including '/', '?' one character, '[seq]' and
// '[!seq]' a character class (ranges allowed). A pattern ending in '/' matches
// everything below that directory. Matching is case-sensitive.
func Match(pattern, name string) bool {
	if strings.HasSuffix(pattern, "/") {
		pattern += "*"
	}
	return matchRunes([]rune(pattern), []rune(name))
}

func matchRunes(p, s []rune) bool {
	// Iterative wildcard matching with backtracking to the last '*'.
	var starP, starS = -1, 0
	i, j := 0, 0
	for j < len(s) {
		if i < len(p) {
			switch p[i] {
			case '*':
				starP, starS = i, j
				i++
				continue
			case '?':
				i++
				j++
				continue
			case '[':
				if ok, next, valid := matchClass(p, i, s[j]); valid {
					if ok {
						i = next
						j++
						continue
					}
				} else if s[j] == '[' { // unterminated class: literal '['
					i++
					j++
					continue
				}
			default:
				if p[i] == s[j] {
					i++
					j++
					continue
				}
			}
		}
		if starP >= 0 {
			i = starP + 1
			starS++
			j = starS
			continue
		}
		return false
	}
	for i < len(p) && p[i] == '*' {
		i++
	}
	return i == len(p)
}

// matchClass matches c against the class starting at p[i] == '['. It returns
// whether c matches, the index after the class, and whether the class is
// well-formed (has a closing ']').
func matchClass(p []rune, i int, c rune) (match bool, next int, valid bool) {
	k := i + 1
	negate := false
	if k < len(p) && (p[k] == '!') {
		negate = true
		k++
	}
	start := k
	for k < len(p) && (p[k] != ']' || k == start) {
		lo := p[k]
		if k+2 < len(p) && p[k+1] == '-' && p[k+2] != ']' {
			if lo <= c && c <= p[k+2] {
				match = true
			}
			k += 3
			continue
		}
		if lo == c {
			match = true
		}
		k++
	}
	if k >= len(p) {
		return false, 0, false
	}
	return match != negate, k + 1, true
}

// Filter returns the paths kept by include (empty: all) and exclude patterns.
func Filter(paths, include, exclude []string) []string {
	var out []string
	for _, p := range paths {
		if Selected(p, include, exclude) {
			out = append(out, p)
		}
	}
	return out
}

// Selected reports whether path passes include (empty: all) and exclude.
func Selected(path string, include, exclude []string) bool {
	if len(include) > 0 {
		ok := false
		for _, pat := range include {
			if Match(pat, path) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, pat := range exclude {
		if Match(pat, path) {
			return false
		}
	}
	return true
}

// ValidatePattern reports a pattern that cannot match anything sensible.
func ValidatePattern(p string) error {
	if p == "" {
		return fmt.Errorf("empty pattern")
	}
	return nil
}
