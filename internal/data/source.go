package data

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// row is one raw record from a source with its location.
type row struct {
	fields map[string]any
	line   int // 1-based line where the record starts
	// where, when set, locates the record instead of line (Parquet:
	// "row group g, row r").
	where string
	index int // 0-based record index (JSON array element, JSONL/CSV record)
}

// rowSource yields raw records one at a time; it returns io.EOF at the end.
type rowSource interface {
	next() (row, error)
}

// locError is an error at a position of an input file.
type locError struct {
	file string
	line int
	msg  string
}

func (e *locError) Error() string { return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg) }

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// ---- JSONL ----

type jsonlSource struct {
	file  string
	br    *bufio.Reader
	line  int
	index int
}

func newJSONLSource(file string, r io.Reader) *jsonlSource {
	return &jsonlSource{file: file, br: bufio.NewReaderSize(r, 64<<10)}
}

func (s *jsonlSource) next() (row, error) {
	for {
		b, err := s.br.ReadBytes('\n')
		if len(b) == 0 && err != nil {
			if err == io.EOF {
				return row{}, io.EOF
			}
			return row{}, fmt.Errorf("%s:%d: read: %w", s.file, s.line+1, err)
		}
		s.line++
		if err != nil && err != io.EOF {
			return row{}, fmt.Errorf("%s:%d: read: %w", s.file, s.line, err)
		}
		t := bytes.TrimSpace(b)
		if s.line == 1 {
			t = bytes.TrimPrefix(t, []byte("\xef\xbb\xbf"))
		}
		if len(t) == 0 {
			continue
		}
		if t[0] != '{' {
			var v any
			if json.Unmarshal(t, &v) == nil {
				return row{}, &locError{s.file, s.line, "expected a JSON object, got " + jsonKind(v)}
			}
		}
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return row{}, &locError{s.file, s.line, "invalid JSON: " + jsonErrText(err)}
		}
		if dec.More() {
			return row{}, &locError{s.file, s.line, "invalid JSON: expected one object per line, found more data after it"}
		}
		r := row{fields: m, line: s.line, index: s.index}
		s.index++
		return r, nil
	}
}

func jsonErrText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "expected a JSON object, got " + te.Value
	}
	if err == io.ErrUnexpectedEOF {
		return "unexpected end of JSON input"
	}
	return err.Error()
}

// ---- JSON array (streamed with json.Decoder tokens) ----

// lineTracker counts newlines in what the decoder has read, keeping only the
// newline offsets not yet queried, so memory stays bounded by the decoder's
// read-ahead.
type lineTracker struct {
	r       io.Reader
	pos     int64   // bytes read so far
	pending []int64 // offsets of newlines not yet counted, ascending
	base    int     // newlines before pending[0]
	// keep holds the bytes read from offset keepFrom on, so the start of an
	// array element can be found after the separator that precedes it.
	keep     []byte
	keepFrom int64
}

func (t *lineTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	for i := 0; i < n; i++ {
		if p[i] == '\n' {
			t.pending = append(t.pending, t.pos+int64(i))
		}
	}
	t.keep = append(t.keep, p[:n]...)
	t.pos += int64(n)
	return n, err
}

// discardBefore drops kept bytes before off.
func (t *lineTracker) discardBefore(off int64) {
	if d := off - t.keepFrom; d > 0 {
		if d > int64(len(t.keep)) {
			d = int64(len(t.keep))
		}
		n := copy(t.keep, t.keep[d:])
		t.keep = t.keep[:n]
		t.keepFrom += d
	}
}

// valueStart returns the offset of the first byte at or after off that is
// neither JSON whitespace nor a comma.
func (t *lineTracker) valueStart(off int64) int64 {
	for i := off - t.keepFrom; i >= 0 && i < int64(len(t.keep)); i++ {
		switch t.keep[i] {
		case ' ', '\t', '\r', '\n', ',':
			continue
		}
		return t.keepFrom + i
	}
	return off
}

// lineAt returns the 1-based line of byte offset off; off must not decrease
// between calls.
func (t *lineTracker) lineAt(off int64) int {
	i := 0
	for i < len(t.pending) && t.pending[i] < off {
		i++
	}
	t.base += i
	t.pending = t.pending[i:]
	if len(t.pending) == 0 {
		t.pending = nil
	}
	return t.base + 1
}

type jsonArraySource struct {
	file    string
	lt      *lineTracker
	dec     *json.Decoder
	started bool
	done    bool
	index   int
}

// skipBOM drops a leading UTF-8 byte order mark.
func skipBOM(br *bufio.Reader) {
	if b, err := br.Peek(3); err == nil && string(b) == "\xef\xbb\xbf" {
		br.Discard(3)
	}
}

