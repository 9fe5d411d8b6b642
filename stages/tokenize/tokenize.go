// Package tokenize is the "tokenize" stage kind: it turns dataset files into
// tokenized shards (internal/data's format) with a chat template and a
// tokenizer, which it either takes from an upstream artifact or trains on the
// datasets' text.
//
//	stage "tokenize" "identity" {
//	  tokenizer = download.base.tokenizer   # or: train { vocab_size = 2000 }
//	  dataset {
//	    path    = "data/identity.json"      # relative to the pipeline file, or
//	    # files = download.data.dataset  with path inside that artifact
//	    format  = "alpaca"                  # alpaca | sharegpt | text
//	    columns = { prompt = "instruction" }
//	    replace = { "{{name}}" = var.name }
//	  }
//	  template   = "qwen"                   # or "auto": the model's own
//	  cutoff_len = 1024
//	  val_size   = 0.1
//	}
//
// Outputs: dataset (the training split: shards + manifest.json listing the
// "train" split), validation (the validation split: shards + manifest.json
// listing the "validation" split; no shards when val_size = 0), tokenizer
// (tokenizer.json or a SentencePiece tokenizer.model, with
// tokenizer_config.json and the other tokenizer files: the files used,
// copied through, or the trained ones) and stats (rows, samples, train_samples,
// validation_samples, tokens, trainable_tokens, truncated, dropped).
//
// A trained tokenizer is a byte-level BPE (internal/tokenizer.Train) learnt
// from every text field of every dataset row (system prompts, turns, answers,
// pretraining text; placeholders replaced). Its special tokens are the
// train block's special_tokens followed by the chat template's own special
// tokens (<|im_start|>, <|im_end|>, ...) so that the template's markup
// encodes to single tokens. Its tokenizer_config.json names the first
// special token as eos_token and pad_token (the template's end-of-turn
// token when special_tokens is empty).
//
// A tokenizer directory is read through its tokenizer.json, or, when it has
// none, its SentencePiece tokenizer.model with tokenizer_config.json,
// special_tokens_map.json and added_tokens.json (internal/tokenizer.LoadDir;
// Baichuan and ChatGLM ship only that). A template's special-token segments
// (BOS, EOS, <|im_end|>, ChatGLM's [gMASK] and sop, Baichuan's
// <reserved_106>) become the token's id, as LLaMA Factory's token slots do;
// other text is encoded segment by segment.
//
// The cache key holds, besides the arguments, the content digest of every
// local dataset file and of a tokenizer given as a local path; artifacts
// enter it by their digests.
//
// template = "auto" renders the model's own Jinja chat template: the
// chat_template of the tokenizer's tokenizer_config.json (or, when that has
// none, a chat_template.jinja beside it), with the assistant's tokens derived
// by internal/chattemplate. It needs a tokenizer directory that has one (not
// a trained tokenizer, nor a tokenizer.json file given alone); the template enters
// the cache key through the tokenizer's digest.
//
// This package does not stream datasets larger than memory
// through the shuffle (see internal/data.Build).
package tokenize

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"

	"github.com/lathe-ml/lathe/internal/chattemplate"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/suggest"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// Version is the kind's cache-key salt. 2: a template's special-token
// segments are encoded through the tokenizer's SpecialTokenID.
const Version = "2"

// DefaultCutoffLen is cutoff_len when the stage does not set it (LLaMA
// Factory's default).
const DefaultCutoffLen = 2048

// statsType is the type of the stats output.
var statsType = cty.Object(map[string]cty.Type{
	"rows":               cty.Number,
	"samples":            cty.Number,
	"train_samples":      cty.Number,
	"validation_samples": cty.Number,
	"tokens":             cty.Number,
	"trainable_tokens":   cty.Number,
	"truncated":          cty.Number,
	"dropped":            cty.Number,
})

var outputs = map[string]stage.Output{
	"dataset":    {Type: stage.ArtifactType(stage.DatasetArtifact), Summary: "the training split: shards and manifest.json"},
	"validation": {Type: stage.ArtifactType(stage.DatasetArtifact), Summary: "the validation split (no shards when val_size = 0)"},
	"tokenizer":  {Type: stage.ArtifactType(stage.TokenizerArtifact), Summary: "the tokenizer used: tokenizer.json or tokenizer.model, with tokenizer_config.json"},
	"stats":      {Type: statsType, Summary: "rows, samples, train_samples, validation_samples, tokens, trainable_tokens, truncated, dropped"},
}

