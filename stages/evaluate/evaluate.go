// Package evaluate is the "evaluate" stage kind: it measures a model (with
// an optional LoRA adapter, applied without merging) the ways LLaMA
// Factory's evaluation and predict modes do, and writes the numbers as a
// value output and a report.
//
//	stage "evaluate" "after" {
//	  model   = sft.identity.model              # required
//	  adapter = sft.identity.adapter            # optional
//	  data    = tokenize.identity.validation    # loss, perplexity
//	  pairs   = tokenize.prefs.validation       # reward-model pair accuracy
//	  choices {                                 # multiple-choice accuracy
//	    path   = "data/mc.jsonl"
//	    dev    = "data/mc_dev.jsonl"
//	    k_shot = 5
//	  }
//	  generate {                                # BLEU-4, ROUGE-1/2/L
//	    path           = "data/test.json"
//	    format         = "alpaca"
//	    replace        = { "{{name}}" = var.name }
//	    max_new_tokens = 64
//	  }
//	  batch_size = 8
//	}
//
// At least one of data, pairs, choices and generate is needed. Each gives
// some of the entries of the metrics output (a map of numbers):
//
//   - data (a tokenized dataset): loss, the mean cross-entropy over every
//     trained token (the tokenize stage's mask: the answers), perplexity =
//     exp(loss), and eval_tokens, the number of those tokens. Rows longer
//     than the model's context are cut to it.
//   - pairs (a tokenized preference dataset): the value head
//     (value_head.safetensors in the adapter, else in the model: what the
//     reward-model stage writes) scores the last token of both sides of each
//     pair; reward_accuracy is the fraction of pairs whose chosen side
//     scores strictly higher, reward_margin the mean of chosen − rejected,
//     reward_pairs the number of pairs.
//   - choices: multiple-choice accuracy, LLaMA Factory's MMLU evaluation.
//     Each question is rendered with the chat template as the last user
//     turn, "{question}\nA. {A}\nB. {B}\n...\nAnswer:", after k_shot
//     examples from dev (its first k_shot rows, each a user turn and an
//     assistant turn holding the answer letter), with the generation
//     prompt. Each choice is scored by the log-likelihood of its letter
//     ("A", "B", ...: the bare letter, no leading space, encoded on its own
//     as the tokenize stage encodes an answer) as the assistant's answer:
//     the sum of its tokens' log-probabilities, all choices of a question in
//     one batch. The highest wins (the first on a tie). For one-token
//     letters this is LLaMA Factory's choice (the argmax of the next-token
//     logits over the letters' tokens). mc_accuracy is the fraction
//     correct, mc_questions the number of questions.
//   - generate: greedy decoding (deterministic) of the answer to each
//     prompt of an alpaca or sharegpt dataset (the last assistant turn is
//     the reference; the turns before it are the prompt), then LLaMA
//     Factory's predict scores against the references (internal/textmetrics):
//     bleu-4, rouge-1, rouge-2 and rouge-l in percent (0 to 100), and
//     predict_samples. limit > 0 evaluates only the first limit rows.
//
// Accuracies are fractions (0 to 1); text scores are percentages, as LLaMA
// Factory prints them.
//
// choices and generate render prompts with a chat template: template names
// a built-in one or "auto" (the model's own Jinja template); without it,
// the model's own when its tokenizer_config.json has a chat_template, else
// "default" (internal/infer's rule). choices' system is the system prompt
// ("" means the template's default one); k_shot takes the first k_shot rows
// of dev, which must hold that many. generate reads its file as the
// tokenize stage reads a dataset (format alpaca or sharegpt, file_type,
// replace); rows the reader cannot use are dropped and counted in the log.
// batch_size is the number of rows per forward pass for data, pairs per
// pass for pairs, and prompts generated together for generate (a
// question's choices always make one batch).
//
// The report artifact holds metrics.json (the same map), metrics.png (a bar
// chart of the scores, with the other numbers written under it),
// generated_predictions.jsonl ({prompt, predict, label} per row, as LLaMA
// Factory writes it) for generate, and mc_predictions.jsonl (per question:
// its file:line, answer, prediction, whether correct, and each choice's
// log-likelihood) for choices. Every file is a function of the inputs, so
// two runs write the same bytes.
//
// Multiple-choice files are JSON (an array of objects), JSONL, or a
// headerless CSV in the MMLU layout (question, one column per choice,
// answer letter; a first row "question,...,answer" is taken for a header
// and skipped). A JSON row is {"question": "...", "choices": ["...", ...]}
// or has the choices under the keys "A", "B", ... (consecutive from A), and
// an "answer" that is a letter ("B") or a 0-based index (1). Rows that
// cannot be used fail the stage with the file and line.
//
// The cache key holds, besides the arguments and the artifacts' digests,
// the content digests of the local files (choices path and dev, generate
// path) and the backend.
//
// It does not do: sampling (generation is greedy), LLaMA Factory's
// per-subject MMLU categories, random k-shot selection, or datasets from
// the Hub (download them first).
package evaluate

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/infer"
	"github.com/lathe-ml/lathe/internal/suggest"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
)

