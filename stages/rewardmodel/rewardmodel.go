// Package rewardmodel is the "reward-model" stage kind: it trains a scalar
// reward on preference pairs — a value head on the last token's final
// hidden state, loss −log σ(r_chosen − r_rejected) — by any fine-tuning
// method, and reports pair accuracy on the validation pairs.
//
//	stage "reward-model" "rm" {
//	  model  = sft.base.model
//	  data   = tokenize.prefs.dataset        # a preference dataset
//	  method = "lora"
//	}
//
// Outputs: adapter (PEFT layout plus value_head.safetensors) for lora and
// qlora, model (Hugging Face layout plus value_head.safetensors, as LLaMA
// Factory saves reward models) for full and freeze or with merge = true,
// and report. The value head's tensors are v_head.summary.weight [1,H]
// and v_head.summary.bias [1] (TRL's names), read by the ppo and evaluate
// kinds.
//
// It does not do: margins in the loss (Llama 2's), or multi-objective
// rewards.
package rewardmodel

import (
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
)

// Version is the kind's cache-key salt.
const Version = "1"

// Kind returns the reward-model stage kind.
func Kind() *stage.Kind {
	return trainstage.NewKind(trainstage.KindSpec{
		Name: "reward-model", Version: Version, LR: 1e-5, Batch: 4,
		Summary: "train a pairwise reward model (value head) on preference data",
		Model:   "the reward model (Hugging Face layout with value_head.safetensors)",
		Adapter: "the LoRA adapter with value_head.safetensors",
		Report:  "metrics.json (loss, accuracy, rewards) and loss.png",
		Run:     trainstage.FineTune{ValueHead: true, Pairs: true, Objectives: objectives},
	})
}

func objectives(_ cty.Value, m *llama.Model, trainSet, evalSet train.Samples, maxSeqLen int) (train.Objective, train.Objective, func() error, error) {
	obj := &train.Reward{Model: m, Pairs: trainSet, MaxSeqLen: maxSeqLen}
	var eval train.Objective
	if evalSet != nil {
		eval = &train.Reward{Model: m, Pairs: evalSet, MaxSeqLen: maxSeqLen}
	}
	return obj, eval, nil, nil
}
