// Package llama is the decoder of lathe's training engine: the Llama
// family — LlamaForCausalLM (llama 2/3, GQA, llama3 rope scaling),
// MistralForCausalLM (sliding window), Qwen2ForCausalLM (q/k/v bias),
// Qwen3ForCausalLM (per-head q/k RMSNorm) — and the families mapped onto
// it by a few switches (families.go): Gemma and Gemma 2 (GeGLU, scaled
// embeddings, 1 + w norms, soft-capping, output norms, alternating sliding
// windows), Phi-3 (fused qkv/gate_up, partial rotary, longrope), Baichuan
// 2 (fused W_pack, normalised head, ALiBi for 13B) and ChatGLM 3 / GLM-4
// (transformer.* names, fused query_key_value, interleaved half-head
// rotary). Configs come from a Hugging Face config.json and weights from
// safetensors (single or sharded; F32, BF16, F16 or F64 on disk, held as
// F32), in each family's own names and layout: fused tensors are split on
// reading and stacked on writing, so parameters inside carry Llama names.
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
// one AdamW step) for every variant the script generates, and the other
// families against testdata/family_ref.py, written from each family's own
// modelling code in its own tensor layout.
//
// Mixed precision (Options.BF16) holds the linear layers' weights as
// bfloat16 working copies that the products read, with float32 masters
// for the weights that train; Options.BF16Activations holds the
// activations each layer keeps (all but the residual stream and the
// norm and softmax statistics) as bfloat16. It is checked against
// llama_ref.py --mixed bf16, which rounds at the same places.
//
// It does not do: rope scaling other than llama3 and longrope's short
// factors, or a bfloat16 residual stream; LoRA, NF4 weights and
// generation are
// built on it in adapters.go, linear.go and decode.go.
package llama
