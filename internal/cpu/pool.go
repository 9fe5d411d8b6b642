package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// workerTask is a parallel job split over a fixed number of workers.
type workerTask interface{ runWorker(w int) }

// runTask runs t.runWorker(0), ..., t.runWorker(workers-1) concurrently,
// worker 0 on the calling goroutine, and returns when all are done. wg must
// be idle and owned by the caller; with a task that is itself reused it
// allocates nothing.
//
// Helpers come from a persistent pool whose idle members spin for a short
// while (spinFor) before parking: waking a parked thread costs 50-500 µs on
// these virtual machines, longer than a whole small matrix product, while a
// spinning one starts at once. A job only goes to an idle member, and to a
// fresh goroutine when none is idle, so nested or concurrent calls never
// wait on each other.
func runTask(workers int, t workerTask, wg *sync.WaitGroup) {
	if workers <= 1 {
		t.runWorker(0)
		return
	}
	wg.Add(workers - 1)
	ensurePool(workers - 1)
	pool := spinPool.Load()
	next := 0
	for w := 1; w < workers; w++ {
		placed := false
		for ; pool != nil && next < len(*pool) && !placed; next++ {
			placed = (*pool)[next].offer(t, w, wg)
		}
		if !placed {
			go runWorkerDone(t, w, wg)
		}
	}
	t.runWorker(0)
	wg.Wait()
}

func runWorkerDone(t workerTask, w int, wg *sync.WaitGroup) {
	defer wg.Done()
	t.runWorker(w)
}

// spinFor is how long an idle pool member polls for a job before parking.
const spinFor = 200 * time.Microsecond

const (
	memberIdle   = iota // polling for a job (or about to park)
	memberParked        // blocked on wake
	memberBusy          // claimed by a submitter or running a job
)

// poolMember is one persistent helper goroutine.
type poolMember struct {
	state   atomic.Int32
	pending atomic.Bool // a job is in t, w, wg
	t       workerTask
	w       int
	wg      *sync.WaitGroup
	wake    chan struct{}
}

// offer hands job (t, w) to m if m is idle and reports whether it did.
func (m *poolMember) offer(t workerTask, w int, wg *sync.WaitGroup) bool {
	if m.state.CompareAndSwap(memberIdle, memberBusy) {
		m.t, m.w, m.wg = t, w, wg
		m.pending.Store(true)
		return true
	}
	if m.state.CompareAndSwap(memberParked, memberBusy) {
		m.t, m.w, m.wg = t, w, wg
		m.pending.Store(true)
		m.wake <- struct{}{}
		return true
	}
	return false
}

func (m *poolMember) loop() {
	for {
		start := time.Now()
		for spins := 0; !m.pending.Load(); spins++ {
			if spins%64 != 63 {
				continue
			}
			runtime.Gosched()
			if time.Since(start) > spinFor && m.state.CompareAndSwap(memberIdle, memberParked) {
				<-m.wake
			}
		}
		m.pending.Store(false)
		t, w, wg := m.t, m.w, m.wg
		m.t, m.wg = nil, nil
		t.runWorker(w)
		m.state.Store(memberIdle)
		wg.Done()
	}
}

var (
	spinPool   atomic.Pointer[[]*poolMember]
	spinPoolMu sync.Mutex
)

// ensurePool grows the pool to at least n members.
func ensurePool(n int) {
	if p := spinPool.Load(); p != nil && len(*p) >= n {
		return
	}
	spinPoolMu.Lock()
	defer spinPoolMu.Unlock()
	var members []*poolMember
	if p := spinPool.Load(); p != nil {
		members = append(members, *p...)
	}
	for len(members) < n {
		m := &poolMember{wake: make(chan struct{}, 1)}
		members = append(members, m)
		go m.loop()
	}
	spinPool.Store(&members)
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
