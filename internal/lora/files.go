package lora

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/lathe-ml/lathe/internal/safetensors"
)

// File names of an adapter directory and of a reward model's value head.
const (
	ConfigFile    = "adapter_config.json"
	WeightsFile   = "adapter_model.safetensors"
	ValueHeadFile = "value_head.safetensors"
)

const (
	// peftPrefix is what PeftModelForCausalLM puts before the base model's
	// parameter names.
	peftPrefix = "base_model.model."
	suffixA    = ".lora_A.weight"
	suffixB    = ".lora_B.weight"
	// The names of PEFT's default adapter before save_pretrained strips it.
	suffixADefault = ".lora_A.default.weight"
	suffixBDefault = ".lora_B.default.weight"

	valueHeadWeight = "v_head.summary.weight"
	valueHeadBias   = "v_head.summary.bias"
)

// Tensor is an adapter parameter: a row-major float32 array of Shape.
type Tensor struct {
	Shape []int
	Data  []float32
}

// Save writes dir/adapter_config.json and dir/adapter_model.safetensors in
// PEFT's layout: tensor names "base_model.model." + in-model name, dtype
// F32, BF16 or F16 ("" means F32), and adapter_config.json with PEFT's
// LoraConfig fields. The tensors, keyed by in-model name
// ("<module>.lora_A.weight" [r, in] and "<module>.lora_B.weight" [out, r]),
// must form complete pairs of rank c.Rank on module kinds allowed by
// c.Targets; target_modules is written as the sorted kinds that have
// tensors. Each file is written atomically (temporary file, then rename);
// dir is created if needed.
func Save(dir string, c Config, tensors map[string]Tensor, dtype safetensors.DType) error {
	if dtype == "" {
		dtype = safetensors.F32
	}
	switch dtype {
	case safetensors.F32, safetensors.BF16, safetensors.F16:
	default:
		return fmt.Errorf("lora: save %s: dtype %q is not supported (F32, BF16 or F16)", dir, dtype)
	}
	if p := c.problems(); len(p) > 0 {
		return fmt.Errorf("lora: save %s: invalid config: %s", dir, strings.Join(p, "; "))
	}
	modules, err := checkPairs(tensors, c.Rank, " (the config's rank)", func(n string) string { return n })
	if err != nil {
		return fmt.Errorf("lora: save %s: %w", dir, err)
	}
	kinds := moduleKinds(modules)
	if !(len(c.Targets) == 1 && c.Targets[0] == All) {
		for _, m := range modules {
			if !slices.Contains(c.Targets, kindOf(m)) {
				return fmt.Errorf("lora: save %s: module %q has LoRA tensors but its kind %q is not among the targets %q", dir, m, kindOf(m), c.Targets)
			}
		}
	}

	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	st := make([]safetensors.Tensor, 0, len(names))
	for _, name := range names {
		t := tensors[name]
		enc, err := safetensors.Float32Tensor(peftPrefix+name, dtype, t.Shape, t.Data)
		if err != nil {
			return fmt.Errorf("lora: save %s: %w", dir, err)
		}
		st = append(st, enc)
	}

	cfg, err := marshalAdapterConfig(c, kinds)
	if err != nil {
		return fmt.Errorf("lora: save %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lora: save: %w", err)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, WeightsFile), st, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("lora: save %s: %w", dir, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, ConfigFile), cfg); err != nil {
		return fmt.Errorf("lora: save %s: %w", dir, err)
	}
	return nil
}

