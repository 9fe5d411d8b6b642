package trainstage

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// The fine-tuning methods.
const (
	Full   = "full"
	Freeze = "freeze"
	LoRA   = "lora"
	QLoRA  = "qlora"
)

// Methods lists the fine-tuning methods.
var Methods = []string{Full, Freeze, LoRA, QLoRA}

// AddMethod adds the arguments choosing what trains: model (the starting
// model), adapter (an adapter to continue from), method, the lora and
// freeze blocks, merge and base_model_name.
func AddMethod(spec hcldec.ObjectSpec) {
	loraSpec := hcldec.ObjectSpec{
		"rank":    IntDefault("rank", 8, 1),
		"alpha":   stage.Validated(&hcldec.AttrSpec{Name: "alpha", Type: cty.Number}, MinNum("alpha", 0, true)),
		"dropout": stage.Validated(Optional("dropout", cty.Number, cty.Zero), dropoutRange),
		"target":  Optional("target", cty.List(cty.String), cty.ListVal([]cty.Value{cty.StringVal(lora.All)})),
		"rslora":  Optional("rslora", cty.Bool, cty.False),
	}
	freezeSpec := hcldec.ObjectSpec{
		"trainable_layers":  stage.Validated(Optional("trainable_layers", cty.Number, cty.NumberIntVal(2)), nonZeroInt("trainable_layers")),
		"trainable_modules": Optional("trainable_modules", cty.List(cty.String), cty.ListVal([]cty.Value{cty.StringVal("all")})),
		"extra_modules":     Optional("extra_modules", cty.List(cty.String), cty.ListValEmpty(cty.String)),
	}
	spec["model"] = Artifact("model", true, stage.ModelArtifact)
	spec["adapter"] = Artifact("adapter", false, stage.AdapterArtifact)
	spec["method"] = stage.Validated(Optional("method", cty.String, cty.StringVal(LoRA)), Enum("method", Methods))
	spec["lora"] = &hcldec.BlockSpec{TypeName: "lora", Nested: loraSpec}
	spec["freeze"] = &hcldec.BlockSpec{TypeName: "freeze", Nested: freezeSpec}
	spec["merge"] = Optional("merge", cty.Bool, cty.False)
	spec["base_model_name"] = &hcldec.AttrSpec{Name: "base_model_name", Type: cty.String}
	AddComputeType(spec)
}

// ComputeTypes lists the values of the compute_type argument (LLaMA
// Factory's name).
var ComputeTypes = []string{"fp32", "bf16"}

// AddComputeType adds compute_type: "fp32" (the default) or "bf16", the
// linear layers' weights held as bfloat16 working copies and the
// activations entering them as bfloat16 (Precision).
func AddComputeType(spec hcldec.ObjectSpec) {
	spec["compute_type"] = stage.Validated(Optional("compute_type", cty.String, cty.StringVal("fp32")), Enum("compute_type", ComputeTypes))
}

// Precision returns the engine options of args' compute_type: for "bf16",
// bfloat16 weights and activations (llama.Options BF16 and
// BF16Activations); nothing set for "fp32".
func Precision(args cty.Value) llama.Options {
	bf16 := BF16(args)
	return llama.Options{BF16: bf16, BF16Activations: bf16}
}

// BF16 reports whether args ask for bfloat16 weights and activations
// (compute_type = "bf16").
func BF16(args cty.Value) bool {
	if !args.Type().HasAttribute("compute_type") {
		return false
	}
	v := args.GetAttr("compute_type")
	return !v.IsNull() && v.AsString() == "bf16"
}

func dropoutRange(v cty.Value) hcl.Diagnostics {
	if d := MinNum("dropout", 0, false)(v); d != nil {
		return d
	}
	if f, _ := v.AsBigFloat().Float64(); f >= 1 {
		return stage.Error("Invalid dropout", fmt.Sprintf("dropout must be below 1, got %v.", f))
	}
	return nil
}

func nonZeroInt(attr string) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		if !v.AsBigFloat().IsInt() || v.AsBigFloat().Sign() == 0 {
			return stage.Error("Invalid "+attr, attr+" must be a non-zero whole number (N > 0: the last N layers; N < 0: the first |N|).")
		}
		return nil
	}
}

// MethodOf returns the method argument.
func MethodOf(args cty.Value) string { return args.GetAttr("method").AsString() }

// IsAdapterMethod reports whether the method trains adapters.
func IsAdapterMethod(method string) bool { return method == LoRA || method == QLoRA }

