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
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
	"github.com/lathe-ml/lathe/stages/tokenize"
)

// Version is the kind's cache-key salt.
const Version = "1"

var outputs = map[string]stage.Output{
	"model":  {Type: stage.ArtifactType(stage.ModelArtifact), Summary: "the trained model: config.json, model.safetensors, generation_config.json, tokenizer files"},
	"report": {Type: stage.ArtifactType(stage.ReportArtifact), Summary: "metrics.json (loss history) and loss.png"},
}

// Kind returns the pretrain stage kind.
func Kind() *stage.Kind {
	intAttr := trainstage.Int
	configSpec := hcldec.ObjectSpec{
		"model_type":              stage.Validated(trainstage.Optional("model_type", cty.String, cty.StringVal("llama")), trainstage.Enum("model_type", modelTypes)),
		"hidden_size":             stage.Validated(&hcldec.AttrSpec{Name: "hidden_size", Type: cty.Number, Required: true}, trainstage.MinInt("hidden_size", 1)),
		"num_hidden_layers":       stage.Validated(&hcldec.AttrSpec{Name: "num_hidden_layers", Type: cty.Number, Required: true}, trainstage.MinInt("num_hidden_layers", 1)),
		"num_attention_heads":     stage.Validated(&hcldec.AttrSpec{Name: "num_attention_heads", Type: cty.Number, Required: true}, trainstage.MinInt("num_attention_heads", 1)),
		"num_key_value_heads":     intAttr("num_key_value_heads", 1),
		"head_dim":                intAttr("head_dim", 1),
		"intermediate_size":       stage.Validated(&hcldec.AttrSpec{Name: "intermediate_size", Type: cty.Number, Required: true}, trainstage.MinInt("intermediate_size", 1)),
		"max_position_embeddings": stage.Validated(trainstage.Optional("max_position_embeddings", cty.Number, cty.NumberIntVal(2048)), trainstage.MinInt("max_position_embeddings", 1)),
		"rope_theta":              stage.Validated(trainstage.Optional("rope_theta", cty.Number, cty.NumberIntVal(10000)), trainstage.MinNum("rope_theta", 0, true)),
		"rms_norm_eps":            stage.Validated(trainstage.Optional("rms_norm_eps", cty.Number, cty.NumberFloatVal(1e-6)), trainstage.MinNum("rms_norm_eps", 0, true)),
		"tie_word_embeddings":     trainstage.Optional("tie_word_embeddings", cty.Bool, cty.False),
		"initializer_range":       stage.Validated(trainstage.Optional("initializer_range", cty.Number, cty.NumberFloatVal(0.02)), trainstage.MinNum("initializer_range", 0, true)),
	}
	schema := hcldec.ObjectSpec{
		"config":     &hcldec.BlockSpec{TypeName: "config", Nested: configSpec},
		"model":      trainstage.Artifact("model", false, stage.ModelArtifact),
		"data":       trainstage.Artifact("data", true, stage.DatasetArtifact),
		"validation": trainstage.Artifact("validation", false, stage.DatasetArtifact),
		"tokenizer":  trainstage.Artifact("tokenizer", false, stage.TokenizerArtifact, stage.ModelArtifact),
	}
	trainstage.AddLoop(schema, 5e-5, 8)
	trainstage.AddComputeType(schema)
	return &stage.Kind{
		Name:        "pretrain",
		Version:     Version,
		Summary:     "train a causal language model on tokenized text (from a config or continuing a model)",
		Schema:      schema,
		NonSemantic: trainstage.LoopNonSemantic,
		Outputs:     checkedOutputs,
		KeyLines:    trainstage.KeyLines,
		Estimate:    estimate,
		Resolve:     trainstage.Resolver(trainedConfig, false, false),
		Run:         run,
	}
}

var modelTypes = llama.ModelTypes()

// estimate is the plan's memory and time estimate of the model trainedConfig
// describes.
func estimate(args cty.Value) (string, error) {
	mc, err := trainedConfig(args)
	if err != nil {
		return "", err
	}
	return trainstage.EstimateConfig(mc, args)
}

// trainedConfig is the config of the model the stage trains: the config
// block with the tokenizer's vocabulary, or the model artifact's.
func trainedConfig(args cty.Value) (llama.Config, error) {
	c := args.GetAttr("config")
	if c.IsNull() {
		return trainstage.ConfigFromModel(args)
	}
	tokDir := trainstage.ArtifactPath(args.GetAttr("tokenizer"))
	if tokDir == "" {
		return llama.Config{}, fmt.Errorf("no tokenizer")
	}
	tok, tcfg, err := tokenize.LoadTokenizer(tokDir)
	if err != nil {
		return llama.Config{}, err
	}
	return modelConfig(c, tok, tcfg)
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
	}
	return trainstage.CheckLoop(args)
}

func checkedOutputs(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
	return outputs, checkArgs(args)
}

