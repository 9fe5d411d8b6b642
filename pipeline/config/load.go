package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Pipeline is a parsed pipeline: its blocks, not yet evaluated.
type Pipeline struct {
	Dir       string               // absolute directory of the pipeline file(s)
	Files     map[string]*hcl.File // keyed by filename as it appears in diagnostic ranges
	Variables map[string]*Variable
	Locals    map[string]*Local
	Stages    []*StageBlock // in source order
	Outputs   map[string]*Output
	// Cache is the cache block, or nil when the pipeline has none.
	Cache *CacheBlock
	// Executor is the executor block, or nil when the pipeline has none.
	Executor *ExecutorBlock
}

// Variable is a variable block.
type Variable struct {
	Name, Description string
	// Type is the type constraint; cty.DynamicPseudoType when none is given.
	Type cty.Type
	// Default is the default value converted to Type, or cty.NilVal if the
	// variable is required.
	Default   cty.Value
	DeclRange hcl.Range
	// TypeDefaults holds the defaults of optional() object attributes.
	TypeDefaults *typeexpr.Defaults
	// TypeGiven reports whether the block had a type argument, and
	// TypeText is its source text, for messages.
	TypeGiven   bool
	TypeText    string
	Validations []*Validation
}

// Validation is one validation block of a variable.
type Validation struct {
	Condition    hcl.Expression
	ErrorMessage hcl.Expression
	DeclRange    hcl.Range
}

// Local is one named value of a locals block.
type Local struct {
	Name      string
	Expr      hcl.Expression
	DeclRange hcl.Range
}

// StageBlock is a stage "<kind>" "<name>" block.
type StageBlock struct {
	Kind, Name string
	DeclRange  hcl.Range
	// KindRange and NameRange are the ranges of the two labels.
	KindRange, NameRange hcl.Range
	// ForEach is the for_each expression, or nil.
	ForEach hcl.Expression
	// Publish is the publish expression (workspace path -> output name), or
	// nil. It is not part of the cache key.
	Publish hcl.Expression
	// Resources is the resources block (what the stage needs of the machine
	// that runs it), or nil; evaluated into Instance.Resources.
	Resources *hcl.Block
	// Body is the block body without the meta-arguments; it is decoded with
	// the kind's schema.
	Body hcl.Body
	// Index is the block's position in Pipeline.Stages.
	Index int

	fullBody hcl.Body // the body with the meta-arguments, for reference walks
}

// Addr returns the block address, `<kind>.<name>`.
func (s *StageBlock) Addr() string { return s.Kind + "." + s.Name }

// Output is an output block.
type Output struct {
	Name, Description string
	Expr              hcl.Expression
	DeclRange         hcl.Range
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "stage", LabelNames: []string{"kind", "name"}},
		{Type: "output", LabelNames: []string{"name"}},
		{Type: "cache"},
		{Type: "executor", LabelNames: []string{"type"}},
	},
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "condition", Required: true},
		{Name: "error_message", Required: true},
	},
}

var outputSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "value", Required: true}, {Name: "description"},
	},
}

// stageMetaSchema extracts the meta-arguments of a stage block. The reserved
// ones are rejected.
var stageMetaSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "for_each"}, {Name: "publish"}, {Name: "depends_on"}, {Name: "count"}, {Name: "provider"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "resources"}},
}

var reservedMeta = map[string]string{
	"depends_on": "lathe infers the dependencies of a stage from the references in its arguments; refer to an output of the upstream stage instead.",
	"count":      "use for_each with a map or a set of strings to run several instances of a stage.",
	"provider":   "stages have no providers.",
}