// Load reads a PEFT adapter directory: adapter_config.json and
// adapter_model.safetensors (tensor names "base_model.model.<module>.lora_A.weight",
// also with ".default" before ".weight"; dtype F32, BF16 or F16). It returns
// the config and the tensors under in-model names. The config's Targets are
// the sorted module kinds that have tensors; fields missing from the JSON
// take PEFT's defaults (r 8, lora_alpha 8, lora_dropout 0).
//
// Load rejects, naming the file and the tensor: a peft_type other than
// LORA, use_dora, fan_in_fan_out, non-empty rank_pattern or alpha_pattern, a
// bias other than "none", modules_to_save, tensors that are not LoRA A/B
// weights, an A without its B or a B without its A, shapes other than
// A [r, in] and B [out, r] with r the config's r, and modules that match no
// entry of a target_modules list.
func Load(dir string) (Config, map[string]Tensor, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return Config{}, nil, fmt.Errorf("lora: %w", err)
	}
	fc, err := parseAdapterConfig(data)
	if err != nil {
		return Config{}, nil, fmt.Errorf("lora: %s: %w", cfgPath, err)
	}

	wPath := filepath.Join(dir, WeightsFile)
	f, err := safetensors.Open(wPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, e := os.Stat(filepath.Join(dir, "adapter_model.bin")); e == nil {
				return Config{}, nil, fmt.Errorf("lora: %s: missing; the adapter is a pickle adapter_model.bin, which lathe does not read (save it with safe_serialization=True)", wPath)
			}
		}
		return Config{}, nil, fmt.Errorf("lora: %w", err)
	}
	defer f.Close()

	tensors := make(map[string]Tensor)
	fileName := make(map[string]string) // in-model name -> name in the file
	for _, ti := range f.Tensors() {
		name, err := inModelName(ti.Name)
		if err != nil {
			return Config{}, nil, fmt.Errorf("lora: %s: tensor %q: %w", wPath, ti.Name, err)
		}
		if prev, dup := fileName[name]; dup {
			return Config{}, nil, fmt.Errorf("lora: %s: tensors %q and %q are the same parameter %q", wPath, prev, ti.Name, name)
		}
		switch ti.DType {
		case safetensors.F32, safetensors.BF16, safetensors.F16:
		default:
			return Config{}, nil, fmt.Errorf("lora: %s: tensor %q: dtype %s is not supported (F32, BF16 or F16)", wPath, ti.Name, ti.DType)
		}
		v, err := f.Float32(ti.Name)
		if err != nil {
			return Config{}, nil, fmt.Errorf("lora: %w", err)
		}
		fileName[name] = ti.Name
		tensors[name] = Tensor{Shape: ti.Shape, Data: v}
	}
	if len(tensors) == 0 {
		return Config{}, nil, fmt.Errorf("lora: %s: no LoRA tensors", wPath)
	}
	modules, err := checkPairs(tensors, fc.cfg.Rank, " (r in "+ConfigFile+")", func(n string) string {
		if fn, ok := fileName[n]; ok {
			return fn
		}
		return peftPrefix + n
	})
	if err != nil {
		return Config{}, nil, fmt.Errorf("lora: %s: %w", wPath, err)
	}
	if fc.targetList != nil {
		for _, m := range modules {
			if !matchesTarget(m, fc.targetList) {
				return Config{}, nil, fmt.Errorf("lora: %s: module %q has LoRA tensors but matches no entry of target_modules %q in %s", wPath, m, fc.targetList, ConfigFile)
			}
		}
	}
	c := fc.cfg
	c.Targets = moduleKinds(modules)
	if p := c.problems(); len(p) > 0 {
		return Config{}, nil, fmt.Errorf("lora: %s: invalid config: %s", cfgPath, strings.Join(p, "; "))
	}
	return c, tensors, nil
}

// inModelName maps a tensor name of adapter_model.safetensors to lathe's
// in-model name.
func inModelName(name string) (string, error) {
	rest, ok := strings.CutPrefix(name, peftPrefix)
	if !ok {
		return "", fmt.Errorf("name does not start with %q (not a PEFT causal-LM adapter)", peftPrefix)
	}
	for _, s := range []struct{ suffix, canon string }{
		{suffixA, suffixA}, {suffixB, suffixB},
		{suffixADefault, suffixA}, {suffixBDefault, suffixB},
	} {
		if m, ok := strings.CutSuffix(rest, s.suffix); ok && m != "" {
			return m + s.canon, nil
		}
	}
	return "", fmt.Errorf("not a LoRA weight: want %s<module>%s or %s (optionally with .default before .weight)", peftPrefix, suffixA, suffixB)
}

// splitInModel splits an in-model LoRA name into its module and whether it
// is the A (true) or B (false) matrix.
func splitInModel(name string) (module string, isA, ok bool) {
	if m, found := strings.CutSuffix(name, suffixA); found && m != "" {
		return m, true, true
	}
	if m, found := strings.CutSuffix(name, suffixB); found && m != "" {
		return m, false, true
	}
	return "", false, false
}

