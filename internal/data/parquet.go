package data

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// Parquet input.
//
// A Parquet file is read one row group at a time and, within it, one page
// at a time per column, so memory is bounded by a page of each column read
// plus the current row, not by the file. Only the top-level columns a Spec
// can use are read (projection): the format's default column names plus any
// mapped ones; other columns (ids, images, metadata) are never decoded.
//
// Each row is assembled from the columns' repetition and definition levels
// into the same raw values the JSON path produces: strings as string,
// integers and floats as json.Number, booleans as bool, lists (LIST
// annotated, legacy two-level lists and bare repeated fields) as []any,
// structs and maps as map[string]any. A null top-level column or struct
// field is left out of its map, as an absent JSON key would be.

// parquetBatch is how many values a column cursor decodes at a time.
const parquetBatch = 256

// parquetColumnNames is every top-level column a Spec may read.
func parquetColumnNames(spec Spec) map[string]bool {
	names := map[string]bool{}
	for _, n := range []string{
		"instruction", "input", "output", "history", "system",
		"conversations", "messages", "chosen", "rejected", "text",
	} {
		names[n] = true
	}
	c := spec.Columns
	for _, n := range []string{c.Prompt, c.Query, c.Response, c.History, c.Messages, c.System, c.Chosen, c.Rejected, c.Text} {
		if n != "" {
			names[n] = true
		}
	}
	return names
}

// levelValue is one leaf value with its levels, already converted to the
// raw form the format layer reads (nil for a null).
type levelValue struct {
	rep, def int
	v        any
}

// colCursor streams the values of one leaf column chunk.
type colCursor struct {
	col   *parquet.Column
	name  string // dotted path, for messages
	pages parquet.Pages
	page  parquet.Page
	vr    parquet.ValueReader
	buf   []parquet.Value
	conv  []levelValue
	pos   int
	done  bool
}

// fill makes at least one converted value available unless the chunk is
// exhausted (done).
func (c *colCursor) fill() error {
	for c.pos >= len(c.conv) && !c.done {
		if c.vr == nil {
			p, err := c.pages.ReadPage()
			if err == io.EOF {
				c.done = true
				return nil
			}
			if err != nil {
				return fmt.Errorf("column %s: read page: %w", c.name, err)
			}
			c.page = p
			c.vr = p.Values()
		}
		n, err := c.vr.ReadValues(c.buf)
		c.conv = c.conv[:0]
		c.pos = 0
		for _, v := range c.buf[:n] {
			lv, cerr := convertParquetValue(c.col, v)
			if cerr != nil {
				return fmt.Errorf("column %s: %w", c.name, cerr)
			}
			c.conv = append(c.conv, lv)
		}
		if err == io.EOF || (err == nil && n == 0) {
			// The values were converted (strings copied), so the page can go back to
			// the pool.
			parquet.Release(c.page)
			c.page, c.vr = nil, nil
			continue
		}
		if err != nil {
			return fmt.Errorf("column %s: read values: %w", c.name, err)
		}
	}
	return nil
}

// nextRow appends the values of the next row (a value of repetition level 0
// and the ones after it with a higher level) to dst.
func (c *colCursor) nextRow(dst []levelValue) ([]levelValue, error) {
	if err := c.fill(); err != nil {
		return dst, err
	}
	if c.pos >= len(c.conv) {
		return dst, fmt.Errorf("column %s: no more values", c.name)
	}
	if c.conv[c.pos].rep != 0 {
		return dst, fmt.Errorf("column %s: a row starts with repetition level %d", c.name, c.conv[c.pos].rep)
	}
	dst = append(dst, c.conv[c.pos])
	c.pos++
	for {
		if err := c.fill(); err != nil {
			return dst, err
		}
		if c.pos >= len(c.conv) || c.conv[c.pos].rep == 0 {
			return dst, nil
		}
		dst = append(dst, c.conv[c.pos])
		c.pos++
	}
}

