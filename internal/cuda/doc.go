// Package cuda is lathe's CUDA backend: Backend implements tensor.Backend
// on one NVIDIA GPU (compute capability 8.0, Ampere, or newer). It is built
// only with the build tag cuda (go build -tags cuda); without the tag the
// package holds nothing but this comment and two tests, so the default
// build links no C library and needs no CUDA toolkit: that the committed
// PTX matches its sources (ptx_test.go), and the kernels themselves run on
// the host through a small CUDA emulation (kernels/emu: g++, one OS thread
// per CUDA thread, barriers for __syncthreads and warp shuffles) against
// double-precision references (emu_test.go).
//
// # How it runs
//
// The driver API comes through gorgonia.org/cu: the device's primary
// context, one stream on which every kernel, copy and cuBLAS call is issued
// in order, device memory (one cuMemAlloc per Alloc; views are offsets), and
// the kernels, loaded from PTX that is embedded in the binary (go:embed) and
// JIT-compiled by the driver for the device at New (PTX ISA 7.8 from CUDA
// 11.8: the driver must be release 520 or newer). cuBLAS is not linked:
// a small cgo shim (shim.c) dlopen()s libcublas.so.13, .12 or .11 (or
// $LATHE_CUBLAS) at New and calls cublasGemmEx and
// cublasGemmStridedBatchedEx through function pointers, so the worker runs
// on whichever CUDA runtime the machine has. gorgonia.org/cu initialises
// the driver in a package init and exits the process when that fails (no
// driver, no GPU), which is why only the worker binary cmd/lathe-cuda
// imports this package, and lathe starts that worker only after NVML found
// a GPU.
//
// The kernels (kernels/*.cu, compiled to kernels/*.ptx by `make ptx` with
// nvcc for the virtual architecture compute_80, so that Hopper and later
// JIT-compile the same PTX) are written to be read and checked first:
// float32 arithmetic, one thread per element or one block per row, and
// every reduction in an order fixed by the shapes (fixed trees, no
// atomics), so repeated runs on one GPU give identical bits. Each kernel
// follows the CPU backend's (internal/cpu) formula; where the CPU rounds
// each product separately and exact equality is cheap (AdamW, NF4, dtype
// conversions) the kernels do too, elsewhere results agree within the
// tolerances `lathe-cuda selftest` states (FMA contraction, exp/tanh from
// the CUDA math library, another summation tree).
//
// Attention is FlashAttention-2 style (online softmax over key tiles in
// shared memory; the backward recomputes probabilities from the saved
// log-sum-exp: a dk/dv pass per key tile and a dq pass per query tile,
// each block owning its outputs) with GQA, segment ids, soft-capping,
// ALiBi and sliding windows, for head dims that are multiples of 4 up to
// 256, on the CUDA cores in float32. The fused LM-head cross-entropy runs
// chunk by chunk: logits by cuBLAS into the caller's workspace, a softmax
// kernel writing losses and dlogits in place, dx and dw by cuBLAS.
//
// Data errors the CPU backend reports by panicking on the host (an
// embedding id outside the table, a target outside the vocabulary, a bad
// decode length) cannot stop a kernel: the kernel skips the element and
// sets a bit in a device error word, and the next Sync (or Download)
// returns the error.
//
// # Precision
//
// Every kernel works on F32 buffers, as the tensor.Backend contract says,
// except the bfloat16 activations it allows: RMSNorm's output, SwiGLU and
// GeGLU (gate, up, out; their backward reads gate and up), RoPE (x and
// out) and attention (q, k, v, out; forward, backward, decode) have _bf16
// entry points that widen what they read and round what they store, with
// float32 math in between and float32 gradients. Gemm also takes BF16 and
// F16 inputs (with F32 or same-type output, float32 accumulation), one
// BF16 input beside an F32 one (the F32 operand is rounded to bfloat16
// into scratch first, since cuBLAS takes one input type: the CPU backend
// instead widens the BF16 operand exactly), and F32 inputs are multiplied
// per Options.F32Compute: exact float32 (the default, used by the worker
// and the self-test), TF32, or bf16 tensor-core math on float32 buffers
// (CUBLAS_COMPUTE_32F_FAST_16BF).
//
// Mixed precision (a training stage's compute_type = "bf16",
// llama.Options BF16 and BF16Activations) holds the linear layers'
// weights as bfloat16 working copies that the products read, with float32
// masters, gradients and AdamW state for the weights that train,
// refreshed by Convert after each optimizer step; frozen weights (LoRA's
// base) are bfloat16 only. The activations a layer keeps are bfloat16 too
// (llama.Options.BF16Activations), so the forward products run bf16×bf16
// on the tensor cores with no conversion (the backward's products round
// their float32 gradient operand as above); the residual stream and every
// gradient stay float32, and every reduction is float32 or float64.
//
// It does not do: multiple GPUs, CUDA graphs, tensor-core attention (the
// attention kernels are float32 SIMT: correct first, and the largest
// remaining cost of a training step), kernel fusion across tensor.Backend
// calls, or anything without a GPU of compute capability 8.0 or newer.
package cuda
