# The quickstart: a whole fine-tuning project on a tiny model, offline, in a
# few minutes on two CPU cores. `make run` runs it.
#
#   1. train a byte-level BPE tokenizer and pretrain a tiny Llama on the
#      corpus that ships with lathe (examples/pretrain-tiny);
#   2. SFT it with LoRA on the self-cognition data, with the assistant's name
#      and author from the variables below;
#   3. train a reward model and run DPO on the preference pairs of
#      examples/dpo, continuing the SFT adapter;
#   4. evaluate before and after, and export the result as GGUF for
#      llama.cpp / Ollama.
#
#   lathe run -var name="Ada" -var author="the Ada team"
#   lathe chat sft.identity.adapter        # then ask "who are you?"

variable "name" {
  type        = string
  default     = "Lathe Assistant"
  description = "The assistant's name, filled into {{name}} in the identity data."
}

variable "author" {
  type        = string
  default     = "the lathe team"
  description = "Who made it, filled into {{author}}."
}

locals {
  template = "default"
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
  val_size   = 0.1
}

stage "pretrain" "base" {
  config {
    hidden_size             = 64
    num_hidden_layers       = 2
    num_attention_heads     = 4
    intermediate_size       = 192
    max_position_embeddings = 256
  }
  data          = tokenize.corpus.dataset
  validation    = tokenize.corpus.validation
  tokenizer     = tokenize.corpus.tokenizer
  learning_rate = 3e-3
  warmup_ratio  = 0.1
  epochs        = 10
  batch_size    = 8
  weight_decay  = 0.1
  seed          = 42
}

stage "tokenize" "identity" {
  tokenizer = pretrain.base.model
  dataset {
    path    = "../self-cognition/data/identity.json"
    format  = "alpaca"
    replace = { "{{name}}" = var.name, "{{author}}" = var.author }
  }
  template   = local.template
  cutoff_len = 128
  val_size   = 0.1
}

stage "sft" "identity" {
  model  = pretrain.base.model
  data   = tokenize.identity.dataset
  method = "lora"
  lora {
    rank   = 16
    target = ["all"]
  }
  learning_rate = 1e-2
  warmup_ratio  = 0.05
  epochs        = 60
  batch_size    = 8
  seed          = 7
}

stage "tokenize" "prefs" {
  tokenizer = pretrain.base.model
  dataset {
    path    = "../dpo/data/preferences.json"
    format  = "alpaca"
    ranking = true
  }
  template   = local.template
  cutoff_len = 128
  val_size   = 0.2
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

stage "dpo" "polite" {
  model         = pretrain.base.model
  adapter       = sft.identity.adapter
  data          = tokenize.prefs.dataset
  validation    = tokenize.prefs.validation
  beta          = 0.1
  learning_rate = 5e-4
  epochs        = 2
  batch_size    = 4
  seed          = 1
}

# Before and after SFT: loss and perplexity on the held-out identity rows,
# and BLEU/ROUGE of greedy answers to the first identity questions.
stage "evaluate" "identity" {
  for_each = { before = null, after = sft.identity.adapter }
  model    = pretrain.base.model
  adapter  = each.value
  data     = tokenize.identity.validation
  generate {
    path           = "../self-cognition/data/identity.json"
    format         = "alpaca"
    replace        = { "{{name}}" = var.name, "{{author}}" = var.author }
    template       = local.template
    max_new_tokens = 32
    limit          = 8
  }
}

# The reward model's pair accuracy on the held-out preference pairs.
stage "evaluate" "reward" {
  model   = pretrain.base.model
  adapter = reward-model.polite.adapter
  pairs   = tokenize.prefs.validation
}

stage "export" "gguf" {
  model        = pretrain.base.model
  adapter      = dpo.polite.adapter
  format       = "gguf"
  quantization = "q8_0"
  template     = local.template
}

output "scores" {
  value = {
    before_sft = evaluate.identity["before"].metrics
    after_sft  = evaluate.identity["after"].metrics
    reward     = evaluate.reward.metrics
  }
  description = "Evaluation metrics before and after SFT, and the reward model's accuracy."
}

output "adapter" {
  value       = dpo.polite.adapter
  description = "The SFT + DPO LoRA adapter on pretrain.base.model."
}

output "gguf" {
  value       = export.gguf.gguf
  description = "model.gguf (Q8_0) and an Ollama Modelfile."
}
