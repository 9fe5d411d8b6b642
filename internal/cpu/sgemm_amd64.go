//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// sgemmKernelAVX512 computes a 12×32 tile of C from packed panels with zmm
// FMAs (see sgemm_amd64.s).
//
//go:noescape
func sgemmKernelAVX512(k int, a, b, c *float32, ldc int, alpha, beta float32)

// sgemmKernelAVX2 computes a 6×16 tile of C from packed panels with ymm FMAs.
//
//go:noescape
func sgemmKernelAVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)

var kernelAVX512 = &gemmKernel{
	name: "avx512", mr: 12, nr: 32, kc: 256, mc: 192, nc: 3072,
	fn: func(k int, a, b, c []float32, ldc int, alpha, beta float32) {
		sgemmKernelAVX512(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
	},
}

var kernelAVX2 = &gemmKernel{
	name: "avx2", mr: 6, nr: 16, kc: 256, mc: 96, nc: 2048,
	fn: func(k int, a, b, c []float32, ldc int, alpha, beta float32) {
		sgemmKernelAVX2(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
	},
}

// availableKernels lists the micro-kernels this CPU can run, best first.
func availableKernels() []*gemmKernel {
	var ks []*gemmKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, kernelAVX512)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, kernelAVX2)
	}
	return append(ks, kernelGo)
}
