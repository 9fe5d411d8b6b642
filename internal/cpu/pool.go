package cpu

import (
	"runtime"
	"sync"
)

// parallelFor splits [0, n) into contiguous chunks of at least grain items and
// runs fn on them concurrently. Chunks are disjoint, so a kernel whose
// iterations write disjoint outputs stays deterministic.
func parallelFor(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	workers := min(runtime.GOMAXPROCS(0), (n+grain-1)/grain)
	if workers <= 1 {
		fn(0, n)
		return
	}
	per := (n + workers - 1) / workers
	chunks := (n + per - 1) / per
	runWorkers(chunks, func(w int) {
		fn(w*per, min((w+1)*per, n))
	})
}

// runWorkers runs fn(0), ..., fn(workers-1) concurrently, fn(0) on the
// calling goroutine, and returns when all are done.
func runWorkers(workers int, fn func(w int)) {
	if workers <= 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	wg.Add(workers - 1)
	for w := 1; w < workers; w++ {
		go func() {
			defer wg.Done()
			fn(w)
		}()
	}
	fn(0)
	wg.Wait()
}
