package data

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// legacyList is a LIST-annotated group whose repeated child carries a name
// other writers use (pyarrow's older "item", the legacy two-level "array").
type legacyList struct{ parquet.Group }

func (legacyList) Type() parquet.Type { return parquet.List(parquet.String()).Type() }

// TestParquetListLayouts reads lists in the layouts other writers produce,
// with levels written by hand: a three-level list whose element is named
// "item" and whose structs have nullable fields, and a legacy two-level list
// of two-level lists (repeated groups named "array", repeated leaves). The
// rows must read like the same rows in JSONL.
func TestParquetListLayouts(t *testing.T) {
	schema := parquet.NewSchema("schema", parquet.Group{
		"conversations": parquet.Optional(legacyList{parquet.Group{
			"list": parquet.Repeated(parquet.Group{
				"item": parquet.Optional(parquet.Group{
					"from":  parquet.Optional(parquet.String()),
					"value": parquet.Optional(parquet.String()),
				}),
			}),
		}}),
		"history": parquet.Optional(legacyList{parquet.Group{
			"array": parquet.Repeated(legacyList{parquet.Group{
				"element": parquet.Repeated(parquet.String()),
			}}),
		}}),
		"instruction": parquet.String(),
		"output":      parquet.Optional(parquet.String()),
	})
	// Leaves in schema order: 0 conversations.list.item.from (max def 4,
	// rep 1), 1 ...value, 2 history.array.element (def 3, rep 2),
	// 3 instruction (required), 4 output (def 1).
	s := func(x string) parquet.Value { return parquet.ValueOf(x) }
	null := parquet.NullValue()
	lv := func(v parquet.Value, rep, def, col int) parquet.Value { return v.Level(rep, def, col) }
	rows := []parquet.Row{
		{ // history [["h1","a1"],["h2","a2"]], conversations human/gpt
			lv(s("human"), 0, 4, 0), lv(s("gpt"), 1, 4, 0),
			lv(s("q"), 0, 4, 1), lv(s("a"), 1, 4, 1),
			lv(s("h1"), 0, 3, 2), lv(s("a1"), 2, 3, 2), lv(s("h2"), 1, 3, 2), lv(s("a2"), 2, 3, 2),
			lv(s("inst"), 0, 0, 3),
			lv(s("out"), 0, 1, 4),
		},
		{ // null history and conversations, null output (dropped by alpaca)
			lv(null, 0, 0, 0), lv(null, 0, 0, 1), lv(null, 0, 0, 2),
			lv(s("inst2"), 0, 0, 3), lv(null, 0, 0, 4),
		},
		{ // empty lists; a conversation whose second message has a null from
			lv(s("human"), 0, 4, 0), lv(null, 1, 3, 0),
			lv(s("q"), 0, 4, 1), lv(s("a"), 1, 4, 1),
			lv(null, 0, 1, 2),
			lv(s("inst3"), 0, 0, 3), lv(s("out3"), 0, 1, 4),
		},
		{ // history [[]]: a malformed pair; conversations [null element]
			lv(null, 0, 2, 0), lv(null, 0, 2, 1),
			lv(null, 0, 2, 2),
			lv(s("inst4"), 0, 0, 3), lv(s("out4"), 0, 1, 4),
		},
	}
	jsonl := `{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "history": [["h1", "a1"], ["h2", "a2"]], "instruction": "inst", "output": "out"}
{"instruction": "inst2"}
{"conversations": [{"from": "human", "value": "q"}, {"value": "a"}], "history": [], "instruction": "inst3", "output": "out3"}
{"conversations": [null], "history": [[]], "instruction": "inst4", "output": "out4"}
`
	var buf bytes.Buffer
	w := parquet.NewWriter(&buf, schema)
	if _, err := w.WriteRows(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pp := filepath.Join(dir, "l.parquet")
	if err := os.WriteFile(pp, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	jp := writeFile(t, "l.jsonl", jsonl)
	for _, spec := range []Spec{{Format: FormatAlpaca}, {Format: FormatShareGPT}} {
		js, jst, jerr := ReadAll(withPath(spec, jp))
		ps, pst, perr := ReadAll(withPath(spec, pp))
		if (jerr == nil) != (perr == nil) {
			t.Fatalf("%s: jsonl error %v, parquet error %v", spec.Format, jerr, perr)
		}
		if jerr != nil {
			// Same message after the location.
			jm := strings.TrimPrefix(jerr.Error(), jp+":4: ")
			pm := strings.TrimPrefix(perr.Error(), pp+": row group 0, row 3: ")
			if jm != pm || jm == jerr.Error() || pm == perr.Error() {
				t.Errorf("%s: errors differ\njsonl:   %v\nparquet: %v", spec.Format, jerr, perr)
			}
		}
		t.Logf("%s: kept %d, dropped %v, err %v", spec.Format, pst.Kept, pst.Dropped, perr)
		if !reflect.DeepEqual(stripSources(js), stripSources(ps)) {
			t.Errorf("%s: examples differ\njsonl:   %+v\nparquet: %+v", spec.Format, js, ps)
		}
		if jst.Kept != pst.Kept || !reflect.DeepEqual(jst.Dropped, pst.Dropped) {
			t.Errorf("%s: stats differ\njsonl:   %+v\nparquet: %+v", spec.Format, jst, pst)
		}
		if pst.Kept == 0 {
			t.Errorf("%s: nothing kept: %+v", spec.Format, pst)
		}
	}
}
