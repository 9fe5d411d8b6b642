// Package lockfile reads and writes pipeline.lock.hcl, the file beside a
// pipeline that pins what its stages resolved from moving references: the
// commit a Hub branch or tag pointed to when it was first resolved.
//
//	# This file is maintained by lathe (`lathe lock`, `lathe run`).
//	# Commit it with the pipeline: it makes plans reproducible and offline.
//
//	pin "download.base" {
//	  kind = "download"
//	  inputs = {
//	    repo     = "model Qwen/Qwen2.5-0.5B-Instruct"
//	    revision = "main"
//	  }
//	  values = {
//	    commit = "3f2a0c9e1b7d4a5f8e6c0b1a2d3e4f5a6b7c8d9e"
//	  }
//	}
//
// One pin block per stage instance, by address. Inputs say what was resolved;
// an entry is valid only while the stage's current arguments would resolve the
// same inputs. Values are what the stage kind receives instead of asking the
// network again.
//
// The file is written deterministically (blocks sorted by address, keys
// sorted) and atomically (a temporary file renamed over the old one). Parse
// errors are HCL diagnostics with file and line. This package knows nothing
// about stage kinds, networks or when to pin: pipeline decides that.
package lockfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// FileName is the lock file's name, beside the pipeline file(s).
const FileName = "pipeline.lock.hcl"

const header = "# This file is maintained by lathe (`lathe lock`, `lathe run`).\n" +
	"# Commit it with the pipeline: it makes plans reproducible and offline.\n"

// Entry is the pin of one stage instance.
type Entry struct {
	// Addr is the instance address, e.g. `download.base` or `download.m["a"]`.
	Addr string
	// Kind is the stage kind that produced the pin.
	Kind string
	// Inputs is what was resolved (e.g. repo and revision).
	Inputs map[string]string
	// Values is what it resolved to (e.g. commit).
	Values map[string]string
}

// File is the content of a lock file.
type File struct {
	entries map[string]*Entry
}

// New returns an empty lock.
func New() *File { return &File{entries: map[string]*Entry{}} }

// Get returns the entry for addr.
func (f *File) Get(addr string) (*Entry, bool) {
	e, ok := f.entries[addr]
	return e, ok
}

// Set adds or replaces the entry for e.Addr (a copy is kept).
func (f *File) Set(e Entry) {
	c := e
	c.Inputs = copyMap(e.Inputs)
	c.Values = copyMap(e.Values)
	f.entries[e.Addr] = &c
}

// Delete removes the entry for addr, reporting whether there was one.
func (f *File) Delete(addr string) bool {
	_, ok := f.entries[addr]
	delete(f.entries, addr)
	return ok
}

// Addrs returns the pinned addresses, sorted.
func (f *File) Addrs() []string {
	out := make([]string, 0, len(f.entries))
	for a := range f.entries {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Len returns the number of entries.
func (f *File) Len() int { return len(f.entries) }

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Read reads the lock at path. A missing file is an empty lock and no error.
func Read(path string) (*File, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil
	}
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read lock file", Detail: err.Error()}}
	}
	return Parse(src, path)
}

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "pin", LabelNames: []string{"address"}}},
}

var pinSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "kind", Required: true},
		{Name: "inputs", Required: true},
		{Name: "values", Required: true},
	},
}