// checkPairs checks that the tensors form complete A/B pairs of the given
// rank with consistent data lengths, and returns the sorted module paths.
// display maps an in-model name to the name used in error messages;
// rankFrom says where rank comes from, for the messages about it.
func checkPairs(tensors map[string]Tensor, rank int, rankFrom string, display func(string) string) ([]string, error) {
	if len(tensors) == 0 {
		return nil, errors.New("no LoRA tensors")
	}
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	type pair struct{ a, b bool }
	pairs := make(map[string]*pair)
	for _, name := range names {
		t := tensors[name]
		module, isA, ok := splitInModel(name)
		if !ok {
			return nil, fmt.Errorf("tensor %q is not a LoRA weight (want <module>%s or <module>%s)", display(name), suffixA, suffixB)
		}
		if len(t.Shape) != 2 || t.Shape[0] < 1 || t.Shape[1] < 1 {
			return nil, fmt.Errorf("tensor %q: shape %v is not a matrix with positive dimensions", display(name), t.Shape)
		}
		if t.Shape[1] > math.MaxInt/t.Shape[0] {
			return nil, fmt.Errorf("tensor %q: shape %v is too large", display(name), t.Shape)
		}
		if n := t.Shape[0] * t.Shape[1]; len(t.Data) != n {
			return nil, fmt.Errorf("tensor %q: shape %v needs %d values, got %d", display(name), t.Shape, n, len(t.Data))
		}
		p := pairs[module]
		if p == nil {
			p = &pair{}
			pairs[module] = p
		}
		if isA {
			if t.Shape[0] != rank {
				return nil, fmt.Errorf("tensor %q: shape %v, want lora_A [r, in] with r = %d%s", display(name), t.Shape, rank, rankFrom)
			}
			p.a = true
		} else {
			if t.Shape[1] != rank {
				return nil, fmt.Errorf("tensor %q: shape %v, want lora_B [out, r] with r = %d%s", display(name), t.Shape, rank, rankFrom)
			}
			p.b = true
		}
	}
	modules := make([]string, 0, len(pairs))
	for m, p := range pairs {
		switch {
		case !p.a:
			return nil, fmt.Errorf("tensor %q has no partner %q", display(m+suffixB), display(m+suffixA))
		case !p.b:
			return nil, fmt.Errorf("tensor %q has no partner %q", display(m+suffixA), display(m+suffixB))
		}
		modules = append(modules, m)
	}
	sort.Strings(modules)
	return modules, nil
}

// moduleKinds is the sorted unique kinds of the modules.
func moduleKinds(modules []string) []string {
	kinds := make([]string, 0, len(modules))
	for _, m := range modules {
		kinds = append(kinds, kindOf(m))
	}
	sort.Strings(kinds)
	return slices.Compact(kinds)
}

// matchesTarget applies PEFT's rule for a target_modules list: a module is
// targeted when its path equals an entry or ends with "." + entry.
func matchesTarget(module string, targets []string) bool {
	for _, t := range targets {
		if module == t || strings.HasSuffix(module, "."+t) {
			return true
		}
	}
	return false
}

// adapterConfigOut is adapter_config.json as Save writes it; the fields are
// in alphabetical order, as PEFT's json.dumps(sort_keys=True) writes them.
type adapterConfigOut struct {
	AlphaPattern      map[string]any `json:"alpha_pattern"`
	BaseModel         *string        `json:"base_model_name_or_path"`
	Bias              string         `json:"bias"`
	FanInFanOut       bool           `json:"fan_in_fan_out"`
	InferenceMode     bool           `json:"inference_mode"`
	InitLoraWeights   bool           `json:"init_lora_weights"`
	LayersToTransform []int          `json:"layers_to_transform"`
	LoraAlpha         float64        `json:"lora_alpha"`
	LoraDropout       float64        `json:"lora_dropout"`
	ModulesToSave     []string       `json:"modules_to_save"`
	PeftType          string         `json:"peft_type"`
	R                 int            `json:"r"`
	RankPattern       map[string]any `json:"rank_pattern"`
	Revision          *string        `json:"revision"`
	TargetModules     []string       `json:"target_modules"`
	TaskType          string         `json:"task_type"`
	UseDoRA           bool           `json:"use_dora"`
	UseRSLoRA         bool           `json:"use_rslora"`
}

