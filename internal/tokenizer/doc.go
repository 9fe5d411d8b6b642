// Package tokenizer loads Hugging Face tokenizer.json files (BPE models, both
// the byte-level family — GPT-2, Llama 3, Qwen 2/3 — and the SentencePiece
// style with byte fallback — Llama 2, Mistral, TinyLlama) and encodes and
// decodes text exactly as the HF tokenizers library does: normalizers,
// pre-tokenizers (including the lookahead regexes of Split, run by a small
// Oniguruma-compatible backtracking engine and hand-written matchers for the
// common patterns), added/special tokens, post-processors and decoders. It
// also reads tokenizer_config.json (special tokens, chat templates) and
// trains byte-level BPE tokenizers whose tokenizer.json loads in HF tools.
//
// It does not: implement the Unigram, WordPiece or WordLevel models, apply
// BPE dropout, compute offsets/attention masks, truncate or pad, or render
// chat templates (the data package does that).
package tokenizer
