//go:build amd64 && !purego

#include "textflag.h"
#include "vecmask_amd64.h"

// AVX-512F versions of the row kernels in rowkernels.go: the same float32
// and float64 operations in the same order as the Go definitions, so the
// same bits (rowkernels_test.go checks that).

// FOLD64 sets X0 to foldLanes64 of the lanes Z0 (0..7) and Z1 (8..15):
// lane i + lane i+8, then +4, +2, +1. Clobbers Z1.
#define FOLD64 \
	VADDPD Z1, Z0, Z0 \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPD Y1, Y0, Y0 \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPD X1, X0, X0 \
	VPERMILPD $1, X0, X1 \
	VADDSD X1, X0, X0

// func sumSquaresAVX512(x *float32, n int) float64
TEXT ·sumSquaresAVX512(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), R9
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1

ssloop:
	CMPQ R9, $16
	JLT sstail
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VFMADD231PD Z2, Z2, Z0
	VFMADD231PD Z3, Z3, Z1
	ADDQ $64, SI
	SUBQ $16, R9
	JMP ssloop

sstail:
	TESTQ R9, R9
	JZ ssfold
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (SI), K3, Z4
	VCVTPS2PD Y4, Z2
	VEXTRACTF64X4 $1, Z4, Y5
	VCVTPS2PD Y5, Z3
	VFMADD231PD Z2, Z2, Z0
	VFMADD231PD Z3, Z3, Z1

ssfold:
	FOLD64
	MOVSD X0, ret+16(FP)
	VZEROUPPER
	RET

// func dot3AVX512(dout, w, x *float32, n int) float64
TEXT ·dot3AVX512(SB), NOSPLIT, $0-40
	MOVQ dout+0(FP), SI
	MOVQ w+8(FP), DI
	MOVQ x+16(FP), DX
	MOVQ n+24(FP), R9
	VXORPD Z0, Z0, Z0
	VXORPD Z1, Z1, Z1

d3loop:
	CMPQ R9, $16
	JLT d3tail
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VCVTPS2PD (DI), Z4
	VCVTPS2PD 32(DI), Z5
	VMULPD Z4, Z2, Z2
	VMULPD Z5, Z3, Z3
	VCVTPS2PD (DX), Z4
	VCVTPS2PD 32(DX), Z5
	VMULPD Z4, Z2, Z2
	VMULPD Z5, Z3, Z3
	VADDPD Z2, Z0, Z0
	VADDPD Z3, Z1, Z1
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, DX
	SUBQ $16, R9
	JMP d3loop

d3tail:
	TESTQ R9, R9
	JZ d3fold
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (SI), K3, Z6
	VMOVUPS.Z (DI), K3, Z7
	VMOVUPS.Z (DX), K3, Z8
	VCVTPS2PD Y6, Z2
	VEXTRACTF64X4 $1, Z6, Y6
	VCVTPS2PD Y6, Z3
	VCVTPS2PD Y7, Z4
	VEXTRACTF64X4 $1, Z7, Y7
	VCVTPS2PD Y7, Z5
	VMULPD Z4, Z2, Z2
	VMULPD Z5, Z3, Z3
	VCVTPS2PD Y8, Z4
	VEXTRACTF64X4 $1, Z8, Y8
	VCVTPS2PD Y8, Z5
	VMULPD Z4, Z2, Z2
	VMULPD Z5, Z3, Z3
	VADDPD Z2, Z0, Z0
	VADDPD Z3, Z1, Z1

d3fold:
	FOLD64
	MOVSD X0, ret+32(FP)
	VZEROUPPER
	RET

// func rmsScaleAVX512(out, x, w *float32, n int, r float32)
TEXT ·rmsScaleAVX512(SB), NOSPLIT, $0-36
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), R9
	VBROADCASTSS r+32(FP), Z1

rsloop:
	CMPQ R9, $16
	JLT rstail
	VMULPS (SI), Z1, Z2
	VMULPS (DX), Z2, Z2
	VMOVUPS Z2, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, R9
	JMP rsloop

