// Package cpu is lathe's pure-Go compute backend (no cgo): Backend
// implements tensor.Backend with buffers in host memory, and the package
// exports the slice-level building blocks it runs on (Sgemm, the bf16/f16
// conversions, attention and the fused cross-entropy).
//
// Kernels allocate nothing per call (scratch is grown once and reused) and
// split their work over a persistent set of worker goroutines, sized by
// GOMAXPROCS at each call, over disjoint output ranges. Every reduction
// (RMSNorm's weight gradient, bias gradient, embedding scatter-add, global
// gradient norm) runs in an order fixed by the shapes alone, so results are
// bit-identical for any GOMAXPROCS.
//
// It does not do kernel fusion across calls, asynchronous execution (every
// kernel has finished when its method returns; Sync only reports), or any
// GPU work (see internal/cuda).
package cpu
