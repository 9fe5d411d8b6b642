package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
)

// pathError is a load error that names the JSON path it concerns.
type pathError struct {
	Path string
	Err  error
}

func (e *pathError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *pathError) Unwrap() error { return e.Err }

func perr(path string, format string, a ...any) error {
	return &pathError{Path: path, Err: fmt.Errorf(format, a...)}
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// jobj is a JSON object with its path, for typed field access.
type jobj struct {
	path string
	m    map[string]json.RawMessage
}

func parseObj(raw json.RawMessage, path string) (jobj, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return jobj{}, perr(path, "expected an object: %s", shortErr(err))
	}
	if m == nil {
		return jobj{}, perr(path, "expected an object, got null")
	}
	return jobj{path: path, m: m}, nil
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func (o jobj) sub(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

func (o jobj) has(key string) bool {
	r, ok := o.m[key]
	return ok && !isNull(r)
}

func (o jobj) str(key string, def string, required bool) (string, error) {
	r, ok := o.m[key]
	if !ok || isNull(r) {
		if required {
			return "", perr(o.sub(key), "missing required string")
		}
		return def, nil
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", perr(o.sub(key), "expected a string: %s", shortErr(err))
	}
	return s, nil
}

func (o jobj) boolean(key string, def bool) (bool, error) {
	r, ok := o.m[key]
	if !ok || isNull(r) {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(r, &b); err != nil {
		return false, perr(o.sub(key), "expected a boolean: %s", shortErr(err))
	}
	return b, nil
}

func (o jobj) integer(key string, def int, required bool) (int, error) {
	r, ok := o.m[key]
	if !ok || isNull(r) {
		if required {
			return 0, perr(o.sub(key), "missing required integer")
		}
		return def, nil
	}
	var f float64
	if err := json.Unmarshal(r, &f); err != nil {
		return 0, perr(o.sub(key), "expected an integer: %s", shortErr(err))
	}
	if f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0, perr(o.sub(key), "expected an integer, got %v", f)
	}
	return int(f), nil
}

func (o jobj) float(key string, def float64) (float64, error) {
	r, ok := o.m[key]
	if !ok || isNull(r) {
		return def, nil
	}
	var f float64
	if err := json.Unmarshal(r, &f); err != nil {
		return 0, perr(o.sub(key), "expected a number: %s", shortErr(err))
	}
	return f, nil
}

func (o jobj) array(key string, required bool) ([]json.RawMessage, error) {
	r, ok := o.m[key]
	if !ok || isNull(r) {
		if required {
			return nil, perr(o.sub(key), "missing required array")
		}
		return nil, nil
	}
	var a []json.RawMessage
	if err := json.Unmarshal(r, &a); err != nil {
		return nil, perr(o.sub(key), "expected an array: %s", shortErr(err))
	}
	return a, nil
}

// pattern reads an HF pattern object {"String": s} or {"Regex": r}.
// It returns a matcher that finds non-overlapping occurrences in runes.
func (o jobj) pattern(key string) (*splitPattern, error) {
	r, ok := o.m[key]
	if !ok || isNull(r) {
		return nil, perr(o.sub(key), "missing required pattern")
	}
	po, err := parseObj(r, o.sub(key))
	if err != nil {
		return nil, err
	}
	if po.has("String") {
		s, err := po.str("String", "", true)
		if err != nil {
			return nil, err
		}
		return &splitPattern{lit: s, isLit: true}, nil
	}
	if po.has("Regex") {
		s, err := po.str("Regex", "", true)
		if err != nil {
			return nil, err
		}
		re, err := compileRegex(s)
		if err != nil {
			return nil, perr(po.sub("Regex"), "%v", err)
		}
		return &splitPattern{re: re, src: s}, nil
	}
	return nil, perr(o.sub(key), `expected {"String": ...} or {"Regex": ...}`)
}

// sequence parses the array o[key] of nested components (the "Sequence"
// type of normalizers, pre-tokenizers, post-processors and decoders) with
// parse, dropping components that parse to nothing.
func sequence[T comparable](o jobj, key string, parse func(json.RawMessage, string) (T, error)) ([]T, error) {
	items, err := o.array(key, true)
	if err != nil {
		return nil, err
	}
	var zero T
	var seq []T
	for i, it := range items {
		c, err := parse(it, indexPath(o.sub(key), i))
		if err != nil {
			return nil, err
		}
		if c != zero {
			seq = append(seq, c)
		}
	}
	return seq, nil
}

// component opens a tokenizer component (normalizer, pre-tokenizer,
// post-processor or decoder): a JSON object with a "type". A JSON null means
// no component: ok is false and err nil.
func component(raw json.RawMessage, path string) (o jobj, typ string, ok bool, err error) {
	if isNull(raw) {
		return jobj{}, "", false, nil
	}
	if o, err = parseObj(raw, path); err != nil {
		return jobj{}, "", false, err
	}
	if typ, err = o.str("type", "", true); err != nil {
		return jobj{}, "", false, err
	}
	return o, typ, true, nil
}
