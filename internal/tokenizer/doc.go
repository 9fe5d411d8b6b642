// Package tokenizer loads the tokenizers lathe trains and generates with,
// behind one interface (Codec):
//
//   - Hugging Face tokenizer.json files (Tokenizer; BPE models, both the
//     byte-level family — GPT-2, Llama 3, Qwen 2/3 — and the SentencePiece
//     style with byte fallback — Llama 2, Mistral, TinyLlama), encoded and
//     decoded exactly as the HF tokenizers library does: normalizers,
//     pre-tokenizers (including the lookahead regexes of Split, run by a
//     small Oniguruma-compatible backtracking engine and hand-written
//     matchers for the common patterns), added/special tokens,
//     post-processors and decoders;
//   - SentencePiece tokenizer.model files (SentencePiece; the model run by
//     the sentencepiece subpackage exactly as spm_encode runs it) with the
//     tokenizer_config.json, special_tokens_map.json and added_tokens.json
//     around them, encoded as the slow transformers classes do
//     (LlamaTokenizer in legacy mode, BaichuanTokenizer, and ChatGLM 2/3's
//     ChatGLMTokenizer with its tokens after the vocabulary).
//
// LoadDir picks tokenizer.json when a directory has one, else
// tokenizer.model; LoadPath also takes either file. The package reads
// tokenizer_config.json (special tokens, chat templates) and trains
// byte-level BPE tokenizers whose tokenizer.json loads in HF tools.
//
// It does not: implement the Unigram, WordPiece or WordLevel models of
// tokenizer.json, apply BPE dropout or SentencePiece sampling, compute
// offsets/attention masks, truncate or pad, read tiktoken files (GLM-4's
// tokenizer.model; it says so and points at tokenizer.json), reproduce
// LlamaTokenizer's legacy=false prefix handling, or render chat templates
// (the data package does that).
package tokenizer
