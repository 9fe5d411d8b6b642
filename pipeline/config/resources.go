package config

import (
	"fmt"
	"math/big"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/bytesize"
)

// Resources is what one stage instance asks of the machine that runs it:
// the resources block of its stage. Zero fields were not set. Resources
// do not enter the cache key, except that a stage asking for GPUs runs on
// the cuda backend and gets a "backend cuda" key line (pipeline/devices.go).
type Resources struct {
	// GPUs is the number of whole GPUs the stage needs.
	GPUs int
	// CPUs is the number of CPU cores it needs.
	CPUs int
	// Memory is the host memory it needs, in bytes.
	Memory int64
	// Time is its wall-clock limit (a cluster job's time limit).
	Time time.Duration
	// Range is the resources block's header, for messages; the zero Range
	// when the stage has none.
	Range hcl.Range
}

// IsZero reports whether no resource was asked for.
func (r Resources) IsZero() bool {
	return r.GPUs == 0 && r.CPUs == 0 && r.Memory == 0 && r.Time == 0
}

var resourcesSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "gpus"}, {Name: "cpus"}, {Name: "memory"}, {Name: "time"},
	},
}

// decodeResourcesBlock checks a stage's resources blocks structurally: at
// most one, known attributes only. The values are evaluated per instance by
// checkResources.
func decodeResourcesBlock(blocks hcl.Blocks) (*hcl.Block, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	if len(blocks) == 0 {
		return nil, nil
	}
	for _, b := range blocks[1:] {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Duplicate resources block",
			Detail:   fmt.Sprintf("A resources block was already declared at %s. A stage has at most one.", rangeString(blocks[0].DefRange)),
			Subject:  b.DefRange.Ptr(),
		})
	}
	_, cdiags := blocks[0].Body.Content(resourcesSchema)
	return blocks[0], append(diags, cdiags...)
}

// checkResources evaluates every instance's resources block. Its values
// may use variables, locals and each, but not stage outputs: they must be
// known before anything runs.
func (r *resolver) checkResources() {
	for _, s := range r.p.Stages {
		if s.Resources == nil {
			continue
		}
		st := r.res.blocks[s]
		if st == nil || st.failed {
			continue
		}
		content, diags := s.Resources.Body.Content(resourcesSchema)
		if diags.HasErrors() {
			continue // reported by Load
		}
		for _, inst := range st.instances {
			var each map[string]cty.Value
			if inst.Key != cty.NilVal {
				each = map[string]cty.Value{"key": inst.Key, "value": inst.EachValue}
			}
			res, diags := evalResources(content, r.evalCtx(each))
			res.Range = s.Resources.DefRange
			r.diags = append(r.diags, diags...)
			inst.Resources = res
		}
	}
}

func evalResources(content *hcl.BodyContent, ctx *hcl.EvalContext) (Resources, hcl.Diagnostics) {
	var res Resources
	var diags hcl.Diagnostics
	bad := func(a *hcl.Attribute, detail string) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid resources." + a.Name,
			Detail:   detail,
			Subject:  a.Expr.Range().Ptr(),
		})
	}
	value := func(a *hcl.Attribute) (cty.Value, bool) {
		v, vdiags := a.Expr.Value(ctx)
		diags = append(diags, vdiags...)
		switch {
		case vdiags.HasErrors():
			return cty.NilVal, false
		case !v.IsWhollyKnown():
			bad(a, "Resources must be known before the run: use constants, variables, locals or each, not the outputs of other stages.")
			return cty.NilVal, false
		case v.IsNull():
			return cty.NilVal, false
		}
		return v, true
	}
	count := func(a *hcl.Attribute, min int, what string) int {
		v, ok := value(a)
		if !ok {
			return 0
		}
		if v.Type() != cty.Number {
			bad(a, fmt.Sprintf("The %s must be a whole number, not a %s.", what, v.Type().FriendlyName()))
			return 0
		}
		f := v.AsBigFloat()
		n, acc := f.Int64()
		if acc != big.Exact || n < int64(min) || n > 1<<20 {
			bad(a, fmt.Sprintf("The %s must be a whole number of at least %d, not %s.", what, min, f.Text('g', -1)))
			return 0
		}
		return int(n)
	}
	if a, ok := content.Attributes["gpus"]; ok {
		res.GPUs = count(a, 0, "number of GPUs")
	}
	if a, ok := content.Attributes["cpus"]; ok {
		res.CPUs = count(a, 1, "number of CPU cores")
	}
	if a, ok := content.Attributes["memory"]; ok {
		if v, ok := value(a); ok {
			switch v.Type() {
			case cty.String:
				n, err := bytesize.Parse(v.AsString())
				if err != nil || n <= 0 {
					if err == nil {
						err = fmt.Errorf("%q is no memory at all", v.AsString())
					}
					bad(a, fmt.Sprintf("The memory must be a size such as \"16GiB\": %v.", err))
				}
				res.Memory = n
			default:
				bad(a, fmt.Sprintf("The memory must be a string such as \"16GiB\", not a %s.", v.Type().FriendlyName()))
			}
		}
	}
	if a, ok := content.Attributes["time"]; ok {
		if v, ok := value(a); ok {
			if v.Type() != cty.String {
				bad(a, fmt.Sprintf("The time limit must be a duration string such as \"2h30m\", not a %s.", v.Type().FriendlyName()))
			} else if d, err := time.ParseDuration(v.AsString()); err != nil || d < time.Minute {
				bad(a, fmt.Sprintf("The time limit must be a duration of at least one minute such as \"45m\" or \"2h30m\", not %q.", v.AsString()))
			} else {
				res.Time = d
			}
		}
	}
	return res, diags
}
