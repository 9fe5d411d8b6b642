//go:build amd64 && !purego

#include "textflag.h"
#include "vecmask_amd64.h"

// AVX-512F versions of the row kernels in vecmath.go. Each does the same
// float32 operations in the same order as its Go counterpart (no FMA), so
// the results are the same bits; vecmath_test.go checks that.

// LOADEXPCONSTS broadcasts expConsts into Z20..Z30, Z18 (expfMin), Z19
// (expfMax) and Z17 (0x4B400000-127, the exponent bias of kf's bits).
#define LOADEXPCONSTS \
	LEAQ ·expConsts(SB), AX \
	VBROADCASTSS 0(AX), Z20 \
	VBROADCASTSS 4(AX), Z21 \
	VBROADCASTSS 8(AX), Z22 \
	VBROADCASTSS 12(AX), Z23 \
	VBROADCASTSS 16(AX), Z24 \
	VBROADCASTSS 20(AX), Z25 \
	VBROADCASTSS 24(AX), Z26 \
	VBROADCASTSS 28(AX), Z27 \
	VBROADCASTSS 32(AX), Z28 \
	VBROADCASTSS 36(AX), Z29 \
	VBROADCASTSS 40(AX), Z30 \
	VBROADCASTSS 44(AX), Z18 \
	VBROADCASTSS 48(AX), Z19 \
	MOVL $0x4B3FFF81, AX \
	VPBROADCASTD AX, Z17

// EXPCORE sets Z1 = expfCore(Z0) lane by lane (Z0 kept; Z2..Z5 clobbered).
#define EXPCORE \
	VMULPS Z20, Z0, Z1 \
	VADDPS Z21, Z1, Z1 \
	VSUBPS Z21, Z1, Z2 \
	VMULPS Z22, Z2, Z3 \
	VSUBPS Z3, Z0, Z3 \
	VMULPS Z23, Z2, Z4 \
	VSUBPS Z4, Z3, Z3 \
	VMULPS Z24, Z3, Z4 \
	VADDPS Z25, Z4, Z4 \
	VMULPS Z3, Z4, Z4 \
	VADDPS Z26, Z4, Z4 \
	VMULPS Z3, Z4, Z4 \
	VADDPS Z27, Z4, Z4 \
	VMULPS Z3, Z4, Z4 \
	VADDPS Z28, Z4, Z4 \
	VMULPS Z3, Z4, Z4 \
	VADDPS Z29, Z4, Z4 \
	VMULPS Z3, Z3, Z5 \
	VMULPS Z5, Z4, Z4 \
	VADDPS Z3, Z4, Z4 \
	VADDPS Z30, Z4, Z4 \
	VPSUBD Z17, Z1, Z1 \
	VPSLLD $23, Z1, Z1 \
	VMULPS Z1, Z4, Z1

// EXPVEC replaces the 16 floats at R8 by expfCore(x − Z31) (0 below
// expfMin) and adds them to the lane sums Z14; EXPVECTAIL does the same for
// the lanes of K3 only. Z0..Z5 and K2 are clobbered.
#define EXPVEC \
	VMOVUPS (R8), Z0 \
	VSUBPS Z31, Z0, Z0 \
	VCMPPS $0x1d, Z18, Z0, K2 \
	EXPCORE \
	VMOVAPS.Z Z1, K2, Z1 \
	VMOVUPS Z1, (R8) \
	VADDPS Z1, Z14, Z14

#define EXPVECTAIL \
	VMOVUPS.Z (R8), K3, Z0 \
	VSUBPS Z31, Z0, Z0 \
	VCMPPS $0x1d, Z18, Z0, K2 \
	EXPCORE \
	VMOVAPS.Z Z1, K2, Z1 \
	VMOVUPS Z1, K3, (R8) \
	VADDPS Z1, Z14, K3, Z14

// FOLD14 sets X2 to foldLanes of the float32 lane sums Z14: lane i plus
// lane i+8 in float64, then +4, +2, +1 (Z3 clobbered).
#define FOLD14 \
	VCVTPS2PD Y14, Z2 \
	VEXTRACTF64X4 $1, Z14, Y3 \
	VCVTPS2PD Y3, Z3 \
	VADDPD Z3, Z2, Z2 \
	VEXTRACTF64X4 $1, Z2, Y3 \
	VADDPD Y3, Y2, Y2 \
	VEXTRACTF128 $1, Y2, X3 \
	VADDPD X3, X2, X2 \
	VPERMILPD $1, X2, X3 \
	VADDSD X3, X2, X2

