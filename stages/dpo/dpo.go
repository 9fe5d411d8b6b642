// Package dpo is the "dpo" stage kind: preference optimisation of a policy
// on preference pairs with the DPO family of losses (sigmoid, the default;
// ipo; hinge; orpo; simpo; see internal/align), by any fine-tuning method.
// The reference policy is the starting model (the model argument with the
// adapter argument applied): its log-probabilities are computed once before
// training, so no second copy of the weights is held, with LoRA or without.
//
//	stage "dpo" "prefs" {
//	  model   = download.base.model
//	  adapter = sft.identity.adapter     # optional: continue this adapter
//	  data    = tokenize.prefs.dataset   # a preference dataset
//	  loss    = "sigmoid"                # ipo | hinge | orpo | simpo
//	  beta    = 0.1
//	}
//
// Outputs as the sft kind; the report adds rewards/chosen,
// rewards/rejected, rewards/accuracies, rewards/margins and the log-probs.
//
// It does not do: KTO, BCO or reference-model updates (TR-DPO).
package dpo

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/align"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
)

// Version is the kind's cache-key salt.
const Version = "1"

var losses = []string{align.LossSigmoid, align.LossIPO, align.LossHinge, align.LossORPO, align.LossSimPO}

// Kind returns the dpo stage kind.
func Kind() *stage.Kind {
	return trainstage.NewKind(trainstage.KindSpec{
		Name: "dpo", Version: Version, LR: 5e-6, Batch: 4,
		Summary: "preference optimisation (DPO, IPO, hinge, ORPO, SimPO) against the starting model",
		Model:   "the aligned model (Hugging Face layout; adapters merged)",
		Adapter: "the LoRA adapter (PEFT layout)",
		Report:  "metrics.json (loss, rewards, accuracies, margins) and loss.png",
		Extra: hcldec.ObjectSpec{
			"loss":            stage.Validated(trainstage.Optional("loss", cty.String, cty.StringVal(align.LossSigmoid)), trainstage.Enum("loss", losses)),
			"beta":            stage.Validated(trainstage.Optional("beta", cty.Number, cty.NumberFloatVal(align.DefaultBeta)), trainstage.MinNum("beta", 0, true)),
			"label_smoothing": stage.Validated(trainstage.Optional("label_smoothing", cty.Number, cty.Zero), trainstage.MinNum("label_smoothing", 0, false)),
			"simpo_gamma":     stage.Validated(trainstage.Optional("simpo_gamma", cty.Number, cty.NumberFloatVal(align.DefaultSimPOGamma)), trainstage.MinNum("simpo_gamma", 0, false)),
			"ftx":             stage.Validated(trainstage.Optional("ftx", cty.Number, cty.Zero), trainstage.MinNum("ftx", 0, false)),
		},
		Check: func(args cty.Value) hcl.Diagnostics {
			if err := config(args).Validate(); err != nil {
				return stage.Error("Invalid preference loss", err.Error())
			}
			return nil
		},
		Run: trainstage.FineTune{Pairs: true, Objectives: objectives,
			Extra: func(args cty.Value) map[string]any {
				c := config(args)
				return map[string]any{"loss_type": c.Loss, "beta": c.Beta}
			}},
	})
}

func config(args cty.Value) align.DPOConfig {
	return align.DPOConfig{
		Loss:           args.GetAttr("loss").AsString(),
		Beta:           trainstage.Num[float64](args.GetAttr("beta")),
		LabelSmoothing: trainstage.Num[float64](args.GetAttr("label_smoothing")),
		SimPOGamma:     trainstage.Num[float64](args.GetAttr("simpo_gamma")),
		FTX:            trainstage.Num[float64](args.GetAttr("ftx")),
	}
}

func objectives(args cty.Value, m *llama.Model, trainSet, evalSet train.Samples, maxSeqLen int) (train.Objective, train.Objective, func() error, error) {
	c := config(args)
	if err := c.Validate(); err != nil {
		return nil, nil, nil, err
	}
	bs := trainstage.Num[int](args.GetAttr("batch_size"))
	obj := &train.DPO{Model: m, Pairs: trainSet, MaxSeqLen: maxSeqLen, Config: c, BatchSize: bs}
	var eval *train.DPO
	if evalSet != nil {
		eval = &train.DPO{Model: m, Pairs: evalSet, MaxSeqLen: maxSeqLen, Config: c, BatchSize: bs}
	}
	prepare := func() error {
		if err := obj.ComputeReference(); err != nil {
			return err
		}
		if eval != nil {
			if err := eval.ComputeReference(); err != nil {
				return fmt.Errorf("validation: %w", err)
			}
		}
		return nil
	}
	if eval == nil {
		return obj, nil, prepare, nil
	}
	return obj, eval, prepare, nil
}
