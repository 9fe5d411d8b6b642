# A tiny pipeline for the board's tests: an exec stage, a tokenizer trained
# on a small corpus, and a few steps of pretraining that report metrics.

variable "greeting" {
  type        = string
  default     = "hello"
  description = "What the exec stage writes."
}

variable "steps" {
  type        = number
  default     = 20
  description = "Pretraining steps."
  validation {
    condition     = var.steps >= 1
    error_message = "steps must be at least 1."
  }
}

stage "exec" "hello" {
  command = ["sh", "-c", "echo \"$GREETING\" > $OUT_text/hello.txt"]
  env     = { GREETING = var.greeting }
  outputs = ["text"]
}

stage "tokenize" "corpus" {
  train {
    vocab_size     = 320
    special_tokens = ["<|endoftext|>"]
  }
  dataset {
    path   = "corpus.jsonl"
    format = "text"
  }
  cutoff_len = 32
  packing    = true
  val_size   = 0.1
}

stage "pretrain" "tiny" {
  config {
    hidden_size             = 16
    num_hidden_layers       = 1
    num_attention_heads     = 2
    num_key_value_heads     = 2
    intermediate_size       = 32
    max_position_embeddings = 64
  }
  data          = tokenize.corpus.dataset
  validation    = tokenize.corpus.validation
  tokenizer     = tokenize.corpus.tokenizer
  learning_rate = 1e-2
  max_steps     = var.steps
  batch_size    = 4
  seed          = 1
  logging_steps = 1
  eval_steps    = 5
  save_steps    = 5
}