func (c *colCursor) close() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page, c.vr = nil, nil
	}
	if c.pages != nil {
		c.pages.Close()
		c.pages = nil
	}
}

// convertParquetValue turns a leaf value into its raw form.
func convertParquetValue(col *parquet.Column, v parquet.Value) (levelValue, error) {
	lv := levelValue{rep: v.RepetitionLevel(), def: v.DefinitionLevel()}
	if v.IsNull() {
		return lv, nil
	}
	var lt format.LogicalTypeValue
	if t := col.Type().LogicalType(); t != nil {
		lt = t.Value
	}
	switch v.Kind() {
	case parquet.Boolean:
		lv.v = v.Boolean()
	case parquet.Int32, parquet.Int64:
		var x int64
		if v.Kind() == parquet.Int32 {
			x = int64(v.Int32())
		} else {
			x = v.Int64()
		}
		switch t := lt.(type) {
		case *format.DecimalType:
			lv.v = json.Number(decimalText(big.NewInt(x), t.Scale))
		case *format.IntType:
			if !t.IsSigned {
				if v.Kind() == parquet.Int32 {
					x = int64(uint32(v.Int32()))
					lv.v = json.Number(strconv.FormatInt(x, 10))
				} else {
					lv.v = json.Number(strconv.FormatUint(uint64(x), 10))
				}
			} else {
				lv.v = json.Number(strconv.FormatInt(x, 10))
			}
		default:
			lv.v = json.Number(strconv.FormatInt(x, 10))
		}
	case parquet.Float:
		lv.v = json.Number(floatText(float64(v.Float()), 32))
	case parquet.Double:
		lv.v = json.Number(floatText(v.Double(), 64))
	case parquet.ByteArray, parquet.FixedLenByteArray:
		if t, ok := lt.(*format.DecimalType); ok {
			b := v.ByteArray()
			n := new(big.Int).SetBytes(b)
			if len(b) > 0 && b[0]&0x80 != 0 { // two's complement, big-endian
				n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
			}
			lv.v = json.Number(decimalText(n, t.Scale))
		} else {
			lv.v = string(v.ByteArray())
		}
	default:
		return lv, fmt.Errorf("parquet type %s is not supported", v.Kind())
	}
	return lv, nil
}

// floatText renders a float the way encoding/json writes it (so a number
// read as text is the same from JSON written by Go and from Parquet):
// plain notation for magnitudes in [1e-6, 1e21), exponent notation with no
// exponent padding otherwise. NaN and infinities, which JSON cannot hold,
// are written as Go formats them.
func floatText(f float64, bits int) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, bits)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 {
		if bits == 64 && (a < 1e-6 || a >= 1e21) || bits == 32 && (float32(a) < 1e-6 || float32(a) >= 1e21) {
			format = 'e'
		}
	}
	s := strconv.FormatFloat(f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
	}
	return s
}

// decimalText renders unscaled*10^-scale in plain decimal notation.
func decimalText(unscaled *big.Int, scale int32) string {
	if scale <= 0 {
		return new(big.Int).Mul(unscaled, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-scale)), nil)).String()
	}
	neg := unscaled.Sign() < 0
	s := new(big.Int).Abs(unscaled).String()
	for len(s) <= int(scale) {
		s = "0" + s
	}
	s = s[:len(s)-int(scale)] + "." + s[len(s)-int(scale):]
	if neg {
		s = "-" + s
	}
	return s
}

// parquetField is one projected top-level column: its schema node and the range of
// cursors holding its leaves.
type parquetField struct {
	col        *parquet.Column
	start, end int
}

type parquetSource struct {
	file     string
	pf       *parquet.File
	fields   []parquetField
	leaves   []*parquet.Column
	cursors  []*colCursor
	rowVals  [][]levelValue
	group    int   // current row group
	inGroup  int64 // rows read from the current row group
	groupLen int64
	opened   bool
	index    int
	closer   func() error
	ra       io.ReaderAt
	size     int64
}

// parquetReadable is what NewReader needs to read a Parquet file in place.
type parquetReadable interface {
	io.ReaderAt
	io.Seeker
}