// CheckMethod reports the method-argument combinations the schema cannot
// express.
func CheckMethod(args cty.Value) hcl.Diagnostics {
	m := MethodOf(args)
	switch {
	case !args.GetAttr("lora").IsNull() && !IsAdapterMethod(m):
		return stage.Error("Unused lora block", fmt.Sprintf("A lora block configures method \"lora\" or \"qlora\"; this stage's method is %q.", m))
	case !args.GetAttr("freeze").IsNull() && m != Freeze:
		return stage.Error("Unused freeze block", fmt.Sprintf("A freeze block configures method \"freeze\"; this stage's method is %q.", m))
	case args.GetAttr("merge").True() && !IsAdapterMethod(m):
		return stage.Error("Nothing to merge", "merge = true writes the adapter merged into the base model; it applies to method \"lora\" or \"qlora\".")
	}
	return nil
}

// ModelOutputs returns the outputs a fine-tuning kind declares for its
// method: an adapter for LoRA and QLoRA (and a merged model with merge =
// true), a model otherwise, and always a report.
func ModelOutputs(args cty.Value, model, adapter, report string) map[string]stage.Output {
	out := map[string]stage.Output{"report": {Type: stage.ArtifactType(stage.ReportArtifact), Summary: report}}
	m := MethodOf(args)
	if IsAdapterMethod(m) {
		out["adapter"] = stage.Output{Type: stage.ArtifactType(stage.AdapterArtifact), Summary: adapter}
	}
	if !IsAdapterMethod(m) || args.GetAttr("merge").True() {
		out["model"] = stage.Output{Type: stage.ArtifactType(stage.ModelArtifact), Summary: model}
	}
	return out
}

// Loaded is the starting model of a fine-tuning stage with its method
// applied.
type Loaded struct {
	Model  *llama.Model
	Method string
	// LoRA is the adapter configuration (adapter methods only).
	LoRA *lora.Config
	// BaseDir is the base model artifact (tokenizer files come from it).
	BaseDir string
}

// Load reads the model argument (with the adapter argument applied) onto be
// and prepares it for the method: full trains everything; freeze the
// selected layers and modules; lora adds adapters (or continues the given
// one) on a frozen base; qlora does the same over a base held in NF4.
// valueHead adds a reward/value head (taken from the adapter or model
// directory's value_head.safetensors when there is one). scratch is a
// directory for an intermediate merged model.
func Load(args cty.Value, be tensor.Backend, valueHead bool, scratch string) (*Loaded, error) {
	method := MethodOf(args)
	base := ArtifactPath(args.GetAttr("model"))
	cfg, err := llama.LoadConfig(filepath.Join(base, "config.json"))
	if err != nil {
		return nil, err
	}
	out := &Loaded{Method: method, BaseDir: base}
	adapterDir := ArtifactPath(args.GetAttr("adapter"))
	var adapter map[string]lora.Tensor
	if adapterDir != "" {
		lc, tensors, err := lora.Load(adapterDir)
		if err != nil {
			return nil, err
		}
		if !IsAdapterMethod(method) {
			// Full or freeze training of an adapted model: train its merge.
			if base, err = mergeInto(base, lc, tensors, be, scratch); err != nil {
				return nil, err
			}
		} else {
			if !args.GetAttr("lora").IsNull() {
				return nil, fmt.Errorf("a lora block and an adapter to continue are both given: the adapter's own configuration (r=%d, alpha=%g, targets %v) is used; remove the lora block", lc.Rank, lc.Alpha, lc.Targets)
			}
			out.LoRA, adapter = &lc, tensors
		}
	}
	opts := Precision(args)
	opts.ValueHead = valueHead
	switch method {
	case Full:
	case Freeze:
		pred, err := freezePredicate(args.GetAttr("freeze"), cfg)
		if err != nil {
			return nil, err
		}
		opts.Trainable = pred
	case LoRA, QLoRA:
		if out.LoRA == nil {
			lc, err := loraConfig(args.GetAttr("lora"))
			if err != nil {
				return nil, err
			}
			out.LoRA = &lc
		}
		kinds, err := lora.ResolveTargets(out.LoRA.Targets, llama.AdapterKinds(cfg))
		if err != nil {
			return nil, err
		}
		modules := llama.AdapterModules(cfg, kinds)
		if adapter != nil {
			if modules, err = llama.AdapterModulesOf(cfg, slices.Collect(maps.Keys(adapter))); err != nil {
				return nil, err
			}
		}
		opts.Trainable = func(string) bool { return false }
		opts.LoRA = &llama.LoRAOptions{Modules: modules, Rank: out.LoRA.Rank, Scale: float32(out.LoRA.Scale()),
			Dropout: float32(out.LoRA.Dropout), Seed: Num[uint64](args.GetAttr("seed"))}
		if method == QLoRA {
			opts.NF4 = isLinearWeight
		}
	}
	m, err := llama.LoadWith(base, be, opts)
	if err != nil {
		return nil, err
	}
	if adapter != nil {
		if err := m.SetAdapterTensors(adapter); err != nil {
			m.Free()
			return nil, err
		}
	}
	if valueHead {
		for _, dir := range []string{adapterDir, base} {
			if dir == "" {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, lora.ValueHeadFile)); err != nil {
				continue
			}
			if err := m.LoadValueHead(dir); err != nil {
				m.Free()
				return nil, err
			}
			break
		}
	}
	out.Model = m
	return out, nil
}

