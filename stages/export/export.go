// Package export is the "export" stage kind: it turns a model artifact
// (with an optional LoRA adapter merged into it) into what other tools
// load — a Hugging Face model directory in the dtype and shard size asked
// for, or a GGUF file with an Ollama Modelfile for llama.cpp and Ollama.
//
//	stage "export" "gguf" {
//	  model        = sft.identity.model     # required: a model artifact
//	  adapter      = sft.identity.adapter   # optional: merged into the model first
//	  format       = "gguf"                 # "hf" (default) | "gguf"
//	  quantization = "q8_0"                 # gguf: f32 | f16 (default) | bf16 | q8_0 | q4_0
//	  template     = "chatml"               # gguf: the Modelfile's chat template
//	  name         = "lathe-assistant"      # gguf: general.name (default "lathe-model")
//	}
//
//	stage "export" "hf" {
//	  model          = sft.identity.model
//	  dtype          = "bf16"               # hf: f32 | bf16 (default) | f16
//	  max_shard_size = "2GB"                # hf: default "5GB"
//	}
//
// Format "hf" declares the output model: config.json (torch_dtype set),
// the weights as model.safetensors or, above max_shard_size (bytes, or a
// number with KB/MB/GB/TB or KiB/MiB/GiB/TiB, as transformers'
// save_pretrained reads it), model-0000i-of-0000n.safetensors shards with
// model.safetensors.index.json, the tokenizer files and
// generation_config.json (carried over, or written from config.json's
// bos/eos ids). Format "gguf" declares the output gguf, a files artifact
// with model.gguf (internal/gguf: matrices in the asked type, norms and
// biases F32, a matrix whose rows are not whole quantisation blocks in
// F16, each such fallback logged) and an Ollama Modelfile: FROM
// ./model.gguf, TEMPLATE in Ollama's Go-template syntax rendering the
// chosen built-in chat template exactly as the tokenize stage renders it
// for training (BOS/EOS texts from tokenizer_config.json), SYSTEM for the
// templates with a default system prompt, and PARAMETER stop for the
// template's end-of-turn text and the EOS text. Without a template
// argument the template is the built-in one the model's own Jinja
// chat_template renders identically on probe conversations, else
// "default" (logged either way). The leading BOS is left out of TEMPLATE
// when the GGUF's tokenizer adds it to every prompt.
//
// With an adapter, the model is loaded with the adapter's LoRA pairs and
// saved merged in F32 (W + scale·B·A, accumulated in float64) into the
// scratch directory, and exported from there. The outputs depend on the
// arguments and input artifacts only: no timestamps, no paths.
//
// It does not: quantise to k-quants (Q4_K...), export adapters on their
// own (GGUF LoRA), write GGUF for a model llama.cpp would read differently
// (internal/gguf refuses it and says why), or write a Modelfile TEMPLATE
// for a model's own Jinja chat template (only for the built-in templates).
package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/bytesize"
	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/gguf"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
)

// Version is the kind's cache-key salt.
const Version = "1"

// The formats.
const (
	FormatHF   = "hf"
	FormatGGUF = "gguf"
)

// Defaults.
const (
	DefaultDType        = "bf16"
	DefaultShardSize    = "5GB"
	DefaultQuantization = "f16"
	DefaultName         = "lathe-model"
)

// Argument values.
var (
	Formats       = []string{FormatHF, FormatGGUF}
	DTypes        = []string{"f32", "bf16", "f16"}
	Quantizations = []string{"f32", "f16", "bf16", "q8_0", "q4_0"}
)

// Output names and the files of the gguf output.
const (
	modelOutput   = "model"
	ggufOutput    = "gguf"
	ggufFile      = "model.gguf"
	modelfileName = "Modelfile"
)

var dtypes = map[string]safetensors.DType{"f32": safetensors.F32, "bf16": safetensors.BF16, "f16": safetensors.F16}

// Kind returns the export stage kind.
func Kind() *stage.Kind {
	str := func(name string) *hcldec.AttrSpec { return &hcldec.AttrSpec{Name: name, Type: cty.String} }
	schema := hcldec.ObjectSpec{
		"model":          trainstage.Artifact("model", true, stage.ModelArtifact),
		"adapter":        trainstage.Artifact("adapter", false, stage.AdapterArtifact),
		"format":         stage.Validated(trainstage.Optional("format", cty.String, cty.StringVal(FormatHF)), trainstage.Enum("format", Formats)),
		"dtype":          stage.Validated(str("dtype"), trainstage.Enum("dtype", DTypes)),
		"max_shard_size": stage.Validated(str("max_shard_size"), checkShardSize),
		"quantization":   stage.Validated(str("quantization"), trainstage.Enum("quantization", Quantizations)),
		"template":       stage.Validated(str("template"), trainstage.Enum("template", data.TemplateNames())),
		"name":           stage.Validated(str("name"), checkName),
	}
	return &stage.Kind{
		Name:    "export",
		Version: Version,
		Summary: "export a model (adapter merged) as a Hugging Face directory or as GGUF with an Ollama Modelfile",
		Schema:  schema,
		Outputs: Outputs,
		Run:     run,
	}
}

