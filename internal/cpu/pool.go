package cpu

import (
	"runtime"
	"sync"
)

// workerTask is a parallel job split over a fixed number of workers.
type workerTask interface{ runWorker(w int) }

// runTask runs t.runWorker(0), ..., t.runWorker(workers-1) concurrently,
// worker 0 on the calling goroutine, and returns when all are done. wg must
// be idle and owned by the caller. Each call starts fresh goroutines (cheap,
// recycled by the runtime, and never deadlocking when tasks nest); with a
// task that is itself reused it allocates nothing.
func runTask(workers int, t workerTask, wg *sync.WaitGroup) {
	if workers <= 1 {
		t.runWorker(0)
		return
	}
	wg.Add(workers - 1)
	for w := 1; w < workers; w++ {
		go runWorkerDone(t, w, wg)
	}
	t.runWorker(0)
	wg.Wait()
}

func runWorkerDone(t workerTask, w int, wg *sync.WaitGroup) {
	defer wg.Done()
	t.runWorker(w)
}

// forTask adapts parallelFor's chunked loop to workerTask.
type forTask struct {
	fn     func(lo, hi int)
	n, per int
	wg     sync.WaitGroup
}

func (f *forTask) runWorker(w int) { f.fn(w*f.per, min((w+1)*f.per, f.n)) }

var forTasks = sync.Pool{New: func() any { return new(forTask) }}

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
	f := forTasks.Get().(*forTask)
	f.fn, f.n, f.per = fn, n, (n+workers-1)/workers
	runTask((n+f.per-1)/f.per, f, &f.wg)
	f.fn = nil
	forTasks.Put(f)
}
