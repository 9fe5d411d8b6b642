package cpu

// kernelGo is the portable micro-kernel: a 4×4 register tile in plain Go,
// used off amd64 and on CPUs without AVX2+FMA.
var kernelGo = &gemmKernel{
	name: "go", mr: 4, nr: 4, kc: 256, mc: 128, nc: 1024,
	fn: sgemmKernelGo,
}

// sgemmKernelGo computes the 4×4 tile C = alpha·A·B + beta·C from packed
// panels: a holds k groups of 4 rows, b holds k groups of 4 columns.
func sgemmKernelGo(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	a = a[:4*k]
	b = b[:4*k]
	for p := 0; p < k; p++ {
		av := a[4*p : 4*p+4 : 4*p+4]
		bv := b[4*p : 4*p+4 : 4*p+4]
		a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	storeRow4(c[0*ldc:], c00, c01, c02, c03, alpha, beta)
	storeRow4(c[1*ldc:], c10, c11, c12, c13, alpha, beta)
	storeRow4(c[2*ldc:], c20, c21, c22, c23, alpha, beta)
	storeRow4(c[3*ldc:], c30, c31, c32, c33, alpha, beta)
}

func storeRow4(c []float32, v0, v1, v2, v3, alpha, beta float32) {
	c = c[:4:4]
	if beta == 0 {
		c[0], c[1], c[2], c[3] = alpha*v0, alpha*v1, alpha*v2, alpha*v3
		return
	}
	c[0] = alpha*v0 + beta*c[0]
	c[1] = alpha*v1 + beta*c[1]
	c[2] = alpha*v2 + beta*c[2]
	c[3] = alpha*v3 + beta*c[3]
}