var (
	formats   = []string{string(data.FormatAlpaca), string(data.FormatShareGPT), string(data.FormatText)}
	fileTypes = []string{"json", "jsonl", "csv", "parquet"}
	// columnKeys and tagKeys are the keys columns = {...} and tags = {...} accept.
	columnKeys = []string{"prompt", "query", "response", "history", "messages", "system", "chosen", "rejected", "text"}
	tagKeys    = []string{"role", "content", "user", "assistant", "observation", "function", "system"}
)

func optional(name string, t cty.Type, def cty.Value) hcldec.Spec {
	return &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: name, Type: t}, Default: &hcldec.LiteralSpec{Value: def}}
}

// Kind returns the tokenize stage kind.
func Kind() *stage.Kind {
	datasetSpec := hcldec.ObjectSpec{
		"path":      &hcldec.AttrSpec{Name: "path", Type: cty.String},
		"files":     stage.Validated(&hcldec.AttrSpec{Name: "files", Type: cty.DynamicPseudoType}, stage.RequireArtifact("files", stage.DatasetArtifact, stage.FilesArtifact)),
		"format":    stage.Validated(&hcldec.AttrSpec{Name: "format", Type: cty.String, Required: true}, validateEnum("format", formats)),
		"file_type": stage.Validated(&hcldec.AttrSpec{Name: "file_type", Type: cty.String}, validateEnum("file_type", fileTypes)),
		"ranking":   optional("ranking", cty.Bool, cty.False),
		"columns":   stage.Validated(&hcldec.AttrSpec{Name: "columns", Type: cty.Map(cty.String)}, validateKeys("columns", columnKeys)),
		"tags":      stage.Validated(&hcldec.AttrSpec{Name: "tags", Type: cty.Map(cty.String)}, validateKeys("tags", tagKeys)),
		"replace":   &hcldec.AttrSpec{Name: "replace", Type: cty.Map(cty.String)},
	}
	trainSpec := hcldec.ObjectSpec{
		"vocab_size":     stage.Validated(&hcldec.AttrSpec{Name: "vocab_size", Type: cty.Number, Required: true}, validateMinInt("vocab_size", 257)),
		"min_frequency":  stage.Validated(optional("min_frequency", cty.Number, cty.NumberIntVal(2)), validateMinInt("min_frequency", 1)),
		"special_tokens": &hcldec.AttrSpec{Name: "special_tokens", Type: cty.List(cty.String)},
	}
	return &stage.Kind{
		Name:    "tokenize",
		Version: Version,
		Summary: "tokenize datasets with a chat template into training and validation shards",
		Schema: hcldec.ObjectSpec{
			"tokenizer":       stage.Validated(&hcldec.AttrSpec{Name: "tokenizer", Type: cty.DynamicPseudoType}, validateTokenizer),
			"train":           &hcldec.BlockSpec{TypeName: "train", Nested: trainSpec},
			"dataset":         &hcldec.BlockListSpec{TypeName: "dataset", Nested: datasetSpec, MinItems: 1},
			"template":        stage.Validated(&hcldec.AttrSpec{Name: "template", Type: cty.String}, validateTemplate),
			"cutoff_len":      stage.Validated(optional("cutoff_len", cty.Number, cty.NumberIntVal(DefaultCutoffLen)), validateMinInt("cutoff_len", 1)),
			"packing":         optional("packing", cty.Bool, cty.False),
			"val_size":        stage.Validated(optional("val_size", cty.Number, cty.Zero), validateValSize),
			"seed":            stage.Validated(optional("seed", cty.Number, cty.NumberIntVal(42)), validateMinInt("seed", 0)),
			"max_samples":     stage.Validated(optional("max_samples", cty.Number, cty.Zero), validateMinInt("max_samples", 0)),
			"train_on_prompt": optional("train_on_prompt", cty.Bool, cty.False),
			"mask_history":    optional("mask_history", cty.Bool, cty.False),
		},
		Outputs:  checkedOutputs,
		KeyLines: keyLines,
		Run:      run,
	}
}

func known(v cty.Value) bool { return !v.IsNull() && v.IsWhollyKnown() }

func didYouMean(s string, valid []string) string {
	msg := ""
	if c := suggest.Closest(s, valid); c != "" {
		msg = fmt.Sprintf(" Did you mean %q?", c)
	}
	return msg + " Valid values: " + strings.Join(quoteAll(valid), ", ") + "."
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func validateEnum(attr string, valid []string) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if !known(v) {
			return nil
		}
		s := v.AsString()
		for _, ok := range valid {
			if s == ok {
				return nil
			}
		}
		return stage.Error("Invalid "+attr, fmt.Sprintf("%s = %q is not supported.", attr, s)+didYouMean(s, valid))
	}
}

