// Package data reads fine-tuning datasets, renders conversations with chat
// templates, and writes tokenized shards.
//
// Reading (Open, NewReader, ReadAll): LLaMA Factory's dataset layouts —
// alpaca (instruction/input/output/system/history), sharegpt (conversations
// of from/value, or OpenAI messages of role/content), preference pairs
// (chosen/rejected, alpaca or sharegpt style) and plain text for pretraining
// — from a JSON array, JSONL or CSV file, with column and role-tag mapping
// and literal placeholder replacement. Files are streamed: memory is bounded
// by the largest row, not the file. A malformed record fails the read with
// "file:line: what was expected"; a well-formed but unusable row (missing
// prompt, empty answer, bad role order, ...) is dropped and counted by
// reason in Stats; a file whose every row is dropped fails with that summary.
// Every row becomes an Example. Parquet and Hub datasets are not read here
// (download them first; Parquet is not supported yet).
//
// Templates (LookupTemplate): built-in chat templates rendering a
// conversation into Segments with a Train flag; see template.go.
//
// Shards (ShardWriter, OpenShard) and the manifest: see FORMAT.md.
//
// The package does not tokenize by itself: callers supply an Encoder (the
// HF tokenizer in internal/tokenizer fits it).
package data
