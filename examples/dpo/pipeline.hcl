# Direct preference optimisation on a small preference set written for
# lathe (data/preferences.json: polite "Sure! ..." answers preferred to rude
# ones). A tiny model is pretrained on examples/pretrain-tiny's corpus,
# then DPO with LoRA moves it towards the chosen answers; a reward model is
# trained on the same pairs to score them.
#
#   lathe run
#   lathe run -var loss=simpo      # or ipo, hinge, orpo
#
# The dpo report (metrics.json) holds rewards/chosen, rewards/rejected,
# rewards/accuracies and rewards/margins per step and on the validation
# pairs; the reward model's holds its pair accuracy.

variable "loss" {
  type        = string
  default     = "sigmoid"
  description = "The preference loss: sigmoid (DPO), ipo, hinge, orpo or simpo."
}

stage "tokenize" "corpus" {
  train {
    vocab_size     = 512
    special_tokens = ["<|endoftext|>"]
  }
  dataset {
    path   = "../pretrain-tiny/corpus.jsonl"
    format = "text"
  }
  dataset {
    path   = "../pretrain-tiny/corpus_generated.jsonl"
    format = "text"
  }
  cutoff_len = 128
  packing    = true
}

stage "pretrain" "base" {
  config {
    hidden_size             = 64
    num_hidden_layers       = 2
    num_attention_heads     = 4
    intermediate_size       = 172
    max_position_embeddings = 256
  }
  data          = tokenize.corpus.dataset
  tokenizer     = tokenize.corpus.tokenizer
  learning_rate = 3e-3
  warmup_ratio  = 0.1
  epochs        = 10
  batch_size    = 8
  weight_decay  = 0.1
  seed          = 42
}

stage "tokenize" "prefs" {
  tokenizer = pretrain.base.model
  dataset {
    path    = "data/preferences.json"
    format  = "alpaca"
    ranking = true
  }
  template   = "default"
  cutoff_len = 128
  val_size   = 0.2
}

stage "dpo" "polite" {
  model         = pretrain.base.model
  data          = tokenize.prefs.dataset
  validation    = tokenize.prefs.validation
  method        = "lora"
  loss          = var.loss
  beta          = 0.1
  learning_rate = 5e-3
  epochs        = 5
  batch_size    = 4
  seed          = 1
}

stage "reward-model" "polite" {
  model         = pretrain.base.model
  data          = tokenize.prefs.dataset
  validation    = tokenize.prefs.validation
  method        = "lora"
  learning_rate = 5e-3
  epochs        = 5
  batch_size    = 4
}

output "dpo_adapter" {
  value       = dpo.polite.adapter
  description = "The DPO-trained LoRA adapter on pretrain.base.model."
}

output "reward_model" {
  value       = reward-model.polite.adapter
  description = "The reward model: LoRA adapter plus value_head.safetensors."
}
