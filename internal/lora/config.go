package lora

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/lathe-ml/lathe/internal/suggest"
)

// All is the target that stands for every linear module kind of the model,
// as LLaMA Factory's lora_target "all".
const All = "all"

// Config is a LoRA adapter's configuration.
type Config struct {
	// Rank is r, the inner dimension of the A/B pair.
	Rank int
	// Alpha scales the update: scale = Alpha/Rank (Alpha/√Rank under
	// RSLoRA). Defaults sets it to 2·Rank when 0, as LLaMA Factory does.
	Alpha float64
	// Dropout is the probability of zeroing an element of the adapter's
	// input during training, in [0, 1).
	Dropout float64
	// Targets are the module kinds to adapt: ["all"] or names such as
	// q_proj, v_proj, gate_proj.
	Targets []string
	// RSLoRA selects the rank-stabilised scale alpha/√r.
	RSLoRA bool
	// BaseModel is base_model_name_or_path in adapter_config.json.
	BaseModel string
}

// Defaults fills the fields whose zero value means "the default": Alpha
// becomes 2·Rank.
func (c *Config) Defaults() {
	if c.Alpha == 0 {
		c.Alpha = 2 * float64(c.Rank)
	}
}

// Validate checks the configuration: rank >= 1, a finite alpha > 0, dropout
// in [0, 1), and non-empty targets with no blank names and "all" only on its
// own. It does not check the target names against a model (ResolveTargets
// does).
func (c Config) Validate() error {
	if p := c.problems(); len(p) > 0 {
		return fmt.Errorf("lora: invalid config: %s", strings.Join(p, "; "))
	}
	return nil
}

// problems lists what Validate rejects, unprefixed.
func (c Config) problems() []string {
	var p []string
	if c.Rank < 1 {
		p = append(p, fmt.Sprintf("rank must be >= 1, got %d", c.Rank))
	}
	if !(c.Alpha > 0) || math.IsInf(c.Alpha, 0) {
		p = append(p, fmt.Sprintf("alpha must be a finite number > 0, got %v (Defaults sets 2·rank when it is 0)", c.Alpha))
	}
	if !(c.Dropout >= 0 && c.Dropout < 1) {
		p = append(p, fmt.Sprintf("dropout must be in [0, 1), got %v", c.Dropout))
	}
	if err := checkTargetList(c.Targets); err != nil {
		p = append(p, err.Error())
	}
	return p
}

// checkTargetList checks the shape of a target list; its errors are
// unprefixed.
func checkTargetList(targets []string) error {
	if len(targets) == 0 {
		return fmt.Errorf("no target modules: give %q or module kinds such as q_proj, v_proj", All)
	}
	for i, t := range targets {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf("target %d is empty", i)
		}
		if t == All && len(targets) > 1 {
			return fmt.Errorf("target %q cannot be combined with other targets %q", All, targets)
		}
	}
	return nil
}

// Scale is the factor of the adapter's contribution: Alpha/Rank, or
// Alpha/√Rank under RSLoRA.
func (c Config) Scale() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.Rank))
	}
	return c.Alpha / float64(c.Rank)
}

// LinearKinds are the linear module kinds of the Llama family in HF order.
var LinearKinds = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// kindParent is the submodule of a decoder layer that holds each kind.
var kindParent = map[string]string{
	"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
	"gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp",
}

// ResolveTargets expands "all" (every kind in available) and checks names
// against available; an unknown name is an error with a did-you-mean
// suggestion. Returns sorted unique kinds.
func ResolveTargets(targets, available []string) ([]string, error) {
	if err := checkTargetList(targets); err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	if len(available) == 0 {
		return nil, errors.New("lora: the model has no linear modules to adapt")
	}
	var out []string
	if len(targets) == 1 && targets[0] == All {
		out = slices.Clone(available)
	} else {
		for _, t := range targets {
			if !slices.Contains(available, t) {
				msg := fmt.Sprintf("lora: unknown target module %q (the model has %s", t, strings.Join(available, ", "))
				if s := suggest.Closest(t, available); s != "" {
					msg += fmt.Sprintf("; did you mean %q?)", s)
				} else {
					msg += fmt.Sprintf(", or %q for all of them)", All)
				}
				return nil, errors.New(msg)
			}
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

// Modules lists the module paths ("model.layers.N.self_attn.q_proj", ...) of
// layers 0..layers-1 for the kinds, layer by layer and within a layer in
// LinearKinds order; repeated kinds are listed once. Every kind must be one
// of LinearKinds: anything else is a programming error and panics.
func Modules(kinds []string, layers int) []string {
	want := make(map[string]bool, len(kinds))
	for _, k := range kinds {
		if _, ok := kindParent[k]; !ok {
			panic(fmt.Sprintf("lora.Modules: %q is not a Llama linear module kind (%s)", k, strings.Join(LinearKinds, ", ")))
		}
		want[k] = true
	}
	var out []string
	for l := 0; l < layers; l++ {
		prefix := "model.layers." + strconv.Itoa(l) + "."
		for _, k := range LinearKinds {
			if want[k] {
				out = append(out, prefix+kindParent[k]+"."+k)
			}
		}
	}
	return out
}

// kindOf is the last component of a module path.
func kindOf(module string) string {
	return module[strings.LastIndexByte(module, '.')+1:]
}