// Version is the kind's cache-key salt.
const Version = "1"

// DefaultMaxNewTokens is generate's max_new_tokens when not set.
const DefaultMaxNewTokens = 128

// The metric names.
const (
	MetricLoss           = "loss"
	MetricPerplexity     = "perplexity"
	MetricEvalTokens     = "eval_tokens"
	MetricRewardAccuracy = "reward_accuracy"
	MetricRewardMargin   = "reward_margin"
	MetricRewardPairs    = "reward_pairs"
	MetricMCAccuracy     = "mc_accuracy"
	MetricMCQuestions    = "mc_questions"
	MetricBLEU4          = "bleu-4"
	MetricRouge1         = "rouge-1"
	MetricRouge2         = "rouge-2"
	MetricRougeL         = "rouge-l"
	MetricPredictSamples = "predict_samples"
)

// The report's files.
const (
	MetricsFile       = "metrics.json"
	PlotFile          = "metrics.png"
	PredictionsFile   = "generated_predictions.jsonl"
	MCPredictionsFile = "mc_predictions.jsonl"
)

var outputs = map[string]stage.Output{
	"metrics": {Type: cty.Map(cty.Number), Summary: "the computed metrics: loss, perplexity, eval_tokens, reward_accuracy, reward_margin, reward_pairs, mc_accuracy, mc_questions, bleu-4, rouge-1, rouge-2, rouge-l, predict_samples"},
	"report":  {Type: stage.ArtifactType(stage.ReportArtifact), Summary: "metrics.json, metrics.png, generated_predictions.jsonl, mc_predictions.jsonl"},
}

var (
	generateFormats = []string{string(data.FormatAlpaca), string(data.FormatShareGPT)}
	fileTypes       = []string{"json", "jsonl", "csv", "parquet"}
)

// Kind returns the evaluate stage kind.
func Kind() *stage.Kind {
	choicesSpec := hcldec.ObjectSpec{
		"path":     &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
		"dev":      &hcldec.AttrSpec{Name: "dev", Type: cty.String},
		"k_shot":   trainstage.IntDefault("k_shot", 0, 0),
		"template": stage.Validated(&hcldec.AttrSpec{Name: "template", Type: cty.String}, validateTemplate),
		"system":   trainstage.Optional("system", cty.String, cty.StringVal("")),
	}
	generateSpec := hcldec.ObjectSpec{
		"path":           &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
		"format":         stage.Validated(trainstage.Optional("format", cty.String, cty.StringVal(string(data.FormatAlpaca))), trainstage.Enum("format", generateFormats)),
		"file_type":      stage.Validated(&hcldec.AttrSpec{Name: "file_type", Type: cty.String}, trainstage.Enum("file_type", fileTypes)),
		"replace":        &hcldec.AttrSpec{Name: "replace", Type: cty.Map(cty.String)},
		"template":       stage.Validated(&hcldec.AttrSpec{Name: "template", Type: cty.String}, validateTemplate),
		"max_new_tokens": trainstage.IntDefault("max_new_tokens", DefaultMaxNewTokens, 1),
		"limit":          trainstage.IntDefault("limit", 0, 0),
	}
	return &stage.Kind{
		Name:    "evaluate",
		Version: Version,
		Summary: "evaluate a model: loss and perplexity, reward pair accuracy, multiple-choice accuracy, BLEU/ROUGE of generations",
		Schema: hcldec.ObjectSpec{
			"model":      trainstage.Artifact("model", true, stage.ModelArtifact),
			"adapter":    trainstage.Artifact("adapter", false, stage.AdapterArtifact),
			"data":       trainstage.Artifact("data", false, stage.DatasetArtifact),
			"pairs":      trainstage.Artifact("pairs", false, stage.DatasetArtifact),
			"choices":    &hcldec.BlockSpec{TypeName: "choices", Nested: choicesSpec},
			"generate":   &hcldec.BlockSpec{TypeName: "generate", Nested: generateSpec},
			"batch_size": trainstage.IntDefault("batch_size", 8, 1),
		},
		Outputs: func(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
			return outputs, check(args)
		},
		KeyLines: keyLines,
		Run:      run,
	}
}