// Load parses a pipeline: one .hcl file, or every *.hcl file in a directory,
// ignoring files ending in .lock.hcl. Diagnostics cover syntax and structural
// errors. Whenever any file could be read the returned Pipeline is non-nil and
// its Files are populated, so that diagnostics can be rendered.
func Load(path string) (*Pipeline, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	info, err := os.Stat(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read pipeline",
			Detail:   fmt.Sprintf("Reading the pipeline at %s: %s.", path, err),
		}}
	}
	var names []string
	dir := path
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Cannot read pipeline directory",
				Detail:   fmt.Sprintf("Listing %s: %s.", path, err),
			}}
		}
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() || !strings.HasSuffix(n, ".hcl") || strings.HasSuffix(n, ".lock.hcl") {
				continue
			}
			names = append(names, filepath.Join(path, n))
		}
		sort.Strings(names)
		if len(names) == 0 {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "No pipeline files",
				Detail:   fmt.Sprintf("The directory %s holds no *.hcl pipeline file.", path),
			}}
		}
	} else {
		names = []string{path}
		dir = filepath.Dir(path)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	p := &Pipeline{
		Dir:       abs,
		Files:     map[string]*hcl.File{},
		Variables: map[string]*Variable{},
		Locals:    map[string]*Local{},
		Outputs:   map[string]*Output{},
	}
	var bodies []*hcl.File
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot read pipeline file",
				Detail:   fmt.Sprintf("Reading %s: %s.", name, err),
			})
			continue
		}
		f, fdiags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		diags = append(diags, fdiags...)
		if f != nil {
			p.Files[name] = f
			bodies = append(bodies, f)
		}
	}
	if len(p.Files) == 0 {
		return nil, diags
	}
	if diags.HasErrors() {
		// Syntax errors: the structure is not trustworthy enough to go on.
		return p, diags
	}
	for _, f := range bodies {
		diags = append(diags, p.decodeBody(f.Body, f.Bytes)...)
	}
	return p, tidyDiags(diags)
}

// decodeBody adds the blocks of one file's body to p.
func (p *Pipeline) decodeBody(body hcl.Body, src []byte) hcl.Diagnostics {
	content, diags := body.Content(rootSchema)
	stageSeen := map[string]*StageBlock{}
	for _, s := range p.Stages {
		stageSeen[s.Addr()] = s
	}
	for _, block := range content.Blocks {
		switch block.Type {
		case "variable":
			v, vdiags := decodeVariable(block, src)
			diags = append(diags, vdiags...)
			if v == nil {
				continue
			}
			if prev, dup := p.Variables[v.Name]; dup {
				diags = append(diags, duplicate("variable", fmt.Sprintf("variable %q", v.Name), block.LabelRanges[0], prev.DeclRange))
				continue
			}
			p.Variables[v.Name] = v
		case "locals":
			attrs, adiags := block.Body.JustAttributes()
			diags = append(diags, adiags...)
			for _, a := range sortedAttrs(attrs) {
				if prev, dup := p.Locals[a.Name]; dup {
					diags = append(diags, duplicate("local value", fmt.Sprintf("local value %q", a.Name), a.NameRange, prev.DeclRange))
					continue
				}
				p.Locals[a.Name] = &Local{Name: a.Name, Expr: a.Expr, DeclRange: a.NameRange}
			}
		case "stage":
			s, sdiags := decodeStage(block)
			diags = append(diags, sdiags...)
			if s == nil {
				continue
			}
			if prev, dup := stageSeen[s.Addr()]; dup {
				diags = append(diags, duplicate("stage", fmt.Sprintf("stage %q %q", s.Kind, s.Name), block.DefRange, prev.DeclRange))
				continue
			}
			stageSeen[s.Addr()] = s
			s.Index = len(p.Stages)
			p.Stages = append(p.Stages, s)
		case "output":
			o, odiags := decodeOutput(block)
			diags = append(diags, odiags...)
			if o == nil {
				continue
			}
			if prev, dup := p.Outputs[o.Name]; dup {
				diags = append(diags, duplicate("output", fmt.Sprintf("output %q", o.Name), block.LabelRanges[0], prev.DeclRange))
				continue
			}
			p.Outputs[o.Name] = o
		case "cache":
			c, cdiags := decodeCache(block)
			diags = append(diags, cdiags...)
			if p.Cache != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Duplicate cache block",
					Detail:   fmt.Sprintf("A cache block was already declared at %s. A pipeline has at most one cache block, in any of its files.", rangeString(p.Cache.DeclRange)),
					Subject:  block.DefRange.Ptr(),
				})
				continue
			}
			p.Cache = c
		case "executor":
			e, ediags := decodeExecutor(block)
			diags = append(diags, ediags...)
			if p.Executor != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Duplicate executor block",
					Detail:   fmt.Sprintf("An executor block was already declared at %s. A pipeline has at most one executor block, in any of its files.", rangeString(p.Executor.DeclRange)),
					Subject:  block.DefRange.Ptr(),
				})
				continue
			}
			p.Executor = e
		}
	}
	return diags
}

