//go:build cuda

package cuda

/*
#cgo LDFLAGS: -ldl -lcuda
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"

	"gorgonia.org/cu"
)

// GemmCompute selects how Gemm computes products of F32 matrices (BF16 and
// F16 inputs always multiply in their own precision with float32
// accumulation).
type GemmCompute int

const (
	// ComputeF32 is full float32 arithmetic (CUBLAS_COMPUTE_32F with
	// pedantic math): the mode the self-test compares with the CPU backend.
	ComputeF32 GemmCompute = iota
	// ComputeTF32 lets cuBLAS round the inputs to TF32 for the tensor cores
	// (CUBLAS_COMPUTE_32F_FAST_TF32), accumulating in float32.
	ComputeTF32
	// ComputeBF16 lets cuBLAS round the inputs to bfloat16 for the tensor
	// cores (CUBLAS_COMPUTE_32F_FAST_16BF), accumulating in float32: bf16
	// GEMM throughput on float32 buffers (see the package comment).
	ComputeBF16
)

func (c GemmCompute) String() string {
	switch c {
	case ComputeF32:
		return "f32"
	case ComputeTF32:
		return "tf32"
	case ComputeBF16:
		return "bf16"
	}
	return fmt.Sprintf("GemmCompute(%d)", int(c))
}

// ParseGemmCompute reads "f32", "tf32" or "bf16".
func ParseGemmCompute(s string) (GemmCompute, error) {
	for _, c := range []GemmCompute{ComputeF32, ComputeTF32, ComputeBF16} {
		if c.String() == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("cuda: unknown GEMM compute mode %q (want f32, tf32 or bf16)", s)
}

// The cuBLAS enum values Gemm passes (shim.h).
const (
	cudaR32F         = int(C.LATHE_CUDA_R_32F)
	cudaR16F         = int(C.LATHE_CUDA_R_16F)
	cudaR16BF        = int(C.LATHE_CUDA_R_16BF)
	cublasCompute32F = int(C.LATHE_CUBLAS_COMPUTE_32F)
)

// cublasValue is the cublasComputeType_t for F32 inputs.
func (c GemmCompute) cublasValue() int {
	switch c {
	case ComputeTF32:
		return int(C.LATHE_CUBLAS_COMPUTE_32F_FAST_TF32)
	case ComputeBF16:
		return int(C.LATHE_CUBLAS_COMPUTE_32F_FAST_16BF)
	}
	return cublasCompute32F
}

// loadCublas opens cuBLAS once per process: $LATHE_CUBLAS if set, else
// libcublas.so.13, .12, .11 from the library path.
func loadCublas() error {
	path := C.CString(os.Getenv("LATHE_CUBLAS"))
	defer C.free(unsafe.Pointer(path))
	var buf [1024]C.char
	if C.lathe_cublas_load(path, &buf[0], C.int(len(buf))) != 0 {
		return fmt.Errorf("cuda: %s", C.GoString(&buf[0]))
	}
	return nil
}

// cublasHandle is one cuBLAS handle bound to the backend's stream.
type cublasHandle struct{ h C.uintptr_t }

func newCublas(stream cu.Stream, pedantic bool) (*cublasHandle, error) {
	if err := loadCublas(); err != nil {
		return nil, err
	}
	mode := C.int(C.LATHE_CUBLAS_DEFAULT_MATH)
	if pedantic {
		mode = C.LATHE_CUBLAS_PEDANTIC_MATH
	}
	var h C.uintptr_t
	if st := C.lathe_cublas_create(C.uintptr_t(rawStream(stream)), mode, &h); st != 0 {
		return nil, fmt.Errorf("cuda: cublasCreate: %s (status %d)", C.GoString(C.lathe_cublas_status_string(st)), int(st))
	}
	return &cublasHandle{h}, nil
}

func (b *cublasHandle) destroy() {
	if b != nil && b.h != 0 {
		C.lathe_cublas_destroy(b.h)
		b.h = 0
	}
}

// version returns cuBLAS's version number and the library it came from.
func (b *cublasHandle) version() (int, string) {
	return int(C.lathe_cublas_version(b.h)), C.GoString(C.lathe_cublas_path())
}

// gemmCall is one cuBLAS call in column-major terms.
type gemmCall struct {
	transA, transB         bool
	m, n, k                int
	alpha, beta            float32
	a, b, c                uint64
	atype, btype, ctype    int
	lda, ldb, ldc          int
	strideA, strideB, strC int64
	batch                  int
	compute                int
}

func (b *cublasHandle) gemm(g *gemmCall) error {
	op := func(t bool) C.int {
		if t {
			return C.LATHE_CUBLAS_OP_T
		}
		return C.LATHE_CUBLAS_OP_N
	}
	st := C.lathe_gemm(b.h, op(g.transA), op(g.transB), C.int(g.m), C.int(g.n), C.int(g.k), C.float(g.alpha),
		C.uintptr_t(g.a), C.int(g.atype), C.int(g.lda), C.longlong(g.strideA),
		C.uintptr_t(g.b), C.int(g.btype), C.int(g.ldb), C.longlong(g.strideB), C.float(g.beta),
		C.uintptr_t(g.c), C.int(g.ctype), C.int(g.ldc), C.longlong(g.strC), C.int(g.batch), C.int(g.compute))
	if st != 0 {
		return fmt.Errorf("cuda: cublasGemmEx: %s (status %d)", C.GoString(C.lathe_cublas_status_string(st)), int(st))
	}
	return nil
}

// rawStream returns the CUstream inside a cu.Stream (a struct holding just
// that pointer), for cuBLAS.
func rawStream(s cu.Stream) uintptr {
	return *(*uintptr)(unsafe.Pointer(&s))
}

// rawFunction returns the CUfunction inside a cu.Function.
func rawFunction(f cu.Function) uintptr {
	return *(*uintptr)(unsafe.Pointer(&f))
}

// The two conversions above read gorgonia.org/cu's structs by layout; fail
// at compile time if either stops being one pointer wide.
var (
	_ [unsafe.Sizeof(cu.Stream{}) - unsafe.Sizeof(uintptr(0))]struct{}
	_ [unsafe.Sizeof(uintptr(0)) - unsafe.Sizeof(cu.Stream{})]struct{}
	_ [unsafe.Sizeof(cu.Function{}) - unsafe.Sizeof(uintptr(0))]struct{}
	_ [unsafe.Sizeof(uintptr(0)) - unsafe.Sizeof(cu.Function{})]struct{}
)

// setMaxDynamicSmem allows f up to bytes of dynamic shared memory.
func setMaxDynamicSmem(f cu.Function, bytes int) error {
	if r := C.lathe_func_set_max_dynamic_smem(C.uintptr_t(rawFunction(f)), C.int(bytes)); r != 0 {
		return fmt.Errorf("cuda: cuFuncSetAttribute(max dynamic shared memory %d): CUresult %d", bytes, int(r))
	}
	return nil
}

// smemOptin returns the device's opt-in shared memory per block.
func smemOptin(ordinal int) int { return int(C.lathe_device_smem_optin(C.int(ordinal))) }