// Outputs declares model (format "hf") or gguf (format "gguf") and checks
// the arguments together: each format's own arguments only with it.
func Outputs(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
	diags := check(args)
	if diags.HasErrors() {
		return nil, diags
	}
	if args.GetAttr("format").AsString() == FormatGGUF {
		return map[string]stage.Output{ggufOutput: {Type: stage.ArtifactType(stage.FilesArtifact),
			Summary: "model.gguf (llama.cpp, Ollama) and an Ollama Modelfile"}}, nil
	}
	return map[string]stage.Output{modelOutput: {Type: stage.ArtifactType(stage.ModelArtifact),
		Summary: "the model as a Hugging Face directory (sharded safetensors, tokenizer, configs)"}}, nil
}

// formatArgs lists the arguments that belong to one format only.
var formatArgs = map[string][]string{
	FormatHF:   {"dtype", "max_shard_size"},
	FormatGGUF: {"quantization", "template", "name"},
}

func check(args cty.Value) hcl.Diagnostics {
	if !args.IsKnown() || args.IsNull() {
		return stage.Error("Unknown export arguments", "The export stage's arguments could not be evaluated.")
	}
	format := args.GetAttr("format")
	if !format.IsKnown() {
		return stage.Error("Unknown format", "format decides the stage's output (model for \"hf\", gguf for \"gguf\"), so it must be known before anything runs: use a literal, a variable or a local, not another stage's output.")
	}
	if format.IsNull() {
		format = cty.StringVal(FormatHF)
	}
	var diags hcl.Diagnostics
	for _, c := range []struct {
		attr string
		f    func(cty.Value) hcl.Diagnostics
	}{
		{"format", trainstage.Enum("format", Formats)},
		{"dtype", trainstage.Enum("dtype", DTypes)},
		{"max_shard_size", checkShardSize},
		{"quantization", trainstage.Enum("quantization", Quantizations)},
		{"template", trainstage.Enum("template", data.TemplateNames())},
		{"name", checkName},
	} {
		diags = append(diags, c.f(args.GetAttr(c.attr))...)
	}
	if diags.HasErrors() {
		return diags
	}
	f := format.AsString()
	for other, names := range map[string][]string{FormatHF: formatArgs[FormatGGUF], FormatGGUF: formatArgs[FormatHF]} {
		if f != other {
			continue
		}
		for _, n := range names {
			if !args.GetAttr(n).IsNull() {
				diags = append(diags, stage.Error("Argument not used by format \""+f+"\"",
					fmt.Sprintf("%s applies to format %q only (%s); this stage's format is %q.%s", n, otherFormat(f), strings.Join(formatArgs[otherFormat(f)], ", "), f, hint(n)))...)
			}
		}
	}
	return diags
}

func otherFormat(f string) string {
	if f == FormatHF {
		return FormatGGUF
	}
	return FormatHF
}

func hint(arg string) string {
	switch arg {
	case "dtype":
		return " A GGUF file's weight type is set by quantization."
	case "quantization":
		return " A Hugging Face directory's weight type is set by dtype."
	}
	return ""
}

// ParseSize parses a shard size (see bytesize.Parse); a shard holds at
// least one byte.
func ParseSize(s string) (int64, error) {
	n, err := bytesize.Parse(s)
	if err != nil {
		return 0, err
	}
	if n < 1 {
		return 0, fmt.Errorf("%q is out of range: a shard holds at least 1 byte", s)
	}
	return n, nil
}

func checkShardSize(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	if _, err := ParseSize(v.AsString()); err != nil {
		return stage.Error("Invalid max_shard_size", "max_shard_size: "+err.Error()+".")
	}
	return nil
}

func checkName(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	s := v.AsString()
	if strings.TrimSpace(s) == "" {
		return stage.Error("Invalid name", "name must not be empty.")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return stage.Error("Invalid name", fmt.Sprintf("name %q holds the control character %U.", s, r))
		}
	}
	return nil
}

func strArg(args cty.Value, name, def string) string {
	if v := args.GetAttr(name); !v.IsNull() {
		return v.AsString()
	}
	return def
}

