# RLHF end to end on a tiny model, in a couple of minutes on two cores:
# pretrain on the corpus of examples/pretrain-tiny, SFT with LoRA on the
# self-cognition data, train a reward model on the preference pairs of
# examples/dpo (polite "Sure! ..." answers preferred), then PPO the SFT
# adapter against that reward model, and evaluate the policy before and
# after PPO on the preferred answers.
#
#   lathe run
#   lathe chat -p "How many days are in a week?" ppo.polite.adapter

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

stage "tokenize" "identity" {
  tokenizer = pretrain.base.model
  dataset {
    path    = "../self-cognition/data/identity.json"
    format  = "alpaca"
    replace = { "{{name}}" = "Lathe Assistant", "{{author}}" = "the lathe team" }
  }
  template   = "default"
  cutoff_len = 128
}

stage "tokenize" "prefs" {
  tokenizer = pretrain.base.model
  dataset {
    path    = "../dpo/data/preferences.json"
    format  = "alpaca"
    ranking = true
  }
  template   = "default"
  cutoff_len = 128
  val_size   = 0.2
}

stage "sft" "identity" {
  model         = pretrain.base.model
  data          = tokenize.identity.dataset
  method        = "lora"
  learning_rate = 1e-2
  epochs        = 20
  batch_size    = 8
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

stage "ppo" "polite" {
  model          = pretrain.base.model
  adapter        = sft.identity.adapter
  reward         = reward-model.polite.adapter
  data           = tokenize.prefs.dataset
  max_steps      = 20
  batch_size     = 8
  max_new_tokens = 24
  learning_rate  = 2e-3
  seed           = 3
}

# Score the policy before and after PPO with the reward model's own
# measure of the held-out preference pairs, and by the perplexity of the
# preferred answers.
stage "evaluate" "polite" {
  for_each = { sft = sft.identity.adapter, ppo = ppo.polite.adapter }
  model    = pretrain.base.model
  adapter  = each.value
  data     = tokenize.prefs_chosen.dataset
}

stage "tokenize" "prefs_chosen" {
  tokenizer = pretrain.base.model
  dataset {
    path    = "../dpo/data/preferences.json"
    format  = "alpaca"
    columns = { response = "chosen" }
  }
  template   = "default"
  cutoff_len = 128
}

output "scores" {
  value       = { for k, e in evaluate.polite : k => e.metrics }
  description = "Loss and perplexity of the preferred answers under the SFT and PPO policies."
}

output "policy" {
  value       = ppo.polite.adapter
  description = "The PPO-trained LoRA adapter on pretrain.base.model."
}