// isLinearWeight selects the decoder layers' linear weights (what QLoRA
// holds in NF4; embeddings, norms and the LM head stay F32 as
// bitsandbytes leaves them).
func isLinearWeight(name string) bool {
	if !strings.HasPrefix(name, "model.layers.") || !strings.HasSuffix(name, ".weight") {
		return false
	}
	for _, k := range llama.LinearKinds() {
		if strings.HasSuffix(name, "."+k+".weight") {
			return true
		}
	}
	return false
}

func loraConfig(block cty.Value) (lora.Config, error) {
	lc := lora.Config{Rank: 8, Targets: []string{lora.All}}
	if !block.IsNull() {
		lc.Rank = Num[int](block.GetAttr("rank"))
		lc.Alpha = Num[float64](block.GetAttr("alpha"))
		lc.Dropout = Num[float64](block.GetAttr("dropout"))
		lc.RSLoRA = block.GetAttr("rslora").True()
		lc.Targets = nil
		for _, v := range block.GetAttr("target").AsValueSlice() {
			lc.Targets = append(lc.Targets, v.AsString())
		}
	}
	lc.Defaults()
	return lc, lc.Validate()
}

// freezePredicate is LLaMA Factory's freeze tuning: the last N layers (the
// first |N| when negative) train, restricted to the named modules ("all",
// "self_attn", "mlp", a linear kind or a norm name), plus extra modules
// outside the layers (embed_tokens, norm, lm_head).
func freezePredicate(block cty.Value, cfg llama.Config) (func(string) bool, error) {
	n, modules, extra := 2, []string{"all"}, []string(nil)
	if !block.IsNull() {
		n = Num[int](block.GetAttr("trainable_layers"))
		modules = strs(block.GetAttr("trainable_modules"))
		extra = strs(block.GetAttr("extra_modules"))
	}
	if abs := max(n, -n); abs > cfg.Layers {
		return nil, fmt.Errorf("freeze: trainable_layers %d, the model has %d layers", n, cfg.Layers)
	}
	layers := map[int]bool{}
	for i := range max(n, -n) {
		if n > 0 {
			layers[cfg.Layers-1-i] = true
		} else {
			layers[i] = true
		}
	}
	known := append([]string{"all", "self_attn", "mlp", "input_layernorm", "post_attention_layernorm"}, llama.LinearKinds()...)
	for _, m := range modules {
		if !slices.Contains(known, m) {
			return nil, fmt.Errorf("freeze: trainable_modules: unknown module %q (known: %s)", m, strings.Join(known, ", "))
		}
	}
	extraNames := map[string]string{"embed_tokens": "model.embed_tokens.weight", "norm": "model.norm.weight", "lm_head": "lm_head.weight"}
	extraSet := map[string]bool{}
	for _, e := range extra {
		name, ok := extraNames[e]
		if !ok {
			return nil, fmt.Errorf("freeze: extra_modules: unknown module %q (known: embed_tokens, norm, lm_head)", e)
		}
		if e == "lm_head" && cfg.TieEmbeddings {
			name = extraNames["embed_tokens"]
		}
		extraSet[name] = true
	}
	return func(name string) bool {
		if extraSet[name] {
			return true
		}
		rest, ok := strings.CutPrefix(name, "model.layers.")
		if !ok {
			return false
		}
		num, rest, _ := strings.Cut(rest, ".")
		l, err := strconv.Atoi(num)
		if err != nil || !layers[l] {
			return false
		}
		for _, m := range modules {
			switch {
			case m == "all", strings.HasPrefix(rest, m+"."), strings.Contains(rest, "."+m+"."):
				return true
			}
		}
		return false
	}, nil
}

func strs(v cty.Value) []string {
	var out []string
	for _, e := range v.AsValueSlice() {
		out = append(out, e.AsString())
	}
	return out
}

// mergeInto writes base with the adapter merged into scratch and returns
// that directory.
func mergeInto(base string, lc lora.Config, tensors map[string]lora.Tensor, be tensor.Backend, scratch string) (string, error) {
	m, err := llama.LoadAdapted(base, be, llama.Options{Trainable: func(string) bool { return false }}, lc, tensors)
	if err != nil {
		return "", err
	}
	defer m.Free()
	dir := filepath.Join(scratch, "merged-start")
	if err := m.SaveMerged(dir, safetensors.F32); err != nil {
		return "", fmt.Errorf("merge the adapter into the starting model: %w", err)
	}
	return dir, nil
}
