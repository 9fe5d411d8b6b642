package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Format is a dataset layout, as LLaMA Factory names them.
type Format string

// Dataset layouts.
const (
	FormatAlpaca   Format = "alpaca"   // instruction/input/output/system/history
	FormatShareGPT Format = "sharegpt" // conversations of from/value, or messages of role/content
	FormatText     Format = "text"     // one text column, for pretraining
)

// Columns maps lathe's logical fields to the dataset's column names, like the
// "columns" object of LLaMA Factory's dataset_info.json. An empty name means
// the format's default.
type Columns struct {
	Prompt   string // alpaca: default "instruction"
	Query    string // alpaca: default "input"
	Response string // alpaca: default "output"
	History  string // alpaca: default "history"
	Messages string // sharegpt: default "conversations" (falls back to "messages")
	System   string // default "system"
	Chosen   string // preference: default "chosen"
	Rejected string // preference: default "rejected"
	Text     string // text: default "text"
}

// Tags maps the role tags of a sharegpt dataset, like the "tags" object of
// dataset_info.json. Empty fields take the defaults: sharegpt style
// (from/value, human/gpt/observation/function_call/system), or, for a row
// whose messages carry "role" rather than "from", OpenAI style
// (role/content, user/assistant/tool/function/system).
type Tags struct {
	RoleTag        string
	ContentTag     string
	UserTag        string
	AssistantTag   string
	ObservationTag string
	FunctionTag    string
	SystemTag      string
}

// Spec describes one dataset file and how to read it.
type Spec struct {
	Path string
	// FileType is "json" (an array of objects), "jsonl", "csv" or
	// "parquet"; empty means by extension (.json, .jsonl/.ndjson, .csv,
	// .parquet).
	FileType string
	Format   Format
	// Ranking marks a preference dataset (chosen/rejected).
	Ranking bool
	Columns Columns
	Tags    Tags
	// Replace maps placeholder text (e.g. "{{name}}") to its value; it is
	// applied literally to every text field of every example.
	Replace map[string]string
	// KeepDropExamples is how many dropped rows per reason to keep for the
	// report (default 3).
	KeepDropExamples int
}

// Drop reasons: the rows a reader skips, counted by these keys.
const (
	DropMissingPrompt    = "missing prompt"
	DropEmptyResponse    = "empty response"
	DropEmptyText        = "empty text"
	DropNoMessages       = "no messages"
	DropInvalidRoleOrder = "invalid role order"
	DropUnknownRole      = "unknown role tag"
	DropMissingChosen    = "missing chosen/rejected"
	DropBadHistory       = "malformed history"
)

// DropExample is one dropped row kept for the report.
type DropExample struct {
	Source string `json:"source"` // file:line
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// Stats counts what a Reader saw.
type Stats struct {
	RowsRead     int64            `json:"rows_read"`
	Kept         int64            `json:"kept"`
	Dropped      map[string]int64 `json:"dropped,omitempty"`
	DropExamples []DropExample    `json:"drop_examples,omitempty"`
}

// DroppedTotal is the number of rows dropped for any reason.
func (s Stats) DroppedTotal() int64 {
	var n int64
	for _, c := range s.Dropped {
		n += c
	}
	return n
}

// Summary renders the drop counts as "reason: n, ..." in sorted order.
func (s Stats) Summary() string {
	keys := make([]string, 0, len(s.Dropped))
	for k := range s.Dropped {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, s.Dropped[k])
	}
	for _, d := range s.DropExamples {
		fmt.Fprintf(&b, "\n  %s: %s", d.Source, d.Reason)
		if d.Detail != "" {
			b.WriteString(" (" + d.Detail + ")")
		}
	}
	return b.String()
}

// ErrAllDropped is wrapped by the error a Reader returns when every row of
// a non-empty file was dropped.
var ErrAllDropped = errors.New("every row was dropped")

// Reader streams Examples out of one dataset file in bounded memory.
type Reader struct {
	spec  Spec
	file  string
	f     *os.File
	src   rowSource
	repl  *strings.Replacer
	stats Stats
	keep  int
	kept  map[string]int
	err   error
}

