// Package ppo is the "ppo" stage kind: reinforcement learning from a
// reward model with Proximal Policy Optimisation, as TRL's PPOTrainer does
// it for LLaMA Factory (internal/ppo holds the loss pieces, internal/train
// the loop). The policy is the model argument (with the adapter argument
// continued, the usual case after sft) trained by the method chosen, with a
// value head on its trunk trained alongside; the reference policy is the
// policy with its adapters disabled under LoRA (no second copy), a frozen
// copy of the starting model under full training.
//
//	stage "ppo" "rlhf" {
//	  model   = pretrain.base.model
//	  adapter = sft.identity.adapter          # optional: continue it
//	  reward  = reward-model.rm.adapter        # a reward model (adapter or model with value_head.safetensors)
//	  data    = tokenize.prefs.dataset         # prompts: each sample's tokens before its first trained token (sft or preference data)
//	  max_steps      = 20
//	  batch_size     = 8
//	  max_new_tokens = 32
//	}
//
// Outputs as the sft kind (adapter and/or model, with value_head.safetensors)
// and a report: metrics.json (per step: reward, kl, kl_coef, policy_loss,
// value_loss, entropy, clip_fraction, response_length) and reward.png,
// loss.png.
//
// It does not do: resuming an interrupted run from a checkpoint (a rerun
// starts over), several reward models, or the "full" KL penalty.
package ppo

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
)

// Version is the kind's cache-key salt.
const Version = "1"

// Kind returns the ppo stage kind.
func Kind() *stage.Kind {
	num := func(name string, def float64, lo float64, exclusive bool) hcldec.Spec {
		return stage.Validated(trainstage.Optional(name, cty.Number, cty.NumberFloatVal(def)), trainstage.MinNum(name, lo, exclusive))
	}
	schema := hcldec.ObjectSpec{
		"data":            trainstage.Artifact("data", true, stage.DatasetArtifact),
		"reward":          trainstage.Artifact("reward", true, stage.ModelArtifact, stage.AdapterArtifact),
		"max_steps":       trainstage.IntDefault("max_steps", 20, 1),
		"batch_size":      trainstage.IntDefault("batch_size", 8, 1),
		"mini_batch_size": trainstage.IntDefault("mini_batch_size", 4, 1),
		"ppo_epochs":      trainstage.IntDefault("ppo_epochs", 4, 1),
		"max_new_tokens":  trainstage.IntDefault("max_new_tokens", 32, 1),
		"temperature":     num("temperature", 1, 0, true),
		"top_k":           trainstage.IntDefault("top_k", 0, 0),
		"top_p":           stage.Validated(trainstage.Optional("top_p", cty.Number, cty.NumberFloatVal(1)), trainstage.Ratio("top_p")),
		"learning_rate":   num("learning_rate", 1e-5, 0, false),
		"weight_decay":    num("weight_decay", 0, 0, false),
		"max_grad_norm":   num("max_grad_norm", 1, 0, false),
		"init_kl_coef":    num("init_kl_coef", 0.2, 0, false),
		"adaptive_kl":     trainstage.Optional("adaptive_kl", cty.Bool, cty.True),
		"kl_target":       num("kl_target", 6, 0, true),
		"kl_horizon":      num("kl_horizon", 10000, 0, true),
		"kl_penalty":      stage.Validated(trainstage.Optional("kl_penalty", cty.String, cty.StringVal("kl")), trainstage.Enum("kl_penalty", []string{"kl", "abs", "mse"})),
		"gamma":           stage.Validated(trainstage.Optional("gamma", cty.Number, cty.NumberFloatVal(1)), trainstage.Ratio("gamma")),
		"lam":             stage.Validated(trainstage.Optional("lam", cty.Number, cty.NumberFloatVal(0.95)), trainstage.Ratio("lam")),
		"cliprange":       num("cliprange", 0.2, 0, true),
		"cliprange_value": num("cliprange_value", 0.2, 0, true),
		"vf_coef":         num("vf_coef", 0.1, 0, false),
		"score_norm":      trainstage.Optional("score_norm", cty.Bool, cty.False),
		"score_clip":      num("score_clip", 0, 0, false),
		"seed":            trainstage.IntDefault("seed", 42, 0),
		"logging_steps":   trainstage.IntDefault("logging_steps", 1, 1),
	}
	trainstage.AddMethod(schema)
	return &stage.Kind{
		Name:        "ppo",
		Version:     Version,
		Summary:     "reinforcement learning from a reward model (PPO with a KL penalty against the starting policy)",
		Schema:      schema,
		NonSemantic: []string{"logging_steps"},
		Outputs: func(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
			d := trainstage.CheckMethod(args)
			if !d.HasErrors() && trainstage.MethodOf(args) == trainstage.Freeze {
				d = stage.Error("Unsupported method", "ppo trains with method \"lora\", \"qlora\" or \"full\".")
			}
			if !d.HasErrors() && trainstage.Num[int](args.GetAttr("batch_size"))%trainstage.Num[int](args.GetAttr("mini_batch_size")) != 0 {
				d = stage.Error("Invalid mini_batch_size", "batch_size must be a multiple of mini_batch_size.")
			}
			return trainstage.ModelOutputs(args,
				"the policy (Hugging Face layout; adapters merged) with its value head",
				"the policy's LoRA adapter (PEFT layout) with value_head.safetensors",
				"metrics.json (per-step reward, KL, losses, entropy), reward.png and loss.png"), d
		},
		KeyLines: trainstage.KeyLines,
		Estimate: trainstage.EstimatePPO,
		Run:      run,
	}
}

