package config

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	suggestpkg "github.com/lathe-ml/lathe/internal/suggest"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/zclconf/go-cty/cty"
)

// suggest returns the candidate closest to name, if it is close enough to
// be a likely misspelling, or "".
func suggest(name string, candidates []string) string {
	return suggestpkg.Closest(name, candidates)
}

// didYouMean returns " Did you mean "<prefix><x>"?" for the closest
// candidate, or "".
func didYouMean(name string, candidates []string, prefix string) string {
	if s := suggest(name, candidates); s != "" {
		return fmt.Sprintf(" Did you mean %q?", prefix+s)
	}
	return ""
}

// hclQuote renders s as an HCL quoted string literal.
func hclQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		case r == utf8.RuneError || r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// quotedList renders names as "a", "b" and "c".
func quotedList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	switch len(q) {
	case 0:
		return "none"
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

func artifactKind(t cty.Type) (string, bool) { return stage.ArtifactKindOf(t) }

// within reports whether range a lies inside range b.
func within(a, b hcl.Range) bool {
	return a.Filename == b.Filename && a.Start.Byte >= b.Start.Byte && a.End.Byte <= b.End.Byte
}

// tidyDiags removes exact duplicates (a for_each stage reports the same
// error once per instance) and orders diagnostics: those without a source
// range first, in their original order, then by file and position.
func tidyDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	type key struct {
		sev             hcl.DiagnosticSeverity
		summary, detail string
		subject         hcl.Range
	}
	seen := map[key]bool{}
	var out hcl.Diagnostics
	for _, d := range diags {
		k := key{sev: d.Severity, summary: d.Summary, detail: d.Detail}
		if d.Subject != nil {
			k.subject = *d.Subject
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Subject, out[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	return out
}