rstail:
	TESTQ R9, R9
	JZ rsdone
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (SI), K3, Z2
	VMOVUPS.Z (DX), K3, Z3
	VMULPS Z1, Z2, Z2
	VMULPS Z3, Z2, Z2
	VMOVUPS Z2, K3, (DI)

rsdone:
	VZEROUPPER
	RET

// func rmsDxAVX512(dx, dout, w, x *float32, n int, r, c float32)
TEXT ·rmsDxAVX512(SB), NOSPLIT, $0-48
	MOVQ dx+0(FP), DI
	MOVQ dout+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ x+24(FP), R8
	MOVQ n+32(FP), R9
	VBROADCASTSS r+40(FP), Z1
	VBROADCASTSS c+44(FP), Z2

rdloop:
	CMPQ R9, $16
	JLT rdtail
	VMOVUPS (SI), Z3
	VMULPS (DX), Z3, Z3
	VMULPS (R8), Z2, Z4
	VSUBPS Z4, Z3, Z3
	VMULPS Z1, Z3, Z3
	VMOVUPS Z3, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R8
	ADDQ $64, DI
	SUBQ $16, R9
	JMP rdloop

rdtail:
	TESTQ R9, R9
	JZ rddone
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (SI), K3, Z3
	VMOVUPS.Z (DX), K3, Z5
	VMOVUPS.Z (R8), K3, Z6
	VMULPS Z5, Z3, Z3
	VMULPS Z6, Z2, Z4
	VSUBPS Z4, Z3, Z3
	VMULPS Z1, Z3, Z3
	VMOVUPS Z3, K3, (DI)

rddone:
	VZEROUPPER
	RET

// func colSum16AVX512(acc *float64, a, b, s *float32, rows, ld int)
// colSumGo for 16 columns: acc[0..15] += Σ_i term(i, j); b nil: a[i,j];
// else a[i,j]·b[i,j]·s[i] (s nil: 1, an exact product left out).
TEXT ·colSum16AVX512(SB), NOSPLIT, $0-48
	MOVQ acc+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ s+24(FP), R8
	MOVQ rows+32(FP), CX
	MOVQ ld+40(FP), R10
	SHLQ $2, R10
	VMOVUPD (DI), Z0
	VMOVUPD 64(DI), Z1
	TESTQ CX, CX
	JZ csdone
	TESTQ DX, DX
	JZ csplain
	TESTQ R8, R8
	JZ csprod

csscaled:
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VCVTPS2PD (DX), Z4
	VCVTPS2PD 32(DX), Z5
	VMULPD Z4, Z2, Z2
	VMULPD Z5, Z3, Z3
	VCVTSS2SD (R8), X6, X6
	VBROADCASTSD X6, Z6
	VMULPD Z6, Z2, Z2
	VMULPD Z6, Z3, Z3
	VADDPD Z2, Z0, Z0
	VADDPD Z3, Z1, Z1
	ADDQ R10, SI
	ADDQ R10, DX
	ADDQ $4, R8
	DECQ CX
	JNZ csscaled
	JMP csdone

csprod:
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VCVTPS2PD (DX), Z4
	VCVTPS2PD 32(DX), Z5
	VMULPD Z4, Z2, Z2
	VMULPD Z5, Z3, Z3
	VADDPD Z2, Z0, Z0
	VADDPD Z3, Z1, Z1
	ADDQ R10, SI
	ADDQ R10, DX
	DECQ CX
	JNZ csprod
	JMP csdone

csplain:
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VADDPD Z2, Z0, Z0
	VADDPD Z3, Z1, Z1
	ADDQ R10, SI
	DECQ CX
	JNZ csplain

csdone:
	VMOVUPD Z0, (DI)
	VMOVUPD Z1, 64(DI)
	VZEROUPPER
	RET

// func ropeHeadsAVX512(out, x, c, s *float32, heads, hd, half int, sign float32)
TEXT ·ropeHeadsAVX512(SB), NOSPLIT, $0-60
	MOVQ out+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ heads+32(FP), BX
	MOVQ hd+40(FP), R10
	SHLQ $2, R10
	MOVQ half+48(FP), R11
	MOVQ R11, R12
	SHLQ $2, R12 // half in bytes: x2 = x1 + R12
	VBROADCASTSS sign+56(FP), Z1
	TESTQ BX, BX
	JZ rpdone