// newParquetSource opens a Parquet file. A reader that is not seekable is
// copied to a temporary file first (removed when the source is closed).
func newParquetSource(spec Spec, file string, rd io.Reader) (_ *parquetSource, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: malformed parquet file: %v", file, p)
		}
	}()
	var ra io.ReaderAt
	var size int64
	var closer func() error
	if pr, ok := rd.(parquetReadable); ok {
		cur, err := pr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("%s: seek: %w", file, err)
		}
		end, err := pr.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, fmt.Errorf("%s: seek: %w", file, err)
		}
		if _, err := pr.Seek(cur, io.SeekStart); err != nil {
			return nil, fmt.Errorf("%s: seek: %w", file, err)
		}
		ra, size = io.NewSectionReader(pr, cur, end-cur), end-cur
	} else {
		tmp, err := os.CreateTemp("", "lathe-parquet-*")
		if err != nil {
			return nil, fmt.Errorf("%s: spool to a temporary file: %w", file, err)
		}
		closer = func() error {
			cerr := tmp.Close()
			os.Remove(tmp.Name())
			return cerr
		}
		n, err := io.Copy(tmp, rd)
		if err != nil {
			closer()
			return nil, fmt.Errorf("%s: spool to a temporary file: %w", file, err)
		}
		ra, size = tmp, n
	}
	if size < 12 { // "PAR1", footer length, "PAR1"
		if closer != nil {
			closer()
		}
		return nil, fmt.Errorf("%s: not a parquet file: %d bytes is too short", file, size)
	}
	// The library trusts the footer length; check it against the file size
	// first so a corrupt length cannot make it allocate gigabytes.
	var tail [8]byte
	if _, err := ra.ReadAt(tail[:], size-8); err != nil {
		if closer != nil {
			closer()
		}
		return nil, fmt.Errorf("%s: read parquet footer: %w", file, err)
	}
	if n := int64(binary.LittleEndian.Uint32(tail[:4])); string(tail[4:]) == "PAR1" && n > size-12 {
		if closer != nil {
			closer()
		}
		return nil, fmt.Errorf("%s: not a readable parquet file: footer length %d exceeds the file size %d (truncated?)", file, n, size)
	}
	pf, err := parquet.OpenFile(ra, size,
		parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(64<<10))
	if err != nil {
		if closer != nil {
			closer()
		}
		return nil, fmt.Errorf("%s: not a readable parquet file: %w", file, err)
	}
	s := &parquetSource{file: file, pf: pf, closer: closer, ra: ra, size: size}
	want := parquetColumnNames(spec)
	for _, c := range pf.Root().Columns() {
		if !want[c.Name()] {
			continue
		}
		f := parquetField{col: c, start: len(s.leaves)}
		var leafErr error
		var walk func(*parquet.Column)
		walk = func(c *parquet.Column) {
			if c.Leaf() {
				if c.Index() < 0 {
					leafErr = fmt.Errorf("column %s has no leaf index", c.Name())
				}
				s.leaves = append(s.leaves, c)
				return
			}
			if len(c.Columns()) == 0 {
				leafErr = fmt.Errorf("column %s is a group without fields", c.Name())
			}
			for _, k := range c.Columns() {
				walk(k)
			}
		}
		walk(c)
		if leafErr != nil {
			if closer != nil {
				closer()
			}
			return nil, fmt.Errorf("%s: malformed parquet schema: %w", file, leafErr)
		}
		f.end = len(s.leaves)
		s.fields = append(s.fields, f)
	}
	s.rowVals = make([][]levelValue, len(s.leaves))
	return s, nil
}

func (s *parquetSource) close() error {
	for _, c := range s.cursors {
		c.close()
	}
	s.cursors = nil
	if s.closer != nil {
		err := s.closer()
		s.closer = nil
		return err
	}
	return nil
}

// where names a row for messages and reports.
func (s *parquetSource) where() string {
	return fmt.Sprintf("row group %d, row %d", s.group, s.inGroup)
}

