// Package data reads fine-tuning datasets, renders conversations with chat
// templates, and writes tokenized shards.
//
// # Reading
//
// Open, NewReader and ReadAll read LLaMA Factory's dataset layouts — alpaca
// (instruction/input/output/system/history), sharegpt (conversations of
// from/value, or OpenAI messages of role/content), preference pairs
// (chosen/rejected, alpaca or sharegpt style) and plain text for pretraining
// — from a JSON array, JSONL, CSV or Parquet file, with column mapping
// (Columns), role-tag mapping (Tags) and literal placeholder replacement
// (Spec.Replace) applied to every text field. Files are streamed: memory is bounded by the
// largest row, not the file (a JSON array is decoded element by element).
// A malformed record fails the read with "file:line: what was expected"
// (JSON array errors also name the element index); a well-formed but unusable
// row (missing prompt, empty answer, bad role order, ...) is dropped and
// counted by reason in Stats with the first few kept as examples; a file whose
// every row is dropped fails with that summary (ErrAllDropped). Every row
// becomes an Example. ParseDatasetInfo turns LLaMA Factory's
// dataset_info.json entries into Specs; Concat chains several readers into
// one build. JSON numbers are accepted as text; a UTF-8 BOM is skipped.
//
// Parquet files (parquet.go) are read one row group and one page per column
// at a time, and only the columns a Spec can use are decoded. Strings,
// numbers, booleans, lists (standard and legacy layouts), structs and maps
// become the same raw values the JSON reader produces, so a dataset reads to
// the same Examples from either; a null column is an absent key. Rows are
// located as "file:row group g, row r" (both 0-based). A truncated or
// corrupt file fails with an error naming the file, never a panic.
//
// Not supported: reading from the Hub (download first), multimodal columns,
// tools/function schemas, encrypted Parquet files, INT96 (legacy
// timestamp) values in a column that is read.
//
// # Templates
//
// LookupTemplate returns a built-in chat template: default, alpaca, vicuna,
// chatml, qwen (Qwen2.5: chatml with "You are Qwen, created by Alibaba Cloud.
// You are a helpful assistant." as default system), qwen3 (with its <think>
// block rules), llama2, llama3 (Llama 3.0 layout, no date header), mistral,
// and LLaMA Factory's baichuan2, chatglm3, glm4, gemma and phi (as phi3).
// Markers that are token ids rather than text (Baichuan 2's <reserved_106>,
// ChatGLM3's [gMASK] and sop) are Segments of their own flagged Special;
// EncodeSegment maps such a segment to its id when the Encoder is a
// SpecialTokenEncoder. Render turns a conversation into Segments with a Train flag:
// assistant answers and their end-of-turn token are trained, prompts are not
// unless RenderOptions.TrainOnPrompt, and MaskHistory trains only the last
// answer. Conversations with tool calls or results (ErrToolRole) are
// dropped by Build, counted by reason. For user/assistant/system
// conversations, qwen, qwen3, llama2, llama3 and mistral render byte for
// byte what the models' own Jinja templates render (template_test.go; qwen3
// and llama3 are also checked against their real Jinja templates run by
// jinja2, testdata/jinja_golden.json); default and alpaca follow LLaMA
// Factory, vicuna follows FastChat's vicuna_v1.1. Jinja templates are not
// interpreted here: NewTemplate wraps a renderer from elsewhere as a
// Template, which is how internal/chattemplate provides template "auto" (the
// model's own Jinja chat template).
//
// # Shards
//
// Build tokenizes Examples with an Encoder (the tokenizer in
// internal/tokenizer fits it; this package does not import it), truncates to
// cutoff_len by LLaMA Factory's infer_seqlen rule, optionally packs samples
// into rows with segment ids, shuffles with a seeded PCG, splits off a
// validation set and writes shard files plus manifest.json. FORMAT.md is the
// full specification; in short, a shard is
//
//	header (64 bytes): "LATHESHD", uint32 version=1, uint32 flags
//	                   (1=packed, 2=pairs), uint64 samples N, uint64 tokens T,
//	                   SHA-256 of header[0:32] ++ payload
//	payload:           (N+1) x uint64 offsets, T x uint32 token ids,
//	                   [T x uint32 segment ids if packed],
//	                   ceil(T/8) bytes loss mask, LSB first
//
// all little-endian. Preference data stores chosen and rejected as samples
// 2k and 2k+1 of a pairs shard, sharing the prompt tokens. Shards and the
// manifest are written atomically (temp file + rename, manifest last);
// OpenShard memory-maps a shard and validates all of it with errors naming
// the file; VerifyDir checks a whole dataset directory.
package data
