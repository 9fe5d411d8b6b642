// Package pretrain is the "pretrain" stage kind: it trains a causal
// language model with lathe's own engine (internal/llama on the CPU
// backend, driven by internal/train) on tokenized shards, either from
// scratch (a config block; the vocabulary comes from the tokenizer) or
// continuing from a model artifact.
//
//	stage "pretrain" "tiny" {
//	  config {
//	    hidden_size = 64  num_hidden_layers = 2  num_attention_heads = 4
//	    intermediate_size = 172  max_position_embeddings = 256
//	  }                                         # or: model = download.base.model
//	  data          = tokenize.corpus.dataset
//	  validation    = tokenize.corpus.validation   # optional
//	  tokenizer     = tokenize.corpus.tokenizer    # carried into the model
//	  learning_rate = 1e-3
//	  lr_scheduler  = "cosine"
//	  warmup_ratio  = 0.1
//	  epochs        = 1                            # or max_steps
//	  batch_size    = 8
//	  seed          = 42
//	}
//
// Outputs: model (config.json, model.safetensors in F32, generation_config.json
// and the tokenizer files carried through: Hugging Face layout) and report
// (metrics.json with the deterministic loss history, loss.png). Checkpoints
// go to the request's checkpoint directory, so a rerun after an interruption
// resumes from the last one and ends bit-identical to an uninterrupted run;
// save_steps, save_total_limit and logging_steps are therefore not part of
// the cache key. Progress is reported in optimizer steps, metrics (loss, lr,
// grad_norm, tokens_per_second, elapsed_seconds, eval_loss) through the
// reporter. Rows longer than max_seq_len (default: max_position_embeddings)
// are truncated; tokenize with cutoff_len at or below it to avoid that.
//
// It does not do: GPU training (CPU backend only for now), mixed precision,
// freezing or adapters (see the sft kind), or sharded weight output.
package pretrain

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/tokenize"
)

// Version is the kind's cache-key salt.
const Version = "1"

var outputs = map[string]stage.Output{
	"model":  {Type: stage.ArtifactType(stage.ModelArtifact), Summary: "the trained model: config.json, model.safetensors, generation_config.json, tokenizer files"},
	"report": {Type: stage.ArtifactType(stage.ReportArtifact), Summary: "metrics.json (loss history) and loss.png"},
}

func optional(name string, t cty.Type, def cty.Value) hcldec.Spec {
	return &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: name, Type: t}, Default: &hcldec.LiteralSpec{Value: def}}
}

func minNum(attr string, lo float64, exclusive bool) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		f, _ := v.AsBigFloat().Float64()
		if f < lo || (exclusive && f == lo) {
			op := ">="
			if exclusive {
				op = ">"
			}
			return stage.Error("Invalid "+attr, fmt.Sprintf("%s must be %s %v, got %v.", attr, op, lo, f))
		}
		return nil
	}
}

func minInt(attr string, lo int64) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if d := minNum(attr, float64(lo), false)(v); d != nil {
			return d
		}
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		if !v.AsBigFloat().IsInt() {
			return stage.Error("Invalid "+attr, attr+" must be a whole number.")
		}
		return nil
	}
}