func newJSONArraySource(file string, r io.Reader) *jsonArraySource {
	br := bufio.NewReaderSize(r, 64<<10)
	skipBOM(br)
	lt := &lineTracker{r: br}
	dec := json.NewDecoder(lt)
	dec.UseNumber()
	return &jsonArraySource{file: file, lt: lt, dec: dec}
}

func (s *jsonArraySource) errAt(off int64, msg string) error {
	return &locError{s.file, s.lt.lineAt(off), msg}
}

func (s *jsonArraySource) next() (row, error) {
	if s.done {
		return row{}, io.EOF
	}
	if !s.started {
		s.started = true
		tok, err := s.dec.Token()
		if err != nil {
			if err == io.EOF {
				return row{}, &locError{s.file, 1, "expected a JSON array of objects, got an empty file"}
			}
			return row{}, s.syntaxErr(err, -1)
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return row{}, s.errAt(s.dec.InputOffset(), fmt.Sprintf("expected a JSON array of objects, got %s", tokenKind(tok)))
		}
	}
	if !s.dec.More() {
		tok, err := s.dec.Token()
		if err != nil {
			return row{}, s.syntaxErr(err, s.index)
		}
		if d, ok := tok.(json.Delim); !ok || d != ']' {
			return row{}, s.errAt(s.dec.InputOffset(), fmt.Sprintf("element %d: expected an object or ']', got %s", s.index, tokenKind(tok)))
		}
		s.done = true
		if _, err := s.dec.Token(); err != io.EOF {
			return row{}, s.errAt(s.dec.InputOffset(), "expected end of file after the JSON array")
		}
		return row{}, io.EOF
	}
	prevEnd := s.dec.InputOffset()
	s.lt.discardBefore(prevEnd)
	var v any
	if err := s.dec.Decode(&v); err != nil {
		return row{}, s.syntaxErr(err, s.index)
	}
	line := s.lt.lineAt(s.lt.valueStart(prevEnd))
	s.lt.discardBefore(s.dec.InputOffset())
	m, ok := v.(map[string]any)
	if !ok {
		return row{}, &locError{s.file, line, fmt.Sprintf("element %d: expected a JSON object, got %s", s.index, jsonKind(v))}
	}
	r := row{fields: m, line: line, index: s.index}
	s.index++
	return r, nil
}

func (s *jsonArraySource) syntaxErr(err error, elem int) error {
	prefix := ""
	if elem >= 0 {
		prefix = fmt.Sprintf("element %d: ", elem)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return s.errAt(se.Offset, prefix+"invalid JSON: "+se.Error())
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return s.errAt(max(s.lt.pos-1, 0), prefix+"invalid JSON: unexpected end of file")
	}
	return s.errAt(s.dec.InputOffset(), prefix+"invalid JSON: "+err.Error())
}

func tokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return "object"
		case '[':
			return "array"
		}
		return "'" + t.String() + "'"
	}
	return jsonKind(tok)
}

// ---- CSV ----

type csvSource struct {
	file   string
	cr     *csv.Reader
	header []string
	index  int
}

func newCSVSource(file string, r io.Reader) (*csvSource, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	skipBOM(br)
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	hdr, err := cr.Read()
	if err != nil {
		if err == io.EOF {
			return nil, &locError{file, 1, "expected a CSV header row, got an empty file"}
		}
		return nil, csvErr(file, err)
	}
	h := make([]string, len(hdr))
	seen := map[string]bool{}
	for i, c := range hdr {
		c = strings.TrimSpace(c)
		if c == "" {
			return nil, &locError{file, 1, fmt.Sprintf("header column %d is empty", i+1)}
		}
		if seen[c] {
			return nil, &locError{file, 1, fmt.Sprintf("header column %q appears twice", c)}
		}
		seen[c] = true
		h[i] = c
	}
	return &csvSource{file: file, cr: cr, header: h}, nil
}

func csvErr(file string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &locError{file, pe.StartLine, "invalid CSV: " + pe.Err.Error()}
	}
	return fmt.Errorf("%s: read: %w", file, err)
}

func (s *csvSource) next() (row, error) {
	rec, err := s.cr.Read()
	if err != nil {
		if err == io.EOF {
			return row{}, io.EOF
		}
		return row{}, csvErr(s.file, err)
	}
	line, _ := s.cr.FieldPos(0)
	m := make(map[string]any, len(rec))
	for i, v := range rec {
		m[s.header[i]] = v
	}
	r := row{fields: m, line: line, index: s.index}
	s.index++
	return r, nil
}