func run(ctx context.Context, req *stage.Request) (*stage.Result, error) {
	args := req.Args
	if d := check(args); d.HasErrors() {
		return nil, d
	}
	rep := trainstage.Reporter(req)
	modelDir := trainstage.ArtifactPath(args.GetAttr("model"))
	adapterDir := trainstage.ArtifactPath(args.GetAttr("adapter"))
	src := modelDir
	if adapterDir != "" {
		var err error
		if src, err = merge(modelDir, adapterDir, filepath.Join(req.ScratchDir, "merged"), rep); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var err error
	if strArg(args, "format", FormatHF) == FormatGGUF {
		err = exportGGUF(req.OutputDir(ggufOutput), src, args, rep)
	} else {
		err = exportHF(ctx, req.OutputDir(modelOutput), src, []string{modelDir, adapterDir}, args, rep)
	}
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return &stage.Result{}, nil
}

// merge writes the model with the adapter merged (F32) and the tokenizer
// files of the model (else of the adapter) into dst, and returns dst.
func merge(modelDir, adapterDir, dst string, rep stage.Reporter) (string, error) {
	lc, tensors, err := lora.Load(adapterDir)
	if err != nil {
		return "", err
	}
	m, err := llama.LoadAdapted(modelDir, cpu.New(), llama.Options{Trainable: func(string) bool { return false }}, lc, tensors)
	if err != nil {
		return "", fmt.Errorf("load the model with the adapter: %w", err)
	}
	defer m.Free()
	modules := 0
	for name := range tensors {
		if strings.HasSuffix(name, llama.LoRAASuffix) {
			modules++
		}
	}
	if err := m.SaveMerged(dst, safetensors.F32); err != nil {
		return "", fmt.Errorf("merge the adapter: %w", err)
	}
	if err := carryTokenizer(dst, modelDir, adapterDir); err != nil {
		return "", err
	}
	rep.Logf("merged the adapter (rank %d, scale %g) into %d modules", lc.Rank, lc.Scale(), modules)
	if _, err := os.Stat(filepath.Join(adapterDir, lora.ValueHeadFile)); err == nil {
		rep.Logf("the adapter's value head (%s) is not part of a causal LM export: left out", lora.ValueHeadFile)
	}
	return dst, nil
}

// carryTokenizer copies the tokenizer files (and generation_config.json)
// into dst from the first of dirs that has each.
func carryTokenizer(dst string, dirs ...string) error {
	for _, d := range dirs {
		var missing []string
		for _, n := range append(trainstage.TokenizerFiles, "generation_config.json") {
			if _, err := os.Stat(filepath.Join(dst, n)); errors.Is(err, os.ErrNotExist) {
				missing = append(missing, n)
			}
		}
		if _, err := trainstage.CarryFiles(d, dst, missing); err != nil {
			return err
		}
	}
	return nil
}

// exportHF writes src as a Hugging Face directory in dst.
func exportHF(ctx context.Context, dst, src string, tokDirs []string, args cty.Value, rep stage.Reporter) error {
	dtName := strArg(args, "dtype", DefaultDType)
	dt := dtypes[dtName]
	maxShard, err := ParseSize(strArg(args, "max_shard_size", DefaultShardSize))
	if err != nil {
		return err
	}
	cfg, err := llama.LoadConfig(filepath.Join(src, "config.json"))
	if err != nil {
		return err
	}
	torch := map[safetensors.DType]string{safetensors.F32: "float32", safetensors.BF16: "bfloat16", safetensors.F16: "float16"}[dt]
	cj, err := cfg.JSON(torch)
	if err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, "config.json"), append(cj, '\n'), 0o644); err != nil {
		return err
	}
	set, err := safetensors.OpenDir(src)
	if err != nil {
		return err
	}
	defer set.Close()
	var tensors []safetensors.Tensor
	var converted int
	for _, ti := range set.Tensors() {
		if err := ctx.Err(); err != nil {
			return err
		}
		var t safetensors.Tensor
		switch ti.DType {
		case dt:
			raw, err := set.View(ti.Name)
			if err != nil {
				return err
			}
			t = safetensors.Tensor{Name: ti.Name, DType: dt, Shape: ti.Shape, Data: raw}
		case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
			v, err := set.Float32(ti.Name)
			if err != nil {
				return err
			}
			if t, err = safetensors.Float32Tensor(ti.Name, dt, ti.Shape, v); err != nil {
				return err
			}
			converted++
		default:
			return fmt.Errorf("%s: tensor %q is %s; export converts floating-point weights only", src, ti.Name, ti.DType)
		}
		tensors = append(tensors, t)
	}
	files, err := safetensors.WriteSharded(dst, tensors, map[string]string{"format": "pt"}, maxShard)
	if err != nil {
		return err
	}
	var total int64
	for _, t := range tensors {
		total += int64(len(t.Data))
	}
	shards := len(files)
	if shards > 1 {
		shards-- // the index
	}
	rep.Logf("hf: %d tensors (%d converted) in %s, %s in %d file(s) of at most %s", len(tensors), converted, dtName, sizeString(total), shards, sizeString(maxShard))
	if err := carryTokenizer(dst, append([]string{src}, tokDirs...)...); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dst, "generation_config.json")); err == nil {
		return nil
	}
	return writeGenerationConfig(dst, cfg)
}