// func expSubRowAVX512(row *float32, n int, sub float32) (total float64, done int)
//
// expSubRowGo on whole blocks of row[:n], in order, while no element of a
// block has x - sub above expfMax or NaN (those take expf's slow path in
// Go): done is the number of elements finished (a multiple of expBlock, or
// n) and total their sum.
TEXT ·expSubRowAVX512(SB), NOSPLIT, $0-40
	MOVQ row+0(FP), SI
	MOVQ n+8(FP), R11
	VBROADCASTSS sub+16(FP), Z31
	LOADEXPCONSTS
	VXORPD X15, X15, X15 // total
	XORQ DI, DI          // done

block:
	MOVQ R11, BX
	SUBQ DI, BX
	JLE finish
	CMPQ BX, $256
	JLE sized
	MOVQ $256, BX

sized:
	// Check the block first: it is then computed whole or left to Go.
	LEAQ (SI)(DI*4), R8
	MOVQ BX, R9

check:
	CMPQ R9, $16
	JLT checktail
	VMOVUPS (R8), Z0
	VSUBPS Z31, Z0, Z0
	VCMPPS $0x16, Z19, Z0, K1 // !(x <= expfMax), true for NaN
	KORTESTW K1, K1
	JNZ finish
	ADDQ $64, R8
	SUBQ $16, R9
	JMP check

checktail:
	TESTQ R9, R9
	JZ compute
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (R8), K3, Z0
	VSUBPS Z31, Z0, Z0
	VCMPPS $0x16, Z19, Z0, K3, K1
	KORTESTW K1, K1
	JNZ finish

compute:
	VPXORD Z14, Z14, Z14 // the 16 lane sums
	LEAQ (SI)(DI*4), R8
	MOVQ BX, R9

loop:
	CMPQ R9, $16
	JLT tail
	EXPVEC
	ADDQ $64, R8
	SUBQ $16, R9
	JMP loop

tail:
	TESTQ R9, R9
	JZ fold
	MOVQ R9, CX
	TAILMASK
	EXPVECTAIL

fold:
	FOLD14
	VADDSD X2, X15, X15
	ADDQ BX, DI
	JMP block

finish:
	MOVSD X15, total+24(FP)
	MOVQ DI, done+32(FP)
	VZEROUPPER
	RET

// SIGMOID sets Z1 = sigmoidf(Z0) (Z0 kept; Z2..Z6 clobbered; Z16 holds
// the sign bit in every lane).
#define SIGMOID \
	VPXORD Z16, Z0, Z6 \
	VMAXPS Z6, Z18, Z6 \
	VMINPS Z6, Z19, Z6 \
	VMOVAPS Z0, Z7 \
	VMOVAPS Z6, Z0 \
	EXPCORE \
	VMOVAPS Z7, Z0 \
	VADDPS Z30, Z1, Z1 \
	VDIVPS Z1, Z30, Z1