func duplicate(what, name string, subject, prev hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Duplicate " + what,
		Detail:   fmt.Sprintf("The %s was already declared at %s. Each %s must have a unique name.", name, rangeString(prev), what),
		Subject:  subject.Ptr(),
	}
}

// rangeString renders a range's start as file:line,column.
func rangeString(r hcl.Range) string {
	return fmt.Sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column)
}

func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return rangeLess(out[i].Range, out[j].Range) })
	return out
}

func rangeLess(a, b hcl.Range) bool {
	if a.Filename != b.Filename {
		return a.Filename < b.Filename
	}
	return a.Start.Byte < b.Start.Byte
}

func checkIdent(what, name string, r hcl.Range) hcl.Diagnostics {
	if hclsyntax.ValidIdentifier(name) {
		return nil
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Invalid " + what,
		Detail:   fmt.Sprintf("%q is not a valid %s: a name must start with a letter or underscore and contain only letters, digits, underscores and dashes.", name, what),
		Subject:  r.Ptr(),
	}}
}

func decodeVariable(block *hcl.Block, src []byte) (*Variable, hcl.Diagnostics) {
	v := &Variable{
		Name:      block.Labels[0],
		Type:      cty.DynamicPseudoType,
		Default:   cty.NilVal,
		DeclRange: block.DefRange,
	}
	diags := checkIdent("variable name", v.Name, block.LabelRanges[0])
	content, cdiags := block.Body.Content(variableSchema)
	diags = append(diags, cdiags...)
	if a, ok := content.Attributes["description"]; ok {
		diags = append(diags, stringAttr(a, &v.Description)...)
	}
	if a, ok := content.Attributes["type"]; ok {
		ty, defaults, tdiags := typeexpr.TypeConstraintWithDefaults(a.Expr)
		diags = append(diags, tdiags...)
		if !tdiags.HasErrors() {
			v.Type, v.TypeDefaults, v.TypeGiven = ty, defaults, true
			if rng := a.Expr.Range(); rng.End.Byte <= len(src) {
				v.TypeText = string(rng.SliceBytes(src))
			}
		}
	}
	if a, ok := content.Attributes["default"]; ok {
		val, vdiags := a.Expr.Value(&hcl.EvalContext{Functions: baseFunctions()})
		diags = append(diags, vdiags...)
		if !vdiags.HasErrors() {
			if v.TypeDefaults != nil && !val.IsNull() {
				val = v.TypeDefaults.Apply(val)
			}
			conv, err := convert.Convert(val, v.Type)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid default value for variable",
					Detail:   fmt.Sprintf("The default value of variable %q does not match its type %s: %s.", v.Name, v.typeString(), convertErr(err)),
					Subject:  a.Expr.Range().Ptr(),
				})
			} else {
				v.Default = conv
			}
		}
	}
	for _, b := range content.Blocks {
		vc, vdiags := b.Body.Content(validationSchema)
		diags = append(diags, vdiags...)
		c, okc := vc.Attributes["condition"]
		m, okm := vc.Attributes["error_message"]
		if okc && okm {
			v.Validations = append(v.Validations, &Validation{Condition: c.Expr, ErrorMessage: m.Expr, DeclRange: b.DefRange})
		}
	}
	return v, diags
}

func stringAttr(a *hcl.Attribute, dst *string) hcl.Diagnostics {
	val, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		return diags
	}
	val, err := convert.Convert(val, cty.String)
	if err != nil || val.IsNull() || !val.IsKnown() {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid " + a.Name,
			Detail:   fmt.Sprintf("The %s must be a string.", a.Name),
			Subject:  a.Expr.Range().Ptr(),
		}}
	}
	*dst = val.AsString()
	return nil
}