func validateKeys(attr string, valid []string) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if !known(v) {
			return nil
		}
		var diags hcl.Diagnostics
		for k := range v.AsValueMap() {
			found := false
			for _, ok := range valid {
				found = found || k == ok
			}
			if !found {
				diags = append(diags, stage.Error("Invalid "+attr+" key", fmt.Sprintf("%s has no key %q.", attr, k)+didYouMean(k, valid))...)
			}
		}
		return diags
	}
}

// AutoTemplate is the template name that selects the model's own Jinja chat
// template (AutoTemplateFor).
const AutoTemplate = "auto"

// TemplateError explains why name is neither a built-in template nor
// "auto", or returns nil.
func TemplateError(name string) error {
	if name == AutoTemplate {
		return nil
	}
	if _, err := data.LookupTemplate(name); err != nil {
		return fmt.Errorf("unknown template %q.%s", name, didYouMean(name, append(data.TemplateNames(), AutoTemplate)))
	}
	return nil
}

func validateTemplate(v cty.Value) hcl.Diagnostics {
	if !known(v) {
		return nil
	}
	if err := TemplateError(v.AsString()); err != nil {
		return stage.Error("Invalid template", err.Error())
	}
	return nil
}

func validateMinInt(attr string, lo int64) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if !known(v) {
			return nil
		}
		var n int64
		if err := gocty.FromCtyValue(v, &n); err != nil || n < lo {
			return stage.Error("Invalid "+attr, fmt.Sprintf("%s = %s: want a whole number >= %d.", attr, v.AsBigFloat().Text('g', -1), lo))
		}
		return nil
	}
}

func validateValSize(v cty.Value) hcl.Diagnostics {
	if !known(v) {
		return nil
	}
	f, _ := v.AsBigFloat().Float64()
	if f < 0 || (f >= 1 && f != float64(int64(f))) {
		return stage.Error("Invalid val_size", fmt.Sprintf("val_size = %v: want a fraction in [0, 1) or a whole number of samples.", f))
	}
	return nil
}

func validateTokenizer(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() || v.Type() == cty.String {
		return nil
	}
	return stage.RequireArtifact("tokenizer", stage.TokenizerArtifact, stage.ModelArtifact, stage.FilesArtifact)(v)
}

// checkArgs reports the argument combinations the schema cannot express.
func checkArgs(args cty.Value) hcl.Diagnostics {
	if args.IsNull() || !args.IsKnown() || !args.Type().IsObjectType() {
		return nil
	}
	var diags hcl.Diagnostics
	tok, train := args.GetAttr("tokenizer"), args.GetAttr("train")
	if tok.IsKnown() && train.IsKnown() {
		switch {
		case tok.IsNull() && train.IsNull():
			diags = append(diags, stage.Error("Missing tokenizer", "A tokenize stage needs a tokenizer (an artifact such as download.base.tokenizer, or a local path) or a train { vocab_size = N } block.")...)
		case !tok.IsNull() && !train.IsNull():
			diags = append(diags, stage.Error("Conflicting tokenizer", "Set either tokenizer or a train block, not both.")...)
		}
	}
	ds := args.GetAttr("dataset")
	if !ds.IsKnown() || ds.IsNull() {
		return diags
	}
	needTemplate := false
	for i, d := range ds.AsValueSlice() {
		if !d.IsKnown() || d.IsNull() {
			continue
		}
		p, f := d.GetAttr("path"), d.GetAttr("files")
		if p.IsKnown() && !p.IsNull() && p.AsString() == "" {
			diags = append(diags, stage.Error("Empty dataset path", fmt.Sprintf("dataset block %d: path is empty.", i+1))...)
		}
		if f.IsKnown() && p.IsKnown() && f.IsNull() && p.IsNull() {
			diags = append(diags, stage.Error("Missing dataset path", fmt.Sprintf("dataset block %d: set path (a file relative to the pipeline), or files (an artifact) with path inside it.", i+1))...)
		}
		if fm := d.GetAttr("format"); fm.IsKnown() && !fm.IsNull() && fm.AsString() != string(data.FormatText) {
			needTemplate = true
		}
	}
	tpl := args.GetAttr("template")
	if needTemplate && tpl.IsKnown() && tpl.IsNull() {
		diags = append(diags, stage.Error("Missing template", "alpaca and sharegpt datasets need template = \"<name>\" (\"auto\" for the model's own chat template); built-in templates: "+strings.Join(data.TemplateNames(), ", ")+".")...)
	}
	if tpl.IsKnown() && !tpl.IsNull() && tpl.AsString() == AutoTemplate && train.IsKnown() && !train.IsNull() {
		diags = append(diags, stage.Error("Invalid template", "template = \"auto\" takes the model's chat template from the tokenizer's tokenizer_config.json; a tokenizer trained by this stage has none. Name a built-in template: "+strings.Join(data.TemplateNames(), ", ")+".")...)
	}
	return diags
}

