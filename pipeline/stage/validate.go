package stage

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Helpers for kinds' schemas: small validations every kind needs, so that
// their messages read the same across kinds.

// Error returns a single error diagnostic. Inside a Validated spec its
// subject is filled in with the argument's source range.
func Error(summary, detail string) hcl.Diagnostics {
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail}}
}

// Validated wraps spec so that f checks its decoded value.
func Validated(spec hcldec.Spec, f func(cty.Value) hcl.Diagnostics) hcldec.Spec {
	return &hcldec.ValidateSpec{Wrapped: spec, Func: f}
}

// RequireArtifact returns a validation that accepts an artifact of one of
// the given kinds (or a value not known yet) for the argument attr, declared
// with type cty.DynamicPseudoType.
func RequireArtifact(attr string, kinds ...string) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		if k, ok := ArtifactKindOf(v.Type()); ok {
			for _, want := range kinds {
				if k == want {
					return nil
				}
			}
		}
		return Error("Invalid "+attr, fmt.Sprintf("%s must be a %s artifact (an output of another stage, e.g. tokenize.x.dataset), not %s.",
			attr, strings.Join(kinds, " or "), v.Type().FriendlyName()))
	}
}
