package pipeline

import (
	"math/big"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/stage"
)

// JSONValue turns a value (an output's, with artifacts in it) into plain Go
// data for encoding/json: an artifact becomes {"artifact": kind, "digest":
// ..., "path": ...}, numbers become json-encodable numbers, unknown values
// null.
func JSONValue(v cty.Value) any {
	if a, ok := stage.ArtifactOf(v); ok {
		return map[string]string{"artifact": a.Kind, "digest": a.Digest, "path": a.Path}
	}
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return v.AsString()
	case t == cty.Bool:
		return v.True()
	case t == cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInt() {
			if i, acc := bf.Int64(); acc == big.Exact {
				return i
			}
		}
		f, _ := bf.Float64()
		return f
	case t.IsObjectType() || t.IsMapType():
		m := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			m[k.AsString()] = JSONValue(e)
		}
		return m
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		l := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			l = append(l, JSONValue(e))
		}
		return l
	default:
		return v.GoString()
	}
}
