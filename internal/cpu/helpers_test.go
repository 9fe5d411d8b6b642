package cpu

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// procs are the GOMAXPROCS settings under which kernels must agree bit for
// bit.
var procs = []int{1, 2, 16}

// sameUnderProcs runs fn under each GOMAXPROCS in procs and fails unless
// every run returns the same bytes.
func sameUnderProcs(t *testing.T, name string, fn func() []byte) {
	t.Helper()
	old := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(old)
	var first []byte
	for _, p := range procs {
		runtime.GOMAXPROCS(p)
		got := fn()
		if first == nil {
			first = got
			continue
		}
		if !bytes.Equal(first, got) {
			t.Errorf("%s: GOMAXPROCS=%d differs from GOMAXPROCS=%d", name, p, procs[0])
		}
	}
}

func f32Bytes(xs ...[]float32) []byte {
	var out []byte
	for _, x := range xs {
		if len(x) > 0 {
			out = append(out, unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))...)
		}
	}
	return out
}

func randF32(r *rand.Rand, n int, scale float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = scale * float32(r.NormFloat64())
	}
	return x
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// upload allocates an F32 buffer holding x.
func upload(t testing.TB, be *Backend, x []float32) tensor.Buffer {
	t.Helper()
	b, err := be.Alloc(tensor.F32, len(x))
	if err != nil {
		t.Fatal(err)
	}
	if err := tensor.UploadF32(be, b, x); err != nil {
		t.Fatal(err)
	}
	return b
}

func uploadI32(t testing.TB, be *Backend, x []int32) tensor.Buffer {
	t.Helper()
	b, err := be.Alloc(tensor.I32, len(x))
	if err != nil {
		t.Fatal(err)
	}
	if err := tensor.UploadI32(be, b, x); err != nil {
		t.Fatal(err)
	}
	return b
}

func download(t testing.TB, be *Backend, b tensor.Buffer) []float32 {
	t.Helper()
	x := make([]float32, b.Len())
	if err := tensor.DownloadF32(be, x, b); err != nil {
		t.Fatal(err)
	}
	return x
}

// closeTo reports the first element where got and want differ by more than
// atol + rtol·|want|.
func closeTo(got []float32, want []float64, atol, rtol float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := float64(got[i]), want[i]
		if math.IsNaN(g) || math.Abs(g-w) > atol+rtol*math.Abs(w) {
			return fmt.Errorf("[%d] = %v, want %v (diff %.3g)", i, g, w, g-w)
		}
	}
	return nil
}

// fdGrad returns the central finite-difference gradient of f at x.
func fdGrad(f func([]float64) float64, x []float64, h float64) []float64 {
	g := make([]float64, len(x))
	for i := range x {
		old := x[i]
		x[i] = old + h
		fp := f(x)
		x[i] = old - h
		fm := f(x)
		x[i] = old
		g[i] = (fp - fm) / (2 * h)
	}
	return g
}

func dot64(a []float64, b []float32) float64 {
	var s float64
	for i := range a {
		s += a[i] * float64(b[i])
	}
	return s
}

// fdOperand is an input of a loss and the gradient a kernel computed for
// it.
type fdOperand struct {
	name    string
	x, grad []float32
}

// checkFiniteDifference compares samples entries (drawn from seed) of each
// operand's gradient with central differences of loss, which reads the
// operands: |g − fd| ≤ absTol + relTol·|fd|.
func checkFiniteDifference(t *testing.T, loss func() float64, seed uint64, samples int, absTol, relTol float64, ops ...fdOperand) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed))
	const h = 1e-2
	for _, op := range ops {
		for n := 0; n < samples; n++ {
			i := r.IntN(len(op.x))
			old := op.x[i]
			op.x[i] = old + h
			lp := loss()
			op.x[i] = old - h
			lm := loss()
			op.x[i] = old
			fd := (lp - lm) / (2 * h)
			if g := float64(op.grad[i]); math.Abs(g-fd) > absTol+relTol*math.Abs(fd) {
				t.Errorf("d%s[%d] = %v, central difference %v", op.name, i, g, fd)
			}
		}
	}
}
