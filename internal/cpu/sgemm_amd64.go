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

// Edge kernels of the AVX-512 path: r×c sub-tiles read from the 12×32
// packed layout, so partial tiles do not pay for the full 12×32 FMAs.
//
//go:noescape
func sgemmKernelAVX512x4x16(k int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmKernelAVX512x4x32(k int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmKernelAVX512x8x16(k int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmKernelAVX512x8x32(k int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmKernelAVX512x12x16(k int, a, b, c *float32, ldc int, alpha, beta float32)

type asmKernel func(k int, a, b, c *float32, ldc int, alpha, beta float32)

func wrapAsm(f asmKernel) func(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	return func(k int, a, b, c []float32, ldc int, alpha, beta float32) {
		f(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
	}
}

var kernelAVX512 = &gemmKernel{
	name: "avx512", mr: 12, nr: 32, kc: 256, mc: 192, nc: 3072,
	fn: wrapAsm(sgemmKernelAVX512),
	// Smallest first: macroKernel takes the first that covers a tile.
	edges: []edgeKernel{
		{4, 16, wrapAsm(sgemmKernelAVX512x4x16)},
		{4, 32, wrapAsm(sgemmKernelAVX512x4x32)},
		{8, 16, wrapAsm(sgemmKernelAVX512x8x16)},
		{12, 16, wrapAsm(sgemmKernelAVX512x12x16)},
		{8, 32, wrapAsm(sgemmKernelAVX512x8x32)},
	},
	narrow: true,
}

var kernelAVX2 = &gemmKernel{
	name: "avx2", mr: 6, nr: 16, kc: 256, mc: 96, nc: 2048,
	fn: wrapAsm(sgemmKernelAVX2),
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

// copyRows32, copyRows16 and copyRows12 copy rows runs of 32, 16 or 12
// floats from src (stride srcStride floats) to consecutive runs in dst.
// They need AVX.
//
//go:noescape
func copyRows32(dst, src *float32, rows, srcStride int)

//go:noescape
func copyRows16(dst, src *float32, rows, srcStride int)

//go:noescape
func copyRows12(dst, src *float32, rows, srcStride int)

// copyRowsMasked32 copies rows runs of cols < 32 floats from src (stride
// srcStride) to consecutive 32-float runs of dst, zero padded. Needs
// AVX-512F.
//
//go:noescape
func copyRowsMasked32(dst, src *float32, rows, srcStride, cols int)

// copyRowsPadded copies rows runs of cols floats, the i-th from
// src[i*srcStride:], to dst[i*width:], zeroing dst[i*width+cols:(i+1)*width].
func copyRowsPadded(dst, src []float32, rows, cols, width, srcStride int) {
	if rows <= 0 {
		return
	}
	if width == 32 && cols > 0 && cols < 32 && cpu.X86.HasAVX512F {
		_ = dst[rows*width-1]
		_ = src[(rows-1)*srcStride+cols-1]
		copyRowsMasked32(&dst[0], &src[0], rows, srcStride, cols)
		return
	}
	copyRowsPaddedGo(dst, src, rows, cols, width, srcStride)
}

// copyRows copies rows runs of width floats, the i-th from
// src[i*srcStride:], to dst[i*width:].
func copyRows(dst, src []float32, rows, width, srcStride int) {
	if rows <= 0 {
		return
	}
	_ = dst[rows*width-1]
	_ = src[(rows-1)*srcStride+width-1]
	if cpu.X86.HasAVX {
		switch width {
		case 32:
			copyRows32(&dst[0], &src[0], rows, srcStride)
			return
		case 16:
			copyRows16(&dst[0], &src[0], rows, srcStride)
			return
		case 12:
			copyRows12(&dst[0], &src[0], rows, srcStride)
			return
		}
	}
	copyRowsGo(dst, src, rows, width, srcStride)
}

// transpose4 writes dst[p*dstStride+r] = src[r*srcStride+p] for r < 4 and
// p < n, n a multiple of 4 (SSE 4×4 transposes).
//
//go:noescape
func transpose4(dst *float32, dstStride int, src *float32, srcStride int, n int)

// transpose4x16 is transpose4 for n a multiple of 16, with AVX-512F.
//
//go:noescape
func transpose4x16(dst *float32, dstStride int, src *float32, srcStride int, n int)

// transposeAVX512 lets tests turn transpose4x16 off.
var transposeAVX512 = true

// transposeRows4 writes dst[p*dstStride+r] = src[r*srcStride+p] for r < 4
// and p < n.
func transposeRows4(dst []float32, dstStride int, src []float32, srcStride, n int) {
	if n <= 0 {
		return
	}
	_ = dst[(n-1)*dstStride+3]
	_ = src[3*srcStride+n-1]
	n16 := 0
	if cpu.X86.HasAVX512F && transposeAVX512 {
		n16 = n &^ 15
		if n16 > 0 {
			transpose4x16(&dst[0], dstStride, &src[0], srcStride, n16)
		}
	}
	n4 := n &^ 3
	if n4 > n16 {
		transpose4(&dst[n16*dstStride], dstStride, &src[n16], srcStride, n4-n16)
	}
	if n4 < n {
		transposeRows4Go(dst[n4*dstStride:], dstStride, src[n4:], srcStride, n-n4)
	}
}