rphead:
	MOVQ c+16(FP), DX
	MOVQ s+24(FP), R8
	MOVQ SI, R13
	MOVQ DI, R14
	MOVQ R11, R9

rploop:
	CMPQ R9, $16
	JLT rptail
	VMOVUPS (DX), Z2 // c
	VMULPS (R8), Z1, Z3 // sign·s
	VMOVUPS (R13), Z4 // x1
	VMOVUPS (R13)(R12*1), Z5 // x2
	VMULPS Z2, Z4, Z6
	VMULPS Z3, Z5, Z7
	VSUBPS Z7, Z6, Z6
	VMULPS Z2, Z5, Z8
	VMULPS Z3, Z4, Z9
	VADDPS Z9, Z8, Z8
	VMOVUPS Z6, (R14)
	VMOVUPS Z8, (R14)(R12*1)
	ADDQ $64, DX
	ADDQ $64, R8
	ADDQ $64, R13
	ADDQ $64, R14
	SUBQ $16, R9
	JMP rploop

rptail:
	TESTQ R9, R9
	JZ rpnext
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (DX), K3, Z2
	VMOVUPS.Z (R8), K3, Z3
	VMULPS Z1, Z3, Z3
	VMOVUPS.Z (R13), K3, Z4
	VMOVUPS.Z (R13)(R12*1), K3, Z5
	VMULPS Z2, Z4, Z6
	VMULPS Z3, Z5, Z7
	VSUBPS Z7, Z6, Z6
	VMULPS Z2, Z5, Z8
	VMULPS Z3, Z4, Z9
	VADDPS Z9, Z8, Z8
	VMOVUPS Z6, K3, (R14)
	VMOVUPS Z8, K3, (R14)(R12*1)

rpnext:
	ADDQ R10, SI
	ADDQ R10, DI
	DECQ BX
	JNZ rphead

rpdone:
	VZEROUPPER
	RET

// ELEMENTWISE(name, op) defines func name(out, a, b *float32, n int):
// out[i] = a[i] op b[i], 64 then 16 at a time, the tail under a mask.
#define ELEMENTWISE(name, op) \
TEXT name(SB), NOSPLIT, $0-32 \
	MOVQ out+0(FP), DI \
	MOVQ a+8(FP), SI \
	MOVQ b+16(FP), DX \
	MOVQ n+24(FP), R9 \
ew64: \
	CMPQ R9, $64 \
	JLT ew16 \
	VMOVUPS (SI), Z0 \
	VMOVUPS 64(SI), Z1 \
	VMOVUPS 128(SI), Z2 \
	VMOVUPS 192(SI), Z3 \
	op (DX), Z0, Z0 \
	op 64(DX), Z1, Z1 \
	op 128(DX), Z2, Z2 \
	op 192(DX), Z3, Z3 \
	VMOVUPS Z0, (DI) \
	VMOVUPS Z1, 64(DI) \
	VMOVUPS Z2, 128(DI) \
	VMOVUPS Z3, 192(DI) \
	ADDQ $256, SI \
	ADDQ $256, DX \
	ADDQ $256, DI \
	SUBQ $64, R9 \
	JMP ew64 \
ew16: \
	CMPQ R9, $16 \
	JLT ewtail \
	VMOVUPS (SI), Z0 \
	op (DX), Z0, Z0 \
	VMOVUPS Z0, (DI) \
	ADDQ $64, SI \
	ADDQ $64, DX \
	ADDQ $64, DI \
	SUBQ $16, R9 \
	JMP ew16 \
ewtail: \
	TESTQ R9, R9 \
	JZ ewdone \
	MOVQ R9, CX \
	TAILMASK \
	VMOVUPS.Z (SI), K3, Z0 \
	VMOVUPS.Z (DX), K3, Z1 \
	op Z1, Z0, Z0 \
	VMOVUPS Z0, K3, (DI) \
ewdone: \
	VZEROUPPER \
	RET

ELEMENTWISE(·addRowAVX512, VADDPS)

ELEMENTWISE(·mulRowAVX512, VMULPS)
