//go:build amd64 && !purego

#include "textflag.h"

// func copyRows32(dst, src *float32, rows, srcStride int)
// Copies rows runs of 32 floats, src advancing srcStride floats and dst 32
// per run (packing a 32-wide panel). Needs AVX.
TEXT ·copyRows32(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ rows+16(FP), CX
	MOVQ srcStride+24(FP), DX
	SHLQ $2, DX
	TESTQ CX, CX
	JZ done32
loop32:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ DX, SI
	ADDQ $128, DI
	DECQ CX
	JNZ loop32
done32:
	VZEROUPPER
	RET

// func copyRows16(dst, src *float32, rows, srcStride int)
TEXT ·copyRows16(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ rows+16(FP), CX
	MOVQ srcStride+24(FP), DX
	SHLQ $2, DX
	TESTQ CX, CX
	JZ done16
loop16:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ DX, SI
	ADDQ $64, DI
	DECQ CX
	JNZ loop16
done16:
	VZEROUPPER
	RET

// func copyRows12(dst, src *float32, rows, srcStride int)
TEXT ·copyRows12(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ rows+16(FP), CX
	MOVQ srcStride+24(FP), DX
	SHLQ $2, DX
	TESTQ CX, CX
	JZ done12
loop12:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), X1
	VMOVUPS Y0, (DI)
	VMOVUPS X1, 32(DI)
	ADDQ DX, SI
	ADDQ $48, DI
	DECQ CX
	JNZ loop12
done12:
	VZEROUPPER
	RET

// func transpose4(dst *float32, dstStride int, src *float32, srcStride int, n int)
// For p in [0, n) (n a multiple of 4) and r in [0, 4):
// dst[p*dstStride+r] = src[r*srcStride+p]. Strides are in floats. SSE only.
TEXT ·transpose4(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ dstStride+8(FP), DX
	SHLQ $2, DX
	MOVQ src+16(FP), SI
	MOVQ srcStride+24(FP), BX
	SHLQ $2, BX
	MOVQ n+32(FP), CX
	SHRQ $2, CX
	JZ donet
	LEAQ (SI)(BX*1), R8
	LEAQ (R8)(BX*1), R9
	LEAQ (R9)(BX*1), R10
	LEAQ (DX)(DX*2), R11
looptr:
	MOVUPS (SI), X0
	MOVUPS (R8), X1
	MOVUPS (R9), X2
	MOVUPS (R10), X3
	MOVAPS X0, X4
	UNPCKLPS X1, X4
	UNPCKHPS X1, X0
	MOVAPS X2, X5
	UNPCKLPS X3, X5
	UNPCKHPS X3, X2
	MOVAPS X4, X6
	MOVLHPS X5, X6
	MOVHLPS X4, X5
	MOVAPS X0, X7
	MOVLHPS X2, X7
	MOVHLPS X0, X2
	MOVUPS X6, (DI)
	MOVUPS X5, (DI)(DX*1)
	MOVUPS X7, (DI)(DX*2)
	MOVUPS X2, (DI)(R11*1)
	ADDQ $16, SI
	ADDQ $16, R8
	ADDQ $16, R9
	ADDQ $16, R10
	LEAQ (DI)(DX*4), DI
	DECQ CX
	JNZ looptr
donet:
	RET

// func copyRowsMasked32(dst, src *float32, rows, srcStride, cols int)
// Copies rows runs of cols (< 32) floats from src (stride srcStride floats)
// into consecutive 32-float runs of dst, zero filling each run past cols.
// Masked loads never touch src beyond cols. Needs AVX-512F.
TEXT ·copyRowsMasked32(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ srcStride+24(FP), DX
	SHLQ $2, DX
	MOVQ cols+32(FP), CX
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX
	KMOVW AX, K1
	SHRQ $16, AX
	KMOVW AX, K2
	MOVQ rows+16(FP), CX
	TESTQ CX, CX
	JZ donem
loopm:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	ADDQ DX, SI
	ADDQ $128, DI
	DECQ CX
	JNZ loopm
donem:
	VZEROUPPER
	RET

// TRSTORE4 stores 128-bit lane L of Z8..Z11 (columns 4L..4L+3 of the four
// rows) to four consecutive dst rows and advances DI by four rows.
#define TRSTORE4(L) \
	VEXTRACTF32X4 $L, Z8, (DI) \
	VEXTRACTF32X4 $L, Z9, (DI)(DX*1) \
	VEXTRACTF32X4 $L, Z10, (DI)(DX*2) \
	VEXTRACTF32X4 $L, Z11, (DI)(R11*1) \
	LEAQ (DI)(DX*4), DI

// func transpose4x16(dst *float32, dstStride int, src *float32, srcStride int, n int)
// transpose4 for n a multiple of 16, sixteen columns per step with zmm
// registers (four in-lane 4×4 transposes). Needs AVX-512F.
TEXT ·transpose4x16(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ dstStride+8(FP), DX
	SHLQ $2, DX
	MOVQ src+16(FP), SI
	MOVQ srcStride+24(FP), BX
	SHLQ $2, BX
	MOVQ n+32(FP), CX
	SHRQ $4, CX
	JZ done16
	LEAQ (SI)(BX*1), R8
	LEAQ (R8)(BX*1), R9
	LEAQ (R9)(BX*1), R10
	LEAQ (DX)(DX*2), R11

loop16:
	VMOVUPS (SI), Z0
	VMOVUPS (R8), Z1
	VMOVUPS (R9), Z2
	VMOVUPS (R10), Z3
	VUNPCKLPS Z1, Z0, Z4
	VUNPCKHPS Z1, Z0, Z5
	VUNPCKLPS Z3, Z2, Z6
	VUNPCKHPS Z3, Z2, Z7
	VUNPCKLPD Z6, Z4, Z8
	VUNPCKHPD Z6, Z4, Z9
	VUNPCKLPD Z7, Z5, Z10
	VUNPCKHPD Z7, Z5, Z11
	VMOVUPS X8, (DI)
	VMOVUPS X9, (DI)(DX*1)
	VMOVUPS X10, (DI)(DX*2)
	VMOVUPS X11, (DI)(R11*1)
	LEAQ (DI)(DX*4), DI
	TRSTORE4(1)
	TRSTORE4(2)
	TRSTORE4(3)
	ADDQ $64, SI
	ADDQ $64, R8
	ADDQ $64, R9
	ADDQ $64, R10
	DECQ CX
	JNZ loop16

done16:
	VZEROUPPER
	RET