func checkedOutputs(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
	return outputs, checkArgs(args)
}

// resolve makes a relative path absolute against base.
func resolve(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

func keyLines(kc stage.KeyContext, args cty.Value) ([]stage.KeyLine, error) {
	var lines []stage.KeyLine
	if tok := args.GetAttr("tokenizer"); !tok.IsNull() && tok.Type() == cty.String {
		d, err := kc.HashPath(resolve(kc.BaseDir(), tok.AsString()))
		if err != nil {
			return nil, fmt.Errorf("tokenizer %s: %w", tok.AsString(), err)
		}
		lines = append(lines, stage.KeyLine{Label: "tokenizer file", Value: d})
	}
	for i, d := range args.GetAttr("dataset").AsValueSlice() {
		if !d.GetAttr("files").IsNull() {
			continue // inside an artifact: its digest is already in the key
		}
		p := d.GetAttr("path").AsString()
		digest, err := kc.HashPath(resolve(kc.BaseDir(), p))
		if err != nil {
			return nil, fmt.Errorf("dataset %s: %w", p, err)
		}
		lines = append(lines, stage.KeyLine{Label: fmt.Sprintf("dataset[%d] file", i), Value: digest})
	}
	return lines, nil
}

// config is a decoded stage.
type config struct {
	tokenizerPath string // file or directory; "" when training
	train         *trainConfig
	specs         []data.Spec
	// names are the datasets' names in messages and in the manifest's drop
	// examples: the path as written in the stage (relative to the pipeline
	// file or to the files artifact), never the absolute path, so that the
	// outputs do not depend on where the pipeline or the store lives.
	names    []string
	template string
	opt      data.BuildOptions
}

type trainConfig struct {
	vocabSize, minFrequency int
	special                 []string
}

func getInt(v cty.Value) int {
	var n int
	_ = gocty.FromCtyValue(v, &n)
	return n
}

func strMap(v cty.Value) map[string]string {
	if v.IsNull() {
		return nil
	}
	out := map[string]string{}
	for k, e := range v.AsValueMap() {
		out[k] = e.AsString()
	}
	return out
}

func decode(req *stage.Request) (*config, error) {
	args := req.Args
	if diags := checkArgs(args); diags.HasErrors() {
		return nil, diags
	}
	c := &config{}
	if t := args.GetAttr("template"); !t.IsNull() {
		c.template = t.AsString()
	}
	tok := args.GetAttr("tokenizer")
	switch {
	case tok.IsNull():
	case tok.Type() == cty.String:
		c.tokenizerPath = resolve(req.BaseDir, tok.AsString())
	default:
		a, ok := stage.ArtifactOf(tok)
		if !ok {
			return nil, fmt.Errorf("tokenizer is not an artifact")
		}
		c.tokenizerPath = a.Path
	}
	if tr := args.GetAttr("train"); !tr.IsNull() {
		c.train = &trainConfig{vocabSize: getInt(tr.GetAttr("vocab_size")), minFrequency: getInt(tr.GetAttr("min_frequency"))}
		if st := tr.GetAttr("special_tokens"); !st.IsNull() {
			for _, s := range st.AsValueSlice() {
				c.train.special = append(c.train.special, s.AsString())
			}
		}
	}
	for _, d := range args.GetAttr("dataset").AsValueSlice() {
		spec := data.Spec{Format: data.Format(d.GetAttr("format").AsString()), Ranking: d.GetAttr("ranking").True(), Replace: strMap(d.GetAttr("replace"))}
		p := ""
		if v := d.GetAttr("path"); !v.IsNull() {
			p = v.AsString()
		}
		if f := d.GetAttr("files"); !f.IsNull() {
			a, ok := stage.ArtifactOf(f)
			if !ok {
				return nil, fmt.Errorf("dataset files is not an artifact")
			}
			if p != "" && !filepath.IsLocal(filepath.FromSlash(p)) {
				return nil, fmt.Errorf("dataset path %q must be relative to the files artifact", p)
			}
			spec.Path = filepath.Join(a.Path, filepath.FromSlash(p))
			if p == "" {
				one, err := singleFile(a.Path)
				if err != nil {
					return nil, err
				}
				spec.Path = one
				p, _ = filepath.Rel(a.Path, one)
			}
		} else {
			spec.Path = resolve(req.BaseDir, p)
		}
		if v := d.GetAttr("file_type"); !v.IsNull() {
			spec.FileType = v.AsString()
		}
		cols := strMap(d.GetAttr("columns"))
		spec.Columns = data.Columns{Prompt: cols["prompt"], Query: cols["query"], Response: cols["response"], History: cols["history"],
			Messages: cols["messages"], System: cols["system"], Chosen: cols["chosen"], Rejected: cols["rejected"], Text: cols["text"]}
		tags := strMap(d.GetAttr("tags"))
		spec.Tags = data.Tags{RoleTag: tags["role"], ContentTag: tags["content"], UserTag: tags["user"], AssistantTag: tags["assistant"],
			ObservationTag: tags["observation"], FunctionTag: tags["function"], SystemTag: tags["system"]}
		c.specs = append(c.specs, spec)
		c.names = append(c.names, filepath.ToSlash(p))
	}
	// "auto" is resolved in run, from the tokenizer's config.
	if t := args.GetAttr("template"); !t.IsNull() && t.AsString() != AutoTemplate {
		c.template = t.AsString()
		tpl, err := data.LookupTemplate(c.template)
		if err != nil {
			return nil, TemplateError(c.template)
		}
		c.opt.Template = tpl
	}
	vs, _ := args.GetAttr("val_size").AsBigFloat().Float64()
	c.opt.CutoffLen = getInt(args.GetAttr("cutoff_len"))
	c.opt.Packing = args.GetAttr("packing").True()
	c.opt.ValSize = vs
	c.opt.Seed = uint64(getInt(args.GetAttr("seed")))
	c.opt.MaxSamples = getInt(args.GetAttr("max_samples"))
	c.opt.Render = data.RenderOptions{TrainOnPrompt: args.GetAttr("train_on_prompt").True(), MaskHistory: args.GetAttr("mask_history").True()}
	return c, nil
}

// singleFile returns the only regular file of an artifact directory, for a
// files artifact given without a path.
func singleFile(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("dataset files: %w", err)
	}
	if len(files) != 1 {
		return "", fmt.Errorf("dataset files: the artifact holds %d files; name one with path = \"...\"", len(files))
	}
	return files[0], nil
}

