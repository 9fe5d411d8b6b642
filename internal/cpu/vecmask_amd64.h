// Macros shared by the AVX-512 row kernels (vecmath_amd64.s,
// rowkernels_amd64.s).

// TAILMASK sets K3 to the low CX bits (0 < CX < 16); clobbers AX.
#define TAILMASK \
	MOVL $1, AX \
	SHLL CX, AX \
	DECL AX \
	KMOVW AX, K3