// Kind returns the pretrain stage kind.
func Kind() *stage.Kind {
	intAttr := func(name string, lo int64) hcldec.Spec {
		return stage.Validated(&hcldec.AttrSpec{Name: name, Type: cty.Number}, minInt(name, lo))
	}
	configSpec := hcldec.ObjectSpec{
		"model_type":              stage.Validated(optional("model_type", cty.String, cty.StringVal("llama")), enum("model_type", modelTypes)),
		"hidden_size":             stage.Validated(&hcldec.AttrSpec{Name: "hidden_size", Type: cty.Number, Required: true}, minInt("hidden_size", 1)),
		"num_hidden_layers":       stage.Validated(&hcldec.AttrSpec{Name: "num_hidden_layers", Type: cty.Number, Required: true}, minInt("num_hidden_layers", 1)),
		"num_attention_heads":     stage.Validated(&hcldec.AttrSpec{Name: "num_attention_heads", Type: cty.Number, Required: true}, minInt("num_attention_heads", 1)),
		"num_key_value_heads":     intAttr("num_key_value_heads", 1),
		"head_dim":                intAttr("head_dim", 1),
		"intermediate_size":       stage.Validated(&hcldec.AttrSpec{Name: "intermediate_size", Type: cty.Number, Required: true}, minInt("intermediate_size", 1)),
		"max_position_embeddings": stage.Validated(optional("max_position_embeddings", cty.Number, cty.NumberIntVal(2048)), minInt("max_position_embeddings", 1)),
		"rope_theta":              stage.Validated(optional("rope_theta", cty.Number, cty.NumberIntVal(10000)), minNum("rope_theta", 0, true)),
		"rms_norm_eps":            stage.Validated(optional("rms_norm_eps", cty.Number, cty.NumberFloatVal(1e-6)), minNum("rms_norm_eps", 0, true)),
		"tie_word_embeddings":     optional("tie_word_embeddings", cty.Bool, cty.False),
		"initializer_range":       stage.Validated(optional("initializer_range", cty.Number, cty.NumberFloatVal(0.02)), minNum("initializer_range", 0, true)),
	}
	return &stage.Kind{
		Name:    "pretrain",
		Version: Version,
		Summary: "train a causal language model on tokenized text (from a config or continuing a model)",
		Schema: hcldec.ObjectSpec{
			"config":                &hcldec.BlockSpec{TypeName: "config", Nested: configSpec},
			"model":                 stage.Validated(&hcldec.AttrSpec{Name: "model", Type: cty.DynamicPseudoType}, stage.RequireArtifact("model", stage.ModelArtifact)),
			"data":                  stage.Validated(&hcldec.AttrSpec{Name: "data", Type: cty.DynamicPseudoType, Required: true}, stage.RequireArtifact("data", stage.DatasetArtifact)),
			"validation":            stage.Validated(&hcldec.AttrSpec{Name: "validation", Type: cty.DynamicPseudoType}, stage.RequireArtifact("validation", stage.DatasetArtifact)),
			"tokenizer":             stage.Validated(&hcldec.AttrSpec{Name: "tokenizer", Type: cty.DynamicPseudoType}, stage.RequireArtifact("tokenizer", stage.TokenizerArtifact, stage.ModelArtifact)),
			"learning_rate":         stage.Validated(optional("learning_rate", cty.Number, cty.NumberFloatVal(5e-5)), minNum("learning_rate", 0, false)),
			"lr_scheduler":          stage.Validated(optional("lr_scheduler", cty.String, cty.StringVal(train.Cosine)), enum("lr_scheduler", train.Schedules)),
			"warmup_steps":          stage.Validated(optional("warmup_steps", cty.Number, cty.Zero), minInt("warmup_steps", 0)),
			"warmup_ratio":          stage.Validated(optional("warmup_ratio", cty.Number, cty.Zero), ratio("warmup_ratio")),
			"epochs":                intAttr("epochs", 1),
			"max_steps":             intAttr("max_steps", 1),
			"batch_size":            stage.Validated(optional("batch_size", cty.Number, cty.NumberIntVal(8)), minInt("batch_size", 1)),
			"gradient_accumulation": stage.Validated(optional("gradient_accumulation", cty.Number, cty.NumberIntVal(1)), minInt("gradient_accumulation", 1)),
			"max_seq_len":           intAttr("max_seq_len", 1),
			"max_grad_norm":         stage.Validated(optional("max_grad_norm", cty.Number, cty.NumberFloatVal(1)), minNum("max_grad_norm", 0, false)),
			"weight_decay":          stage.Validated(optional("weight_decay", cty.Number, cty.Zero), minNum("weight_decay", 0, false)),
			"adam_beta1":            stage.Validated(optional("adam_beta1", cty.Number, cty.NumberFloatVal(0.9)), ratio("adam_beta1")),
			"adam_beta2":            stage.Validated(optional("adam_beta2", cty.Number, cty.NumberFloatVal(0.999)), ratio("adam_beta2")),
			"adam_epsilon":          stage.Validated(optional("adam_epsilon", cty.Number, cty.NumberFloatVal(1e-8)), minNum("adam_epsilon", 0, true)),
			"seed":                  stage.Validated(optional("seed", cty.Number, cty.NumberIntVal(42)), minInt("seed", 0)),
			"eval_steps":            stage.Validated(optional("eval_steps", cty.Number, cty.Zero), minInt("eval_steps", 0)),
			"save_steps":            stage.Validated(optional("save_steps", cty.Number, cty.NumberIntVal(500)), minInt("save_steps", 0)),
			"save_total_limit":      stage.Validated(optional("save_total_limit", cty.Number, cty.NumberIntVal(2)), minInt("save_total_limit", 0)),
			"logging_steps":         stage.Validated(optional("logging_steps", cty.Number, cty.NumberIntVal(10)), minInt("logging_steps", 1)),
		},
		NonSemantic: []string{"logging_steps", "save_steps", "save_total_limit"},
		Outputs:     checkedOutputs,
		KeyLines:    keyLines,
		Run:         run,
	}
}

