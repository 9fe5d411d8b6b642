//go:build !amd64 || purego

package cpu

// availableKernels lists the micro-kernels this build can run: only the
// portable Go one off amd64 (or with the purego tag).
func availableKernels() []*gemmKernel {
	return []*gemmKernel{kernelGo}
}