// progressSource reports rows read to the reporter and stops on cancellation.
type progressSource struct {
	ctx      context.Context
	src      data.ExampleSource
	rep      stage.Reporter
	examples int64
}

func (p *progressSource) Next() (data.Example, error) {
	if err := p.ctx.Err(); err != nil {
		return data.Example{}, err
	}
	ex, err := p.src.Next()
	if err == nil {
		p.examples++
		if p.examples%1000 == 0 {
			p.rep.Progress(p.Stats().RowsRead, 0, "rows")
		}
	}
	return ex, err
}

func (p *progressSource) Stats() data.Stats {
	if s, ok := p.src.(interface{ Stats() data.Stats }); ok {
		return s.Stats()
	}
	return data.Stats{}
}

// openAll opens every dataset as one source, naming each by its name in
// messages; the returned function closes them all.
func openAll(specs []data.Spec, names []string) (data.ExampleSource, func(), error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	var srcs []data.ExampleSource
	for i, s := range specs {
		f, err := os.Open(s.Path)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("open dataset %s: %w", names[i], err)
		}
		files = append(files, f)
		r, err := data.NewReader(s, names[i], f)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		srcs = append(srcs, r)
	}
	return data.Concat(srcs...), closeAll, nil
}

func run(ctx context.Context, req *stage.Request) (*stage.Result, error) {
	c, err := decode(req)
	if err != nil {
		return nil, err
	}
	rep := req.Reporter
	if rep == nil {
		rep = nopReporter{}
	}
	tokDir := req.OutputDir("tokenizer")
	if err := os.MkdirAll(tokDir, 0o755); err != nil {
		return nil, err
	}
	var tok tokenizer.Codec
	var tcfg *tokenizer.Config
	if c.train != nil {
		tok, tcfg, err = trainFromDatasets(ctx, c, tokDir)
		if err != nil {
			return nil, err
		}
		rep.Logf("trained a byte-level BPE tokenizer: %d tokens", tok.VocabSize())
	} else {
		tok, tcfg, err = LoadTokenizer(c.tokenizerPath)
		if err != nil {
			return nil, err
		}
		if err := copyTokenizerFiles(c.tokenizerPath, tokDir); err != nil {
			return nil, err
		}
		if c.template == AutoTemplate {
			tpl, err := AutoTemplateFor(c.tokenizerPath, tcfg)
			if err != nil {
				return nil, err
			}
			c.opt.Template = tpl
			rep.Logf("template auto: the tokenizer's own chat template")
		}
	}
	c.opt.Encoder = Encoder(tok)
	ApplyTokenizerConfig(&c.opt, tcfg)

	src, closeAll, err := openAll(c.specs, c.names)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	ps := &progressSource{ctx: ctx, src: src, rep: rep}
	buildDir := filepath.Join(req.ScratchDir, "build")
	m, err := data.Build(ps, buildDir, c.opt)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	rep.Progress(m.RowsRead, m.RowsRead, "rows")
	logSummary(rep, m)
	trainM, err := splitOut(buildDir, req.OutputDir("dataset"), m, "train")
	if err != nil {
		return nil, err
	}
	valM, err := splitOut(buildDir, req.OutputDir("validation"), m, "validation")
	if err != nil {
		return nil, err
	}
	var dropped int64
	for _, n := range m.Dropped {
		dropped += n
	}
	stats := cty.ObjectVal(map[string]cty.Value{
		"rows":               cty.NumberIntVal(m.RowsRead),
		"samples":            cty.NumberIntVal(m.SamplesWritten),
		"train_samples":      cty.NumberIntVal(trainM.SamplesWritten),
		"validation_samples": cty.NumberIntVal(valM.SamplesWritten),
		"tokens":             cty.NumberIntVal(m.Tokens),
		"trainable_tokens":   cty.NumberIntVal(m.TrainableTokens),
		"truncated":          cty.NumberIntVal(m.Truncated),
		"dropped":            cty.NumberIntVal(dropped),
	})
	return &stage.Result{Values: map[string]cty.Value{"stats": stats}}, nil
}