func (s *parquetSource) openGroup() error {
	for _, c := range s.cursors {
		c.close()
	}
	s.cursors = s.cursors[:0]
	rg := s.pf.RowGroups()[s.group]
	chunks := rg.ColumnChunks()
	var mdGroup *format.RowGroup
	if md := s.pf.Metadata(); s.group < len(md.RowGroups) {
		mdGroup = &md.RowGroups[s.group]
	}
	s.groupLen = rg.NumRows()
	s.inGroup = 0
	if s.groupLen < 0 {
		return fmt.Errorf("%s: row group %d: negative row count %d", s.file, s.group, s.groupLen)
	}
	for _, l := range s.leaves {
		i := l.Index()
		if i >= len(chunks) {
			return fmt.Errorf("%s: row group %d: column %s has no column chunk", s.file, s.group, pathName(l))
		}
		if mdGroup == nil || i >= len(mdGroup.Columns) {
			return fmt.Errorf("%s: row group %d: column %s has no column metadata", s.file, s.group, pathName(l))
		}
		if err := checkChunk(s.ra, s.size, &mdGroup.Columns[i].MetaData); err != nil {
			return fmt.Errorf("%s: row group %d: column %s: malformed: %w", s.file, s.group, pathName(l), err)
		}
		s.cursors = append(s.cursors, &colCursor{
			col: l, name: pathName(l), pages: chunks[i].Pages(),
			buf: make([]parquet.Value, parquetBatch),
		})
	}
	return nil
}

func pathName(c *parquet.Column) string {
	p := c.Path()
	out := ""
	for i, e := range p {
		if i > 0 {
			out += "."
		}
		out += e
	}
	return out
}

func (s *parquetSource) next() (_ row, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: %s: malformed parquet file: %v", s.file, s.where(), p)
		}
	}()
	groups := s.pf.RowGroups()
	for {
		if !s.opened {
			if s.group >= len(groups) {
				return row{}, io.EOF
			}
			if err := s.openGroup(); err != nil {
				return row{}, err
			}
			s.opened = true
		}
		if s.inGroup < s.groupLen {
			break
		}
		for _, c := range s.cursors {
			if err := c.fill(); err != nil {
				return row{}, fmt.Errorf("%s: row group %d: %w", s.file, s.group, err)
			}
			if c.pos < len(c.conv) {
				return row{}, fmt.Errorf("%s: row group %d: column %s has values beyond the group's %d rows", s.file, s.group, c.name, s.groupLen)
			}
		}
		s.opened = false
		s.group++
	}
	for i, c := range s.cursors {
		vals, err := c.nextRow(s.rowVals[i][:0])
		if err != nil {
			return row{}, fmt.Errorf("%s: %s: %w", s.file, s.where(), err)
		}
		s.rowVals[i] = vals
	}
	m := make(map[string]any, len(s.fields))
	for _, f := range s.fields {
		v, err := assembleParquet(f.col, levels{}, s.rowVals[f.start:f.end])
		if err != nil {
			return row{}, fmt.Errorf("%s: %s: column %s: %w", s.file, s.where(), f.col.Name(), err)
		}
		if v != nil {
			m[f.col.Name()] = v
		}
	}
	r := row{fields: m, index: s.index, where: s.where()}
	s.index++
	s.inGroup++
	return r, nil
}

// levels tracks the repetition depth and definition level reached while
// descending the schema.
type levels struct {
	rep, def int
}

var errMisaligned = errors.New("column values do not line up with the schema (corrupt levels)")

func firstValue(cols [][]levelValue) (levelValue, error) {
	if len(cols) == 0 || len(cols[0]) == 0 {
		return levelValue{}, errMisaligned
	}
	return cols[0][0], nil
}