var modelTypes = []string{"llama", "mistral", "qwen2", "qwen3"}

func enum(attr string, valid []string) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		for _, s := range valid {
			if v.AsString() == s {
				return nil
			}
		}
		return stage.Error("Invalid "+attr, fmt.Sprintf("%s must be one of %q, got %q.", attr, valid, v.AsString()))
	}
}

func ratio(attr string) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if d := minNum(attr, 0, false)(v); d != nil {
			return d
		}
		if !v.IsNull() && v.IsKnown() {
			if f, _ := v.AsBigFloat().Float64(); f > 1 {
				return stage.Error("Invalid "+attr, fmt.Sprintf("%s must be between 0 and 1, got %v.", attr, f))
			}
		}
		return nil
	}
}

// checkArgs reports the argument combinations the schema cannot express.
func checkArgs(args cty.Value) hcl.Diagnostics {
	cfg, model, tok := args.GetAttr("config"), args.GetAttr("model"), args.GetAttr("tokenizer")
	switch {
	case cfg.IsNull() && model.IsNull():
		return stage.Error("Missing model", "Give a config block (train from scratch) or model = <a model artifact> (continue training).")
	case !cfg.IsNull() && !model.IsNull():
		return stage.Error("Conflicting arguments", "Give either a config block or model, not both.")
	case !cfg.IsNull() && tok.IsNull():
		return stage.Error("Missing tokenizer", "A model trained from a config block takes its vocabulary from tokenizer = <a tokenizer artifact>.")
	case !args.GetAttr("epochs").IsNull() && !args.GetAttr("max_steps").IsNull():
		return stage.Error("Conflicting arguments", "Give epochs or max_steps, not both.")
	}
	return nil
}

func checkedOutputs(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
	return outputs, checkArgs(args)
}

func num[T int | uint64 | float64](v cty.Value) T {
	var x T
	if v.IsNull() {
		return x
	}
	_ = gocty.FromCtyValue(v, &x)
	return x
}

func artifactPath(v cty.Value) string {
	if v.IsNull() {
		return ""
	}
	a, _ := stage.ArtifactOf(v)
	return a.Path
}

type nopReporter struct{}

func (nopReporter) Progress(int64, int64, string)     {}
func (nopReporter) Logf(string, ...any)               {}
func (nopReporter) Metrics(int64, map[string]float64) {}

// keyLines puts the backend and compute type in the key (DESIGN §3): a
// result computed on another backend or in another precision differs in its
// last bits, so it is not reused.
func keyLines(stage.KeyContext, cty.Value) ([]stage.KeyLine, error) {
	return []stage.KeyLine{
		{Label: "env backend", Value: "cpu"},
		{Label: "env compute-type", Value: "f32"},
	}, nil
}