type nopReporter struct{}

func (nopReporter) Progress(int64, int64, string)     {}
func (nopReporter) Logf(string, ...any)               {}
func (nopReporter) Metrics(int64, map[string]float64) {}

// DropSummary renders a manifest's drop counts as "reason: n, ..." sorted
// by reason ("" when nothing was dropped).
func DropSummary(dropped map[string]int64) string {
	return data.Stats{Dropped: dropped}.Summary()
}

func logSummary(rep stage.Reporter, m *data.Manifest) {
	var dropped int64
	for _, n := range m.Dropped {
		dropped += n
	}
	rep.Logf("read %d rows: %d samples, %d tokens (%d trained), %d truncated to cutoff_len %d", m.RowsRead, m.SamplesWritten, m.Tokens, m.TrainableTokens, m.Truncated, m.CutoffLen)
	if dropped > 0 {
		rep.Logf("dropped %d rows: %s", dropped, DropSummary(m.Dropped))
		for _, ex := range m.DropExamples {
			if ex.Detail != "" {
				rep.Logf("  dropped %s: %s (%s)", ex.Source, ex.Reason, ex.Detail)
			} else {
				rep.Logf("  dropped %s: %s", ex.Source, ex.Reason)
			}
		}
	}
}

// splitOut moves one split's shards from the build directory into dir and
// writes a manifest there that lists only that split, then verifies it.
func splitOut(buildDir, dir string, m *data.Manifest, split string) (*data.Manifest, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := *m
	out.Splits = map[string]*data.Split{}
	out.SamplesWritten, out.Tokens, out.TrainableTokens = 0, 0, 0
	if sp, ok := m.Splits[split]; ok {
		for _, sh := range sp.Shards {
			if err := os.Rename(filepath.Join(buildDir, sh.File), filepath.Join(dir, sh.File)); err != nil {
				return nil, fmt.Errorf("%s split: %w", split, err)
			}
		}
		out.Splits[split] = sp
		out.SamplesWritten, out.Tokens, out.TrainableTokens = sp.Samples, sp.Tokens, sp.TrainableTokens
	}
	b, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, data.ManifestName), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("%s split: %w", split, err)
	}
	if _, err := data.VerifyDir(dir); err != nil {
		return nil, fmt.Errorf("%s split: %w", split, err)
	}
	return &out, nil
}

// ApplyTokenizerConfig takes BOS/EOS text from tokenizer_config.json for the
// templates that use them and for the EOS appended to pretraining text.
func ApplyTokenizerConfig(opt *data.BuildOptions, cfg *tokenizer.Config) {
	if cfg == nil {
		return
	}
	if cfg.BOSToken != nil {
		opt.Render.BOS = *cfg.BOSToken
	}
	if cfg.EOSToken != nil {
		opt.Render.EOS = *cfg.EOSToken
		opt.TextEOS = *cfg.EOSToken
	}
}

