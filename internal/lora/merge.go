package lora

import (
	"fmt"
	"runtime"
	"sync"
)

// Merge returns W + scale·B·A for W [out, in], A [rank, in] and B [out, rank]
// (row-major). Each element is accumulated in float64 over k = 0..rank-1 in
// order and rounded to float32 once, so the result does not depend on the
// number of goroutines used; explicit conversions keep the compiler from
// fusing multiply-adds, so it is the same on every platform. w is not
// modified. Slices of the wrong length
// are a programming error and panic.
func Merge(w []float32, out, in int, a, b []float32, rank int, scale float64) []float32 {
	if out < 0 || in < 0 || rank < 0 || len(w) != out*in || len(a) != rank*in || len(b) != out*rank {
		panic(fmt.Sprintf("lora.Merge: W has %d values, A %d, B %d; want out·in = %d·%d, rank·in = %d·%d, out·rank = %d·%d",
			len(w), len(a), len(b), out, in, rank, in, out, rank))
	}
	res := make([]float32, len(w))
	if len(w) == 0 {
		return res
	}
	workers := min(runtime.GOMAXPROCS(0), out)
	// Split rows only when there is enough work to pay for goroutines.
	if out*in*max(rank, 1) < 1<<16 {
		workers = 1
	}
	rows := func(lo, hi int) {
		acc := make([]float64, in)
		for i := lo; i < hi; i++ {
			clear(acc)
			for k := 0; k < rank; k++ {
				bik := float64(b[i*rank+k])
				ak := a[k*in : (k+1)*in]
				for j, v := range ak {
					acc[j] += float64(bik * float64(v))
				}
			}
			wi := w[i*in : (i+1)*in]
			ri := res[i*in : (i+1)*in]
			for j, v := range wi {
				ri[j] = float32(float64(v) + float64(scale*acc[j]))
			}
		}
	}
	if workers <= 1 {
		rows(0, out)
		return res
	}
	var wg sync.WaitGroup
	chunk := (out + workers - 1) / workers
	for lo := 0; lo < out; lo += chunk {
		hi := min(lo+chunk, out)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows(lo, hi)
		}()
	}
	wg.Wait()
	return res
}
