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