func run(ctx context.Context, req *stage.Request) (*stage.Result, error) {
	args := req.Args
	if diags := checkArgs(args); diags.HasErrors() {
		return nil, diags
	}
	rep := req.Reporter
	if rep == nil {
		rep = nopReporter{}
	}
	be := cpu.New()
	tokDir := artifactPath(args.GetAttr("tokenizer"))
	var model *llama.Model
	var tok *tokenizer.Tokenizer
	var tcfg *tokenizer.Config
	var err error
	if tokDir != "" {
		if tok, tcfg, err = tokenize.LoadTokenizer(tokDir); err != nil {
			return nil, err
		}
	}
	seed := num[uint64](args.GetAttr("seed"))
	if c := args.GetAttr("config"); !c.IsNull() {
		mc, err := modelConfig(c, tok, tcfg)
		if err != nil {
			return nil, err
		}
		if model, err = llama.New(mc, be); err != nil {
			return nil, fmt.Errorf("pretrain: %w", err)
		}
		if err := model.InitRandom(seed, num[float64](c.GetAttr("initializer_range"))); err != nil {
			model.Free()
			return nil, fmt.Errorf("pretrain: %w", err)
		}
	} else {
		dir := artifactPath(args.GetAttr("model"))
		if model, err = llama.Load(dir, be); err != nil {
			return nil, fmt.Errorf("pretrain: %w", err)
		}
		if tokDir == "" {
			tokDir = dir
		}
		if tok != nil && tok.VocabSize() > model.Cfg.VocabSize {
			model.Free()
			return nil, fmt.Errorf("pretrain: the tokenizer has %d tokens, the model's vocab_size is %d", tok.VocabSize(), model.Cfg.VocabSize)
		}
	}
	defer model.Free()
	rep.Logf("model: %s, %d parameters", model.Cfg.Architecture, model.NumParams())

	trainSet, err := train.OpenDataset(artifactPath(args.GetAttr("data")))
	if err != nil {
		return nil, err
	}
	defer trainSet.Close()
	var evalSet train.Samples
	if v := args.GetAttr("validation"); !v.IsNull() {
		ds, err := train.OpenDataset(artifactPath(v))
		if err != nil {
			return nil, err
		}
		defer ds.Close()
		if ds.Len() > 0 {
			evalSet = ds
		}
	}
	for _, s := range []train.Samples{trainSet, evalSet} {
		if s == nil {
			continue
		}
		if err := checkVocab(s, model.Cfg.VocabSize); err != nil {
			return nil, err
		}
	}

	cfg := train.Config{
		BatchSize:      num[int](args.GetAttr("batch_size")),
		GradAccum:      num[int](args.GetAttr("gradient_accumulation")),
		MaxSeqLen:      num[int](args.GetAttr("max_seq_len")),
		Epochs:         num[int](args.GetAttr("epochs")),
		MaxSteps:       num[int](args.GetAttr("max_steps")),
		LR:             num[float64](args.GetAttr("learning_rate")),
		Scheduler:      args.GetAttr("lr_scheduler").AsString(),
		WarmupSteps:    num[int](args.GetAttr("warmup_steps")),
		WarmupRatio:    num[float64](args.GetAttr("warmup_ratio")),
		Beta1:          num[float64](args.GetAttr("adam_beta1")),
		Beta2:          num[float64](args.GetAttr("adam_beta2")),
		Eps:            num[float64](args.GetAttr("adam_epsilon")),
		WeightDecay:    num[float64](args.GetAttr("weight_decay")),
		MaxGradNorm:    num[float64](args.GetAttr("max_grad_norm")),
		Seed:           seed,
		EvalSteps:      num[int](args.GetAttr("eval_steps")),
		SaveSteps:      num[int](args.GetAttr("save_steps")),
		SaveTotalLimit: num[int](args.GetAttr("save_total_limit")),
		LoggingSteps:   num[int](args.GetAttr("logging_steps")),
		CheckpointDir:  req.CheckpointDir,
	}
	if cfg.Epochs == 0 && cfg.MaxSteps == 0 {
		cfg.Epochs = 3
	}
	tr := &train.Trainer{Model: model, Train: trainSet, Eval: evalSet, Cfg: cfg,
		OnMetrics: func(step int, v map[string]float64) { rep.Metrics(int64(step), v) },
		OnStep:    func(step, total int) { rep.Progress(int64(step), int64(total), "step") },
		Logf:      rep.Logf,
	}
	res, err := tr.Run(ctx)
	if err != nil {
		return nil, fmt.Errorf("pretrain: %w", err)
	}
	h := res.History
	rep.Logf("trained %d steps on %d tokens: loss %.4f -> %.4f", res.Steps, res.Tokens, h.Train[0].Loss, h.Train[len(h.Train)-1].Loss)
	if err := writeModel(req.OutputDir("model"), model, tokDir, tcfg, tok); err != nil {
		return nil, err
	}
	if err := writeReport(req.OutputDir("report"), res); err != nil {
		return nil, err
	}
	return &stage.Result{}, nil
}

// checkVocab refuses token ids the model cannot embed before any training.
func checkVocab(s train.Samples, vocab int) error {
	for i := range s.Len() {
		for _, id := range s.Sample(i).Tokens {
			if int(id) >= vocab {
				return fmt.Errorf("pretrain: sample %d holds token id %d, the model's vocab_size is %d (was the data tokenized with another tokenizer?)", i, id, vocab)
			}
		}
	}
	return nil
}