// writeGenerationConfig writes generation_config.json from config.json's
// bos/eos ids and the tokenizer's pad token, as the training stages do.
func writeGenerationConfig(dir string, cfg llama.Config) error {
	g := map[string]any{"_from_model_config": true}
	if cfg.BOSTokenID >= 0 {
		g["bos_token_id"] = cfg.BOSTokenID
	}
	switch len(cfg.EOSTokenIDs) {
	case 0:
	case 1:
		g["eos_token_id"] = cfg.EOSTokenIDs[0]
	default:
		g["eos_token_id"] = cfg.EOSTokenIDs
	}
	tc, _, err := loadTokenizerConfig(dir)
	if err != nil {
		return err
	}
	if tc != nil && tc.PadToken != nil {
		if tok, _, err := tokenizer.LoadDir(dir); err == nil {
			if id, ok := tok.TokenToID(*tc.PadToken); ok {
				g["pad_token_id"] = id
			}
		}
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "generation_config.json"), append(b, '\n'), 0o644)
}

// exportGGUF writes dst/model.gguf and dst/Modelfile from src.
func exportGGUF(dst, src string, args cty.Value, rep stage.Reporter) error {
	qt, err := gguf.ParseType(strArg(args, "quantization", DefaultQuantization))
	if err != nil {
		return err
	}
	name := strArg(args, "name", DefaultName)
	path := filepath.Join(dst, ggufFile)
	res, err := gguf.WriteFromHF(path, src, gguf.WriteOptions{Type: qt, Name: name})
	if err != nil {
		return err
	}
	rep.Logf("gguf: %s, %d tensors, %s weights, %s", res.Arch, res.Tensors, qt, sizeString(res.Size))
	for _, f := range res.Fallbacks {
		rep.Logf("gguf: %s written as %s instead of %s: %s", f.Tensor, f.Type, qt, f.Reason)
	}
	for _, n := range res.Notes {
		rep.Logf("gguf: note: %s", n)
	}

	tc, tcPath, err := loadTokenizerConfig(src)
	if err != nil {
		return err
	}
	tplName := strArg(args, "template", "")
	recognised, err := recognise(tcPath, tc)
	if err != nil {
		rep.Logf("template: the model's chat template could not be rendered (%v)", err)
	}
	switch {
	case tplName != "" && tc != nil && tc.ChatTemplate != "" && recognised != tplName:
		rep.Logf("template: %q for the Modelfile; the model's own chat template (kept in the GGUF for llama.cpp) is %s", tplName, describe(recognised))
	case tplName != "":
		rep.Logf("template: %q", tplName)
	case recognised != "":
		tplName = recognised
		rep.Logf("template: %q, recognised from the model's chat template", tplName)
	default:
		tplName = "default"
		if tc != nil && tc.ChatTemplate != "" {
			rep.Logf("template: the model's chat template is none of the built-in ones; the Modelfile uses \"default\" (set template to choose)")
		} else {
			rep.Logf("template: the model has no chat template; the Modelfile uses \"default\" (set template to choose)")
		}
	}
	bos, eos := renderTokens(tc)
	tk := tokens{BOS: bos, EOS: eos, LeadBOS: true}
	addBOS, ggufBOS, err := bosOf(path)
	if err != nil {
		return err
	}
	if lead := leadingBOS(tplName, tk); addBOS && lead != "" && lead == ggufBOS {
		tk.LeadBOS = false
		rep.Logf("template: the tokenizer adds %s to every prompt, so TEMPLATE leaves it out", lead)
	} else if addBOS && lead == "" {
		rep.Logf("template: note: the GGUF's tokenizer adds BOS %q to every prompt; template %q was trained without it", ggufBOS, tplName)
	}
	mf, err := ollamaModelfile(name, tplName, tk)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dst, modelfileName), mf, 0o644)
}

func describe(recognised string) string {
	if recognised == "" {
		return "none of the built-in ones"
	}
	return fmt.Sprintf("%q", recognised)
}

// bosOf reads from a GGUF file whether its tokenizer adds BOS and the BOS
// token's text ("" when it has none).
func bosOf(path string) (bool, string, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	add, _ := f.Metadata["tokenizer.ggml.add_bos_token"].(bool)
	id, ok := f.Metadata["tokenizer.ggml.bos_token_id"].(uint32)
	toks, _ := f.Metadata["tokenizer.ggml.tokens"].([]string)
	if !ok || int(id) >= len(toks) {
		return false, "", nil
	}
	return add, toks[id], nil
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
