// Command bench measures the GFLOP/s of cpu.Sgemm on the shapes that matter
// for training (a 1024³ square product and the linear layers of a 15M and a
// tiny Llama model in their forward NT, input-gradient NN and weight-gradient
// TN forms). It prints one tab-separated line per shape:
//
//	name  transA  transB  m  n  k  gflops
//
// numpy_sgemm.py reads these lines, times OpenBLAS on the same shapes and
// prints both side by side; bench_kernels.sh runs the two.
//
// It is a measuring tool, not a test: it asserts nothing about speed.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"runtime"
	"time"

	"github.com/lathe-ml/lathe/internal/cpu"
)

type shape struct {
	name    string
	tA, tB  bool
	m, n, k int
}

// layerShapes returns the three products one linear layer in→out costs per
// training step over rows = B·T token rows.
func layerShapes(model string, rows, in, out int) []shape {
	tag := fmt.Sprintf("%s r%d %d->%d", model, rows, in, out)
	return []shape{
		{name: tag + " fwd NT", tB: true, m: rows, n: out, k: in}, // y = x·Wᵀ
		{name: tag + " dX NN", m: rows, n: in, k: out},            // dX = dy·W
		{name: tag + " dW TN", tA: true, m: out, n: in, k: rows},  // dW = dyᵀ·x
	}
}

func shapes() []shape {
	s := []shape{{name: "square 1024^3 NN", m: 1024, n: 1024, k: 1024}}
	for _, rows := range []int{2048, 4096} {
		for _, l := range [][2]int{{288, 288}, {288, 768}, {768, 288}, {288, 32000}} {
			s = append(s, layerShapes("15M", rows, l[0], l[1])...)
		}
	}
	for _, l := range [][2]int{{64, 64}, {64, 172}, {172, 64}, {64, 512}} {
		s = append(s, layerShapes("tiny", 1024, l[0], l[1])...)
	}
	return s
}

func main() {
	minTime := flag.Duration("mintime", 300*time.Millisecond, "time each shape for at least this long")
	filter := flag.String("run", "", "only shapes whose name matches this regexp")
	list := flag.Bool("list", false, "print the shapes without measuring")
	only := flag.Int("only", -1, "measure only the shape with this index in -list order")
	flag.Parse()
	re, err := regexp.Compile(*filter)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: bad -run: %v\n", err)
		os.Exit(2)
	}
	fmt.Printf("# lathe Sgemm: %s micro-kernel, GOMAXPROCS=%d\n", cpu.SgemmKernel(), runtime.GOMAXPROCS(0))
	for i, s := range shapes() {
		if !re.MatchString(s.name) || (*only >= 0 && i != *only) {
			continue
		}
		g := 0.0
		if !*list {
			g = measure(s, *minTime)
		}
		fmt.Printf("%s\t%v\t%v\t%d\t%d\t%d\t%.1f\n", s.name, s.tA, s.tB, s.m, s.n, s.k, g)
	}
}

// measure returns the best GFLOP/s over repeated runs lasting at least
// minTime in total (C is overwritten: beta = 0).
func measure(s shape, minTime time.Duration) float64 {
	rng := rand.New(rand.NewPCG(1, 2))
	rand32 := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = rng.Float32() - 0.5
		}
		return x
	}
	a, b, c := rand32(s.m*s.k), rand32(s.k*s.n), rand32(s.m*s.n)
	lda, ldb := s.k, s.n
	if s.tA {
		lda = s.m
	}
	if s.tB {
		ldb = s.k
	}
	run := func() { cpu.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n) }
	run() // warm up: pack buffers, page faults
	best := time.Duration(1<<63 - 1)
	start := time.Now()
	for reps := 0; reps < 3 || time.Since(start) < minTime; reps++ {
		t0 := time.Now()
		run()
		best = min(best, time.Since(t0))
	}
	return 2 * float64(s.m) * float64(s.n) * float64(s.k) / best.Seconds() / 1e9
}
