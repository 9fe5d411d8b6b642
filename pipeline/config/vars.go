package config

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/json"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Inputs are the variable values given by the user.
type Inputs struct {
	Vars     []string // raw -var arguments, "name=value", in command-line order
	VarFiles []string // -var-file paths (relative to the working directory)
	Env      []string // environment, "KEY=value" (os.Environ()); LATHE_VAR_<name> are read from it
}

// EnvPrefix prefixes the environment variables that set pipeline variables.
const EnvPrefix = "LATHE_VAR_"

// varSource is where a variable's value came from.
type varSource struct {
	desc  string     // "the default", "-var", "LATHE_VAR_x", "-var-file x"
	rng   *hcl.Range // the value's source range, if it has one
	value cty.Value  // unconverted
}

// assignVariables computes the final value of every variable. Variables
// whose value is missing or invalid get cty.DynamicVal and are marked in
// the returned set, so that later checks do not report consequential errors.
func (p *Pipeline) assignVariables(in Inputs) (map[string]cty.Value, map[string]bool, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	given := map[string]varSource{}

	// Environment: lowest precedence after defaults; unknown names are
	// ignored, since the environment is shared by everything.
	for _, kv := range in.Env {
		key, raw, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(key, EnvPrefix) {
			continue
		}
		name := strings.TrimPrefix(key, EnvPrefix)
		v, declared := p.Variables[name]
		if !declared {
			continue
		}
		val, rng, vdiags := p.parseRawValue(v, raw, "<value for var."+name+" from "+key+">")
		diags = append(diags, vdiags...)
		if !vdiags.HasErrors() {
			given[name] = varSource{desc: "the " + key + " environment variable", rng: rng, value: val}
		}
	}

	for _, path := range in.VarFiles {
		attrs, fdiags := p.readVarFile(path)
		diags = append(diags, fdiags...)
		for _, a := range attrs {
			if _, declared := p.Variables[a.Name]; !declared {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Value for undeclared variable",
					Detail:   fmt.Sprintf("The file %s sets %q, but the pipeline declares no variable of that name.%s", path, a.Name, didYouMean(a.Name, p.variableNames(), "")),
					Subject:  a.NameRange.Ptr(),
				})
				continue
			}
			val, vdiags := a.Expr.Value(nil)
			diags = append(diags, vdiags...)
			if vdiags.HasErrors() {
				continue
			}
			rng := a.Expr.Range()
			given[a.Name] = varSource{desc: "-var-file " + path, rng: &rng, value: val}
		}
	}

	for _, arg := range in.Vars {
		name, raw, ok := strings.Cut(arg, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid -var option",
				Detail:   fmt.Sprintf("The -var option %q is not of the form name=value.", arg),
			})
			continue
		}
		v, declared := p.Variables[name]
		if !declared {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Value for undeclared variable",
				Detail:   fmt.Sprintf("A -var option sets %q, but the pipeline declares no variable of that name.%s", name, didYouMean(name, p.variableNames(), "")),
			})
			continue
		}
		val, rng, vdiags := p.parseRawValue(v, raw, "<value for var."+name+">")
		diags = append(diags, vdiags...)
		if !vdiags.HasErrors() {
			given[name] = varSource{desc: "-var", rng: rng, value: val}
		}
	}

	values := map[string]cty.Value{}
	bad := map[string]bool{}
	for _, name := range p.variableNames() {
		v := p.Variables[name]
		src, ok := given[name]
		if !ok {
			if v.Default == cty.NilVal {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "No value for required variable",
					Detail:   fmt.Sprintf("The variable %q has no default, so it needs a value: use -var '%s=...', a -var-file, or the %s%s environment variable.", name, name, EnvPrefix, name),
					Subject:  v.DeclRange.Ptr(),
				})
				values[name], bad[name] = cty.DynamicVal, true
				continue
			}
			values[name] = v.Default
			continue
		}
		val := src.value
		if v.TypeDefaults != nil && !val.IsNull() {
			val = v.TypeDefaults.Apply(val)
		}
		conv, err := convert.Convert(val, v.Type)
		if err != nil {
			d := &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid value for variable",
				Detail:   fmt.Sprintf("The value of variable %q given by %s does not match its type %s: %s.", name, src.desc, v.typeString(), convertErr(err)),
				Subject:  src.rng,
			}
			diags = append(diags, d)
			values[name], bad[name] = cty.DynamicVal, true
			continue
		}
		values[name] = conv
	}

	// Validation rules: their references first, whatever the values.
	badRule := map[*Validation]bool{}
	for _, name := range p.variableNames() {
		for _, rule := range p.Variables[name].Validations {
			rdiags := p.checkRuleRefs(rule)
			diags = append(diags, rdiags...)
			badRule[rule] = rdiags.HasErrors()
		}
	}
	// Then the rules themselves, once every value is known.
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(values)},
		Functions: functions(p.Dir),
	}
	for _, name := range p.variableNames() {
		if bad[name] {
			continue
		}
		v := p.Variables[name]
		for _, rule := range v.Validations {
			if badRule[rule] {
				continue
			}
			rdiags := p.checkRule(ctx, v, rule, given[name])
			diags = append(diags, rdiags...)
			if rdiags.HasErrors() {
				bad[name] = true
				values[name] = cty.DynamicVal
				break
			}
		}
	}
	return values, bad, diags
}

