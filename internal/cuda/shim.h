// shim.h: the C side of internal/cuda (build tag cuda). cuBLAS is loaded
// at run time with dlopen (libcublas.so.13, .12 or .11, or the file named
// by $LATHE_CUBLAS), so lathe-cuda has no link-time dependency on it and
// runs on whichever CUDA runtime the machine has; the few driver calls that
// gorgonia.org/cu lacks are here too.
#ifndef LATHE_CUDA_SHIM_H
#define LATHE_CUDA_SHIM_H

#include <stdint.h>

// The cuBLAS and CUDA enum values the shim passes (checked against the real
// headers by `make cuda-check`, see LATHE_CHECK_CUBLAS_HEADERS in shim.c).
enum {
	LATHE_CUBLAS_OP_N = 0,
	LATHE_CUBLAS_OP_T = 1,
	LATHE_CUDA_R_32F = 0,
	LATHE_CUDA_R_16F = 2,
	LATHE_CUDA_R_16BF = 14,
	LATHE_CUBLAS_COMPUTE_32F = 68,
	LATHE_CUBLAS_COMPUTE_32F_FAST_16BF = 75,
	LATHE_CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
	LATHE_CUBLAS_GEMM_DEFAULT = -1,
	LATHE_CUBLAS_DEFAULT_MATH = 0,
	LATHE_CUBLAS_PEDANTIC_MATH = 2,
};

// lathe_cublas_load opens cuBLAS (path, or the sonames in order when path
// is empty) and resolves its functions; it returns 0, or -1 with a message
// in err. Calling it again after success does nothing.
int lathe_cublas_load(const char *path, char *err, int errlen);
// lathe_cublas_version returns the loaded library's version (e.g. 120803)
// or -1, and the file it was loaded from.
int lathe_cublas_version(uintptr_t handle);
const char *lathe_cublas_path(void);
// lathe_cublas_create makes a handle bound to stream with the given math
// mode; it returns the cuBLAS status (0 on success).
int lathe_cublas_create(uintptr_t stream, int math_mode, uintptr_t *handle);
int lathe_cublas_destroy(uintptr_t handle);
// lathe_cublas_status_string names a cuBLAS status.
const char *lathe_cublas_status_string(int status);
// lathe_gemm runs cublasGemmEx (batch 1) or cublasGemmStridedBatchedEx in
// cuBLAS's column-major convention, alpha and beta float (compute types
// 32F*); it returns the cuBLAS status.
int lathe_gemm(uintptr_t handle, int transa, int transb, int m, int n, int k, float alpha,
	uintptr_t a, int atype, int lda, long long stride_a,
	uintptr_t b, int btype, int ldb, long long stride_b, float beta,
	uintptr_t c, int ctype, int ldc, long long stride_c, int batch, int compute);

// lathe_func_set_max_dynamic_smem lets fn use up to bytes of dynamic
// shared memory (above the default 48 KiB); it returns the CUresult.
int lathe_func_set_max_dynamic_smem(uintptr_t fn, int bytes);
// lathe_device_smem_optin returns the device's opt-in shared memory per
// block in bytes, or -1.
int lathe_device_smem_optin(int ordinal);

#endif
