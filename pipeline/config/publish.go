package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// PublishTarget is one entry of a stage's publish meta-argument: after a
// successful run the artifact output Output is copied to Path.
type PublishTarget struct {
	// Path is the target, cleaned and relative to the pipeline directory
	// (OS separators); it never escapes that directory.
	Path string
	// Output names an artifact output of the instance.
	Output string
	// Range is where the entry is written, for messages.
	Range hcl.Range
}

// publishEntry is one evaluated key/value pair of a publish expression.
type publishEntry struct {
	path, output       cty.Value
	pathRng, outputRng hcl.Range
}

// checkPublish evaluates the publish meta-argument of every instance and
// validates it statically: a map of workspace paths to names of artifact
// outputs, paths inside the pipeline directory and no two targets
// overlapping.
func (r *resolver) checkPublish() {
	type claim struct {
		path, addr string
		rng        hcl.Range
	}
	var claimed []claim // in source order, for deterministic messages
	for _, s := range r.p.Stages {
		if s.Publish == nil {
			continue
		}
		st := r.res.blocks[s]
		if st == nil || st.failed {
			continue
		}
		for _, inst := range st.instances {
			var each map[string]cty.Value
			if inst.Key != cty.NilVal {
				each = map[string]cty.Value{"key": inst.Key, "value": inst.EachValue}
			}
			targets, diags := r.publishTargets(inst, s.Publish, r.evalCtx(each))
			r.diags = append(r.diags, diags...)
			for _, t := range targets {
				for _, c := range claimed {
					p := c.path
					if p == t.Path || pathWithin(t.Path, p) || pathWithin(p, t.Path) {
						r.diags = append(r.diags, &hcl.Diagnostic{
							Severity: hcl.DiagError,
							Summary:  "Overlapping publish targets",
							Detail: fmt.Sprintf("%s publishes to %q, which overlaps %q published by %s at %s. Every published output needs its own directory.",
								inst.Addr, filepath.ToSlash(t.Path), filepath.ToSlash(p), c.addr, rangeString(c.rng)),
							Subject: t.Range.Ptr(),
						})
					}
				}
				claimed = append(claimed, claim{path: t.Path, addr: inst.Addr, rng: t.Range})
			}
			inst.Publish = targets
		}
	}
}

// pathWithin reports whether path p lies inside directory dir (both cleaned and
// relative).
func pathWithin(p, dir string) bool {
	return strings.HasPrefix(p, dir+string(filepath.Separator))
}

func (r *resolver) publishTargets(inst *Instance, expr hcl.Expression, ctx *hcl.EvalContext) ([]PublishTarget, hcl.Diagnostics) {
	var entries []publishEntry
	var diags hcl.Diagnostics
	if obj, ok := expr.(*hclsyntax.ObjectConsExpr); ok {
		for _, item := range obj.Items {
			k, kd := item.KeyExpr.Value(ctx)
			v, vd := item.ValueExpr.Value(ctx)
			diags = append(diags, kd...)
			diags = append(diags, vd...)
			if kd.HasErrors() || vd.HasErrors() {
				continue
			}
			entries = append(entries, publishEntry{path: k, output: v, pathRng: item.KeyExpr.Range(), outputRng: item.ValueExpr.Range()})
		}
	} else {
		val, vd := expr.Value(ctx)
		diags = append(diags, vd...)
		if vd.HasErrors() {
			return nil, r.filter(diags)
		}
		if !val.IsKnown() || val.IsNull() || !(val.Type().IsObjectType() || val.Type().IsMapType()) {
			return nil, append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid publish argument",
				Detail:   "publish must be a map from a path (relative to the pipeline directory) to the name of an artifact output, as in publish = { \"dist/model\" = \"model\" }.",
				Subject:  expr.Range().Ptr(),
			})
		}
		for it := val.ElementIterator(); it.Next(); {
			k, v := it.Element()
			entries = append(entries, publishEntry{path: k, output: v, pathRng: expr.Range(), outputRng: expr.Range()})
		}
	}
	diags = r.filter(diags)
	var out []PublishTarget
	for _, e := range entries {
		path, pok := publishString(e.path)
		output, ook := publishString(e.output)
		if !pok || !ook {
			rng := e.pathRng
			if pok {
				rng = e.outputRng
			}
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid publish entry",
				Detail:   "Each publish entry maps a path string to an output name string, both known before the run: they may use variables, locals and each, not stage outputs.",
				Subject:  rng.Ptr(),
			})
			continue
		}
		clean := filepath.Clean(filepath.FromSlash(path))
		if path == "" || filepath.IsAbs(path) || !filepath.IsLocal(clean) || clean == "." {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Publish path outside the pipeline directory",
				Detail:   fmt.Sprintf("The publish path %q of %s must be a relative path to a directory inside the pipeline directory, such as \"dist/model\".", path, inst.Addr),
				Subject:  e.pathRng.Ptr(),
			})
			continue
		}
		o, ok := inst.Outputs[output]
		if !ok {
			names := make([]string, 0, len(inst.Outputs))
			for n := range inst.Outputs {
				names = append(names, n)
			}
			sort.Strings(names)
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown output in publish",
				Detail:   fmt.Sprintf("%s has no output %q; its outputs are %s.%s", inst.Addr, output, quotedList(names), didYouMean(output, names, "")),
				Subject:  e.outputRng.Ptr(),
			})
			continue
		}
		if !o.IsArtifact() {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Value output in publish",
				Detail:   fmt.Sprintf("The output %q of %s is a value (%s), not an artifact: only artifacts (directories of files) can be published. Use an output block to report values.", output, inst.Addr, o.Type.FriendlyName()),
				Subject:  e.outputRng.Ptr(),
			})
			continue
		}
		out = append(out, PublishTarget{Path: clean, Output: output, Range: hcl.RangeBetween(e.pathRng, e.outputRng)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, diags
}

func publishString(v cty.Value) (string, bool) {
	if !v.IsWhollyKnown() || v.IsNull() {
		return "", false
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil || s.IsNull() {
		return "", false
	}
	return s.AsString(), true
}
