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

// transposeRows4 writes dst[p*dstStride+r] = src[r*srcStride+p] for r < 4
// and p < n.
func transposeRows4(dst []float32, dstStride int, src []float32, srcStride, n int) {
	transposeRows4Go(dst, dstStride, src, srcStride, n)
}

// copyRowsPadded copies rows runs of cols floats, the i-th from
// src[i*srcStride:], to dst[i*width:], zeroing dst[i*width+cols:(i+1)*width].
func copyRowsPadded(dst, src []float32, rows, cols, width, srcStride int) {
	copyRowsPaddedGo(dst, src, rows, cols, width, srcStride)
}

// stridedKernelsAVX512 is empty off amd64: stridedGemmEnabled is false.
var stridedKernelsAVX512 [4][]stridedKernel