// assembleParquet builds the raw value of node from the values of its
// leaves (cols, one slice per leaf, in schema order) for one occurrence.
func assembleParquet(node *parquet.Column, lv levels, cols [][]levelValue) (any, error) {
	if node.Optional() {
		lv.def++
		f, err := firstValue(cols)
		if err != nil {
			return nil, err
		}
		if f.def < lv.def {
			return nil, nil
		}
	}
	if node.Repeated() {
		return assembleRepeated(lv, cols, func(lv levels, cols [][]levelValue) (any, error) {
			return assembleRequired(node, lv, cols)
		})
	}
	return assembleRequired(node, lv, cols)
}

// assembleRepeated splits the values of a repeated node into its
// occurrences and builds each with elem.
func assembleRepeated(lv levels, cols [][]levelValue, elem func(levels, [][]levelValue) (any, error)) (any, error) {
	lv.rep++
	lv.def++
	f, err := firstValue(cols)
	if err != nil {
		return nil, err
	}
	if f.def < lv.def {
		return []any{}, nil
	}
	out := []any{}
	sub := make([][]levelValue, len(cols))
	rest := append([][]levelValue(nil), cols...)
	for len(rest[0]) > 0 {
		for j, c := range rest {
			if len(c) == 0 {
				return nil, errMisaligned
			}
			k := 1
			for k < len(c) && c[k].rep > lv.rep {
				k++
			}
			sub[j], rest[j] = c[:k], c[k:]
		}
		v, err := elem(lv, sub)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", len(out), err)
		}
		out = append(out, v)
	}
	for _, c := range rest {
		if len(c) != 0 {
			return nil, errMisaligned
		}
	}
	return out, nil
}

func logicalOf(node *parquet.Column) format.LogicalTypeValue {
	if t := node.Type().LogicalType(); t != nil {
		return t.Value
	}
	return nil
}

// assembleRequired builds one occurrence of node ignoring its own
// repetition.
func assembleRequired(node *parquet.Column, lv levels, cols [][]levelValue) (any, error) {
	if node.Leaf() {
		f, err := firstValue(cols)
		if err != nil {
			return nil, err
		}
		return f.v, nil
	}
	kids := node.Columns()
	switch logicalOf(node).(type) {
	case *format.ListType:
		if len(kids) == 1 && kids[0].Repeated() {
			rep := kids[0]
			// Three-level list (list/element, or any names): the repeated
			// group wraps a single element. Per the format's compatibility
			// rules, a repeated group named "array" or "<name>_tuple", a
			// repeated leaf, or one with several fields is itself the element.
			if !rep.Leaf() && len(rep.Columns()) == 1 && rep.Name() != "array" && rep.Name() != node.Name()+"_tuple" {
				el := rep.Columns()[0]
				return assembleRepeated(lv, cols, func(lv levels, cols [][]levelValue) (any, error) {
					return assembleParquet(el, lv, cols)
				})
			}
			return assembleRepeated(lv, cols, func(lv levels, cols [][]levelValue) (any, error) {
				return assembleRequired(rep, lv, cols)
			})
		}
		return nil, fmt.Errorf("a LIST group must hold one repeated field")
	case *format.MapType:
		if len(kids) == 1 && kids[0].Repeated() && !kids[0].Leaf() && len(kids[0].Columns()) == 2 {
			kv := kids[0]
			ks, vs := kv.Columns()[0], kv.Columns()[1]
			nk := countLeaves(ks)
			m := map[string]any{}
			_, err := assembleRepeated(lv, cols, func(lv levels, cols [][]levelValue) (any, error) {
				k, err := assembleParquet(ks, lv, cols[:nk])
				if err != nil {
					return nil, err
				}
				key, ok := mapKeyText(k)
				if !ok {
					return nil, fmt.Errorf("map key must be a string or number, got %s", jsonKind(k))
				}
				v, err := assembleParquet(vs, lv, cols[nk:])
				if err != nil {
					return nil, err
				}
				m[key] = v
				return nil, nil
			})
			if err != nil {
				return nil, err
			}
			return m, nil
		}
		return nil, fmt.Errorf("a MAP group must hold one repeated key/value group")
	}
	m := make(map[string]any, len(kids))
	off := 0
	for _, k := range kids {
		n := countLeaves(k)
		if off+n > len(cols) {
			return nil, errMisaligned
		}
		v, err := assembleParquet(k, lv, cols[off:off+n])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.Name(), err)
		}
		if v != nil {
			m[k.Name()] = v
		}
		off += n
	}
	return m, nil
}

