package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
)

// The fixture rows below carry both json and parquet tags, so the same rows
// are written as JSONL (encoding/json) and as Parquet (parquet-go) and must
// read to the same Examples. Pointers and optional slices are nullable
// columns (absent JSON keys).

type pqAlpaca struct {
	Instruction string     `json:"instruction" parquet:"instruction"`
	Input       *string    `json:"input,omitempty" parquet:"input,optional"`
	Output      string     `json:"output" parquet:"output"`
	System      *string    `json:"system,omitempty" parquet:"system,optional"`
	History     [][]string `json:"history,omitempty" parquet:"history,list"`
	ID          int64      `json:"id" parquet:"id"` // not read (projection)
}

type pqSGMsg struct {
	From  string `json:"from" parquet:"from"`
	Value string `json:"value" parquet:"value"`
}

type pqShareGPT struct {
	Conversations []pqSGMsg `json:"conversations" parquet:"conversations,list"`
	System        *string   `json:"system,omitempty" parquet:"system,optional"`
	Images        []byte    `json:"-" parquet:"images,optional"` // not read
}

type pqOAMsg struct {
	Role    string  `json:"role" parquet:"role"`
	Content *string `json:"content,omitempty" parquet:"content,optional"`
}

type pqMessages struct {
	Messages []pqOAMsg `json:"messages" parquet:"messages,list"`
}

type pqPrefAlpaca struct {
	Instruction string  `json:"instruction" parquet:"instruction"`
	Input       *string `json:"input,omitempty" parquet:"input,optional"`
	Chosen      string  `json:"chosen" parquet:"chosen"`
	Rejected    string  `json:"rejected" parquet:"rejected"`
}

type pqPrefShareGPT struct {
	Conversations []pqSGMsg `json:"conversations" parquet:"conversations,list"`
	Chosen        *pqSGMsg  `json:"chosen,omitempty" parquet:"chosen,optional"`
	Rejected      *pqSGMsg  `json:"rejected,omitempty" parquet:"rejected,optional"`
}

type pqText struct {
	Text  *string `json:"text,omitempty" parquet:"text,optional"`
	Score float64 `json:"score" parquet:"score"`
}

func sp(s string) *string { return &s }

