// Package llama is the Llama-family decoder of lathe's training engine:
// LlamaForCausalLM (llama 2/3, GQA, llama3 rope scaling), MistralForCausalLM,
// Qwen2ForCausalLM (q/k/v bias) and Qwen3ForCausalLM (per-head q/k RMSNorm),
// with optional attention/MLP biases and tied embeddings, read from a Hugging
// Face config.json and safetensors weights (single or sharded; F32, BF16,
// F16 or F64 on disk, held as F32).
//
// It is written the llm.c way: Forward and Backward are explicit, layer by
// layer, over flat buffers of a tensor.Backend. All parameters live in one
// backend allocation (Param views, HF names), all gradients in another with
// the same layout, and all activations in a third that is sized for the
// largest batch seen (Reserve) and reused, so a training step allocates
// nothing on the backend. Forward takes token ids and PRE-SHIFTED targets
// (negative = ignored), optional RoPE positions and segment ids for packed
// rows, and returns the mean cross-entropy over the kept targets; Backward
// accumulates every parameter's gradient; ForwardBackward does both with the
// LM head computed once (the training path); AdamW applies the backend's
// AdamW to all parameters; Logits materialises [B,T,V] for tests and small
// models. SetRecompute(true) keeps only each layer's input and recomputes
// the layer in Backward (bit-identical results, about a third of the
// activation memory). Results are bit-identical for any GOMAXPROCS because
// every backend reduction runs in a fixed order.
//
// The model is checked against testdata/llama_ref.py, a float64 PyTorch
// implementation of the transformers semantics (logits, loss, every gradient,
// one AdamW step) for every variant the script generates.
//
// It does not do: sliding-window attention (mistral sequences longer than
// sliding_window are refused), rope scaling other than llama3, partial
// rotary dims, KV-cache generation, LoRA or quantised weights (those belong
// to the packages that build on this one), or mixed precision.
package llama
