# Self-cognition: teach a model who it is. A tiny model is pretrained on
# the corpus that ships with lathe (examples/pretrain-tiny), then LoRA SFT on
# data/identity.json (80 rows, English and Korean) with the name and author
# filled in from variables teaches it to answer "who are you?" with them.
#
#   lathe run -var name="Ada" -var author="the Ada team"
#   lathe chat .lathe/... (see the README: lathe artifacts get sft.identity.adapter)
#
# With a real base model, replace the first two stages with a download
# stage and point sft.identity.model at download.<name>.model.

variable "name" {
  type        = string
  default     = "Lathe Assistant"
  description = "The assistant's name, filled into {{name}}."
}

variable "author" {
  type        = string
  default     = "the lathe team"
  description = "Who made it, filled into {{author}}."
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

stage "tokenize" "identity" {
  tokenizer = pretrain.base.model
  dataset {
    path    = "data/identity.json"
    format  = "alpaca"
    replace = { "{{name}}" = var.name, "{{author}}" = var.author }
  }
  template   = "default"
  cutoff_len = 128
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
  lr_scheduler  = "cosine"
  warmup_ratio  = 0.05
  epochs        = 60
  batch_size    = 8
  seed          = 7
}

output "adapter" {
  value       = sft.identity.adapter
  description = "The LoRA adapter (PEFT layout) on pretrain.base.model."
}