// modelConfig builds config.json for a model trained from scratch.
func modelConfig(c cty.Value, tok *tokenizer.Tokenizer, tcfg *tokenizer.Config) (llama.Config, error) {
	mt := c.GetAttr("model_type").AsString()
	arch := map[string]string{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[mt]
	m := map[string]any{
		"architectures":           []string{arch},
		"model_type":              mt,
		"vocab_size":              tok.VocabSize(),
		"hidden_size":             num[int](c.GetAttr("hidden_size")),
		"intermediate_size":       num[int](c.GetAttr("intermediate_size")),
		"num_hidden_layers":       num[int](c.GetAttr("num_hidden_layers")),
		"num_attention_heads":     num[int](c.GetAttr("num_attention_heads")),
		"max_position_embeddings": num[int](c.GetAttr("max_position_embeddings")),
		"rope_theta":              num[float64](c.GetAttr("rope_theta")),
		"rms_norm_eps":            num[float64](c.GetAttr("rms_norm_eps")),
		"tie_word_embeddings":     c.GetAttr("tie_word_embeddings").True(),
		"initializer_range":       num[float64](c.GetAttr("initializer_range")),
		"hidden_act":              "silu",
		"torch_dtype":             "float32",
	}
	m["num_key_value_heads"] = m["num_attention_heads"]
	if v := c.GetAttr("num_key_value_heads"); !v.IsNull() {
		m["num_key_value_heads"] = num[int](v)
	}
	if v := c.GetAttr("head_dim"); !v.IsNull() {
		m["head_dim"] = num[int](v)
	}
	if mt == "mistral" {
		m["sliding_window"] = nil
	}
	for key, tokText := range specialIDs(tcfg) {
		if id, ok := tok.TokenToID(tokText); ok {
			m[key] = id
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return llama.Config{}, err
	}
	cfg, err := llama.ParseConfig(b)
	if err != nil {
		return llama.Config{}, fmt.Errorf("pretrain: config: %w", err)
	}
	return cfg, nil
}

// specialIDs maps config.json's *_token_id keys to the tokenizer's tokens.
func specialIDs(tcfg *tokenizer.Config) map[string]string {
	out := map[string]string{}
	if tcfg == nil {
		return out
	}
	for key, p := range map[string]*string{"bos_token_id": tcfg.BOSToken, "eos_token_id": tcfg.EOSToken, "pad_token_id": tcfg.PadToken} {
		if p != nil && *p != "" {
			out[key] = *p
		}
	}
	return out
}

var tokenizerFiles = []string{
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
	"vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json",
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
		return err
	}
	return out.Close()
}

// writeModel saves the weights and config, carries the tokenizer files
// through and writes generation_config.json.
func writeModel(dir string, m *llama.Model, tokDir string, tcfg *tokenizer.Config, tok *tokenizer.Tokenizer) error {
	if err := m.Save(dir, safetensors.F32); err != nil {
		return fmt.Errorf("pretrain: save model: %w", err)
	}
	gen := ""
	if tokDir != "" {
		for _, name := range append(tokenizerFiles, "generation_config.json") {
			p := filepath.Join(tokDir, name)
			if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
				continue
			}
			if err := copyFile(p, filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("pretrain: carry %s: %w", name, err)
			}
			if name == "generation_config.json" {
				gen = p
			}
		}
	}
	if gen != "" {
		return nil
	}
	g := map[string]any{"_from_model_config": true}
	if m.Cfg.BOSTokenID >= 0 {
		g["bos_token_id"] = m.Cfg.BOSTokenID
	}
	switch len(m.Cfg.EOSTokenIDs) {
	case 0:
	case 1:
		g["eos_token_id"] = m.Cfg.EOSTokenIDs[0]
	default:
		g["eos_token_id"] = m.Cfg.EOSTokenIDs
	}
	if tok != nil && tcfg != nil && tcfg.PadToken != nil {
		if id, ok := tok.TokenToID(*tcfg.PadToken); ok {
			g["pad_token_id"] = id
		}
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	return nil
}

// Metrics is report/metrics.json. It holds only deterministic values, so
// the report artifact is reproducible.
type Metrics struct {
	Steps         int           `json:"steps"`
	Tokens        int64         `json:"trained_tokens"`
	FirstLoss     float64       `json:"first_loss"`
	FinalLoss     float64       `json:"final_loss"`
	FinalEvalLoss *float64      `json:"final_eval_loss,omitempty"`
	Perplexity    *float64      `json:"eval_perplexity,omitempty"`
	History       train.History `json:"history"`
}

func writeReport(dir string, res *train.Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pretrain: report: %w", err)
	}
	h := res.History
	m := Metrics{Steps: res.Steps, Tokens: res.Tokens, FirstLoss: h.Train[0].Loss, FinalLoss: h.Train[len(h.Train)-1].Loss, History: h}
	if len(h.Eval) > 0 {
		e := h.Eval[len(h.Eval)-1].Loss
		p := math.Exp(e)
		m.FinalEvalLoss, m.Perplexity = &e, &p
	}
	b, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return fmt.Errorf("pretrain: report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metrics.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("pretrain: report: %w", err)
	}
	img, err := train.LossPNG(h)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "loss.png"), img, 0o644); err != nil {
		return fmt.Errorf("pretrain: report: %w", err)
	}
	return nil
}