// func swigluFwdAVX512(out, gate, up *float32, n int)
TEXT ·swigluFwdAVX512(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ gate+8(FP), SI
	MOVQ up+16(FP), DX
	MOVQ n+24(FP), R9
	LOADEXPCONSTS
	MOVL $0x80000000, AX
	VPBROADCASTD AX, Z16

fwdloop:
	CMPQ R9, $16
	JLT fwdtail
	VMOVUPS (SI), Z0
	SIGMOID
	VMULPS Z1, Z0, Z1  // g·s
	VMULPS (DX), Z1, Z1 // ·up
	VMOVUPS Z1, (DI)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, DI
	SUBQ $16, R9
	JMP fwdloop

fwdtail:
	TESTQ R9, R9
	JZ fwddone
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (SI), K3, Z0
	VMOVUPS.Z (DX), K3, Z8
	SIGMOID
	VMULPS Z1, Z0, Z1
	VMULPS Z8, Z1, Z1
	VMOVUPS Z1, K3, (DI)

fwddone:
	VZEROUPPER
	RET

// SWIGLUBWD: from g (Z0), up (Z8) and dout (Z9), sets Z10 = dgate and
// Z11 = dup as swigluBwdGo does.
#define SWIGLUBWD \
	SIGMOID \
	VSUBPS Z1, Z30, Z10 \
	VMULPS Z10, Z0, Z10 \
	VADDPS Z30, Z10, Z10 \
	VMULPS Z8, Z9, Z12 \
	VMULPS Z1, Z12, Z12 \
	VMULPS Z10, Z12, Z10 \
	VMULPS Z0, Z9, Z11 \
	VMULPS Z1, Z11, Z11

// func swigluBwdAVX512(dgate, dup, dout, gate, up *float32, n int)
TEXT ·swigluBwdAVX512(SB), NOSPLIT, $0-48
	MOVQ dgate+0(FP), DI
	MOVQ dup+8(FP), R10
	MOVQ dout+16(FP), R12
	MOVQ gate+24(FP), SI
	MOVQ up+32(FP), DX
	MOVQ n+40(FP), R9
	LOADEXPCONSTS
	MOVL $0x80000000, AX
	VPBROADCASTD AX, Z16

bwdloop:
	CMPQ R9, $16
	JLT bwdtail
	VMOVUPS (SI), Z0
	VMOVUPS (DX), Z8
	VMOVUPS (R12), Z9
	SWIGLUBWD
	VMOVUPS Z10, (DI)
	VMOVUPS Z11, (R10)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R12
	ADDQ $64, DI
	ADDQ $64, R10
	SUBQ $16, R9
	JMP bwdloop

bwdtail:
	TESTQ R9, R9
	JZ bwddone
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (SI), K3, Z0
	VMOVUPS.Z (DX), K3, Z8
	VMOVUPS.Z (R12), K3, Z9
	SWIGLUBWD
	VMOVUPS Z10, K3, (DI)
	VMOVUPS Z11, K3, (R10)

bwddone:
	VZEROUPPER
	RET

// func adamwAVX512(p, grad, m, v *float32, n int, a *adamwArgs)
TEXT ·adamwAVX512(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R10
	MOVQ v+24(FP), R12
	MOVQ n+32(FP), R9
	MOVQ a+40(FP), AX
	VBROADCASTSS 0(AX), Z20  // decay
	VBROADCASTSS 4(AX), Z21  // b1
	VBROADCASTSS 8(AX), Z22  // 1-b1
	VBROADCASTSS 12(AX), Z23 // b2
	VBROADCASTSS 16(AX), Z24 // 1-b2
	VBROADCASTSS 20(AX), Z25 // step
	VBROADCASTSS 24(AX), Z26 // bc2s
	VBROADCASTSS 28(AX), Z27 // eps
	KXNORW K3, K3, K3        // all lanes

adamloop:
	CMPQ R9, $16
	JGE adamfull
	TESTQ R9, R9
	JZ adamdone
	MOVQ R9, CX
	TAILMASK
	MOVQ $16, R9 // last round

adamfull:
	VMOVUPS.Z (SI), K3, Z0  // g
	VMOVUPS.Z (DI), K3, Z1  // p
	VMOVUPS.Z (R10), K3, Z2 // m
	VMOVUPS.Z (R12), K3, Z3 // v
	VMULPS Z20, Z1, Z1      // pi = p·decay
	VMULPS Z21, Z2, Z2      // b1·m
	VMULPS Z22, Z0, Z4      // (1-b1)·g
	VADDPS Z4, Z2, Z2       // mi
	VMULPS Z23, Z3, Z3      // b2·v
	VMULPS Z24, Z0, Z4      // (1-b2)·g
	VMULPS Z0, Z4, Z4       // ·g
	VADDPS Z4, Z3, Z3       // vi
	VMOVUPS Z2, K3, (R10)
	VMOVUPS Z3, K3, (R12)
	VSQRTPS Z3, Z5
	VDIVPS Z26, Z5, Z5      // sqrt(vi)/bc2s
	VADDPS Z27, Z5, Z5      // + eps
	VMULPS Z25, Z2, Z6      // step·mi
	VDIVPS Z5, Z6, Z6       // /denom
	VSUBPS Z6, Z1, Z1       // pi - ...
	VMOVUPS Z1, K3, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R10
	ADDQ $64, R12
	SUBQ $16, R9
	JNZ adamloop

adamdone:
	VZEROUPPER
	RET

// func scaleRowAVX512(x *float32, n int, k float32)
TEXT ·scaleRowAVX512(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), R9
	VBROADCASTSS k+16(FP), Z1

scaleloop:
	CMPQ R9, $64
	JLT scale16
	VMULPS (DI), Z1, Z2
	VMULPS 64(DI), Z1, Z3
	VMULPS 128(DI), Z1, Z4
	VMULPS 192(DI), Z1, Z5
	VMOVUPS Z2, (DI)
	VMOVUPS Z3, 64(DI)
	VMOVUPS Z4, 128(DI)
	VMOVUPS Z5, 192(DI)
	ADDQ $256, DI
	SUBQ $64, R9
	JMP scaleloop

scale16:
	CMPQ R9, $16
	JLT scaletail
	VMULPS (DI), Z1, Z2
	VMOVUPS Z2, (DI)
	ADDQ $64, DI
	SUBQ $16, R9
	JMP scale16

scaletail:
	TESTQ R9, R9
	JZ scaledone
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (DI), K3, Z2
	VMULPS Z1, Z2, Z2
	VMOVUPS Z2, K3, (DI)

scaledone:
	VZEROUPPER
	RET

// func rowMaxAVX512(x *float32, n int) float32
// rowMaxGo: lane i mod 16 keeps its maximum (VMAXPS with the new value as
// the first source keeps the old one unless the new is strictly greater,
// NaN included), then the lanes are folded +8, +4, +2, +1 the same way.
TEXT ·rowMaxAVX512(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), R9
	MOVL $0xFF800000, AX // -Inf
	VPBROADCASTD AX, Z1

maxloop:
	CMPQ R9, $16
	JLT maxtail
	VMOVUPS (DI), Z2
	VMAXPS Z1, Z2, Z1
	ADDQ $64, DI
	SUBQ $16, R9
	JMP maxloop

maxtail:
	TESTQ R9, R9
	JZ maxfold
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (DI), K3, Z2
	VMAXPS Z1, Z2, K3, Z1

maxfold:
	VEXTRACTF64X4 $1, Z1, Y2
	VMAXPS Y1, Y2, Y1
	VEXTRACTF128 $1, Y1, X2
	VMAXPS X1, X2, X1
	VPERMILPD $1, X1, X2
	VMAXPS X1, X2, X1
	VPSHUFD $1, X1, X2
	VMAXPS X1, X2, X1
	MOVSS X1, ret+16(FP)
	VZEROUPPER
	RET

// func expSubRowsAVX512(s *float32, ld, rows, first, bk int, diag bool, sub *float32, sums *float64) (done int)
//
// expSubRowGo on rows 0..rows-1 of a tile (row i at s + i·ld floats, sub[i]
// subtracted, sums[i] set to its sum unless sums is nil), for rows of at
// most expBlock elements: bk each, or min(first+i+1, bk) when diag (the
// causal diagonal). It stops before the first row with an element that
// needs expf's slow path (x - sub above expfMax, or NaN) and returns the
// number of rows finished.
TEXT ·expSubRowsAVX512(SB), NOSPLIT, $0-72
	MOVQ s+0(FP), SI
	MOVQ ld+8(FP), R12
	SHLQ $2, R12
	MOVQ rows+16(FP), R13
	MOVQ first+24(FP), DX
	MOVQ bk+32(FP), R14
	MOVQ sub+48(FP), R10
	MOVQ sums+56(FP), R11
	LOADEXPCONSTS
	XORQ DI, DI // row

rowloop:
	CMPQ DI, R13
	JGE rowsdone
	MOVQ R14, BX // n
	CMPB diag+40(FP), $0
	JEQ rowsized
	LEAQ 1(DX)(DI*1), R9
	CMPQ R9, BX
	CMOVQLT R9, BX

rowsized:
	VBROADCASTSS (R10)(DI*4), Z31
	MOVQ SI, R8
	MOVQ BX, R9

rowcheck:
	CMPQ R9, $16
	JLT rowchecktail
	VMOVUPS (R8), Z0
	VSUBPS Z31, Z0, Z0
	VCMPPS $0x16, Z19, Z0, K1
	KORTESTW K1, K1
	JNZ rowsdone
	ADDQ $64, R8
	SUBQ $16, R9
	JMP rowcheck

rowchecktail:
	TESTQ R9, R9
	JZ rowcompute
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (R8), K3, Z0
	VSUBPS Z31, Z0, Z0
	VCMPPS $0x16, Z19, Z0, K3, K1
	KORTESTW K1, K1
	JNZ rowsdone

rowcompute:
	VPXORD Z14, Z14, Z14
	MOVQ SI, R8
	MOVQ BX, R9

rowexp:
	CMPQ R9, $16
	JLT rowtail
	EXPVEC
	ADDQ $64, R8
	SUBQ $16, R9
	JMP rowexp

rowtail:
	TESTQ R9, R9
	JZ rowfold
	MOVQ R9, CX
	TAILMASK
	EXPVECTAIL

rowfold:
	TESTQ R11, R11
	JZ rownext
	FOLD14
	MOVSD X2, (R11)(DI*8)

rownext:
	ADDQ R12, SI
	INCQ DI
	JMP rowloop

rowsdone:
	MOVQ DI, done+64(FP)
	VZEROUPPER
	RET

// func dsRowAVX512(dp, p *float32, n int, d float32)
// dp[i] = p[i]·(dp[i] − d), each operation rounded.
TEXT ·dsRowAVX512(SB), NOSPLIT, $0-28
	MOVQ dp+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), R9
	VBROADCASTSS d+24(FP), Z1

dsloop:
	CMPQ R9, $16
	JLT dstail
	VMOVUPS (DI), Z0
	VSUBPS Z1, Z0, Z0
	VMULPS (SI), Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, DI
	ADDQ $64, SI
	SUBQ $16, R9
	JMP dsloop

dstail:
	TESTQ R9, R9
	JZ dsdone
	MOVQ R9, CX
	TAILMASK
	VMOVUPS.Z (DI), K3, Z0
	VMOVUPS.Z (SI), K3, Z2
	VSUBPS Z1, Z0, Z0
	VMULPS Z2, Z0, Z0
	VMOVUPS Z0, K3, (DI)

dsdone:
	VZEROUPPER
	RET