// Parse parses lock file content; filename is used in diagnostics.
func Parse(src []byte, filename string) (*File, hcl.Diagnostics) {
	hf, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, diags
	}
	content, cdiags := hf.Body.Content(fileSchema)
	diags = append(diags, cdiags...)
	f := New()
	seen := map[string]hcl.Range{}
	for _, b := range content.Blocks {
		addr := b.Labels[0]
		if prev, dup := seen[addr]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate pin",
				Detail:   fmt.Sprintf("%s is pinned twice; the first pin is at %s.", addr, prev),
				Subject:  b.LabelRanges[0].Ptr(),
			})
			continue
		}
		seen[addr] = b.DefRange
		bc, bdiags := b.Body.Content(pinSchema)
		diags = append(diags, bdiags...)
		if bdiags.HasErrors() {
			continue
		}
		e := Entry{Addr: addr}
		kind, kdiags := bc.Attributes["kind"].Expr.Value(nil)
		diags = append(diags, kdiags...)
		if !kdiags.HasErrors() {
			if kind.Type() != cty.String || kind.IsNull() || kind.AsString() == "" {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError, Summary: "Invalid pin kind",
					Detail:  "kind must be a non-empty string, the stage kind of " + addr + ".",
					Subject: bc.Attributes["kind"].Expr.Range().Ptr(),
				})
			} else {
				e.Kind = kind.AsString()
			}
		}
		var mdiags hcl.Diagnostics
		e.Inputs, mdiags = stringMap(bc.Attributes["inputs"])
		diags = append(diags, mdiags...)
		e.Values, mdiags = stringMap(bc.Attributes["values"])
		diags = append(diags, mdiags...)
		f.Set(e)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return f, diags
}

// stringMap evaluates an attribute that must be an object of strings.
func stringMap(attr *hcl.Attribute) (map[string]string, hcl.Diagnostics) {
	v, diags := attr.Expr.Value(nil)
	if diags.HasErrors() {
		return nil, diags
	}
	bad := func(detail string) hcl.Diagnostics {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid pin " + attr.Name,
			Detail:   attr.Name + " must be an object of strings, e.g. { commit = \"<sha>\" }; " + detail,
			Subject:  attr.Expr.Range().Ptr(),
		}}
	}
	t := v.Type()
	if v.IsNull() || !(t.IsObjectType() || t.IsMapType()) {
		return nil, bad("got " + t.FriendlyName() + ".")
	}
	out := map[string]string{}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if e.IsNull() || e.Type() != cty.String {
			return nil, bad(fmt.Sprintf("%s is %s.", k.AsString(), e.Type().FriendlyName()))
		}
		out[k.AsString()] = e.AsString()
	}
	return out, nil
}

// Bytes renders the lock deterministically.
func (f *File) Bytes() []byte {
	hf := hclwrite.NewEmptyFile()
	body := hf.Body()
	body.AppendUnstructuredTokens(hclwrite.Tokens{{Type: hclsyntax.TokenComment, Bytes: []byte(header)}})
	for _, addr := range f.Addrs() {
		e := f.entries[addr]
		body.AppendNewline()
		b := body.AppendNewBlock("pin", []string{addr}).Body()
		b.SetAttributeValue("kind", cty.StringVal(e.Kind))
		b.SetAttributeValue("inputs", objectVal(e.Inputs))
		b.SetAttributeValue("values", objectVal(e.Values))
	}
	return hclwrite.Format(hf.Bytes())
}

// objectVal builds an object value; hclwrite writes its attributes sorted.
func objectVal(m map[string]string) cty.Value {
	if len(m) == 0 {
		return cty.EmptyObjectVal
	}
	vals := map[string]cty.Value{}
	for k, v := range m {
		vals[k] = cty.StringVal(v)
	}
	return cty.ObjectVal(vals)
}

// Write writes the lock to path atomically: readers see the old file or the
// new one, never a partial one. An unchanged file is not rewritten.
func (f *File) Write(path string) error {
	data := f.Bytes()
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write lock file: %w", err)
	}
	name := tmp.Name()
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(name, 0o644)
	}
	if werr == nil {
		werr = os.Rename(name, path)
	}
	if werr != nil {
		os.Remove(name)
		return fmt.Errorf("write lock file %s: %w", path, werr)
	}
	return nil
}

// Equal reports whether two entries pin the same thing.
func (e *Entry) Equal(o *Entry) bool {
	return e.Addr == o.Addr && e.Kind == o.Kind && mapsEqual(e.Inputs, o.Inputs) && mapsEqual(e.Values, o.Values)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