func marshalAdapterConfig(c Config, kinds []string) ([]byte, error) {
	out := adapterConfigOut{
		AlphaPattern:    map[string]any{},
		Bias:            "none",
		InferenceMode:   true,
		InitLoraWeights: true,
		LoraAlpha:       c.Alpha,
		LoraDropout:     c.Dropout,
		PeftType:        "LORA",
		R:               c.Rank,
		RankPattern:     map[string]any{},
		TargetModules:   kinds,
		TaskType:        "CAUSAL_LM",
		UseRSLoRA:       c.RSLoRA,
	}
	if c.BaseModel != "" {
		out.BaseModel = &c.BaseModel
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("encoding %s: %w", ConfigFile, err)
	}
	return buf.Bytes(), nil
}

// adapterConfigIn is what Load reads of adapter_config.json; other keys
// (PEFT adds more with each release) are ignored.
type adapterConfigIn struct {
	PeftType      *string                    `json:"peft_type"`
	R             *float64                   `json:"r"`
	LoraAlpha     *float64                   `json:"lora_alpha"`
	LoraDropout   *float64                   `json:"lora_dropout"`
	TargetModules json.RawMessage            `json:"target_modules"`
	UseRSLoRA     *bool                      `json:"use_rslora"`
	UseDoRA       *bool                      `json:"use_dora"`
	FanInFanOut   *bool                      `json:"fan_in_fan_out"`
	Bias          *string                    `json:"bias"`
	BaseModel     *string                    `json:"base_model_name_or_path"`
	ModulesToSave []string                   `json:"modules_to_save"`
	RankPattern   map[string]json.RawMessage `json:"rank_pattern"`
	AlphaPattern  map[string]json.RawMessage `json:"alpha_pattern"`
}

// fileConfig is a parsed adapter_config.json.
type fileConfig struct {
	cfg Config // without Targets
	// targetList is target_modules when it is a list, nil when it is null
	// or a string (a regular expression, or "all-linear").
	targetList []string
}

// parseAdapterConfig parses and checks adapter_config.json; its errors are
// unprefixed.
func parseAdapterConfig(data []byte) (fileConfig, error) {
	var in adapterConfigIn
	if err := json.Unmarshal(data, &in); err != nil {
		return fileConfig{}, fmt.Errorf("invalid JSON: %w", err)
	}
	var fc fileConfig
	switch {
	case in.PeftType == nil:
		return fileConfig{}, errors.New("peft_type is missing")
	case *in.PeftType != "LORA":
		return fileConfig{}, fmt.Errorf("peft_type is %q; only LORA adapters are supported", *in.PeftType)
	}
	// PEFT's LoraConfig defaults for missing fields.
	r, alpha, dropout := 8.0, 8.0, 0.0
	if in.R != nil {
		r = *in.R
	}
	if r != math.Trunc(r) || r < 1 || r > math.MaxInt32 {
		return fileConfig{}, fmt.Errorf("r must be a positive integer, got %v", r)
	}
	if in.LoraAlpha != nil {
		alpha = *in.LoraAlpha
	}
	if in.LoraDropout != nil {
		dropout = *in.LoraDropout
	}
	if in.UseDoRA != nil && *in.UseDoRA {
		return fileConfig{}, errors.New("use_dora is true; DoRA adapters are not supported")
	}
	if in.FanInFanOut != nil && *in.FanInFanOut {
		return fileConfig{}, errors.New("fan_in_fan_out is true (transposed Conv1D weights, GPT-2 style); only Linear layers are supported")
	}
	if len(in.RankPattern) > 0 {
		return fileConfig{}, fmt.Errorf("rank_pattern has %d entries; per-module ranks are not supported", len(in.RankPattern))
	}
	if len(in.AlphaPattern) > 0 {
		return fileConfig{}, fmt.Errorf("alpha_pattern has %d entries; per-module alphas are not supported", len(in.AlphaPattern))
	}
	if in.Bias != nil && *in.Bias != "none" {
		return fileConfig{}, fmt.Errorf("bias is %q; only \"none\" is supported (trained biases are not)", *in.Bias)
	}
	if len(in.ModulesToSave) > 0 {
		return fileConfig{}, fmt.Errorf("modules_to_save %q: fully trained extra modules are not supported", in.ModulesToSave)
	}
	if tm := bytes.TrimSpace(in.TargetModules); len(tm) > 0 && !bytes.Equal(tm, []byte("null")) {
		var list []string
		var re string
		if err := json.Unmarshal(tm, &list); err == nil {
			if list == nil {
				list = []string{}
			}
			fc.targetList = list
		} else if err := json.Unmarshal(tm, &re); err != nil {
			return fileConfig{}, fmt.Errorf("target_modules must be a list of names or a string, got %s", truncate(tm))
		}
	}
	fc.cfg = Config{
		Rank:    int(r),
		Alpha:   alpha,
		Dropout: dropout,
	}
	if in.UseRSLoRA != nil {
		fc.cfg.RSLoRA = *in.UseRSLoRA
	}
	if in.BaseModel != nil {
		fc.cfg.BaseModel = *in.BaseModel
	}
	return fc, nil
}