// AutoTemplateFor returns template "auto" for the tokenizer at path (a
// directory, or a tokenizer.json file): the chat_template of cfg, its
// tokenizer_config.json (nil when absent), or else the chat_template.jinja
// beside it, wrapped by internal/chattemplate. Errors name the file that
// should have held the template.
func AutoTemplateFor(path string, cfg *tokenizer.Config) (*data.Template, error) {
	f, err := TokenizerFile(path)
	if err != nil {
		return nil, err
	}
	if f == path {
		// A bare file's neighbours are neither copied nor in the cache key.
		return nil, fmt.Errorf("template \"auto\": tokenizer = %q is a file; give the tokenizer's directory, whose tokenizer_config.json holds the chat template", path)
	}
	dir := filepath.Dir(f)
	cp := filepath.Join(dir, "tokenizer_config.json")
	if _, err := os.Stat(cp); err != nil {
		cfg = nil // a SentencePiece tokenizer's effective config without the file
	}
	if cfg == nil {
		return nil, fmt.Errorf("template \"auto\": no %s (the model's chat template is read from it); name a built-in template: %s", cp, strings.Join(data.TemplateNames(), ", "))
	}
	if cfg.ChatTemplate == "" {
		jp := filepath.Join(dir, "chat_template.jinja")
		if b, err := os.ReadFile(jp); err == nil && len(bytes.TrimSpace(b)) > 0 {
			c := *cfg
			c.ChatTemplate = string(b)
			cfg, cp = &c, jp
		}
	}
	tpl, err := chattemplate.FromConfig(cp, cfg)
	if err != nil {
		return nil, err
	}
	return tpl.Data(), nil
}

// encoder adapts a tokenizer to data.SpecialTokenEncoder.
type encoder struct{ t tokenizer.Codec }

func (e encoder) Encode(text string, addSpecial bool) []uint32 {
	ids := e.t.Encode(text, addSpecial)
	out := make([]uint32, len(ids))
	for i, id := range ids {
		out[i] = uint32(id)
	}
	return out
}

func (e encoder) SpecialTokenID(text string) (uint32, bool) {
	id, ok := e.t.SpecialTokenID(text)
	return uint32(id), ok
}

// Encoder adapts t to data.Encoder (int ids become uint32); it is also a
// data.SpecialTokenEncoder, so that a template's special-token segments
// become their ids.
func Encoder(t tokenizer.Codec) data.Encoder { return encoder{t} }

// TokenizerFile returns path itself when it is a file, or the tokenizer
// file of a directory: tokenizer.json, else tokenizer.model.
func TokenizerFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("tokenizer: %w", err)
	}
	if !fi.IsDir() {
		return path, nil
	}
	return tokenizer.File(path)
}

// LoadTokenizer loads a tokenizer file (tokenizer.json or a SentencePiece
// tokenizer.model), or the tokenizer of a directory (tokenizer.json, else
// tokenizer.model), with the tokenizer_config.json beside it (see
// tokenizer.LoadPath for when the Config is nil).
func LoadTokenizer(path string) (tokenizer.Codec, *tokenizer.Config, error) {
	return tokenizer.LoadPath(path)
}

// tokenizerFiles are the files copied through from a tokenizer source.
var tokenizerFiles = []string{
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
	"vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json",
}