// templateNames are the values template accepts.
func templateNames() []string { return append(data.TemplateNames(), "auto") }

func validateTemplate(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	s := v.AsString()
	for _, n := range templateNames() {
		if s == n {
			return nil
		}
	}
	msg := fmt.Sprintf("template = %q is neither a built-in chat template nor \"auto\" (the model's own).", s)
	if c := suggest.Closest(s, templateNames()); c != "" {
		msg += fmt.Sprintf(" Did you mean %q?", c)
	}
	return stage.Error("Invalid template", msg+" Valid values: "+strings.Join(templateNames(), ", ")+".")
}

// present reports whether an argument is set (an unknown value counts: it
// is an upstream output not computed yet).
func present(v cty.Value) bool { return !v.IsKnown() || !v.IsNull() }

// check reports the argument combinations the schema cannot express.
func check(args cty.Value) hcl.Diagnostics {
	if args.IsNull() || !args.IsKnown() || !args.Type().IsObjectType() {
		return nil
	}
	var diags hcl.Diagnostics
	some := false
	for _, name := range []string{"data", "pairs", "choices", "generate"} {
		some = some || present(args.GetAttr(name))
	}
	if !some {
		diags = append(diags, stage.Error("Nothing to evaluate",
			"An evaluate stage needs at least one of: data (a tokenized dataset: loss and perplexity), pairs (a tokenized preference dataset: reward accuracy), a choices block (multiple-choice accuracy) or a generate block (BLEU and ROUGE).")...)
	}
	if c := args.GetAttr("choices"); c.IsKnown() && !c.IsNull() {
		diags = append(diags, emptyPath("choices", "path", c.GetAttr("path"))...)
		diags = append(diags, emptyPath("choices", "dev", c.GetAttr("dev"))...)
		k, dev := c.GetAttr("k_shot"), c.GetAttr("dev")
		if k.IsKnown() && !k.IsNull() && dev.IsKnown() {
			shots := trainstage.Num[int](k)
			switch {
			case shots > 0 && dev.IsNull():
				diags = append(diags, stage.Error("Missing dev",
					fmt.Sprintf("choices: k_shot = %d takes its examples from a dev file; set dev = \"<file>\" (same layout as path) or k_shot = 0.", shots))...)
			case shots == 0 && !dev.IsNull():
				diags = append(diags, stage.Error("Unused dev",
					"choices: dev holds the k-shot examples, but k_shot is 0; set k_shot = <number of examples> or remove dev.")...)
			}
		}
	}
	if g := args.GetAttr("generate"); g.IsKnown() && !g.IsNull() {
		diags = append(diags, emptyPath("generate", "path", g.GetAttr("path"))...)
	}
	return diags
}

func emptyPath(block, attr string, v cty.Value) hcl.Diagnostics {
	if v.IsKnown() && !v.IsNull() && v.AsString() == "" {
		return stage.Error("Empty "+attr, fmt.Sprintf("%s: %s is empty; give a file relative to the pipeline file.", block, attr))
	}
	return nil
}

