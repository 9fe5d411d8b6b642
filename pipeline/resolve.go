package pipeline

import (
	"fmt"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/config"
)

// resolveArgs applies the kind's Resolve hook (stage.Kind.Resolve) to an
// instance's fully known arguments: machine-dependent values such as
// batch_size = "auto" become what they resolve to here, before the cache
// key is computed, so that the key and Run see the resolved values. It
// returns the arguments unchanged and no note for a kind without the hook.
func resolveArgs(inst *config.Instance, args cty.Value) (cty.Value, string, error) {
	if inst.Kind.Resolve == nil {
		return args, "", nil
	}
	out, note, err := inst.Kind.Resolve(args)
	if err != nil {
		return cty.NilVal, "", fmt.Errorf("%s: %w", inst.Addr, err)
	}
	if out == cty.NilVal || !out.IsWhollyKnown() {
		return cty.NilVal, "", fmt.Errorf("%s: the %s kind resolved its arguments to an incomplete value", inst.Addr, inst.Kind.Name)
	}
	return out, note, nil
}
