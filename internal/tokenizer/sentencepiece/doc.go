// Package sentencepiece loads SentencePiece model files (the protobuf
// `tokenizer.model` shipped by Baichuan, ChatGLM, Llama 2 and others) and
// encodes and decodes text exactly as the SentencePiece library (v0.1.97
// behaviour, checked against Debian's spm_encode/spm_decode) does.
//
// It reads the ModelProto with a small hand-written protobuf wire-format
// reader (no protobuf dependency): the pieces with their scores and types,
// the trainer spec (model type, byte fallback, special ids and pieces, unknown
// surface, whitespace-as-suffix) and the normalizer spec. Normalization runs
// the model's own precompiled_charsmap (a Darts double-array trie of rewrite
// rules, which is how nmt_nfkc, nfkc, nmt_nfkc_cf and custom TSV rules are
// stored), so it is exact rather than an approximation through NFKC; the
// identity normalizer has an empty charsmap. Whitespace becomes U+2581, the
// dummy prefix is added and extra whitespace removed as the spec says, and
// user-defined pieces are matched first and never normalized or split.
//
// Encoders: UNIGRAM (Viterbi over the piece lattice, as SentencePiece's
// optimized encoder, with its unknown penalty and user-defined scores) and
// BPE (merge of the highest-scoring adjacent pair, leftmost first, with
// re-segmentation of UNUSED pieces); WORD and CHAR models are looked up
// whole word / character at a time. Unknown runs collapse to one <unk>, or
// become <0xXX> byte pieces when byte_fallback is on. Decode reverses it:
// control pieces vanish, <unk> becomes the unk surface (" ⁇ "), byte pieces
// are reassembled as UTF-8 (invalid bytes give U+FFFD), U+2581 becomes a
// space and the dummy prefix space is dropped.
//
// It does not: sample (subword regularization, n-best, BPE dropout), train models, apply
// extra options such as bos:eos:reverse (callers add BOS/EOS ids
// themselves), or report offsets. A denormalizer spec, when present, is
// applied through the same charsmap machinery but has not been cross-checked.
package sentencepiece
