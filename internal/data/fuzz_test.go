package data

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// drain reads a dataset to the end and checks the error shape.
func drain(t *testing.T, name string, b []byte, spec Spec) {
	r, err := NewReader(spec, name, bytes.NewReader(b))
	if err != nil {
		if !strings.HasPrefix(err.Error(), name) {
			t.Fatalf("error without the file name: %v", err)
		}
		return
	}
	tm, _ := LookupTemplate("qwen3")
	for {
		ex, err := r.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), name) {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if !ex.IsText() && !ex.IsPreference() {
			if _, err := tm.Render(ex.System, ex.Turns, RenderOptions{}); err != nil && !errors.Is(err, ErrToolRole) {
				t.Fatalf("reader produced an unrenderable conversation: %v", err)
			}
		}
	}
}

var fuzzSpecs = []Spec{
	{Format: FormatAlpaca},
	{Format: FormatShareGPT},
	{Format: FormatAlpaca, Ranking: true},
	{Format: FormatShareGPT, Ranking: true},
	{Format: FormatText},
}

func FuzzReadJSONL(f *testing.F) {
	f.Add([]byte(`{"instruction": "q", "input": "i", "output": "a", "history": [["x", "y"]]}`+"\n"), uint8(0))
	f.Add([]byte(`{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}`), uint8(1))
	f.Add([]byte(`{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}`), uint8(1))
	f.Add([]byte(`{"instruction": "q", "chosen": "c", "rejected": "r"}`), uint8(2))
	f.Add([]byte(`{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "c"}, "rejected": {"from": "gpt", "value": "r"}}`), uint8(3))
	f.Add([]byte("{\"text\": \"t\"}\n\n[1]\n{"), uint8(4))
	f.Fuzz(func(t *testing.T, b []byte, k uint8) {
		drain(t, "fuzz.jsonl", b, fuzzSpecs[int(k)%len(fuzzSpecs)])
		drain(t, "fuzz.json", b, fuzzSpecs[int(k)%len(fuzzSpecs)])
	})
}

func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("instruction,input,output\nq,,a\n\"x\ny\",1,2\n"), uint8(0))
	f.Add([]byte("conversations\n\"[{\"\"from\"\": \"\"human\"\", \"\"value\"\": \"\"q\"\"}, {\"\"from\"\": \"\"gpt\"\", \"\"value\"\": \"\"a\"\"}]\"\n"), uint8(1))
	f.Add([]byte("instruction,chosen,rejected\nq,c,r\n"), uint8(2))
	f.Add([]byte("text\nhello\n\"unterminated\n"), uint8(4))
	f.Fuzz(func(t *testing.T, b []byte, k uint8) {
		drain(t, "fuzz.csv", b, fuzzSpecs[int(k)%len(fuzzSpecs)])
	})
}