// writeParquet writes rows as a Parquet file with rowsPerGroup rows per row
// group and returns its path.
func writeParquet[T any](t testing.TB, dir, name string, rows []T, rowsPerGroup int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := parquet.NewGenericWriter[T](f, parquet.MaxRowsPerRowGroup(rowsPerGroup))
	for i := 0; i < len(rows); i += int(rowsPerGroup) {
		end := min(i+int(rowsPerGroup), len(rows))
		if _, err := w.Write(rows[i:end]); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeJSONL[T any](t testing.TB, dir, name string, rows []T) string {
	t.Helper()
	var b bytes.Buffer
	for _, r := range rows {
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sameDataset is a fixture: rows written both ways, read with spec.
type sameDataset struct {
	name  string
	spec  Spec
	write func(t testing.TB, dir string) (jsonl, pq string)
	kept  int64
}

func both[T any](rows []T) func(t testing.TB, dir string) (string, string) {
	return func(t testing.TB, dir string) (string, string) {
		return writeJSONL(t, dir, "d.jsonl", rows), writeParquet(t, dir, "d.parquet", rows, 2)
	}
}

var sameDatasets = []sameDataset{
	{"alpaca with history", Spec{Format: FormatAlpaca}, both([]pqAlpaca{
		{Instruction: "Add", Input: sp("2+2"), Output: "4", ID: 1},
		{Instruction: "And then?", Output: "8", System: sp("be brief"), History: [][]string{{"hi", "hello"}, {"2+2?", "4"}}, ID: 2},
		{Instruction: "", Output: "dropped: no prompt", ID: 3},
		{Instruction: "q", Output: "  ", ID: 4},
		{Instruction: "bad history", Output: "a", History: [][]string{{"only one"}}, ID: 5},
		{Instruction: "last", Input: sp(""), Output: "a {{name}}", History: [][]string{}, ID: 6},
	}), 3},
	{"sharegpt conversations", Spec{Format: FormatShareGPT}, both([]pqShareGPT{
		{Conversations: []pqSGMsg{{"human", "hi"}, {"gpt", "hello"}, {"human", "2+2?"}, {"gpt", "4"}}, Images: []byte{1, 2, 3}},
		{Conversations: []pqSGMsg{{"system", "sys"}, {"human", "q"}, {"gpt", "a"}}},
		{Conversations: []pqSGMsg{{"human", "q"}, {"gpt", "a"}}, System: sp("column system")},
		{Conversations: []pqSGMsg{{"gpt", "wrong order"}, {"human", "q"}}},
		{Conversations: []pqSGMsg{{"robot", "unknown role"}}},
		{Conversations: []pqSGMsg{}},
	}), 3},
	{"sharegpt messages", Spec{Format: FormatShareGPT}, both([]pqMessages{
		{Messages: []pqOAMsg{{"system", sp("s")}, {"user", sp("q")}, {"assistant", sp("a")}}},
		{Messages: []pqOAMsg{{"user", sp("q")}, {"assistant", nil}}},
		{Messages: []pqOAMsg{{"user", sp("tool?")}, {"assistant", sp("call")}, {"tool", sp("result")}, {"assistant", sp("done")}}},
	}), 2},
	{"preference alpaca", Spec{Format: FormatAlpaca, Ranking: true}, both([]pqPrefAlpaca{
		{Instruction: "q", Input: sp("ctx"), Chosen: "good", Rejected: "bad"},
		{Instruction: "q2", Chosen: "good", Rejected: ""},
		{Instruction: "q3", Chosen: "c", Rejected: "r"},
	}), 2},
	{"preference sharegpt", Spec{Format: FormatShareGPT, Ranking: true}, both([]pqPrefShareGPT{
		{Conversations: []pqSGMsg{{"human", "q"}}, Chosen: &pqSGMsg{"gpt", "c"}, Rejected: &pqSGMsg{"gpt", "r"}},
		{Conversations: []pqSGMsg{{"human", "q"}}, Chosen: &pqSGMsg{"gpt", "c"}},
		{Conversations: []pqSGMsg{{"human", "h"}, {"gpt", "a"}, {"human", "q"}}, Chosen: &pqSGMsg{"gpt", "c2"}, Rejected: &pqSGMsg{"gpt", "r2"}},
	}), 2},
	{"text", Spec{Format: FormatText, Replace: map[string]string{"{{name}}": "lathe"}}, both([]pqText{
		{Text: sp("hello {{name}}"), Score: 0.5},
		{Text: nil, Score: 1},
		{Text: sp("   "), Score: 2},
		{Text: sp("third"), Score: 1e-9},
	}), 2},
	{"score column read as text", Spec{Format: FormatText, Columns: Columns{Text: "score"}}, both([]pqText{
		{Score: 0.5}, {Score: 1}, {Score: 1e-9}, {Score: 12345678.25},
	}), 4},
}

// stripSources clears Example.Source, the only field that differs
// (file:line against file:row group, row).
func stripSources(exs []Example) []Example {
	for i := range exs {
		exs[i].Source = ""
	}
	return exs
}

func TestParquetMatchesJSONL(t *testing.T) {
	for _, tc := range sameDatasets {
		t.Run(tc.name, func(t *testing.T) {
			jp, pp := tc.write(t, t.TempDir())
			js, jst, err := ReadAll(withPath(tc.spec, jp))
			if err != nil {
				t.Fatalf("jsonl: %v", err)
			}
			ps, pst, err := ReadAll(withPath(tc.spec, pp))
			if err != nil {
				t.Fatalf("parquet: %v", err)
			}
			if len(ps) == 0 || !strings.HasPrefix(ps[0].Source, pp+":row group ") {
				t.Errorf("parquet sources %+v, want file:row group g, row r", ps)
			}
			if !reflect.DeepEqual(stripSources(js), stripSources(ps)) {
				t.Errorf("examples differ\njsonl:   %+v\nparquet: %+v", js, ps)
			}
			if jst.RowsRead != pst.RowsRead || jst.Kept != pst.Kept || !reflect.DeepEqual(jst.Dropped, pst.Dropped) {
				t.Errorf("stats differ\njsonl:   %+v\nparquet: %+v", jst, pst)
			}
			if pst.Kept != tc.kept {
				t.Errorf("kept %d, want %d", pst.Kept, tc.kept)
			}
		})
	}
}

func withPath(s Spec, p string) Spec {
	s.Path = p
	return s
}

// TestParquetSpecifics covers what only Parquet has: the row location, a
// non-seekable input, the extension and explicit file type, type errors.
func TestParquetSpecifics(t *testing.T) {
	dir := t.TempDir()
	rows := []pqAlpaca{{Instruction: "a", Output: "1"}, {Instruction: "b", Output: "2"}, {Instruction: "", Output: "3"}}
	p := writeParquet(t, dir, "x.parquet", rows, 2)

	// A drop is reported at its row group and row.
	_, st, err := ReadAll(Spec{Path: p})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.DropExamples) != 1 || st.DropExamples[0].Source != p+":row group 1, row 0" {
		t.Errorf("drop examples %+v, want one at %s:row group 1, row 0", st.DropExamples, p)
	}

	// file_type "parquet" with another extension; a non-seekable reader is
	// spooled to a temporary file.
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(Spec{FileType: "parquet"}, "stream.bin", io.MultiReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("read %d examples from a stream, want 2", n)
	}

	// A column of the wrong type fails naming the file, row group and row.
	type badOutput struct {
		Instruction string   `parquet:"instruction"`
		Output      []string `parquet:"output,list"`
	}
	bp := writeParquet(t, dir, "bad.parquet", []badOutput{{"q", []string{"a"}}, {"q", []string{"b"}}, {"q", []string{"c"}}}, 2)
	_, _, err = ReadAll(Spec{Path: bp})
	want := bp + `: row group 0, row 0: column "output": expected a string, got array`
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

// parquetFixture returns the bytes of a small valid file with several row
// groups, for the malformed-input cases and the fuzz seeds.
func parquetFixture(t testing.TB) []byte {
	rows := []pqShareGPT{
		{Conversations: []pqSGMsg{{"human", "hi"}, {"gpt", "hello"}}},
		{Conversations: []pqSGMsg{{"human", "q"}, {"gpt", "a"}}, System: sp("s")},
		{Conversations: []pqSGMsg{{"human", "q2"}, {"gpt", "a2"}}},
	}
	p := writeParquet(t, t.TempDir(), "f.parquet", rows, 1)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParquetMalformed(t *testing.T) {
	good := parquetFixture(t)
	corrupt := func(off int) []byte {
		b := bytes.Clone(good)
		for i := off; i < off+16 && i < len(b); i++ {
			b[i] ^= 0xa5
		}
		return b
	}
	tests := []struct {
		name    string
		body    []byte
		mustErr bool
	}{
		{"empty", nil, true},
		{"magic only", []byte("PAR1"), true},
		{"not parquet", []byte("instruction,output\nq,a\nq,a\nq,a\n"), true},
		{"truncated footer", good[:len(good)-3], true},
		{"truncated half", good[:len(good)/2], true},
		{"no footer magic", append(bytes.Clone(good[:len(good)-4]), "PAR2"...), true},
		{"footer length too large", append(append(bytes.Clone(good[:len(good)-8]), 0xff, 0xff, 0xff, 0x7f), "PAR1"...), true},
		{"corrupt first page", corrupt(4), false},
		{"corrupt middle", corrupt(len(good) / 3), false},
		{"corrupt metadata", corrupt(len(good) - 60), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, "m.parquet", string(tc.body))
			_, _, err := ReadAll(Spec{Path: p, Format: FormatShareGPT})
			if err == nil {
				if tc.mustErr {
					t.Fatal("no error")
				}
				return
			}
			if !strings.HasPrefix(err.Error(), p+":") {
				t.Errorf("error does not start with the file name: %v", err)
			}
		})
	}
}

// TestParquetBoundedHeap reads a file of several MB in many row groups and
// checks that the live heap stays well below the file size: rows are
// streamed, not loaded.
func TestParquetBoundedHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("writes an 11 MB file")
	}
	const nRows = 16000
	p := writeBigParquet(t, nRows)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 4<<20 {
		t.Fatalf("fixture is only %d bytes", fi.Size())
	}
	heap := func() uint64 {
		runtime.GC() // twice: sync.Pool victims survive one cycle
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	r, err := Open(Spec{Path: p})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var peak uint64
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n%1500 == 0 {
			peak = max(peak, heap())
		}
	}
	if n != nRows {
		t.Fatalf("read %d rows, want %d", n, nRows)
	}
	growth := int64(peak) - int64(base)
	t.Logf("file %d bytes in %d row groups; live heap growth while reading: %d bytes", fi.Size(), nRows/1000, growth)
	if growth > fi.Size()/4 {
		t.Errorf("live heap grew by %d bytes reading a %d-byte file: not streaming", growth, fi.Size())
	}
}

// writeBigParquet writes n deterministic alpaca rows of ~700 bytes in row
// groups of 1000.
func writeBigParquet(t testing.TB, nRows int) string {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func() string {
		b := make([]byte, 3+rng.IntN(8))
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		return string(b)
	}
	sentence := func(n int) string {
		w := make([]string, n)
		for i := range w {
			w[i] = word()
		}
		return strings.Join(w, " ")
	}
	rows := make([]pqAlpaca, nRows)
	for i := range rows {
		rows[i] = pqAlpaca{Instruction: sentence(30), Output: sentence(50), History: [][]string{{sentence(5), sentence(5)}}, ID: int64(i)}
	}
	return writeParquet(t, t.TempDir(), "big.parquet", rows, 1000)
}

func FuzzReadParquet(f *testing.F) {
	f.Add(parquetFixture(f), uint8(1))
	for _, tc := range sameDatasets {
		_, pp := tc.write(f, f.TempDir())
		b, err := os.ReadFile(pp)
		if err != nil {
			f.Fatal(err)
		}
		k := uint8(0)
		for j, s := range fuzzSpecs {
			if s.Format == tc.spec.Format && s.Ranking == tc.spec.Ranking {
				k = uint8(j)
			}
		}
		f.Add(b, k)
	}
	f.Fuzz(func(t *testing.T, b []byte, k uint8) {
		drain(t, "fuzz.parquet", b, fuzzSpecs[int(k)%len(fuzzSpecs)])
	})
}

// TestParquetCodecs reads the same rows written with each codec Hub
// datasets use, with dictionary encoding and small pages, like the plain
// file.
func TestParquetCodecs(t *testing.T) {
	var rows []pqShareGPT
	for i := range 300 {
		rows = append(rows, pqShareGPT{Conversations: []pqSGMsg{{"human", fmt.Sprintf("question %d", i%7)}, {"gpt", strings.Repeat("answer ", 1+i%5)}}})
	}
	write := func(name string, opts ...parquet.WriterOption) string {
		p := filepath.Join(t.TempDir(), name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w := parquet.NewGenericWriter[pqShareGPT](f, append(opts, parquet.PageBufferSize(512))...)
		if _, err := w.Write(rows); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	want, _, err := ReadAll(Spec{Path: write("plain.parquet"), Format: FormatShareGPT})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != len(rows) {
		t.Fatalf("plain: %d examples, want %d", len(want), len(rows))
	}
	want = stripSources(want)
	codecs := []struct {
		name  string
		codec compress.Codec
	}{
		{"snappy", &parquet.Snappy}, {"gzip", &parquet.Gzip}, {"zstd", &parquet.Zstd}, {"lz4", &parquet.Lz4Raw}, {"brotli", &parquet.Brotli},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			got, _, err := ReadAll(Spec{Path: write(c.name+".parquet", parquet.Compression(c.codec), parquet.DefaultEncoding(&parquet.RLEDictionary)), Format: FormatShareGPT})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(stripSources(got), want) {
				t.Errorf("%s: examples differ from the uncompressed file", c.name)
			}
		})
	}
}

// BenchmarkReadParquet reads the rows of BenchmarkReadJSONL from Parquet
// (SetBytes is the JSONL size, so MB/s compare directly).
func BenchmarkReadParquet(b *testing.B) {
	jsonl := benchJSONL(2000)
	var rows []pqPrefAlpaca
	for _, line := range bytes.Split(bytes.TrimSpace(jsonl), []byte("\n")) {
		var r struct {
			Instruction, Input, Output string
		}
		if err := json.Unmarshal(line, &r); err != nil {
			b.Fatal(err)
		}
		rows = append(rows, pqPrefAlpaca{Instruction: r.Instruction, Input: sp(r.Input), Chosen: r.Output})
	}
	type benchRow struct {
		Instruction string `parquet:"instruction"`
		Input       string `parquet:"input"`
		Output      string `parquet:"output"`
	}
	var br []benchRow
	for _, r := range rows {
		br = append(br, benchRow{r.Instruction, *r.Input, r.Chosen})
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[benchRow](&buf, parquet.Compression(&parquet.Snappy))
	if _, err := w.Write(br); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(jsonl)))
	for b.Loop() {
		r, err := NewReader(Spec{Format: FormatAlpaca}, "bench.parquet", bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != len(br) {
			b.Fatalf("read %d rows, want %d", n, len(br))
		}
	}
}
