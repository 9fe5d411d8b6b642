package pipeline

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/stage"
)

// WriteDOT writes the stage graph in Graphviz DOT, left to right, one node
// per stage instance and one edge per dependency.
func (ws *Workspace) WriteDOT(w io.Writer) {
	fmt.Fprintln(w, "digraph lathe {")
	fmt.Fprintln(w, "  rankdir=LR;")
	fmt.Fprintln(w, "  node [shape=box, style=rounded];")
	for _, inst := range ws.Resolved.Instances {
		fmt.Fprintf(w, "  %s [label=%s];\n", strconv.Quote(inst.Addr), strconv.Quote(inst.Addr+"\n"+inst.Kind.Name))
	}
	for _, inst := range ws.Resolved.Instances {
		for _, d := range inst.Deps {
			fmt.Fprintf(w, "  %s -> %s;\n", strconv.Quote(d.Addr), strconv.Quote(inst.Addr))
		}
	}
	fmt.Fprintln(w, "}")
}

// FormatArtifacts renders a value that holds artifacts, showing each as its
// kind, digest and path. It reports false for values without artifacts.
func FormatArtifacts(v cty.Value) (string, bool) {
	if !containsArtifact(v) {
		return "", false
	}
	var b strings.Builder
	writeWithArtifacts(&b, v)
	return b.String(), true
}

func containsArtifact(v cty.Value) bool {
	found := false
	_ = cty.Walk(v, func(_ cty.Path, e cty.Value) (bool, error) {
		if _, ok := stage.ArtifactKindOf(e.Type()); ok {
			found = true
		}
		return !found, nil
	})
	return found
}

func writeWithArtifacts(b *strings.Builder, v cty.Value) {
	if a, ok := stage.ArtifactOf(v); ok {
		fmt.Fprintf(b, "%s %s (%s)", a.Kind, a.Digest, a.Path)
		return
	}
	if v.IsNull() || !v.IsKnown() {
		s, _ := canonical(v)
		b.WriteString(s)
		return
	}
	t := v.Type()
	switch {
	case t.IsObjectType() || t.IsMapType():
		b.WriteString("{")
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			k, e := it.Element()
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k.AsString() + " = ")
			writeWithArtifacts(b, e)
		}
		b.WriteString("}")
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		b.WriteString("[")
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, e := it.Element()
			if i > 0 {
				b.WriteString(", ")
			}
			writeWithArtifacts(b, e)
		}
		b.WriteString("]")
	default:
		s, _ := canonical(v)
		b.WriteString(s)
	}
}
