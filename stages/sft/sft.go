// Package sft is the "sft" stage kind: supervised fine-tuning of a causal
// language model on tokenized conversations, with the loss on the response
// tokens only (the tokenize stage's mask), by any fine-tuning method:
// full, freeze, LoRA or QLoRA.
//
//	stage "sft" "identity" {
//	  model      = download.base.model
//	  data       = tokenize.identity.dataset
//	  validation = tokenize.identity.validation   # optional
//	  method     = "lora"                         # full | freeze | lora | qlora
//	  lora {
//	    rank   = 8
//	    alpha  = 16          # default 2 × rank
//	    target = ["all"]     # or q_proj, v_proj, ...
//	  }
//	  learning_rate = 1e-4
//	  epochs        = 3
//	}
//
// Outputs: adapter (PEFT layout) for lora and qlora, model (Hugging Face
// layout, adapters merged) for full and freeze or with merge = true, and
// report (metrics.json, loss.png). The training loop's arguments are the
// pretrain stage's; checkpoints make an interrupted run resume
// bit-identically.
//
// It does not do: packing (tokenize does), NEFTune, DoRA, or bfloat16
// activations (compute_type = "bf16" holds the weights in bfloat16).
package sft

import (
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
)

// Version is the kind's cache-key salt.
const Version = "1"

// Kind returns the sft stage kind.
func Kind() *stage.Kind {
	return trainstage.NewKind(trainstage.KindSpec{
		Name: "sft", Version: Version, LR: 1e-4, Batch: 4,
		Summary: "supervised fine-tuning on response tokens (full, freeze, LoRA or QLoRA)",
		Model:   "the fine-tuned model (Hugging Face layout; adapters merged)",
		Adapter: "the LoRA adapter (PEFT layout: adapter_config.json, adapter_model.safetensors)",
		Report:  "metrics.json (loss history, eval loss and perplexity) and loss.png",
		Run:     trainstage.FineTune{Perplexity: true, Objectives: objectives},
	})
}

func objectives(_ cty.Value, m *llama.Model, trainSet, evalSet train.Samples, maxSeqLen int) (train.Objective, train.Objective, func() error, error) {
	obj := &train.LM{Model: m, Samples: trainSet, MaxSeqLen: maxSeqLen}
	var eval train.Objective
	if evalSet != nil {
		eval = &train.LM{Model: m, Samples: evalSet, MaxSeqLen: maxSeqLen}
	}
	return obj, eval, nil, nil
}