func run(ctx context.Context, req *stage.Request) (*stage.Result, error) {
	args := req.Args
	if diags := checkArgs(args); diags.HasErrors() {
		return nil, diags
	}
	rep := trainstage.Reporter(req)
	be, freeBackend, err := trainstage.Backend(req)
	if err != nil {
		return nil, err
	}
	defer freeBackend()
	tokDir := trainstage.ArtifactPath(args.GetAttr("tokenizer"))
	var model *llama.Model
	var tok tokenizer.Codec
	var tcfg *tokenizer.Config
	if tokDir != "" {
		if tok, tcfg, err = tokenize.LoadTokenizer(tokDir); err != nil {
			return nil, err
		}
	}
	seed := trainstage.Num[uint64](args.GetAttr("seed"))
	if c := args.GetAttr("config"); !c.IsNull() {
		mc, err := modelConfig(c, tok, tcfg)
		if err != nil {
			return nil, err
		}
		release, err := trainstage.Guard(req, trainstage.GuardInput{Config: mc, Args: args, Backend: be})
		if err != nil {
			return nil, fmt.Errorf("pretrain: %w", err)
		}
		defer release()
		if model, err = llama.NewWith(mc, be, trainstage.Precision(args)); err != nil {
			return nil, fmt.Errorf("pretrain: %w", err)
		}
		if err := model.InitRandom(seed, trainstage.Num[float64](c.GetAttr("initializer_range"))); err != nil {
			model.Free()
			return nil, fmt.Errorf("pretrain: %w", err)
		}
	} else {
		dir := trainstage.ArtifactPath(args.GetAttr("model"))
		mc, err := llama.LoadConfig(filepath.Join(dir, "config.json"))
		if err != nil {
			return nil, fmt.Errorf("pretrain: %w", err)
		}
		release, err := trainstage.Guard(req, trainstage.GuardInput{Config: mc, Args: args, Backend: be})
		if err != nil {
			return nil, fmt.Errorf("pretrain: %w", err)
		}
		defer release()
		if model, err = llama.LoadWith(dir, be, trainstage.Precision(args)); err != nil {
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

	trainSet, err := train.OpenDataset(trainstage.ArtifactPath(args.GetAttr("data")))
	if err != nil {
		return nil, err
	}
	defer trainSet.Close()
	var evalSet train.Samples
	if v := args.GetAttr("validation"); !v.IsNull() {
		ds, err := train.OpenDataset(trainstage.ArtifactPath(v))
		if err != nil {
			return nil, err
		}
		defer ds.Close()
		if ds.Len() > 0 {
			evalSet = ds
		}
	}
	for _, s := range []train.Samples{trainSet, evalSet} {
		if err := trainstage.CheckVocab(s, model.Cfg.VocabSize); err != nil {
			return nil, fmt.Errorf("pretrain: %w", err)
		}
	}
	model.SetRecompute(args.GetAttr("activation_recompute").True())
	tr := &train.Trainer{Model: model, Train: trainSet, Eval: evalSet, Cfg: trainstage.LoopConfig(args, req.CheckpointDir, 3)}
	trainstage.Hooks(tr, rep)
	res, err := tr.Run(ctx)
	if err != nil {
		return nil, fmt.Errorf("pretrain: %w", err)
	}
	h := res.History
	rep.Logf("trained %d steps on %d tokens: loss %.4f -> %.4f", res.Steps, res.Tokens, h.Train[0].Loss, h.Train[len(h.Train)-1].Loss)
	if err := trainstage.WriteModel(req.OutputDir("model"), model, tokDir, tcfg, tok); err != nil {
		return nil, fmt.Errorf("pretrain: %w", err)
	}
	if err := trainstage.WriteReport(req.OutputDir("report"), res, true, nil); err != nil {
		return nil, fmt.Errorf("pretrain: %w", err)
	}
	return &stage.Result{}, nil
}

// modelConfig builds config.json for a model trained from scratch: the
// config block's shape in the family of its model_type.
func modelConfig(c cty.Value, tok tokenizer.Codec, tcfg *tokenizer.Config) (llama.Config, error) {
	shape := llama.Config{
		VocabSize:     tok.VocabSize(),
		Hidden:        trainstage.Num[int](c.GetAttr("hidden_size")),
		Intermediate:  trainstage.Num[int](c.GetAttr("intermediate_size")),
		Layers:        trainstage.Num[int](c.GetAttr("num_hidden_layers")),
		Heads:         trainstage.Num[int](c.GetAttr("num_attention_heads")),
		MaxPositions:  trainstage.Num[int](c.GetAttr("max_position_embeddings")),
		RopeTheta:     trainstage.Num[float64](c.GetAttr("rope_theta")),
		RMSNormEps:    trainstage.Num[float64](c.GetAttr("rms_norm_eps")),
		TieEmbeddings: c.GetAttr("tie_word_embeddings").True(),
	}
	shape.KVHeads, shape.HeadDim = shape.Heads, shape.Hidden/max(shape.Heads, 1)
	if v := c.GetAttr("num_key_value_heads"); !v.IsNull() {
		shape.KVHeads = trainstage.Num[int](v)
	}
	if v := c.GetAttr("head_dim"); !v.IsNull() {
		shape.HeadDim = trainstage.Num[int](v)
	}
	cfg, err := llama.NewConfig(c.GetAttr("model_type").AsString(), shape)
	if err != nil {
		return llama.Config{}, fmt.Errorf("pretrain: config: %w", err)
	}
	b, err := cfg.JSON("float32")
	if err != nil {
		return llama.Config{}, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return llama.Config{}, err
	}
	m["initializer_range"] = trainstage.Num[float64](c.GetAttr("initializer_range"))
	for key, tokText := range specialIDs(tcfg) {
		if id, ok := tok.TokenToID(tokText); ok {
			m[key] = id
		}
	}
	if b, err = json.Marshal(m); err != nil {
		return llama.Config{}, err
	}
	if cfg, err = llama.ParseConfig(b); err != nil {
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
