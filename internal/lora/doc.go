// Package lora holds what LoRA fine-tuning needs outside the model math: the
// adapter configuration (rank, alpha, dropout, target module kinds, rsLoRA),
// the resolution of target kinds against a model's linear modules, the
// adapter files in the layout Hugging Face PEFT reads and writes, merging an
// adapter into a base weight, and the value-head file of a reward model as
// LLaMA Factory saves it.
//
// Naming. Inside lathe, a LoRA on the linear module
// "model.layers.3.self_attn.q_proj" has the parameters
// "model.layers.3.self_attn.q_proj.lora_A.weight" of shape [r, in] and
// "model.layers.3.self_attn.q_proj.lora_B.weight" of shape [out, r], and the
// module computes y = x·Wᵀ + scale·(x·Aᵀ)·Bᵀ with scale = alpha/r (alpha/√r
// under rsLoRA). In adapter_model.safetensors the same tensors carry the
// prefix "base_model.model." (PEFT's PeftModelForCausalLM wrapping); PEFT
// strips the adapter name ".default" when saving, and Load accepts names with
// or without it.
//
// Files. Save writes adapter_config.json (PEFT's LoraConfig fields, keys
// sorted, two-space indent, as PEFT writes them) and
// adapter_model.safetensors (F32, BF16 or F16), each atomically. Load reads
// such a directory and rejects what lathe cannot apply faithfully: another
// peft_type, DoRA, fan_in_fan_out, per-module rank or alpha patterns, LoRA
// biases, modules_to_save, and inconsistent or incomplete A/B pairs.
// target_modules in a saved file are the module kinds that have tensors, so
// PEFT finds every one of them in the base model.
//
// The package does not run the forward or backward pass with adapters
// (internal/llama does), does not initialise or train them, does not read
// pickle (.bin) files, and knows nothing about pipelines or stages.
package lora