// checkRuleRefs reports references in a validation rule to anything but
// declared variables.
func (p *Pipeline) checkRuleRefs(rule *Validation) hcl.Diagnostics {
	var diags hcl.Diagnostics
	exprs := []hcl.Expression{rule.Condition, rule.ErrorMessage}
	for _, expr := range exprs {
		for _, tr := range expr.Variables() {
			if tr.RootName() != "var" {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid reference in variable validation",
					Detail:   fmt.Sprintf("A validation rule may refer only to input variables, not to %q.", tr.RootName()),
					Subject:  tr.SourceRange().Ptr(),
				})
				continue
			}
			name, ok := attrStep(tr, 1)
			if !ok {
				continue
			}
			if _, declared := p.Variables[name]; !declared {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Reference to undeclared input variable",
					Detail:   fmt.Sprintf("An input variable with the name %q has not been declared.%s", name, didYouMean(name, p.variableNames(), "var.")),
					Subject:  tr.SourceRange().Ptr(),
				})
			}
		}
	}
	return diags
}

func (p *Pipeline) checkRule(ctx *hcl.EvalContext, v *Variable, rule *Validation, src varSource) hcl.Diagnostics {
	cond, cdiags := rule.Condition.Value(ctx)
	if cdiags.HasErrors() {
		return cdiags
	}
	cond, err := convert.Convert(cond, cty.Bool)
	if err != nil || cond.IsNull() || !cond.IsKnown() {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid validation condition",
			Detail:   "The condition of a validation rule must be true or false.",
			Subject:  rule.Condition.Range().Ptr(),
		}}
	}
	if cond.True() {
		return nil
	}
	msg := "The value does not satisfy the validation rule."
	if m, mdiags := rule.ErrorMessage.Value(ctx); !mdiags.HasErrors() {
		if m, err := convert.Convert(m, cty.String); err == nil && m.IsKnown() && !m.IsNull() {
			msg = m.AsString()
		}
	}
	from := src.desc
	if from == "" {
		from = "the default"
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Invalid value for variable",
		Detail:   fmt.Sprintf("%s\n\nThe value of var.%s came from %s; the rule is at %s.", msg, v.Name, from, rangeString(rule.DeclRange)),
		Subject:  rule.Condition.Range().Ptr(),
		Extra:    ValidationRuleFailed{Variable: v.Name},
	}}
}

// ValidationRuleFailed is the Extra of the diagnostic reported when a
// variable's value breaks one of its validation rules, so that callers can
// tell a rejected input from a broken pipeline (the CLI exits 3 for it).
type ValidationRuleFailed struct {
	Variable string
}

// parseRawValue reads the value of a -var option or an environment
// variable: the raw text for a string (or untyped, or primitive) variable,
// an HCL expression otherwise.
func (p *Pipeline) parseRawValue(v *Variable, raw, filename string) (cty.Value, *hcl.Range, hcl.Diagnostics) {
	src := []byte(raw)
	p.Files[filename] = &hcl.File{Bytes: src}
	if !v.TypeGiven || v.Type.IsPrimitiveType() {
		var rng *hcl.Range
		if !strings.ContainsAny(raw, "\r\n") && utf8.ValidString(raw) {
			rng = &hcl.Range{
				Filename: filename,
				Start:    hcl.InitialPos,
				End:      hcl.Pos{Line: 1, Column: 1 + utf8.RuneCountInString(raw), Byte: len(raw)},
			}
		}
		return cty.StringVal(raw), rng, nil
	}
	expr, diags := hclsyntax.ParseExpression(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return cty.DynamicVal, nil, diags
	}
	val, vdiags := expr.Value(nil)
	rng := expr.Range()
	return val, &rng, vdiags
}

// readVarFile parses a -var-file: HCL attributes, or JSON if the name ends
// in .json.
func (p *Pipeline) readVarFile(path string) ([]*hcl.Attribute, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read variables file",
			Detail:   fmt.Sprintf("Reading -var-file %s: %s.", path, err),
		}}
	}
	var f *hcl.File
	var diags hcl.Diagnostics
	if strings.HasSuffix(path, ".json") {
		f, diags = json.Parse(src, path)
	} else {
		f, diags = hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	}
	if f != nil {
		p.Files[path] = f
	}
	if diags.HasErrors() {
		return nil, diags
	}
	attrs, adiags := f.Body.JustAttributes()
	diags = append(diags, adiags...)
	return sortedAttrs(attrs), diags
}

func (p *Pipeline) variableNames() []string {
	names := make([]string, 0, len(p.Variables))
	for n := range p.Variables {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// typeString renders the variable's type as written in the pipeline.
func (v *Variable) typeString() string {
	if v.TypeText != "" {
		return v.TypeText
	}
	return typeString(v.Type)
}

// typeString renders a type constraint as it would be written in HCL.
func typeString(t cty.Type) string {
	if k, ok := artifactKind(t); ok {
		return k + " artifact"
	}
	return typeexpr.TypeString(t)
}

// convertErr renders a conversion error, including the path to the
// offending element if there is one.
func convertErr(err error) string {
	if pe, ok := err.(cty.PathError); ok && len(pe.Path) > 0 {
		return fmt.Sprintf("%s: %s", pathString(pe.Path), pe.Error())
	}
	return err.Error()
}

func pathString(path cty.Path) string {
	var b strings.Builder
	for _, step := range path {
		switch s := step.(type) {
		case cty.GetAttrStep:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.Name)
		case cty.IndexStep:
			if s.Key.Type() == cty.String && s.Key.IsKnown() {
				b.WriteString("[" + hclQuote(s.Key.AsString()) + "]")
			} else if s.Key.Type() == cty.Number && s.Key.IsKnown() {
				b.WriteString("[" + s.Key.AsBigFloat().Text('f', -1) + "]")
			} else {
				b.WriteString("[...]")
			}
		}
	}
	if b.Len() == 0 {
		return "value"
	}
	return b.String()
}