func run(ctx context.Context, req *stage.Request) (*stage.Result, error) {
	args := req.Args
	fail := func(err error) (*stage.Result, error) { return nil, fmt.Errorf("ppo: %w", err) }
	rep := trainstage.Reporter(req)
	be, freeBackend, err := trainstage.Backend(req)
	if err != nil {
		return fail(err)
	}
	defer freeBackend()
	release, err := trainstage.GuardPPO(req, be)
	if err != nil {
		return fail(err)
	}
	defer release()
	ld, err := trainstage.Load(args, be, true, req.ScratchDir)
	if err != nil {
		return fail(err)
	}
	policy := ld.Model
	defer policy.Free()
	var reference *llama.Model
	if !policy.HasAdapters() {
		ref, err := trainstage.Load(args, be, false, filepath.Join(req.ScratchDir, "reference"))
		if err != nil {
			return fail(err)
		}
		reference = ref.Model
		defer reference.Free()
	}
	rm, err := loadReward(args, be)
	if err != nil {
		return fail(err)
	}
	defer rm.Free()
	ds, closeDS, err := train.OpenPrompts(trainstage.ArtifactPath(args.GetAttr("data")))
	if err != nil {
		return fail(err)
	}
	defer closeDS()
	if err := trainstage.CheckVocab(ds, policy.Cfg.VocabSize); err != nil {
		return fail(err)
	}
	var prompts [][]int32
	for i := range ds.Len() {
		s := ds.Sample(i)
		var p []int32
		for j, t := range s.Tokens {
			if s.Mask[j] {
				break
			}
			p = append(p, int32(t))
		}
		if len(p) > 0 && len(p) < len(s.Tokens) {
			prompts = append(prompts, p)
		}
	}
	if len(prompts) == 0 {
		return fail(fmt.Errorf("no prompts: the data's samples have no untrained prefix (tokenize an sft dataset with a chat template)"))
	}
	rep.Logf("policy: %d trainable parameters (method %s); %d prompts", policy.NumTrainable(), ld.Method, len(prompts))
	n := func(name string) float64 { return trainstage.Num[float64](args.GetAttr(name)) }
	cfg := train.PPOConfig{
		Steps: trainstage.Num[int](args.GetAttr("max_steps")), BatchSize: trainstage.Num[int](args.GetAttr("batch_size")),
		MiniBatch: trainstage.Num[int](args.GetAttr("mini_batch_size")), PPOEpochs: trainstage.Num[int](args.GetAttr("ppo_epochs")),
		MaxNewTokens: trainstage.Num[int](args.GetAttr("max_new_tokens")), Temperature: n("temperature"),
		TopK: trainstage.Num[int](args.GetAttr("top_k")), TopP: n("top_p"), StopTokens: stopTokens(policy),
		LR: n("learning_rate"), WeightDecay: n("weight_decay"), MaxGradNorm: n("max_grad_norm"),
		InitKL: n("init_kl_coef"), AdaptiveKL: args.GetAttr("adaptive_kl").True(), KLTarget: n("kl_target"),
		KLHorizon: n("kl_horizon"), KLPenalty: args.GetAttr("kl_penalty").AsString(), Gamma: n("gamma"), Lambda: n("lam"),
		ClipRange: n("cliprange"), ClipRangeValue: n("cliprange_value"), VFCoef: n("vf_coef"),
		ScoreNorm: args.GetAttr("score_norm").True(), ScoreClip: n("score_clip"), Seed: trainstage.Num[uint64](args.GetAttr("seed")),
	}
	if cfg.InitKL == 0 {
		cfg.InitKL = 1e-12 // 0 means "default" to the loop; keep the user's "no KL"
	}
	logEvery := trainstage.Num[int](args.GetAttr("logging_steps"))
	trainer := &train.PPO{Policy: policy, Reference: reference, Scorer: train.ValueScorer{Model: rm}, Prompts: prompts, Cfg: cfg,
		OnStep: func(step, total int, met map[string]float64) {
			rep.Progress(int64(step), int64(total), "step")
			if step%logEvery == 0 || step == total {
				rep.Metrics(int64(step), met)
			}
		}}
	hist, err := trainer.Run(ctx)
	if err != nil {
		return fail(err)
	}
	rep.Logf("ppo: mean reward %.4f (step 1) -> %.4f (step %d)", hist[0].Metrics["reward"], hist[len(hist)-1].Metrics["reward"], len(hist))
	outs := trainstage.ModelOutputs(args, "", "", "")
	if _, ok := outs["adapter"]; ok {
		lc := *ld.LoRA
		if v := args.GetAttr("base_model_name"); !v.IsNull() {
			lc.BaseModel = v.AsString()
		} else {
			a, _ := stage.ArtifactOf(args.GetAttr("model"))
			lc.BaseModel = "lathe-artifact:" + a.Digest
		}
		if err := trainstage.WriteAdapter(req.OutputDir("adapter"), policy, lc, ld.BaseDir); err != nil {
			return fail(err)
		}
	}
	if _, ok := outs["model"]; ok {
		dir := req.OutputDir("model")
		if err := trainstage.WriteModel(dir, policy, ld.BaseDir, nil, nil); err != nil {
			return fail(err)
		}
		if err := trainstage.WriteValueHead(dir, policy); err != nil {
			return fail(err)
		}
	}
	if err := writeReport(req.OutputDir("report"), hist); err != nil {
		return fail(err)
	}
	return &stage.Result{}, nil
}

