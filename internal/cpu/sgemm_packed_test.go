package cpu

import (
	"runtime"
	"slices"
	"testing"
)

// TestSgemmPackedMatchesSgemm checks that a product through a prepacked B
// gives exactly Sgemm's bits, for every kernel, both A layouts, edge tiles,
// long K, short and long M, and any GOMAXPROCS.
func TestSgemmPackedMatchesSgemm(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(old)
	cases := []gemmCase{
		{false, true, 64, 3000, 72, 1, 0, 0},      // cross-entropy logits: x·wᵀ, many panels
		{false, false, 64, 72, 3000, 1, 0, 0},     // cross-entropy dx: dlogits·w, few panels, long K
		{false, true, 13, 100, 37, 0.5, 1, 3},     // ragged everything, beta 1, strides
		{true, false, 29, 45, 300, -2, 0.25, 1},   // transposed A
		{false, true, 300, 520, 20, 1, 0, 0},      // M beyond one block
		{true, true, 7, 5, 3, 1, 0, 2},            // smaller than a tile
		{false, false, 200, 1100, 513, 1, 0.5, 0}, // several K blocks and M blocks
	}
	for _, kern := range kernels {
		for _, tc := range cases {
			a, lda, b, ldb, c, ldc := tc.operands(11)
			want := slices.Clone(c)
			runtime.GOMAXPROCS(2)
			gemm(kern, tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc, nil)
			var pb packedB
			for _, p := range []int{1, 2, 16} {
				runtime.GOMAXPROCS(p)
				pb.pack(kern, tc.tB, tc.k, tc.n, b, ldb)
				got := slices.Clone(c)
				sgemmPacked(tc.tA, tc.m, tc.alpha, a, lda, &pb, tc.beta, got, ldc)
				if !bitsEqual(got, want) {
					t.Errorf("%s %v GOMAXPROCS=%d: prepacked product differs from Sgemm", kern.name, tc, p)
				}
			}
			// And Sgemm itself against float64.
			c0 := slices.Clone(c)
			checkAgainstReference(t, tc, a, lda, b, ldb, c0, want, ldc)
		}
	}
}

func TestPackedBPanicsOnBadShape(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"zero k", func() { new(packedB).pack(kernels[0], false, 0, 4, make([]float32, 4), 4) }},
		{"short b", func() { new(packedB).pack(kernels[0], false, 4, 4, make([]float32, 15), 4) }},
		{"short transposed b", func() { new(packedB).pack(kernels[0], true, 4, 8, make([]float32, 31), 4) }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tc.name)
				}
			}()
			tc.fn()
		}()
	}
}

// TestCrossEntropyPackedHeadSameBits checks that packing the head once per
// call (the default for small heads) gives the bits of the per-chunk
// products.
func TestCrossEntropyPackedHeadSameBits(t *testing.T) {
	c := xentCase{N: 300, C: 64, V: 3000, chunk: 64, ignored: 7}
	d := xentTestData(c, 5)
	packed := runXent(c, d, true, 0.5)
	old := xentPackBudget
	xentPackBudget = 0
	defer func() { xentPackBudget = old }()
	plain := runXent(c, d, true, 0.5)
	if !bitsEqual(packed.losses, plain.losses) || !bitsEqual(packed.dx, plain.dx) || !bitsEqual(packed.dw, plain.dw) {
		t.Fatal("cross-entropy with the head packed once differs from per-chunk packing")
	}
}
