package data

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func msgs(kv ...string) []Message {
	var out []Message
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, Message{Role(kv[i]), kv[i+1]})
	}
	return out
}

func TestReadFormats(t *testing.T) {
	tests := []struct {
		name string
		file string
		body string
		spec Spec
		want []Example
	}{
		{
			name: "alpaca json with input, system, history",
			file: "a.json",
			body: `[
 {"instruction": "Add", "input": "1+1", "output": "2", "system": "Be terse.",
  "history": [["hi", "hello"]]},
 {"instruction": "Who are you?", "output": "I am {{name}} by {{author}}."}
]`,
			spec: Spec{Format: FormatAlpaca, Replace: map[string]string{"{{name}}": "Lathe", "{{author}}": "us"}},
			want: []Example{
				{System: "Be terse.", Turns: msgs("user", "hi", "assistant", "hello", "user", "Add\n1+1", "assistant", "2"), Source: "a.json:2"},
				{Turns: msgs("user", "Who are you?", "assistant", "I am Lathe by us."), Source: "a.json:4"},
			},
		},
		{
			name: "alpaca jsonl with column mapping",
			file: "a.jsonl",
			body: "{\"question\": \"Q1\", \"answer\": \"A1\"}\n\n{\"question\": \"Q2\", \"answer\": \"A2\", \"ctx\": \"c\"}\n",
			spec: Spec{Format: FormatAlpaca, Columns: Columns{Prompt: "question", Response: "answer", Query: "ctx"}},
			want: []Example{
				{Turns: msgs("user", "Q1", "assistant", "A1"), Source: "a.jsonl:1"},
				{Turns: msgs("user", "Q2\nc", "assistant", "A2"), Source: "a.jsonl:3"},
			},
		},
		{
			name: "alpaca csv",
			file: "a.csv",
			body: "instruction,input,output\nSay hi,,\"hi, {{name}}\"\n\"multi\nline\",x,y\n",
			spec: Spec{Format: FormatAlpaca, Replace: map[string]string{"{{name}}": "you"}},
			want: []Example{
				{Turns: msgs("user", "Say hi", "assistant", "hi, you"), Source: "a.csv:2"},
				{Turns: msgs("user", "multi\nline\nx", "assistant", "y"), Source: "a.csv:3"},
			},
		},
		{
			name: "sharegpt conversations",
			file: "s.jsonl",
			body: `{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}, {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]}` + "\n" +
				`{"conversations": [{"from": "human", "value": "call"}, {"from": "function_call", "value": "{}"}, {"from": "observation", "value": "42"}, {"from": "gpt", "value": "It is 42."}], "system": "T"}` + "\n",
			spec: Spec{Format: FormatShareGPT},
			want: []Example{
				{System: "S", Turns: msgs("user", "q1", "assistant", "a1", "user", "q2", "assistant", "a2"), Source: "s.jsonl:1"},
				{System: "T", Turns: msgs("user", "call", "function", "{}", "observation", "42", "assistant", "It is 42."), Source: "s.jsonl:2"},
			},
		},
		{
			name: "openai messages",
			file: "o.json",
			body: `[{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}]`,
			spec: Spec{Format: FormatShareGPT},
			want: []Example{{System: "S", Turns: msgs("user", "u", "assistant", "a"), Source: "o.json:1"}},
		},
		{
			name: "sharegpt custom tags and column",
			file: "c.jsonl",
			body: `{"dialog": [{"speaker": "me", "text": "q"}, {"speaker": "bot", "text": "a"}]}` + "\n",
			spec: Spec{Format: FormatShareGPT, Columns: Columns{Messages: "dialog"}, Tags: Tags{RoleTag: "speaker", ContentTag: "text", UserTag: "me", AssistantTag: "bot"}},
			want: []Example{{Turns: msgs("user", "q", "assistant", "a"), Source: "c.jsonl:1"}},
		},
		{
			name: "sharegpt in csv (messages as a JSON string)",
			file: "s.csv",
			body: "conversations\n\"[{\"\"from\"\": \"\"human\"\", \"\"value\"\": \"\"q\"\"}, {\"\"from\"\": \"\"gpt\"\", \"\"value\"\": \"\"a\"\"}]\"\n",
			spec: Spec{Format: FormatShareGPT},
			want: []Example{{Turns: msgs("user", "q", "assistant", "a"), Source: "s.csv:2"}},
		},
		{
			name: "alpaca preference",
			file: "p.jsonl",
			body: `{"instruction": "pick", "chosen": "good", "rejected": "bad"}` + "\n",
			spec: Spec{Format: FormatAlpaca, Ranking: true},
			want: []Example{{Turns: msgs("user", "pick"), Chosen: &Message{RoleAssistant, "good"}, Rejected: &Message{RoleAssistant, "bad"}, Source: "p.jsonl:1"}},
		},
		{
			name: "sharegpt preference",
			file: "p.json",
			body: `[{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "c"}, "rejected": {"from": "gpt", "value": "r"}}]`,
			spec: Spec{Format: FormatShareGPT, Ranking: true},
			want: []Example{{Turns: msgs("user", "q"), Chosen: &Message{RoleAssistant, "c"}, Rejected: &Message{RoleAssistant, "r"}, Source: "p.json:1"}},
		},
		{
			name: "text with column mapping and replace",
			file: "t.jsonl",
			body: `{"content": "hello {{x}}"}` + "\n" + `{"content": "world"}` + "\n",
			spec: Spec{Format: FormatText, Columns: Columns{Text: "content"}, Replace: map[string]string{"{{x}}": "y"}},
			want: []Example{{Text: "hello y", Source: "t.jsonl:1"}, {Text: "world", Source: "t.jsonl:2"}},
		},
		{
			name: "byte order marks and numeric answers",
			file: "bom.json",
			body: "\ufeff[{\"instruction\": \"6*7\", \"output\": 42}, {\"instruction\": \"pi\", \"output\": 3.14159e0}]",
			spec: Spec{Format: FormatAlpaca},
			want: []Example{
				{Turns: msgs("user", "6*7", "assistant", "42"), Source: "bom.json:1"},
				{Turns: msgs("user", "pi", "assistant", "3.14159e0"), Source: "bom.json:1"},
			},
		},
		{
			name: "csv with a byte order mark",
			file: "bom.csv",
			body: "\ufeffinstruction,output\nq,a\n",
			spec: Spec{Format: FormatAlpaca},
			want: []Example{{Turns: msgs("user", "q", "assistant", "a"), Source: "bom.csv:2"}},
		},
		{
			name: "replace: longer placeholder wins over its prefix",
			file: "r.jsonl",
			body: `{"text": "{{a}} {{ab}}"}` + "\n",
			spec: Spec{Format: FormatText, Replace: map[string]string{"{{a": "X", "{{ab}}": "Y", "{{a}}": "Z"}},
			want: []Example{{Text: "Z Y", Source: "r.jsonl:1"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Path = writeFile(t, tc.file, tc.body)
			got, st, err := ReadAll(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i].Source = filepath.Base(got[i].Source)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if st.Kept != int64(len(tc.want)) || st.DroppedTotal() != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestMalformedInput(t *testing.T) {
	tests := []struct {
		file, body string
		format     Format
		want       string // error text after the directory
	}{
		{"a.jsonl", "{\"instruction\": \"q\", \"output\": \"a\"}\n{\"instruction\": \"q\", \n", FormatAlpaca, "a.jsonl:2: invalid JSON: unexpected end of JSON input"},
		{"a.jsonl", "{\"instruction\": \"q\", \"output\": \"a\"}\n\n[1, 2]\n", FormatAlpaca, "a.jsonl:3: expected a JSON object, got array"},
		{"a.jsonl", "{\"instruction\": \"q\", \"output\": \"a\"} {}\n", FormatAlpaca, "a.jsonl:1: invalid JSON: expected one object per line, found more data after it"},
		{"a.jsonl", "{\"instruction\": true, \"output\": \"a\"}\n", FormatAlpaca, `a.jsonl:1: column "instruction": expected a string, got boolean`},
		{"a.jsonl", "{\"instruction\": \"q\", \"output\": {\"x\": 1}}\n", FormatAlpaca, `a.jsonl:1: column "output": expected a string, got object`},
		{"a.jsonl", "{\"instruction\": \"q\", \"output\": \"a\", \"history\": \"x\"}\n", FormatAlpaca, `a.jsonl:1: column "history": expected a JSON array, got a string that is not JSON`},
		{"a.jsonl", "{\"conversations\": {\"from\": \"human\"}}\n", FormatShareGPT, `a.jsonl:1: column "conversations": expected an array, got object`},
		{"a.jsonl", "{\"conversations\": [\"hi\"]}\n", FormatShareGPT, `a.jsonl:1: conversations[0]: expected an object, got string`},
		{"a.json", "[\n {\"instruction\": \"q\", \"output\": \"a\"},\n {\"instruction\": \"q\" \"output\": \"a\"}\n]", FormatAlpaca, "a.json:3: element 1: invalid JSON: invalid character '\"' after object key:value pair"},
		{"a.json", "[\n {\"instruction\": \"q\", \"output\": \"a\"},\n\n 7\n]", FormatAlpaca, "a.json:4: element 1: expected a JSON object, got number"},
		{"a.json", "{\"instruction\": \"q\"}", FormatAlpaca, "a.json:1: expected a JSON array of objects, got object"},
		{"a.json", "[\n {\"instruction\": \"q\", \"output\": \"a\"}\n", FormatAlpaca, "a.json:2: element 1: invalid JSON: unexpected end of file"},
		{"a.json", "[{\"instruction\": \"q\", \"output\": \"a\"}] x", FormatAlpaca, "a.json:1: expected end of file after the JSON array"},
		{"a.json", "", FormatAlpaca, "a.json:1: expected a JSON array of objects, got an empty file"},
		{"a.csv", "instruction,output\nq,a\nq,a,extra\n", FormatAlpaca, "a.csv:3: invalid CSV: wrong number of fields"},
		{"a.csv", "instruction,output\nq,a\n\"q,a\n", FormatAlpaca, "a.csv:3: invalid CSV: extraneous or missing \" in quoted-field"},
		{"a.csv", "instruction,instruction\nq,a\n", FormatAlpaca, "a.csv:1: header column \"instruction\" appears twice"},
		{"a.csv", "", FormatAlpaca, "a.csv:1: expected a CSV header row, got an empty file"},
		{"a.jsonl", "\n\n", FormatAlpaca, "a.jsonl: the dataset has no rows"},
		{"a.parquet", "PAR1", FormatAlpaca, "a.parquet: not a parquet file: 4 bytes is too short"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			p := writeFile(t, tc.file, tc.body)
			_, _, err := ReadAll(Spec{Path: p, Format: tc.format})
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.TrimPrefix(err.Error(), filepath.Dir(p)+string(filepath.Separator))
			if got != tc.want {
				t.Errorf("error\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDropCounting(t *testing.T) {
	body := strings.Join([]string{
		`{"instruction": "ok", "output": "fine"}`,
		`{"instruction": "", "output": "x"}`,
		`{"instruction": "q", "output": "  "}`,
		`{"instruction": "q"}`,
		`{"instruction": "q", "output": "a", "history": [["only one"]]}`,
		`{"instruction": "", "input": "", "output": "x"}`,
		`{"instruction": "ok2", "output": "fine2"}`,
	}, "\n")
	p := writeFile(t, "d.jsonl", body)
	got, st, err := ReadAll(Spec{Path: p, Format: FormatAlpaca, KeepDropExamples: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("kept %d", len(got))
	}
	want := map[string]int64{DropMissingPrompt: 2, DropEmptyResponse: 2, DropBadHistory: 1}
	if !reflect.DeepEqual(st.Dropped, want) || st.RowsRead != 7 || st.Kept != 2 {
		t.Errorf("stats %+v", st)
	}
	if len(st.DropExamples) != 3 {
		t.Errorf("examples %+v, want one per reason", st.DropExamples)
	}
	if e := st.DropExamples[0]; filepath.Base(e.Source) != "d.jsonl:2" || e.Reason != DropMissingPrompt {
		t.Errorf("first example %+v", e)
	}

	// sharegpt reasons
	sg := strings.Join([]string{
		`{"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}`,
		`{"conversations": [{"from": "human", "value": "q"}]}`,
		`{"conversations": []}`,
		`{"conversations": [{"from": "alien", "value": "q"}]}`,
		`{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}]}`,
	}, "\n")
	p = writeFile(t, "s.jsonl", sg)
	_, st, err = ReadAll(Spec{Path: p, Format: FormatShareGPT})
	if !errors.Is(err, ErrAllDropped) {
		t.Fatalf("err %v", err)
	}
	want = map[string]int64{DropInvalidRoleOrder: 2, DropNoMessages: 1, DropUnknownRole: 1, DropEmptyResponse: 1}
	if !reflect.DeepEqual(st.Dropped, want) {
		t.Errorf("dropped %v", st.Dropped)
	}
}

func TestAllDroppedSummary(t *testing.T) {
	p := writeFile(t, "x.jsonl", "{\"instruction\": \"q\"}\n{\"output\": \"a\"}\n")
	_, _, err := ReadAll(Spec{Path: p, Format: FormatAlpaca})
	if !errors.Is(err, ErrAllDropped) {
		t.Fatalf("err %v", err)
	}
	msg := strings.ReplaceAll(err.Error(), filepath.Dir(p)+"/", "")
	want := "x.jsonl: every row was dropped (2 rows): empty response: 1, missing prompt: 1\n  x.jsonl:1: empty response\n  x.jsonl:2: missing prompt"
	if msg != want {
		t.Errorf("got\n%s\nwant\n%s", msg, want)
	}
}

// TestStreamingBoundedMemory reads generated multi-MB JSONL, JSON-array and
// CSV files and checks that the heap does not grow with the file.
func TestStreamingBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("generates large files")
	}
	pad := strings.Repeat("lorem ipsum ", 40)
	const rows = 30000
	for _, ext := range []string{"jsonl", "json", "csv"} {
		t.Run(ext, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "big."+ext)
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			w := bufio.NewWriter(f)
			switch ext {
			case "json":
				w.WriteString("[\n")
			case "csv":
				w.WriteString("instruction,output\n")
			}
			for i := range rows {
				switch ext {
				case "csv":
					fmt.Fprintf(w, "\"question %d %s\",answer %d\n", i, pad, i)
				default:
					sep := ""
					if ext == "json" && i < rows-1 {
						sep = ","
					}
					fmt.Fprintf(w, "{\"instruction\": \"question %d %s\", \"output\": \"answer %d\"}%s\n", i, pad, i, sep)
				}
			}
			if ext == "json" {
				w.WriteString("]\n")
			}
			w.Flush()
			f.Close()
			fi, _ := os.Stat(p)
			if fi.Size() < 12<<20 {
				t.Fatalf("file only %d bytes", fi.Size())
			}
			r, err := Open(Spec{Path: p, Format: FormatAlpaca})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			runtime.GC()
			var ms runtime.MemStats
			var peak uint64
			n := 0
			var last Example
			for {
				ex, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				last = ex
				n++
				if n%5000 == 0 {
					runtime.GC()
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
				}
			}
			if n != rows {
				t.Fatalf("read %d rows", n)
			}
			wantLine := rows
			if ext != "jsonl" {
				wantLine = rows + 1
			}
			if last.Source != fmt.Sprintf("%s:%d", p, wantLine) {
				t.Errorf("last source %s", last.Source)
			}
			t.Logf("file %d MiB, peak heap in use %d KiB", fi.Size()>>20, peak>>10)
			if peak > 8<<20 {
				t.Errorf("heap in use reached %d bytes while streaming a %d-byte file", peak, fi.Size())
			}
		})
	}
}
