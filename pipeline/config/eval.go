package config

import (
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// outputsFrom returns a value function for buildCtx that takes outputs
// from results where present. Instances absent from results are not
// referenced by what is being evaluated (static validation proved every
// reference), so they get the cheap cty.DynamicVal: building typed unknown
// objects for every instance on every evaluation made evaluating all
// instances quadratic in their number.
func outputsFrom(results map[string]map[string]cty.Value) func(*Instance) cty.Value {
	return func(inst *Instance) cty.Value {
		got, ok := results[inst.Addr]
		if !ok {
			return cty.DynamicVal
		}
		attrs := map[string]cty.Value{}
		for name, o := range inst.Outputs {
			if v, ok := got[name]; ok {
				attrs[name] = v
			} else {
				attrs[name] = cty.UnknownVal(o.Type)
			}
		}
		return cty.ObjectVal(attrs)
	}
}

// localsWith re-evaluates the locals that depend on stage outputs.
func (r *Resolved) localsWith(value func(*Instance) cty.Value) (map[string]cty.Value, hcl.Diagnostics) {
	locals := make(map[string]cty.Value, len(r.Locals))
	for k, v := range r.Locals {
		locals[k] = v
	}
	var diags hcl.Diagnostics
	for _, name := range r.localOrder {
		if !r.localStages[name] {
			continue
		}
		v, d := r.Pipeline.Locals[name].Expr.Value(r.buildCtx(value, locals, nil))
		diags = append(diags, d...)
		if d.HasErrors() {
			v = cty.DynamicVal
		}
		locals[name] = v
	}
	return locals, diags
}

// Args evaluates inst's arguments with the actual outputs of its upstream
// instances: upstream[addr][outputName] (artifacts as stage.ArtifactVal
// values). Every Dep must be present, and the result is wholly known.
func (r *Resolved) Args(inst *Instance, upstream map[string]map[string]cty.Value) (cty.Value, hcl.Diagnostics) {
	var missing []string
	for _, d := range inst.Deps {
		if _, ok := upstream[d.Addr]; !ok {
			missing = append(missing, d.Addr)
		}
	}
	if len(missing) > 0 {
		return cty.DynamicVal, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Missing upstream outputs",
			Detail:   fmt.Sprintf("Evaluating the arguments of %s needs the outputs of %s.", inst.Addr, quotedList(missing)),
			Subject:  inst.Block.DeclRange.Ptr(),
		}}
	}
	value := outputsFrom(upstream)
	locals, diags := r.localsWith(value)
	if diags.HasErrors() {
		return cty.DynamicVal, diags
	}
	var each map[string]cty.Value
	if inst.Key != cty.NilVal {
		each = map[string]cty.Value{"key": inst.Key, "value": inst.EachValue}
		if r.blocks[inst.Block].forEachStages {
			fe, fdiags := inst.Block.ForEach.Value(r.buildCtx(value, locals, nil))
			diags = append(diags, fdiags...)
			if fdiags.HasErrors() {
				return cty.DynamicVal, diags
			}
			keys, values, msg := forEachKeys(fe)
			if msg != "" {
				return cty.DynamicVal, append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid for_each argument",
					Detail:   msg,
					Subject:  inst.Block.ForEach.Range().Ptr(),
				})
			}
			found := false
			for i, k := range keys {
				if k == inst.Key.AsString() {
					each["value"], found = values[i], true
				}
			}
			if !found {
				return cty.DynamicVal, append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Instance key vanished",
					Detail:   fmt.Sprintf("The for_each of %s no longer yields the key %s.", inst.Block.Addr(), hclQuote(inst.Key.AsString())),
					Subject:  inst.Block.ForEach.Range().Ptr(),
				})
			}
		}
	}
	args, adiags := hcldec.Decode(inst.Block.Body, inst.Kind.Schema, r.buildCtx(value, locals, each))
	diags = append(diags, adiags...)
	if diags.HasErrors() {
		return cty.DynamicVal, diags
	}
	if !args.IsWhollyKnown() {
		var paths []string
		_ = cty.Walk(args, func(p cty.Path, v cty.Value) (bool, error) {
			if !v.IsKnown() {
				paths = append(paths, pathString(p))
				return false, nil
			}
			return true, nil
		})
		sort.Strings(paths)
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Arguments not known",
			Detail:   fmt.Sprintf("Some arguments of %s are still unknown with all upstream outputs given: %s.", inst.Addr, quotedList(paths)),
			Subject:  inst.Block.DeclRange.Ptr(),
		})
		return cty.DynamicVal, diags
	}
	return args, diags
}

// OutputValues evaluates the output blocks with all instances' outputs
// known: results[addr][outputName].
func (r *Resolved) OutputValues(results map[string]map[string]cty.Value) (map[string]cty.Value, hcl.Diagnostics) {
	value := outputsFrom(results)
	locals, diags := r.localsWith(value)
	if diags.HasErrors() {
		return nil, diags
	}
	ctx := r.buildCtx(value, locals, nil)
	out := map[string]cty.Value{}
	names := make([]string, 0, len(r.Pipeline.Outputs))
	for n := range r.Pipeline.Outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		v, d := r.Pipeline.Outputs[name].Expr.Value(ctx)
		diags = append(diags, d...)
		if !d.HasErrors() {
			out[name] = v
		}
	}
	return out, diags
}
