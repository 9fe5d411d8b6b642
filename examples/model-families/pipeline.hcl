# Model families: one tiny, randomly initialised model of each architecture
# lathe reads besides Llama/Mistral/Qwen — Baichuan 2 (fused W_pack,
# normalised LM head), ChatGLM 3 / GLM-4 (fused query_key_value with bias,
# multi-query groups, rotary on half of each head), Gemma (GeGLU, scaled
# embeddings, 1 + w norms), Gemma 2 (plus soft-capping, output norms and
# sliding-window layers) and Phi-3 (fused qkv_proj and gate_up_proj) —
# pretrained for a few steps on the corpus that ships with lathe, then
# LoRA-tuned on every module of its family ("all" expands to W_pack,
# query_key_value, qkv_proj, ... as the family names them), and exported as
# a merged Hugging Face directory in the family's own layout.
#
#   lathe run examples/model-families
#   lathe run -var families='["phi3"]' examples/model-families
#
# With a real checkpoint, replace pretrain.tiny with a download stage
# (e.g. repo = "baichuan-inc/Baichuan2-7B-Chat") and point sft at it.

variable "families" {
  type        = set(string)
  default     = ["baichuan", "chatglm", "gemma", "gemma2", "phi3"]
  description = "The model_type of each tiny model."
}

stage "tokenize" "corpus" {
  train {
    vocab_size     = 384
    special_tokens = ["<|endoftext|>"]
  }
  dataset {
    path   = "../pretrain-tiny/corpus.jsonl"
    format = "text"
  }
  cutoff_len = 64
  packing    = true
}

stage "pretrain" "tiny" {
  for_each = var.families
  config {
    model_type              = each.key
    hidden_size             = 64
    num_hidden_layers       = 2
    num_attention_heads     = 4
    num_key_value_heads     = 2
    intermediate_size       = 128
    max_position_embeddings = 128
  }
  data          = tokenize.corpus.dataset
  tokenizer     = tokenize.corpus.tokenizer
  learning_rate = 3e-3
  max_steps     = 12
  batch_size    = 8
  seed          = 1
}

stage "tokenize" "identity" {
  tokenizer = tokenize.corpus.tokenizer
  dataset {
    path   = "../self-cognition/data/identity.json"
    format = "alpaca"
  }
  template   = "default"
  cutoff_len = 64
}

stage "sft" "lora" {
  for_each = pretrain.tiny
  model    = each.value.model
  data     = tokenize.identity.dataset
  method   = "lora"
  lora {
    rank   = 8
    target = ["all"]
  }
  learning_rate = 5e-3
  max_steps     = 6
  batch_size    = 4
  seed          = 2
}

stage "export" "merged" {
  for_each = sft.lora
  model    = pretrain.tiny[each.key].model
  adapter  = each.value.adapter
  format   = "hf"
}

output "models" {
  value       = { for k, e in export.merged : k => e.model }
  description = "Each family's merged model, in its own checkpoint layout."
}