// resolve makes a relative path absolute against base.
func resolve(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// localFiles lists the local files the arguments name, with their key
// labels.
func localFiles(args cty.Value) [][2]string {
	var out [][2]string
	if c := args.GetAttr("choices"); !c.IsNull() {
		out = append(out, [2]string{"choices file", c.GetAttr("path").AsString()})
		if d := c.GetAttr("dev"); !d.IsNull() {
			out = append(out, [2]string{"choices dev file", d.AsString()})
		}
	}
	if g := args.GetAttr("generate"); !g.IsNull() {
		out = append(out, [2]string{"generate file", g.GetAttr("path").AsString()})
	}
	return out
}

func keyLines(kc stage.KeyContext, args cty.Value) ([]stage.KeyLine, error) {
	lines, err := trainstage.KeyLines(kc, args)
	if err != nil {
		return nil, err
	}
	for _, f := range localFiles(args) {
		d, err := kc.HashPath(resolve(kc.BaseDir(), f[1]))
		if err != nil {
			return nil, fmt.Errorf("evaluate: %s %s: %w", f[0], f[1], err)
		}
		lines = append(lines, stage.KeyLine{Label: f[0], Value: d})
	}
	return lines, nil
}

// config is a decoded stage with its local files read.
type config struct {
	model, adapter string
	data, pairs    string
	batch          int
	choices        *choicesConfig
	generate       *generateConfig
}

type choicesConfig struct {
	template, system string
	questions        []Question
	shots            []Question
}

type generateConfig struct {
	template string
	maxNew   int
	rows     []data.Example
	stats    data.Stats
}

func decode(req *stage.Request) (*config, error) {
	args := req.Args
	c := &config{
		model:   trainstage.ArtifactPath(args.GetAttr("model")),
		adapter: trainstage.ArtifactPath(args.GetAttr("adapter")),
		data:    trainstage.ArtifactPath(args.GetAttr("data")),
		pairs:   trainstage.ArtifactPath(args.GetAttr("pairs")),
		batch:   trainstage.Num[int](args.GetAttr("batch_size")),
	}
	if v := args.GetAttr("choices"); !v.IsNull() {
		cc := &choicesConfig{system: v.GetAttr("system").AsString()}
		if t := v.GetAttr("template"); !t.IsNull() {
			cc.template = t.AsString()
		}
		p := v.GetAttr("path").AsString()
		qs, err := ReadQuestions(resolve(req.BaseDir, p), filepath.ToSlash(p))
		if err != nil {
			return nil, err
		}
		cc.questions = qs
		if k := trainstage.Num[int](v.GetAttr("k_shot")); k > 0 {
			dp := v.GetAttr("dev").AsString()
			dev, err := ReadQuestions(resolve(req.BaseDir, dp), filepath.ToSlash(dp))
			if err != nil {
				return nil, err
			}
			if k > len(dev) {
				return nil, fmt.Errorf("choices: k_shot = %d but %s holds only %d question(s)", k, dp, len(dev))
			}
			cc.shots = dev[:k]
		}
		c.choices = cc
	}
	if v := args.GetAttr("generate"); !v.IsNull() {
		gc := &generateConfig{maxNew: trainstage.Num[int](v.GetAttr("max_new_tokens"))}
		if t := v.GetAttr("template"); !t.IsNull() {
			gc.template = t.AsString()
		}
		p := v.GetAttr("path").AsString()
		spec := data.Spec{Path: resolve(req.BaseDir, p), Format: data.Format(v.GetAttr("format").AsString()), Replace: strMap(v.GetAttr("replace"))}
		if ft := v.GetAttr("file_type"); !ft.IsNull() {
			spec.FileType = ft.AsString()
		}
		rows, st, err := readPrompts(spec, filepath.ToSlash(p), trainstage.Num[int](v.GetAttr("limit")))
		if err != nil {
			return nil, err
		}
		gc.rows, gc.stats = rows, st
		c.generate = gc
	}
	return c, nil
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

// engines opens generation engines by template, holding one at a time.
type engines struct {
	be             tensor.Backend
	model, adapter string
	name           string
	e              *infer.Engine
}

func (s *engines) get(template string) (*infer.Engine, error) {
	if s.e != nil && s.name == template {
		return s.e, nil
	}
	s.close()
	e, err := infer.Open(infer.Config{Model: s.model, Adapter: s.adapter, Template: template, Backend: s.be})
	if err != nil {
		return nil, err
	}
	s.e, s.name = e, template
	return e, nil
}

func (s *engines) close() {
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

func run(ctx context.Context, req *stage.Request) (*stage.Result, error) {
	if d := check(req.Args); d.HasErrors() {
		return nil, d
	}
	fail := func(err error) (*stage.Result, error) { return nil, fmt.Errorf("evaluate: %w", err) }
	c, err := decode(req)
	if err != nil {
		return fail(err)
	}
	rep := trainstage.Reporter(req)
	metrics := map[string]float64{}
	var files reportFiles
	// The models compute on the CPU, or on the stage's GPU in the worker.
	be, releaseBackend, err := trainstage.Backend(req)
	if err != nil {
		return fail(err)
	}
	defer releaseBackend()

	if c.data != "" || c.pairs != "" {
		m, err := loadScorer(be, c.model, c.adapter, c.pairs != "")
		if err != nil {
			return fail(err)
		}
		if c.data != "" {
			r, err := Loss(ctx, m, c.data, c.batch, rep)
			if err != nil {
				m.Free()
				return fail(err)
			}
			metrics[MetricLoss], metrics[MetricPerplexity], metrics[MetricEvalTokens] = r.Loss, r.Perplexity, float64(r.Tokens)
			rep.Logf("data: loss %.4f, perplexity %.3f over %d tokens", r.Loss, r.Perplexity, r.Tokens)
		}
		if c.pairs != "" {
			r, err := RewardPairs(ctx, m, c.pairs, c.batch, rep)
			if err != nil {
				m.Free()
				return fail(err)
			}
			metrics[MetricRewardAccuracy], metrics[MetricRewardMargin], metrics[MetricRewardPairs] = r.Accuracy, r.Margin, float64(r.Pairs)
			rep.Logf("pairs: reward accuracy %.4f, margin %.4f over %d pairs", r.Accuracy, r.Margin, r.Pairs)
		}
		m.Free()
	}

	es := &engines{be: be, model: c.model, adapter: c.adapter}
	defer es.close()
	if cc := c.choices; cc != nil {
		e, err := es.get(cc.template)
		if err != nil {
			return fail(err)
		}
		preds, acc, err := ScoreChoices(ctx, e, cc.questions, cc.shots, cc.system, rep)
		if err != nil {
			return fail(err)
		}
		metrics[MetricMCAccuracy], metrics[MetricMCQuestions] = acc, float64(len(preds))
		files.mc = preds
		rep.Logf("choices: accuracy %.4f over %d questions (%d-shot)", acc, len(preds), len(cc.shots))
	}
	if gc := c.generate; gc != nil {
		if n := gc.stats.DroppedTotal(); n > 0 {
			rep.Logf("generate: the reader dropped %d rows: %s", n, gc.stats.Summary())
		}
		e, err := es.get(gc.template)
		if err != nil {
			return fail(err)
		}
		preds, err := Predict(ctx, e, gc.rows, gc.maxNew, c.batch, rep)
		if err != nil {
			return fail(err)
		}
		s, err := Scores(preds)
		if err != nil {
			return fail(err)
		}
		metrics[MetricBLEU4], metrics[MetricRouge1], metrics[MetricRouge2], metrics[MetricRougeL] = s.BLEU4, s.Rouge1, s.Rouge2, s.RougeL
		metrics[MetricPredictSamples] = float64(len(preds))
		files.generated = preds
		rep.Logf("generate: bleu-4 %.4f, rouge-1 %.4f, rouge-2 %.4f, rouge-l %.4f over %d samples", s.BLEU4, s.Rouge1, s.Rouge2, s.RougeL, len(preds))
	}
	es.close()

	for _, k := range sortedKeys(metrics) {
		if v := metrics[k]; math.IsNaN(v) || math.IsInf(v, 0) {
			return fail(fmt.Errorf("%s is %v (the model's outputs overflow)", k, v))
		}
	}
	files.metrics = metrics
	if err := writeReport(req.OutputDir("report"), files); err != nil {
		return fail(err)
	}
	rep.Metrics(0, metrics)
	vals := map[string]cty.Value{}
	for k, v := range metrics {
		vals[k] = cty.NumberFloatVal(v)
	}
	return &stage.Result{Values: map[string]cty.Value{"metrics": cty.MapVal(vals)}}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fileExists reports whether p is a regular file.
func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
