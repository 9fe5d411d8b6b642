// Package safetensors reads and writes the Hugging Face safetensors format,
// single files and sharded checkpoints (model.safetensors.index.json).
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// UTF-8 JSON, then the data section. The JSON object maps tensor names to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// start of the data section) and may hold "__metadata__", a string->string
// map. The rules enforced here are those of the reference implementation
// (huggingface/safetensors): the header is at most 100,000,000 bytes, tensors
// tile the data section exactly (sorted by offset, no holes, no overlaps, the
// last one ending at the end of the file), and each tensor's byte size is
// product(shape) * dtype size. This package is stricter in two places: it
// rejects duplicate JSON keys and trailing garbage after the JSON object.
//
// Reading memory-maps the file read-only where the platform allows and falls
// back to ReadAt otherwise. Tensors can be read as raw little-endian bytes or
// converted to []float32 from F32, F16, BF16 and F64.
//
// Writing is deterministic: tensors are sorted by name, their data laid out in
// that order, the JSON is compact with "__metadata__" first, and the header is
// padded with spaces to a multiple of 8 bytes, as the reference implementation
// pads it. Files are written to a temporary name and renamed into place. The
// sharded writer splits tensors, in name order, into shards no larger than a
// given size and writes model-0000i-of-0000n.safetensors plus the index JSON
// the way transformers' save_pretrained does.
//
// This package does not convert between arbitrary dtypes (only to and from
// float32 for the float dtypes above), does not slice tensors, and knows
// nothing about model architectures or pipelines.
package safetensors
