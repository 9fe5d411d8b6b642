package cpu

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// TestGemmBF16Operands: a BF16 A, B or both gives exactly the F32 product
// of the widened values, for every transpose and batched.
func TestGemmBF16Operands(t *testing.T) {
	be := New()
	rng := rand.New(rand.NewPCG(7, 1))
	const M, N, K, batch = 5, 7, 9, 3
	for _, dtA := range []tensor.DType{tensor.F32, tensor.BF16} {
		for _, dtB := range []tensor.DType{tensor.F32, tensor.BF16} {
			for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				vals := func(n int) []float32 {
					v := make([]float32, n)
					for i := range v {
						// bfloat16-representable, so the F32 reference sees the same values.
						v[i] = tensor.F32FromBF16(tensor.BF16FromF32(float32(rng.NormFloat64())))
					}
					return v
				}
				av, bv := vals(batch*M*K), vals(batch*K*N)
				buf := func(dt tensor.DType, v []float32) tensor.Buffer {
					b, err := be.Alloc(dt, len(v))
					if err != nil {
						t.Fatal(err)
					}
					f, _ := be.Alloc(tensor.F32, len(v))
					if err := tensor.UploadF32(be, f, v); err != nil {
						t.Fatal(err)
					}
					be.Convert(b, f, len(v))
					return b
				}
				lda, ldb := K, N
				if tr[0] {
					lda = M
				}
				if tr[1] {
					ldb = K
				}
				g := tensor.Gemm{TransA: tr[0], TransB: tr[1], M: M, N: N, K: K, Alpha: 1,
					LDA: lda, LDB: ldb, LDC: N, StrideA: M * K, StrideB: K * N, StrideC: M * N, Batch: batch}
				got, want := make([]float32, batch*M*N), make([]float32, batch*M*N)
				g.A, g.B = buf(dtA, av), buf(dtB, bv)
				g.C, _ = be.Alloc(tensor.F32, len(got))
				be.Gemm(g)
				_ = tensor.DownloadF32(be, got, g.C)
				g.A, g.B = buf(tensor.F32, av), buf(tensor.F32, bv)
				g.C, _ = be.Alloc(tensor.F32, len(want))
				be.Gemm(g)
				_ = tensor.DownloadF32(be, want, g.C)
				if !slices.Equal(got, want) {
					t.Errorf("A %v B %v trans %v: differs from the F32 product", dtA, dtB, tr)
				}
			}
		}
	}
}