func decodeStage(block *hcl.Block) (*StageBlock, hcl.Diagnostics) {
	s := &StageBlock{
		Kind:      block.Labels[0],
		Name:      block.Labels[1],
		DeclRange: block.DefRange,
		KindRange: block.LabelRanges[0],
		NameRange: block.LabelRanges[1],
	}
	diags := checkIdent("stage kind", s.Kind, s.KindRange)
	diags = append(diags, checkIdent("stage name", s.Name, s.NameRange)...)
	if diags.HasErrors() {
		return nil, diags
	}
	content, remain, mdiags := block.Body.PartialContent(stageMetaSchema)
	diags = append(diags, mdiags...)
	for _, a := range sortedAttrs(content.Attributes) {
		if why, reserved := reservedMeta[a.Name]; reserved {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unsupported meta-argument",
				Detail:   fmt.Sprintf("The %q argument is reserved and not supported in stage blocks: %s", a.Name, why),
				Subject:  a.NameRange.Ptr(),
			})
		}
	}
	if a, ok := content.Attributes["for_each"]; ok {
		s.ForEach = a.Expr
	}
	if a, ok := content.Attributes["publish"]; ok {
		s.Publish = a.Expr
	}
	var rdiags hcl.Diagnostics
	s.Resources, rdiags = decodeResourcesBlock(content.Blocks.OfType("resources"))
	diags = append(diags, rdiags...)
	s.Body = remain
	s.fullBody = block.Body
	return s, diags
}

func decodeOutput(block *hcl.Block) (*Output, hcl.Diagnostics) {
	o := &Output{Name: block.Labels[0], DeclRange: block.DefRange}
	diags := checkIdent("output name", o.Name, block.LabelRanges[0])
	content, cdiags := block.Body.Content(outputSchema)
	diags = append(diags, cdiags...)
	if a, ok := content.Attributes["description"]; ok {
		diags = append(diags, stringAttr(a, &o.Description)...)
	}
	a, ok := content.Attributes["value"]
	if !ok {
		return nil, diags
	}
	o.Expr = a.Expr
	return o, diags
}

// WriteDiagnostics renders diagnostics as text (file, line, snippet,
// underline) wrapped at width, with ANSI colour only if color is true. p may
// be nil, in which case no snippets are shown. Without colour the subject is
// underlined with carets on the line below its start.
func (p *Pipeline) WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, width uint, color bool) error {
	files := map[string]*hcl.File{}
	if p != nil {
		files = p.Files
	}
	var buf bytes.Buffer
	tw := hcl.NewDiagnosticTextWriter(&buf, files, width, color)
	for _, d := range diags {
		buf.Reset()
		if err := tw.WriteDiagnostic(d); err != nil {
			return fmt.Errorf("rendering diagnostics: %w", err)
		}
		out := buf.String()
		if !color && d.Subject != nil {
			if f := files[d.Subject.Filename]; f != nil && f.Bytes != nil {
				out = addCarets(out, f.Bytes, *d.Subject)
			}
		}
		if _, err := io.WriteString(w, out); err != nil {
			return fmt.Errorf("writing diagnostics: %w", err)
		}
	}
	return nil
}

// addCarets inserts, below the snippet line where subject starts, a line of
// carets under the subject's part of that line.
func addCarets(text string, src []byte, subject hcl.Range) string {
	start, end := subject.Start.Byte, subject.End.Byte
	if start < 0 || start > len(src) || end < start {
		return text
	}
	lineStart := bytes.LastIndexByte(src[:start], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[start:], '\n'); i >= 0 {
		lineEnd = start + i
	}
	end = min(end, lineEnd)
	var caret strings.Builder
	for _, r := range strings.TrimSuffix(string(src[lineStart:start]), "\r") {
		if r == '\t' {
			caret.WriteByte('\t')
		} else {
			caret.WriteByte(' ')
		}
	}
	n := utf8.RuneCount(bytes.TrimRight(src[start:end], "\r"))
	caret.WriteString(strings.Repeat("^", max(n, 1)))

	lines := strings.SplitAfter(text, "\n")
	prefix := fmt.Sprintf("%4d: ", subject.Start.Line)
	inSnippet := false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "  on "):
			inSnippet = true
		case inSnippet && l == "\n":
			return text
		case inSnippet && strings.HasPrefix(l, prefix):
			pad := strings.Repeat(" ", len(prefix))
			rest := append([]string{pad + caret.String() + "\n"}, lines[i+1:]...)
			return strings.Join(append(lines[:i+1:i+1], rest...), "")
		}
	}
	return text
}
