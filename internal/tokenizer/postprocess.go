package tokenizer

import (
	"encoding/json"
)

// postProcessor adds special tokens around one or two encoded sequences.
type postProcessor interface {
	process(a, b []int, pair bool) []int
}

// templatePiece is one element of a TemplateProcessing template: a special
// token's ids, or sequence A (seq=0) / B (seq=1).
type templatePiece struct {
	ids []int
	seq int // -1 for a special token
}

type templatePost struct {
	single, pair []templatePiece
}

func (t *templatePost) process(a, b []int, pair bool) []int {
	tmpl := t.single
	if pair {
		tmpl = t.pair
	}
	out := make([]int, 0, len(a)+len(b)+4)
	for _, p := range tmpl {
		switch p.seq {
		case -1:
			out = append(out, p.ids...)
		case 0:
			out = append(out, a...)
		case 1:
			out = append(out, b...)
		}
	}
	return out
}

// clsSepPost implements BertProcessing and RobertaProcessing.
type clsSepPost struct {
	cls, sep int
	roberta  bool
}

func (c *clsSepPost) process(a, b []int, pair bool) []int {
	out := make([]int, 0, len(a)+len(b)+4)
	out = append(out, c.cls)
	out = append(out, a...)
	out = append(out, c.sep)
	if pair {
		if c.roberta {
			out = append(out, c.sep)
		}
		out = append(out, b...)
		out = append(out, c.sep)
	}
	return out
}

type identityPost struct{}

func (identityPost) process(a, b []int, pair bool) []int {
	out := append([]int(nil), a...)
	if pair {
		out = append(out, b...)
	}
	return out
}

type seqPost []postProcessor

func (s seqPost) process(a, b []int, pair bool) []int {
	// HF applies each processor in turn to the running encoding(s); only
	// the id-changing ones matter, and in practice at most one adds tokens.
	for _, p := range s {
		if _, ok := p.(identityPost); ok {
			continue
		}
		return p.process(a, b, pair)
	}
	return identityPost{}.process(a, b, pair)
}

func parsePostProcessor(raw json.RawMessage, path string) (postProcessor, error) {
	o, typ, ok, err := component(raw, path)
	if !ok || err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return identityPost{}, nil
	case "TemplateProcessing":
		specials := map[string][]int{}
		if o.has("special_tokens") {
			so, err := parseObj(o.m["special_tokens"], o.sub("special_tokens"))
			if err != nil {
				return nil, err
			}
			for name, r := range so.m {
				to, err := parseObj(r, so.sub(name))
				if err != nil {
					return nil, err
				}
				idsRaw, err := to.array("ids", true)
				if err != nil {
					return nil, err
				}
				ids := make([]int, len(idsRaw))
				for i, ir := range idsRaw {
					if err := json.Unmarshal(ir, &ids[i]); err != nil || ids[i] < 0 {
						return nil, perr(indexPath(to.sub("ids"), i), "expected a non-negative integer id")
					}
				}
				specials[name] = ids
			}
		}
		tp := &templatePost{}
		for _, which := range []string{"single", "pair"} {
			items, err := o.array(which, which == "single")
			if err != nil {
				return nil, err
			}
			var tmpl []templatePiece
			for i, it := range items {
				ip := indexPath(o.sub(which), i)
				io, err := parseObj(it, ip)
				if err != nil {
					return nil, err
				}
				switch {
				case io.has("SpecialToken"):
					so, err := parseObj(io.m["SpecialToken"], io.sub("SpecialToken"))
					if err != nil {
						return nil, err
					}
					id, err := so.str("id", "", true)
					if err != nil {
						return nil, err
					}
					ids, ok := specials[id]
					if !ok {
						return nil, perr(so.sub("id"), "special token %q is not in special_tokens", id)
					}
					tmpl = append(tmpl, templatePiece{ids: ids, seq: -1})
				case io.has("Sequence"):
					so, err := parseObj(io.m["Sequence"], io.sub("Sequence"))
					if err != nil {
						return nil, err
					}
					id, err := so.str("id", "A", false)
					if err != nil {
						return nil, err
					}
					seq := 0
					switch id {
					case "A":
					case "B":
						seq = 1
					default:
						return nil, perr(so.sub("id"), "expected \"A\" or \"B\", got %q", id)
					}
					tmpl = append(tmpl, templatePiece{seq: seq})
				default:
					return nil, perr(ip, `expected {"SpecialToken": ...} or {"Sequence": ...}`)
				}
			}
			if which == "single" {
				tp.single = tmpl
			} else {
				tp.pair = tmpl
			}
		}
		return tp, nil
	case "BertProcessing", "RobertaProcessing":
		get := func(key string) (int, error) {
			arr, err := o.array(key, true)
			if err != nil {
				return 0, err
			}
			var id int
			if len(arr) != 2 || json.Unmarshal(arr[1], &id) != nil || id < 0 {
				return 0, perr(o.sub(key), "expected [token, id]")
			}
			return id, nil
		}
		cls, err := get("cls")
		if err != nil {
			return nil, err
		}
		sep, err := get("sep")
		if err != nil {
			return nil, err
		}
		return &clsSepPost{cls: cls, sep: sep, roberta: typ == "RobertaProcessing"}, nil
	case "Sequence":
		seq, err := sequence(o, "processors", parsePostProcessor)
		if err != nil {
			return nil, err
		}
		return seqPost(seq), nil
	}
	return nil, perr(o.sub("type"), "unsupported post-processor %q", typ)
}