// Open opens a dataset file for streaming.
func Open(spec Spec) (*Reader, error) {
	f, err := os.Open(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	r, err := NewReader(spec, spec.Path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.f = f
	return r, nil
}

// NewReader reads a dataset from rd; name is used in messages and, when
// spec.FileType is empty, for the extension. Parquet is read in place when
// rd is an io.ReaderAt and io.Seeker (an *os.File, a bytes.Reader) and
// copied to a temporary file otherwise.
func NewReader(spec Spec, name string, rd io.Reader) (*Reader, error) {
	ft := strings.ToLower(spec.FileType)
	if ft == "" {
		switch strings.ToLower(filepath.Ext(name)) {
		case ".json":
			ft = "json"
		case ".jsonl", ".ndjson":
			ft = "jsonl"
		case ".csv":
			ft = "csv"
		case ".parquet":
			ft = "parquet"
		default:
			return nil, fmt.Errorf("%s: cannot tell the file type from the extension; set file_type to json, jsonl, csv or parquet", name)
		}
	}
	switch spec.Format {
	case FormatAlpaca, FormatShareGPT, FormatText:
	case "":
		spec.Format = FormatAlpaca
	default:
		return nil, fmt.Errorf("%s: unknown dataset format %q (want alpaca, sharegpt or text)", name, spec.Format)
	}
	r := &Reader{spec: spec, file: name, repl: newReplacer(spec.Replace), keep: spec.KeepDropExamples, kept: map[string]int{}}
	if r.keep == 0 {
		r.keep = 3
	}
	switch ft {
	case "json":
		r.src = newJSONArraySource(name, rd)
	case "jsonl":
		r.src = newJSONLSource(name, rd)
	case "csv":
		s, err := newCSVSource(name, rd)
		if err != nil {
			return nil, err
		}
		r.src = s
	case "parquet":
		s, err := newParquetSource(spec, name, rd)
		if err != nil {
			return nil, err
		}
		r.src = s
	default:
		return nil, fmt.Errorf("%s: unknown file type %q (want json, jsonl, csv or parquet)", name, ft)
	}
	return r, nil
}

// Stats returns the counts so far.
func (r *Reader) Stats() Stats { return r.stats }

// Close releases what the reader holds (a Parquet source's pages and
// temporary file) and closes the underlying file, if Open opened it.
func (r *Reader) Close() error {
	var err error
	if c, ok := r.src.(interface{ close() error }); ok {
		err = c.close()
	}
	if r.f != nil {
		if ferr := r.f.Close(); err == nil {
			err = ferr
		}
	}
	return err
}

// Next returns the next usable Example. Unusable rows are counted in Stats
// and skipped. At the end it returns io.EOF, or an error wrapping
// ErrAllDropped (with the drop summary) when no row was usable.
func (r *Reader) Next() (Example, error) {
	if r.err != nil {
		return Example{}, r.err
	}
	for {
		rw, err := r.src.next()
		if err == io.EOF {
			if r.stats.RowsRead == 0 {
				r.err = fmt.Errorf("%s: the dataset has no rows", r.file)
			} else if r.stats.Kept == 0 {
				r.err = fmt.Errorf("%s: %w (%d rows): %s", r.file, ErrAllDropped, r.stats.RowsRead, r.stats.Summary())
			} else {
				r.err = io.EOF
			}
			return Example{}, r.err
		}
		if err != nil {
			r.err = err
			return Example{}, err
		}
		r.stats.RowsRead++
		src := fmt.Sprintf("%s:%d", r.file, rw.line)
		if rw.where != "" {
			src = r.file + ":" + rw.where
		}
		ex, reason, detail, err := r.convert(rw.fields)
		if err != nil {
			if rw.where != "" {
				r.err = fmt.Errorf("%s: %s: %s", r.file, rw.where, err)
			} else {
				r.err = &locError{r.file, rw.line, err.Error()}
			}
			return Example{}, r.err
		}
		if reason != "" {
			r.drop(src, reason, detail)
			continue
		}
		ex.Source = src
		ex.applyReplace(r.repl)
		r.stats.Kept++
		return ex, nil
	}
}

func (r *Reader) drop(src, reason, detail string) {
	if r.stats.Dropped == nil {
		r.stats.Dropped = map[string]int64{}
	}
	r.stats.Dropped[reason]++
	if r.kept[reason] < r.keep {
		r.kept[reason]++
		r.stats.DropExamples = append(r.stats.DropExamples, DropExample{Source: src, Reason: reason, Detail: detail})
	}
}

// ReadAll reads every usable example of the file.
func ReadAll(spec Spec) ([]Example, Stats, error) {
	r, err := Open(spec)
	if err != nil {
		return nil, Stats{}, err
	}
	defer r.Close()
	var out []Example
	for {
		ex, err := r.Next()
		if err == io.EOF {
			return out, r.Stats(), nil
		}
		if err != nil {
			return nil, r.Stats(), err
		}
		out = append(out, ex)
	}
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// str reads a string column: absent or null gives "", a JSON number gives
// its literal text (answers like 42 are common), anything else is an error
// naming the expected type.
func str(m map[string]any, col string) (string, error) {
	v, ok := m[col]
	if !ok || v == nil {
		return "", nil
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	}
	return "", fmt.Errorf("column %q: expected a string, got %s", col, jsonKind(v))
}

// list reads a list column; in CSV it is a JSON-encoded string.
func list(m map[string]any, col string) ([]any, bool, error) {
	v, ok := m[col]
	if !ok || v == nil {
		return nil, false, nil
	}
	if s, ok := v.(string); ok {
		if strings.TrimSpace(s) == "" {
			return nil, false, nil
		}
		var x any
		if err := json.Unmarshal([]byte(s), &x); err != nil {
			return nil, false, fmt.Errorf("column %q: expected a JSON array, got a string that is not JSON", col)
		}
		v = x
	}
	l, ok := v.([]any)
	if !ok {
		return nil, false, fmt.Errorf("column %q: expected an array, got %s", col, jsonKind(v))
	}
	return l, true, nil
}

// convert maps one raw row to an Example. A non-empty reason means "drop";
// an error means the row is malformed (wrong types).
func (r *Reader) convert(m map[string]any) (ex Example, reason, detail string, err error) {
	switch r.spec.Format {
	case FormatText:
		col := or(r.spec.Columns.Text, "text")
		t, err := str(m, col)
		if err != nil {
			return ex, "", "", err
		}
		if strings.TrimSpace(t) == "" {
			return ex, DropEmptyText, "column " + col, nil
		}
		ex.Text = t
		return ex, "", "", nil
	case FormatShareGPT:
		return r.convertShareGPT(m)
	default:
		return r.convertAlpaca(m)
	}
}

func (r *Reader) convertAlpaca(m map[string]any) (ex Example, reason, detail string, err error) {
	c := r.spec.Columns
	var prompt, query, resp string
	if prompt, err = str(m, or(c.Prompt, "instruction")); err != nil {
		return
	}
	if query, err = str(m, or(c.Query, "input")); err != nil {
		return
	}
	if ex.System, err = str(m, or(c.System, "system")); err != nil {
		return
	}
	hist, _, err := list(m, or(c.History, "history"))
	if err != nil {
		return ex, "", "", err
	}
	for i, h := range hist {
		pair, ok := h.([]any)
		if !ok || len(pair) != 2 {
			return ex, DropBadHistory, fmt.Sprintf("history[%d] is not a [question, answer] pair", i), nil
		}
		q, ok1 := pair[0].(string)
		a, ok2 := pair[1].(string)
		if !ok1 || !ok2 {
			return ex, DropBadHistory, fmt.Sprintf("history[%d] holds non-strings", i), nil
		}
		if strings.TrimSpace(q) == "" || strings.TrimSpace(a) == "" {
			return ex, DropBadHistory, fmt.Sprintf("history[%d] has an empty side", i), nil
		}
		ex.Turns = append(ex.Turns, Message{RoleUser, q}, Message{RoleAssistant, a})
	}
	content := prompt
	if query != "" {
		if content != "" {
			content += "\n"
		}
		content += query
	}
	if strings.TrimSpace(content) == "" {
		return ex, DropMissingPrompt, "", nil
	}
	ex.Turns = append(ex.Turns, Message{RoleUser, content})
	if r.spec.Ranking {
		var ch, rj string
		if ch, err = str(m, or(c.Chosen, "chosen")); err != nil {
			return
		}
		if rj, err = str(m, or(c.Rejected, "rejected")); err != nil {
			return
		}
		if strings.TrimSpace(ch) == "" || strings.TrimSpace(rj) == "" {
			return ex, DropMissingChosen, "", nil
		}
		ex.Chosen = &Message{RoleAssistant, ch}
		ex.Rejected = &Message{RoleAssistant, rj}
		return ex, "", "", nil
	}
	if resp, err = str(m, or(c.Response, "output")); err != nil {
		return
	}
	if strings.TrimSpace(resp) == "" {
		return ex, DropEmptyResponse, "", nil
	}
	ex.Turns = append(ex.Turns, Message{RoleAssistant, resp})
	return ex, "", "", nil
}

// tagSet is a fully resolved Tags.
type tagSet struct {
	role, content string
	roles         map[string]Role
}

func (r *Reader) tagsFor(msg map[string]any) tagSet {
	t := r.spec.Tags
	openai := false
	if t.RoleTag == "" {
		if _, ok := msg["from"]; !ok {
			if _, ok := msg["role"]; ok {
				openai = true
			}
		}
	}
	if openai {
		return tagSet{
			role: "role", content: or(t.ContentTag, "content"),
			roles: map[string]Role{
				or(t.UserTag, "user"): RoleUser, or(t.AssistantTag, "assistant"): RoleAssistant,
				or(t.ObservationTag, "tool"): RoleObservation, or(t.FunctionTag, "function"): RoleFunction,
				or(t.SystemTag, "system"): RoleSystem,
			},
		}
	}
	return tagSet{
		role: or(t.RoleTag, "from"), content: or(t.ContentTag, "value"),
		roles: map[string]Role{
			or(t.UserTag, "human"): RoleUser, or(t.AssistantTag, "gpt"): RoleAssistant,
			or(t.ObservationTag, "observation"): RoleObservation, or(t.FunctionTag, "function_call"): RoleFunction,
			or(t.SystemTag, "system"): RoleSystem,
		},
	}
}

// message decodes one sharegpt/OpenAI message object.
func (r *Reader) message(v any, where string) (Message, string, string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Message{}, "", "", fmt.Errorf("%s: expected an object, got %s", where, jsonKind(v))
	}
	ts := r.tagsFor(obj)
	tag, err := str(obj, ts.role)
	if err != nil {
		return Message{}, "", "", fmt.Errorf("%s: %w", where, err)
	}
	content, err := str(obj, ts.content)
	if err != nil {
		return Message{}, "", "", fmt.Errorf("%s: %w", where, err)
	}
	role, ok := ts.roles[tag]
	if !ok {
		return Message{}, DropUnknownRole, fmt.Sprintf("%s: %s %q", where, ts.role, tag), nil
	}
	return Message{Role: role, Content: content}, "", "", nil
}

func promptSide(r Role) bool { return r == RoleUser || r == RoleObservation }
func answerSide(r Role) bool { return r == RoleAssistant || r == RoleFunction }

func (r *Reader) convertShareGPT(m map[string]any) (ex Example, reason, detail string, err error) {
	c := r.spec.Columns
	col := c.Messages
	if col == "" {
		col = "conversations"
		if _, ok := m[col]; !ok {
			if _, ok := m["messages"]; ok {
				col = "messages"
			}
		}
	}
	msgs, _, err := list(m, col)
	if err != nil {
		return ex, "", "", err
	}
	if ex.System, err = str(m, or(c.System, "system")); err != nil {
		return
	}
	for i, v := range msgs {
		msg, reason, detail, err := r.message(v, fmt.Sprintf("%s[%d]", col, i))
		if err != nil || reason != "" {
			return ex, reason, detail, err
		}
		if msg.Role == RoleSystem {
			if i != 0 {
				return ex, DropInvalidRoleOrder, fmt.Sprintf("%s[%d]: system message after the first turn", col, i), nil
			}
			ex.System = msg.Content
			continue
		}
		ex.Turns = append(ex.Turns, msg)
	}
	if len(ex.Turns) == 0 {
		return ex, DropNoMessages, "", nil
	}
	for i, t := range ex.Turns {
		want := promptSide
		if i%2 == 1 {
			want = answerSide
		}
		if !want(t.Role) {
			return ex, DropInvalidRoleOrder, fmt.Sprintf("turn %d is %s", i, t.Role), nil
		}
		if strings.TrimSpace(t.Content) == "" {
			if answerSide(t.Role) {
				return ex, DropEmptyResponse, fmt.Sprintf("turn %d", i), nil
			}
			return ex, DropMissingPrompt, fmt.Sprintf("turn %d", i), nil
		}
	}
	if r.spec.Ranking {
		if len(ex.Turns)%2 != 1 {
			return ex, DropInvalidRoleOrder, "a preference conversation must end with a prompt-side turn", nil
		}
		ch, chOK := m[or(c.Chosen, "chosen")]
		rj, rjOK := m[or(c.Rejected, "rejected")]
		if !chOK || !rjOK || ch == nil || rj == nil {
			return ex, DropMissingChosen, "", nil
		}
		cm, reason, detail, err := r.message(ch, or(c.Chosen, "chosen"))
		if err != nil || reason != "" {
			return ex, reason, detail, err
		}
		rm, reason, detail, err := r.message(rj, or(c.Rejected, "rejected"))
		if err != nil || reason != "" {
			return ex, reason, detail, err
		}
		if !answerSide(cm.Role) || !answerSide(rm.Role) {
			return ex, DropInvalidRoleOrder, "chosen/rejected must be answer-side messages", nil
		}
		if strings.TrimSpace(cm.Content) == "" || strings.TrimSpace(rm.Content) == "" {
			return ex, DropMissingChosen, "empty chosen or rejected", nil
		}
		ex.Chosen, ex.Rejected = &cm, &rm
		return ex, "", "", nil
	}
	if len(ex.Turns)%2 != 0 {
		return ex, DropInvalidRoleOrder, "the conversation does not end with an answer", nil
	}
	return ex, "", "", nil
}
