//go:build cuda

// shim.c: see shim.h.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cuda.h>

#include "shim.h"

#ifdef LATHE_CHECK_CUBLAS_HEADERS
// Compiled only by `make cuda-check` (gcc -fsyntax-only with the CUDA
// headers): the constants above must be cuBLAS's own.
#include <cublas_v2.h>
_Static_assert((int)LATHE_CUBLAS_OP_N == (int)CUBLAS_OP_N, "CUBLAS_OP_N");
_Static_assert((int)LATHE_CUBLAS_OP_T == (int)CUBLAS_OP_T, "CUBLAS_OP_T");
_Static_assert((int)LATHE_CUDA_R_32F == (int)CUDA_R_32F, "CUDA_R_32F");
_Static_assert((int)LATHE_CUDA_R_16F == (int)CUDA_R_16F, "CUDA_R_16F");
_Static_assert((int)LATHE_CUDA_R_16BF == (int)CUDA_R_16BF, "CUDA_R_16BF");
_Static_assert((int)LATHE_CUBLAS_COMPUTE_32F == (int)CUBLAS_COMPUTE_32F, "CUBLAS_COMPUTE_32F");
_Static_assert((int)LATHE_CUBLAS_COMPUTE_32F_FAST_16BF == (int)CUBLAS_COMPUTE_32F_FAST_16BF, "CUBLAS_COMPUTE_32F_FAST_16BF");
_Static_assert((int)LATHE_CUBLAS_COMPUTE_32F_FAST_TF32 == (int)CUBLAS_COMPUTE_32F_FAST_TF32, "CUBLAS_COMPUTE_32F_FAST_TF32");
_Static_assert((int)LATHE_CUBLAS_GEMM_DEFAULT == (int)CUBLAS_GEMM_DEFAULT, "CUBLAS_GEMM_DEFAULT");
_Static_assert((int)LATHE_CUBLAS_DEFAULT_MATH == (int)CUBLAS_DEFAULT_MATH, "CUBLAS_DEFAULT_MATH");
_Static_assert((int)LATHE_CUBLAS_PEDANTIC_MATH == (int)CUBLAS_PEDANTIC_MATH, "CUBLAS_PEDANTIC_MATH");
// The enums travel as int, the handle and stream as pointers.
_Static_assert(sizeof(cublasOperation_t) == sizeof(int), "cublasOperation_t");
_Static_assert(sizeof(cudaDataType) == sizeof(int), "cudaDataType");
_Static_assert(sizeof(cublasComputeType_t) == sizeof(int), "cublasComputeType_t");
_Static_assert(sizeof(cublasGemmAlgo_t) == sizeof(int), "cublasGemmAlgo_t");
_Static_assert(sizeof(cublasMath_t) == sizeof(int), "cublasMath_t");
_Static_assert(sizeof(cublasHandle_t) == sizeof(void *), "cublasHandle_t");
// The function types the shim declares, with cuBLAS's own types.
__attribute__((unused)) static cublasStatus_t (*check_create)(cublasHandle_t *) = cublasCreate_v2;
__attribute__((unused)) static cublasStatus_t (*check_stream)(cublasHandle_t, cudaStream_t) = cublasSetStream_v2;
__attribute__((unused)) static cublasStatus_t (*check_math)(cublasHandle_t, cublasMath_t) = cublasSetMathMode;
__attribute__((unused)) static cublasStatus_t (*check_gemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
	const void *, const void *, cudaDataType, int, const void *, cudaDataType, int,
	const void *, void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) = cublasGemmEx;
__attribute__((unused)) static cublasStatus_t (*check_gemm_sb)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
	const void *, const void *, cudaDataType, int, long long int, const void *, cudaDataType, int, long long int,
	const void *, void *, cudaDataType, int, long long int, int, cublasComputeType_t, cublasGemmAlgo_t) = cublasGemmStridedBatchedEx;
#endif

typedef int (*create_fn)(void **);
typedef int (*destroy_fn)(void *);
typedef int (*set_stream_fn)(void *, void *);
typedef int (*set_math_fn)(void *, int);
typedef int (*version_fn)(void *, int *);
typedef const char *(*status_string_fn)(int);
typedef int (*gemm_fn)(void *, int, int, int, int, int, const void *, const void *, int, int,
	const void *, int, int, const void *, void *, int, int, int, int);
typedef int (*gemm_sb_fn)(void *, int, int, int, int, int, const void *, const void *, int, int, long long,
	const void *, int, int, long long, const void *, void *, int, int, long long, int, int, int);

static void *lib;
static char lib_path[512];
static create_fn p_create;
static destroy_fn p_destroy;
static set_stream_fn p_set_stream;
static set_math_fn p_set_math;
static version_fn p_version;
static status_string_fn p_status_string;
static gemm_fn p_gemm;
static gemm_sb_fn p_gemm_sb;

