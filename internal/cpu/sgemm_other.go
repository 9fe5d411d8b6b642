//go:build !amd64 || purego

package cpu

// availableKernels lists the micro-kernels this build can run: only the
// portable Go one off amd64 (or with the purego tag).
func availableKernels() []*gemmKernel {
	return []*gemmKernel{kernelGo}
}

// copyRows copies rows runs of width floats, the i-th from
// src[i*srcStride:], to dst[i*width:].
func copyRows(dst, src []float32, rows, width, srcStride int) {
	copyRowsGo(dst, src, rows, width, srcStride)
}