func copyTokenizerFiles(src, dst string) error {
	f, err := TokenizerFile(src)
	if err != nil {
		return err
	}
	fi, _ := os.Stat(src)
	if !fi.IsDir() {
		name := tokenizer.JSONFile
		if b, err := os.ReadFile(f); err == nil && !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
			name = tokenizer.ModelFile
		}
		return copyFile(f, filepath.Join(dst, name))
	}
	for _, name := range tokenizerFiles {
		p := filepath.Join(src, name)
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			continue
		}
		if err := copyFile(p, filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// TemplateSpecialTokens returns the special-token texts a template's markup
// uses (BOS, <|im_start|>, <|im_end|>, ...), in order of first use, with
// RenderOptions' default BOS/EOS: the segments Render flags Special and every
// <|name|> in the markup.
func TemplateSpecialTokens(tpl *data.Template) []string {
	if tpl == nil {
		return nil
	}
	segs, err := tpl.Render("s", []data.Message{{Role: data.RoleUser, Content: "u"}, {Role: data.RoleAssistant, Content: "a"}}, data.RenderOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range segs {
		var found []string
		if s.Special {
			found = []string{s.Text}
		} else {
			found = markupTokenRE.FindAllString(s.Text, -1)
		}
		for _, f := range found {
			// A plain word (ChatGLM's "sop") stays text: as an added token
			// of a trained tokenizer it would split ordinary words.
			if isWord(f) {
				continue
			}
			if f != "" && !contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// markupTokenRE matches the <|name|> special tokens templates embed in their
// markup (segments flagged Special hold the others, such as <s> and </s>).
var markupTokenRE = regexp.MustCompile(`<\|[A-Za-z0-9_]+\|>`)

// isWord reports whether s is letters only.
func isWord(s string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) {
			return false
		}
	}
	return s != ""
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// exampleTexts yields every text field of an example.
func exampleTexts(ex *data.Example, yield func(string) bool) bool {
	texts := []string{ex.System, ex.Text}
	for _, m := range ex.Turns {
		texts = append(texts, m.Content)
	}
	if ex.Chosen != nil {
		texts = append(texts, ex.Chosen.Content)
	}
	if ex.Rejected != nil {
		texts = append(texts, ex.Rejected.Content)
	}
	for _, t := range texts {
		if t != "" && !yield(t) {
			return false
		}
	}
	return true
}

// TrainOptions configure TrainTokenizer.
type TrainOptions struct {
	VocabSize, MinFrequency int
	// Special are the special tokens, in id order; EOS names the
	// eos_token/pad_token written to tokenizer_config.json ("" = the first
	// special token, or none).
	Special []string
	EOS     string
}

// TrainTokenizer trains a byte-level BPE on corpus and writes
// dir/tokenizer.json and dir/tokenizer_config.json. The corpus is iterated
// once; an error it records must be checked by the caller.
func TrainTokenizer(corpus iter.Seq[string], dir string, o TrainOptions) (*tokenizer.Tokenizer, *tokenizer.Config, error) {
	t, err := tokenizer.Train(corpus, o.VocabSize, o.Special, o.MinFrequency)
	if err != nil {
		return nil, nil, fmt.Errorf("train tokenizer: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	if err := t.Save(filepath.Join(dir, "tokenizer.json")); err != nil {
		return nil, nil, fmt.Errorf("train tokenizer: %w", err)
	}
	eos := o.EOS
	if eos == "" && len(o.Special) > 0 {
		eos = o.Special[0]
	}
	cfgJSON, err := configJSON(t, eos)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfgJSON, 0o644); err != nil {
		return nil, nil, fmt.Errorf("train tokenizer: %w", err)
	}
	cfg, err := tokenizer.ParseConfig(cfgJSON)
	if err != nil {
		return nil, nil, fmt.Errorf("train tokenizer: %w", err)
	}
	return t, cfg, nil
}

// configJSON renders a transformers-compatible tokenizer_config.json for a
// trained tokenizer.
func configJSON(t *tokenizer.Tokenizer, eos string) ([]byte, error) {
	decoderMap := map[string]any{}
	for _, a := range t.AddedTokens() {
		decoderMap[fmt.Sprint(a.ID)] = map[string]any{
			"content": a.Content, "lstrip": a.LStrip, "rstrip": a.RStrip,
			"normalized": a.Normalized, "single_word": a.SingleWord, "special": a.Special,
		}
	}
	var eosVal any
	if eos != "" {
		eosVal = eos
	}
	cfg := map[string]any{
		"added_tokens_decoder":         decoderMap,
		"bos_token":                    nil,
		"eos_token":                    eosVal,
		"pad_token":                    eosVal,
		"unk_token":                    nil,
		"add_bos_token":                false,
		"add_eos_token":                false,
		"clean_up_tokenization_spaces": false,
		"model_max_length":             int64(1) << 31,
		"tokenizer_class":              "PreTrainedTokenizerFast",
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<|endoftext|>", not "\u003c|endoftext|\u003e"
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func trainFromDatasets(ctx context.Context, c *config, dir string) (*tokenizer.Tokenizer, *tokenizer.Config, error) {
	special := append([]string(nil), c.train.special...)
	tplSpecial := TemplateSpecialTokens(c.opt.Template)
	for _, s := range tplSpecial {
		if !contains(special, s) {
			special = append(special, s)
		}
	}
	eos := ""
	if len(c.train.special) == 0 && c.opt.Template != nil {
		// The template's end-of-turn token: the last special token of a
		// rendered answer.
		if n := len(tplSpecial); n > 0 {
			eos = tplSpecial[n-1]
		}
	}
	var readErr error
	corpus := func(yield func(string) bool) {
		src, closeAll, err := openAll(c.specs, c.names)
		if err != nil {
			readErr = err
			return
		}
		defer closeAll()
		for {
			if err := ctx.Err(); err != nil {
				readErr = err
				return
			}
			ex, err := src.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				readErr = err
				return
			}
			if !exampleTexts(&ex, yield) {
				return
			}
		}
	}
	t, cfg, err := TrainTokenizer(corpus, dir, TrainOptions{VocabSize: c.train.vocabSize, MinFrequency: c.train.minFrequency, Special: special, EOS: eos})
	if readErr != nil {
		return nil, nil, fmt.Errorf("train tokenizer: %w", readErr)
	}
	if err != nil {
		return nil, nil, err
	}
	return t, cfg, nil
}
