// Package gguf reads and writes GGUF, the file format of llama.cpp and
// Ollama, for the model families lathe trains.
//
// A GGUF file is the magic "GGUF", a version (3), a tensor count and a
// metadata count, the metadata as typed key/value pairs (integers of every
// width, float32/64, bool, string and arrays of them, arrays included),
// the tensor infos (name, shape with the innermost dimension first, ggml
// type, offset), padding to general.alignment (32), and the tensor data,
// each tensor aligned. All of it is little-endian.
//
// The low level is Encode/WriteFile (metadata and tensors in, a file out;
// tensor data is produced one tensor at a time) and Open (a validated
// header; tensor data read on demand, dequantised by File.Float32). The
// reader checks the magic, the version (2 or 3), every length against the
// bytes that remain, duplicate keys and tensor names, the alignment, the
// tensor types and that every tensor's data lies inside the file, and
// reports each with an error that wraps one of the Err* categories.
//
// EncodeFloat32 and DecodeFloat32 convert float32 to and from F32, F16,
// BF16 (round to nearest even), Q8_0 and Q4_0 (blocks of 32 values with an
// f16 scale, quantised exactly as ggml's reference quantisers do).
//
// The high level converts Hugging Face model directories as lathe writes
// them. WriteFromHF maps LlamaForCausalLM and MistralForCausalLM to
// llama.cpp's "llama" architecture (q and k rows permuted the way
// convert_hf_to_gguf.py does, llama3 rope scaling as a rope_freqs tensor),
// Qwen2ForCausalLM to "qwen2" and Qwen3ForCausalLM to "qwen3" (no
// permutation), and the families internal/llama reads to the llama.cpp
// architectures of the same names, with convert_hf_to_gguf.py's
// transforms: "gemma" and "gemma2" (norm weights stored as 1 + w, head
// sizes as key_length, Gemma 2's soft caps and sliding window), "phi3"
// (fused attn_qkv, gate and up fused in ffn_up, partial rotary dims,
// longrope factors as rope_factors_long/short tensors with the attention
// factor and original context), "baichuan" (W_pack split into q, k and v
// with the q/k permutation, the head's rows normalised as Baichuan 2
// normalises them in every forward pass) and "chatglm" for ChatGLM 3 and
// GLM-4 (fused attn_qkv with its bias, half-head rotary dims, no BOS,
// <|user|> as end-of-turn token, GLM-4's byte-level vocabulary as
// chatglm-bpe). It renames the tensors (token_embd, blk.N.attn_q, ...,
// output), writes the <arch>.* hyper-parameters, and turns tokenizer.json
// into tokenizer.ggml.* metadata: "gpt2" for byte-level BPE (with the
// pre-tokenizer named llama-bpe, qwen2, gpt-2 or default) and "llama" for
// SentencePiece-style BPE (scores from merge ranks), with token types,
// merges, special token ids and the chat template. A directory with only a
// SentencePiece tokenizer.model gets "llama" with the model's pieces,
// scores and types (BPE models only). Matrices take the asked
// type; norms, biases and other 1-D tensors stay F32; a matrix whose rows
// are not a whole number of quantisation blocks is written as F16 and
// reported. ReadHF does the inverse for every architecture it writes:
// config.json (the family's own, through internal/llama), an F32
// model.safetensors with the family's Hugging Face names and fused
// tensors, and a tokenizer.json/tokenizer_config.json rebuilt from the
// metadata, loadable by the llama and tokenizer packages.
//
// WriteFromHF refuses a model llama.cpp would compute differently than
// lathe does, saying why: llama.cpp's baichuan applies RoPE only to
// 32-layer models and ALiBi only to 40-layer ones (any other count reads
// without position information); gemma and gemma2 always tie the output
// to the embeddings; gemma2 always soft-caps (attention and logits),
// always has a sliding window, and scales queries by the head size (by
// hidden/heads at 46 layers); phi3 and chatglm need heads × head size =
// hidden, and chatglm has no biases outside attn_qkv; a general.name
// containing "phi3" or "phi-3" makes llama.cpp look up Phi-3's special
// tokens by text, so it is refused for a vocabulary without them. What
// llama.cpp reads differently without being wrong for the released
// models is returned as WriteResult.Notes: it ignores Phi-3's sliding
// window, and picks longrope's long factors by its context size rather
// than the sequence length.
//
// It does not: write or dequantise the k-quants or i-quants (Q4_K, IQ2_XS,
// ...; the reader only lists them), read big-endian or split (multi-file)
// GGUF, convert other architectures, Unigram or WordPiece tokenizers, or
// LoRA adapters, or carry mistral's sliding_window (llama.cpp's "llama"
// architecture has none; ReadHF gives back a LlamaForCausalLM).
package gguf