func mapKeyText(k any) (string, bool) {
	switch x := k.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func countLeaves(c *parquet.Column) int {
	if c.Leaf() {
		return 1
	}
	n := 0
	for _, k := range c.Columns() {
		n += countLeaves(k)
	}
	return n
}

// Limits on what a page header may claim, checked before the library reads
// the page (it allocates what the header says, including a 24-byte value
// per claimed value). Real writers use pages of a few MB at most and far
// fewer values than these bounds: a page may hold up to 8 values per byte
// (bit-packed booleans) plus 1Mi (run-length encoded nulls), and never more
// than 8Mi.
const (
	maxParquetPage       = 64 << 20 // bytes, compressed or not
	maxParquetPageValues = 8 << 20
	maxParquetHeader     = 16 << 20
)

// checkChunk walks the page headers of one column chunk and rejects sizes
// that fall outside the chunk or the limits above, so a corrupt header
// gives an error instead of a huge allocation.
func checkChunk(ra io.ReaderAt, fileSize int64, md *format.ColumnMetaData) error {
	base := md.DataPageOffset
	if md.DictionaryPageOffset != 0 {
		base = md.DictionaryPageOffset
	}
	end := base + md.TotalCompressedSize
	if base < 0 || md.TotalCompressedSize < 0 || end < base || end > fileSize {
		return fmt.Errorf("column chunk [%d, +%d) lies outside the file (%d bytes)", base, md.TotalCompressedSize, fileSize)
	}
	var proto thrift.CompactProtocol
	buf := make([]byte, 0, 1024)
	for off := base; off < end; {
		var h format.PageHeader
		n := int64(1024)
		var hlen int64
		for {
			n = min(n, end-off)
			if int64(cap(buf)) < n {
				buf = make([]byte, 0, n)
			}
			b := buf[:n]
			if _, err := ra.ReadAt(b, off); err != nil && err != io.EOF {
				return fmt.Errorf("read page header at offset %d: %w", off, err)
			}
			h = format.PageHeader{}
			r := proto.NewReaderFromBytes(b)
			err := thrift.NewDecoder(r).Decode(&h)
			if err == nil {
				hlen = int64(r.BytesRead())
				break
			}
			if n >= end-off || n >= maxParquetHeader {
				return fmt.Errorf("page header at offset %d: %w", off, err)
			}
			n *= 4
		}
		if h.CompressedPageSize < 0 || h.UncompressedPageSize < 0 ||
			h.CompressedPageSize > maxParquetPage || h.UncompressedPageSize > maxParquetPage {
			return fmt.Errorf("page at offset %d: sizes %d compressed, %d uncompressed are out of range", off, h.CompressedPageSize, h.UncompressedPageSize)
		}
		if md.Codec == format.Uncompressed && h.CompressedPageSize != h.UncompressedPageSize {
			return fmt.Errorf("page at offset %d: an uncompressed page of %d bytes claims %d uncompressed bytes", off, h.CompressedPageSize, h.UncompressedPageSize)
		}
		maxValues := min(int64(maxParquetPageValues), 8*int64(h.UncompressedPageSize)+1<<20)
		for _, nv := range []int32{h.DataPageHeader.V.NumValues, h.DictionaryPageHeader.V.NumValues, h.DataPageHeaderV2.V.NumValues} {
			if nv < 0 || int64(nv) > maxValues {
				return fmt.Errorf("page at offset %d: %d values is out of range", off, nv)
			}
		}
		off += hlen + int64(h.CompressedPageSize)
		if off > end {
			return fmt.Errorf("page at offset %d runs past the end of its column chunk", off-int64(h.CompressedPageSize)-hlen)
		}
	}
	return nil
}