// sym resolves the first of two names (cuBLAS exports the _v2 names; a
// future release may drop the suffix).
static void *sym(const char *a, const char *b) {
	void *p = dlsym(lib, a);
	if (!p && b) p = dlsym(lib, b);
	return p;
}

int lathe_cublas_load(const char *path, char *err, int errlen) {
	static const char *sonames[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", 0};
	if (lib) return 0;
	char tried[1024] = "";
	void *h = 0;
	if (path && path[0]) {
		h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			snprintf(err, errlen, "dlopen %s: %s", path, dlerror());
			return -1;
		}
		snprintf(lib_path, sizeof lib_path, "%s", path);
	} else {
		for (int i = 0; sonames[i] && !h; i++) {
			h = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
			if (h) snprintf(lib_path, sizeof lib_path, "%s", sonames[i]);
			else {
				const char *e = dlerror();
				size_t n = strlen(tried);
				snprintf(tried + n, sizeof tried - n, "%s%s", n ? "; " : "", e ? e : sonames[i]);
			}
		}
		if (!h) {
			snprintf(err, errlen, "no cuBLAS found (set LATHE_CUBLAS to its path or add its directory to LD_LIBRARY_PATH): %s", tried);
			return -1;
		}
	}
	lib = h;
	p_create = (create_fn)sym("cublasCreate_v2", "cublasCreate");
	p_destroy = (destroy_fn)sym("cublasDestroy_v2", "cublasDestroy");
	p_set_stream = (set_stream_fn)sym("cublasSetStream_v2", "cublasSetStream");
	p_set_math = (set_math_fn)sym("cublasSetMathMode", 0);
	p_version = (version_fn)sym("cublasGetVersion_v2", "cublasGetVersion");
	p_status_string = (status_string_fn)sym("cublasGetStatusString", 0); // optional (cuBLAS >= 11.4.2)
	p_gemm = (gemm_fn)sym("cublasGemmEx", 0);
	p_gemm_sb = (gemm_sb_fn)sym("cublasGemmStridedBatchedEx", 0);
	const char *missing = !p_create ? "cublasCreate_v2" : !p_destroy ? "cublasDestroy_v2" : !p_set_stream ? "cublasSetStream_v2"
		: !p_set_math ? "cublasSetMathMode" : !p_version ? "cublasGetVersion_v2" : !p_gemm ? "cublasGemmEx"
		: !p_gemm_sb ? "cublasGemmStridedBatchedEx" : 0;
	if (missing) {
		snprintf(err, errlen, "%s has no %s", lib_path, missing);
		dlclose(lib);
		lib = 0;
		return -1;
	}
	return 0;
}

const char *lathe_cublas_path(void) { return lib_path; }

int lathe_cublas_version(uintptr_t handle) {
	int v = -1;
	if (!p_version || p_version((void *)handle, &v) != 0) return -1;
	return v;
}

int lathe_cublas_create(uintptr_t stream, int math_mode, uintptr_t *handle) {
	void *h = 0;
	int st = p_create(&h);
	if (st != 0) return st;
	st = p_set_stream(h, (void *)stream);
	if (st == 0) st = p_set_math(h, math_mode);
	if (st != 0) {
		p_destroy(h);
		return st;
	}
	*handle = (uintptr_t)h;
	return 0;
}

int lathe_cublas_destroy(uintptr_t handle) { return p_destroy((void *)handle); }

const char *lathe_cublas_status_string(int status) {
	if (p_status_string) return p_status_string(status);
	return "cuBLAS error (this cuBLAS has no cublasGetStatusString)";
}

int lathe_gemm(uintptr_t handle, int transa, int transb, int m, int n, int k, float alpha,
	uintptr_t a, int atype, int lda, long long stride_a,
	uintptr_t b, int btype, int ldb, long long stride_b, float beta,
	uintptr_t c, int ctype, int ldc, long long stride_c, int batch, int compute) {
	if (batch <= 1)
		return p_gemm((void *)handle, transa, transb, m, n, k, &alpha, (const void *)a, atype, lda,
			(const void *)b, btype, ldb, &beta, (void *)c, ctype, ldc, compute, LATHE_CUBLAS_GEMM_DEFAULT);
	return p_gemm_sb((void *)handle, transa, transb, m, n, k, &alpha, (const void *)a, atype, lda, stride_a,
		(const void *)b, btype, ldb, stride_b, &beta, (void *)c, ctype, ldc, stride_c, batch, compute,
		LATHE_CUBLAS_GEMM_DEFAULT);
}

int lathe_func_set_max_dynamic_smem(uintptr_t fn, int bytes) {
	return (int)cuFuncSetAttribute((CUfunction)fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
}

int lathe_device_smem_optin(int ordinal) {
	CUdevice dev;
	int v = -1;
	if (cuDeviceGet(&dev, ordinal) != CUDA_SUCCESS) return -1;
	if (cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev) != CUDA_SUCCESS) return -1;
	return v;
}