// loadReward loads the reward model: a model directory with
// value_head.safetensors, or an adapter (with its value head) on the
// policy's base model.
func loadReward(args cty.Value, be tensor.Backend) (*llama.Model, error) {
	dir := trainstage.ArtifactPath(args.GetAttr("reward"))
	kind, _ := stage.ArtifactOf(args.GetAttr("reward"))
	base := dir
	opts := llama.Options{Trainable: func(string) bool { return false }, ValueHead: true}
	var lc lora.Config
	var tensors map[string]lora.Tensor
	if kind.Kind == stage.AdapterArtifact {
		var err error
		if lc, tensors, err = lora.Load(dir); err != nil {
			return nil, err
		}
		base = trainstage.ArtifactPath(args.GetAttr("model"))
	}
	if _, err := os.Stat(filepath.Join(dir, lora.ValueHeadFile)); err != nil {
		return nil, fmt.Errorf("reward: %s has no %s; give a reward-model stage's output", dir, lora.ValueHeadFile)
	}
	var m *llama.Model
	var err error
	if tensors != nil {
		m, err = llama.LoadAdapted(base, be, opts, lc, tensors)
	} else {
		m, err = llama.LoadWith(base, be, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("reward model: %w", err)
	}
	if err := m.LoadValueHead(dir); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// stopTokens are the model's eos ids.
func stopTokens(m *llama.Model) []int32 {
	var out []int32
	for _, id := range m.Cfg.EOSTokenIDs {
		out = append(out, int32(id))
	}
	return out
}

func writeReport(dir string, hist []train.PPOStep) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(map[string]any{"steps": len(hist), "history": hist,
		"first_reward": hist[0].Metrics["reward"], "final_reward": hist[len(hist)-1].Metrics["reward"]}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "metrics.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	curve := func(keys ...string) []train.Curve {
		var cs []train.Curve
		for _, k := range keys {
			c := train.Curve{Label: k}
			for _, h := range hist {
				c.Steps, c.Values = append(c.Steps, h.Step), append(c.Values, h.Metrics[k])
			}
			cs = append(cs, c)
		}
		return cs
	}
	for name, keys := range map[string][]string{"reward.png": {"reward", "kl"}, "loss.png": {"policy_loss", "value_loss"}} {
		img, err := train.CurvesPNG(curve(keys...))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), img, 0o644); err != nil {
			return err
		}
	}
	return nil
}
