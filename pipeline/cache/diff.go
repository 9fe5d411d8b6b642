package cache

import (
	"strings"
)

// DiffKeyText renders the difference between two key texts as lines
// "- old line" and "+ new line"; unchanged lines are elided. Lines are
// "label value" (or "label = value"), and a removed and an added line with
// the same label are printed next to each other, so a changed argument
// reads as one -/+ pair. Identical texts give "".
func DiffKeyText(old, new string) string {
	a, b := splitLines(old), splitLines(new)
	ops := lcsDiff(a, b)
	var out strings.Builder
	// Walk the edit script hunk by hunk (a hunk is a maximal run of
	// deletions and insertions between equal lines).
	for i := 0; i < len(ops); {
		if ops[i].kind == '=' {
			i++
			continue
		}
		j := i
		var dels, ins []string
		for ; j < len(ops) && ops[j].kind != '='; j++ {
			if ops[j].kind == '-' {
				dels = append(dels, ops[j].line)
			} else {
				ins = append(ins, ops[j].line)
			}
		}
		used := make([]bool, len(ins))
		for _, d := range dels {
			out.WriteString("- " + d + "\n")
			for k, in := range ins {
				if !used[k] && keyLabel(in) == keyLabel(d) {
					used[k] = true
					out.WriteString("+ " + in + "\n")
					break
				}
			}
		}
		for k, in := range ins {
			if !used[k] {
				out.WriteString("+ " + in + "\n")
			}
		}
		i = j
	}
	return out.String()
}

// keyLabel is the label of a key line: the text before " = " when there is
// one, else the first word.
func keyLabel(line string) string {
	if l, _, ok := strings.Cut(line, " = "); ok {
		return l
	}
	l, _, _ := strings.Cut(line, " ")
	return l
}

func splitLines(text string) []string {
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}

type diffOp struct {
	kind byte // '=', '-', '+'
	line string
}

// lcsDiff computes a shortest edit script by longest common subsequence.
// Key texts are tens to hundreds of lines, so O(n·m) is fine.
func lcsDiff(a, b []string) []diffOp {
	n, m := len(a), len(b)
	// l[i][j] = LCS length of a[i:], b[j:].
	l := make([][]int, n+1)
	for i := range l {
		l[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			ops = append(ops, diffOp{'=', a[i]})
			i++
			j++
		case l[i+1][j] >= l[i][j+1]:
			ops = append(ops, diffOp{'-', a[i]})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		ops = append(ops, diffOp{'-', a[i]})
	}
	for ; j < m; j++ {
		ops = append(ops, diffOp{'+', b[j]})
	}
	return ops
}
