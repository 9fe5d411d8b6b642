// Package tensor defines the kernel layer that lathe's training engine is
// written against: element types (DType), opaque device memory (Buffer and
// views into it), and the Backend interface with every kernel a Llama-family
// decoder needs forward and backward (matmul, embedding, RMSNorm, RoPE,
// attention (with soft-capping, sliding windows and ALiBi for the Gemma 2,
// Mistral and Baichuan families), SwiGLU and GeGLU, bias, residual adds,
// fused LM-head cross-entropy (optionally soft-capped), AdamW, gradient norm
// and clipping, dtype conversions and NF4 dequantisation).
//
// Buffers are device memory, not Go slices: a backend may keep them in host
// RAM (internal/cpu) or on a GPU (internal/cuda). Data moves between the host
// and a Buffer only through Upload and Download (and the typed helpers
// UploadF32, DownloadF32, ... in this package). One large allocation can hold
// many tensors: View returns a sub-range that kernels operate on directly.
//
// Conventions shared by all kernels:
//   - Shapes are passed explicitly as ints; tensors are dense row-major over
//     the named dimensions, e.g. x [N, C] means x[i*C+j].
//   - Unless a kernel says otherwise, buffers are F32.
//   - Activation outputs and activation gradients are overwritten; parameter
//     gradients (dW, dBias, dTable) are accumulated (+=), so micro-batches can
//     be summed without extra kernels.
//   - Kernels run in issue order on one logical stream; results are visible
//     to Download after Sync. A Backend is used by one goroutine at a time.
//   - Shape and dtype mismatches are programming errors and panic with a
//     message naming the kernel; Alloc, Upload, Download and Sync return
//     errors for runtime failures.
//   - Every reduction runs in a fixed order, so results are bit-identical
//     whatever the number of threads a backend uses.
//
// This package holds no kernel implementations (see internal/cpu) and no model
// code (see internal/llama). The host-side math shared by backends — RoPE
// inverse frequencies with llama3 scaling, ALiBi slopes and the NF4 code
// table — lives here because it defines what the kernels compute.
package tensor
