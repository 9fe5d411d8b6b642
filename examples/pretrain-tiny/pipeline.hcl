# Pretrain a tiny Llama-style model from scratch on a small corpus that
# ships with lathe: train a byte-level BPE tokenizer on the text, pack it
# into 128-token rows, and train for a few seconds on two CPU cores (150 steps; the
# validation loss bottoms out near there, more epochs only memorise).
#
#   lathe run            # the loss falls from ~6.2 (ln 512) in report/loss.png
#   lathe artifacts ...  # copy the model or the report out of the store
#
# Interrupt it with Ctrl-C and run it again: it resumes from the last
# checkpoint and ends with the same weights as an uninterrupted run.

stage "tokenize" "corpus" {
  train {
    vocab_size     = 512
    special_tokens = ["<|endoftext|>"]
  }
  dataset {
    path   = "corpus.jsonl"            # hand-written paragraphs
    format = "text"
  }
  dataset {
    path   = "corpus_generated.jsonl"  # go run gen_corpus.go
    format = "text"
  }
  cutoff_len = 128
  packing    = true
  val_size   = 0.1
}

stage "pretrain" "tiny" {
  config {
    hidden_size             = 64
    num_hidden_layers       = 2
    num_attention_heads     = 4
    num_key_value_heads     = 4
    intermediate_size       = 172
    max_position_embeddings = 256
  }
  data          = tokenize.corpus.dataset
  validation    = tokenize.corpus.validation
  tokenizer     = tokenize.corpus.tokenizer
  learning_rate = 3e-3
  lr_scheduler  = "cosine"
  warmup_ratio  = 0.1
  epochs        = 10
  batch_size    = 8
  max_grad_norm = 1.0
  weight_decay  = 0.1
  seed          = 42
  eval_steps    = 15
  save_steps    = 50
  logging_steps = 10
}

output "model" {
  value       = pretrain.tiny.model
  description = "The trained model (Hugging Face layout)."
}

output "report" {
  value       = pretrain.tiny.report
  description = "metrics.json and loss.png."
}