func truncate(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

// SaveValueHead writes dir/value_head.safetensors as LLaMA Factory saves a
// reward model's value head: "v_head.summary.weight" [1, hidden] and
// "v_head.summary.bias" [1], F32. The file is written atomically; dir is
// created if needed.
func SaveValueHead(dir string, w []float32, bias float32) error {
	if len(w) == 0 {
		return fmt.Errorf("lora: save value head in %s: empty weight", dir)
	}
	wt, err := safetensors.Float32Tensor(valueHeadWeight, safetensors.F32, []int{1, len(w)}, w)
	if err != nil {
		return fmt.Errorf("lora: save value head in %s: %w", dir, err)
	}
	bt, err := safetensors.Float32Tensor(valueHeadBias, safetensors.F32, []int{1}, []float32{bias})
	if err != nil {
		return fmt.Errorf("lora: save value head in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lora: save value head: %w", err)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, ValueHeadFile), []safetensors.Tensor{wt, bt}, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("lora: save value head: %w", err)
	}
	return nil
}

// LoadValueHead reads dir/value_head.safetensors: "v_head.summary.weight"
// [1, hidden] and "v_head.summary.bias" [1], F32, BF16 or F16, and nothing
// else.
func LoadValueHead(dir string) (w []float32, bias float32, err error) {
	path := filepath.Join(dir, ValueHeadFile)
	f, err := safetensors.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, e := os.Stat(filepath.Join(dir, "value_head.bin")); e == nil {
				return nil, 0, fmt.Errorf("lora: %s: missing; the value head is a pickle value_head.bin, which lathe does not read", path)
			}
		}
		return nil, 0, fmt.Errorf("lora: %w", err)
	}
	defer f.Close()
	for _, ti := range f.Tensors() {
		if ti.Name != valueHeadWeight && ti.Name != valueHeadBias {
			return nil, 0, fmt.Errorf("lora: %s: unexpected tensor %q (a value head has only %q and %q)", path, ti.Name, valueHeadWeight, valueHeadBias)
		}
		switch ti.DType {
		case safetensors.F32, safetensors.BF16, safetensors.F16:
		default:
			return nil, 0, fmt.Errorf("lora: %s: tensor %q: dtype %s is not supported (F32, BF16 or F16)", path, ti.Name, ti.DType)
		}
	}
	wi, ok := f.Tensor(valueHeadWeight)
	if !ok {
		return nil, 0, fmt.Errorf("lora: %s: tensor %q is missing", path, valueHeadWeight)
	}
	if len(wi.Shape) != 2 || wi.Shape[0] != 1 || wi.Shape[1] < 1 {
		return nil, 0, fmt.Errorf("lora: %s: tensor %q: shape %v, want [1, hidden]", path, valueHeadWeight, wi.Shape)
	}
	bi, ok := f.Tensor(valueHeadBias)
	if !ok {
		return nil, 0, fmt.Errorf("lora: %s: tensor %q is missing", path, valueHeadBias)
	}
	if len(bi.Shape) != 1 || bi.Shape[0] != 1 {
		return nil, 0, fmt.Errorf("lora: %s: tensor %q: shape %v, want [1]", path, valueHeadBias, bi.Shape)
	}
	if w, err = f.Float32(valueHeadWeight); err != nil {
		return nil, 0, fmt.Errorf("lora: %w", err)
	}
	b, err := f.Float32(valueHeadBias)
	if err != nil {
		return nil, 0, fmt.Errorf("lora: %w", err)
	}
	return w, b[0], nil
}

// writeFileAtomic writes data to a temporary file next to path, syncs it and
// renames it over path.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
