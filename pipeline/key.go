package pipeline

import (
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/cache"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// KeySchema is the version of the cache key layout. Bump it when the lines
// below change meaning: every key changes with it.
const KeySchema = "lathe-key v1"

// EngineVersion enters every key: results computed by a different engine
// version are not reused.
const EngineVersion = "0.1.0"

// stageKey builds the labelled key text of one stage instance from its fully
// known arguments. The lines are, in order: the key schema; the kind and its
// version salt; the engine version; the backend, for a stage that runs on
// GPUs ("backend cuda"; CPU stages have no such line, so their keys did not
// change when GPUs came); every semantic argument, flattened through
// objects and maps into dotted paths and sorted, its value as canonical
// JSON with artifacts by content digest; and the kind's own extra lines
// (digests of local inputs). The instance's name, its address, paths
// and logging options are deliberately absent.
func stageKey(inst *config.Instance, args cty.Value, kc stage.KeyContext) (cache.Key, error) {
	k := inst.Kind
	lines := []string{
		KeySchema,
		"kind " + k.Name,
		"kind-version " + k.Version,
		"engine " + EngineVersion,
	}
	if l, ok := backendKeyLine(inst); ok {
		lines = append(lines, l)
	}
	skip := map[string]bool{}
	for _, n := range k.NonSemantic {
		skip[n] = true
	}
	var argLines []string
	if !args.IsNull() {
		for name, v := range args.AsValueMap() {
			if skip[name] {
				continue
			}
			if err := flattenArg(&argLines, name, v); err != nil {
				return cache.Key{}, err
			}
		}
	}
	sort.Strings(argLines)
	lines = append(lines, argLines...)
	if k.KeyLines != nil {
		extra, err := k.KeyLines(kc, args)
		if err != nil {
			return cache.Key{}, err
		}
		for _, l := range extra {
			lines = append(lines, l.Label+" = "+l.Value)
		}
	}
	return cache.NewKey(lines), nil
}

// flattenArg appends "arg <path> = <canonical value>" lines, descending into
// objects and maps so that a changed nested argument shows as one line.
func flattenArg(out *[]string, path string, v cty.Value) error {
	t := v.Type()
	if !v.IsNull() && v.IsKnown() && (t.IsObjectType() || t.IsMapType()) && v.LengthInt() > 0 {
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if err := flattenArg(out, path+"."+k.AsString(), e); err != nil {
				return err
			}
		}
		return nil
	}
	s, err := canonical(v)
	if err != nil {
		return fmt.Errorf("argument %s: %w", path, err)
	}
	*out = append(*out, "arg "+path+" = "+s)
	return nil
}

// canonical renders a value as compact JSON with sorted object keys, numbers
// in their shortest exact decimal form and artifacts as
// "artifact(<kind>) <digest>".
func canonical(v cty.Value) (string, error) {
	var b strings.Builder
	if err := writeCanonical(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeCanonical(b *strings.Builder, v cty.Value) error {
	if !v.IsKnown() {
		return fmt.Errorf("value not known")
	}
	if v.IsNull() {
		b.WriteString("null")
		return nil
	}
	t := v.Type()
	if kind, ok := stage.ArtifactKindOf(t); ok {
		a, _ := stage.ArtifactOf(v)
		b.WriteString("artifact(" + kind + ") " + a.Digest)
		return nil
	}
	switch {
	case t == cty.String:
		j, _ := json.Marshal(v.AsString())
		b.Write(j)
	case t == cty.Bool:
		if v.True() {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case t == cty.Number:
		b.WriteString(formatNumber(v.AsBigFloat()))
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		b.WriteByte('[')
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			_, e := it.Element()
			if err := writeCanonical(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case t.IsMapType() || t.IsObjectType():
		m := v.AsValueMap()
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			j, _ := json.Marshal(k)
			b.Write(j)
			b.WriteByte(':')
			if err := writeCanonical(b, m[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("cannot put a value of type %s in a cache key", t.FriendlyName())
	}
	return nil
}

// formatNumber prints integers exactly and other numbers in the shortest
// form that identifies them as float64 values, which is what the engine uses.
func formatNumber(f *big.Float) string {
	if f.IsInt() {
		i, _ := f.Int(nil)
		return i.String()
	}
	x, _ := f.Float64()
	return fmt.Sprint(x)
}
