package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// workerTask is a parallel job split over a fixed number of workers.
type workerTask interface{ runWorker(w int) }

// taskGroup tracks the helpers of one runTask call. Its zero value is
// ready; it is owned by one caller at a time and reused across calls.
type taskGroup struct {
	pending atomic.Int32
	done    chan struct{} // one token per call, from the last helper
}

func (g *taskGroup) finish() {
	if g.pending.Add(-1) == 0 {
		g.done <- struct{}{}
	}
}

// wait returns once every helper has finished. It polls first (for up to
// spinFor), keeping this goroutine on its thread: a blocked caller would be
// resumed on a helper's thread, leaving its own to park, and parked threads
// are slow to wake here.
func (g *taskGroup) wait() {
	start := time.Now()
	for spins := 1; g.pending.Load() != 0; spins++ {
		if spins%spinYield == 0 {
			runtime.Gosched()
			if time.Since(start) > spinFor {
				break
			}
		}
	}
	<-g.done
}

// runTask runs t.runWorker(0), ..., t.runWorker(workers-1) concurrently,
// worker 0 on the calling goroutine, and returns when all are done. g must
// be owned by the caller; with a task and group that are reused it
// allocates nothing.
//
// Helpers come from a persistent pool whose idle members spin for a short
// while (spinFor) before parking: waking a parked thread costs 50-500 µs on
// these virtual machines, longer than a whole small matrix product, while a
// spinning one starts at once. A job only goes to an idle member, and to a
// fresh goroutine when none is idle, so nested or concurrent calls never
// wait on each other.
func runTask(workers int, t workerTask, g *taskGroup) {
	if workers <= 1 {
		t.runWorker(0)
		return
	}
	if g.done == nil {
		g.done = make(chan struct{}, 1)
	}
	g.pending.Store(int32(workers - 1))
	ensurePool(workers - 1)
	pool := spinPool.Load()
	next := 0
	for w := 1; w < workers; w++ {
		placed := false
		for ; pool != nil && next < len(*pool) && !placed; next++ {
			placed = (*pool)[next].offer(t, w, g)
		}
		if !placed {
			go runWorkerDone(t, w, g)
		}
	}
	t.runWorker(0)
	g.wait()
}

func runWorkerDone(t workerTask, w int, g *taskGroup) {
	defer g.finish()
	t.runWorker(w)
}

// spinFor is how long an idle pool member polls for a job before parking.
const spinFor = 200 * time.Microsecond

// spinYield is how many polls a spinning goroutine makes between
// runtime.Gosched calls (and checks of the clock): about a microsecond,
// so other goroutines still get the thread, without entering the
// scheduler every few dozen nanoseconds. Yielding every 64 polls had the
// scheduler (mcall, findRunnable, nanotime) at ~5% of a tiny model's
// training step; every 1024 polls trained the tiny model 2-6% faster (7-8%
// with LoRA) in paired runs while the machine was busy, and made no
// difference while it was quiet.
const spinYield = 1024

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
	g       *taskGroup
	wake    chan struct{}
}

// offer hands job (t, w) to m if m is idle and reports whether it did.
func (m *poolMember) offer(t workerTask, w int, g *taskGroup) bool {
	if m.state.CompareAndSwap(memberIdle, memberBusy) {
		m.t, m.w, m.g = t, w, g
		m.pending.Store(true)
		return true
	}
	if m.state.CompareAndSwap(memberParked, memberBusy) {
		m.t, m.w, m.g = t, w, g
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
			if spins%spinYield != spinYield-1 {
				continue
			}
			runtime.Gosched()
			if time.Since(start) > spinFor && m.state.CompareAndSwap(memberIdle, memberParked) {
				<-m.wake
			}
		}
		m.pending.Store(false)
		t, w, g := m.t, m.w, m.g
		m.t, m.g = nil, nil
		t.runWorker(w)
		m.state.Store(memberIdle)
		g.finish()
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

// shares splits [0, n) into one contiguous share per worker, each cut into
// up to shareChunks chunks. Worker w runs its own share's chunks from the
// front, then takes what is left of the others' shares from their backs.
// Each chunk runs exactly once. A worker mostly keeps its own share, so
// consecutive kernels split the same way find their rows in the same
// core's cache (small models are memory-bound between products: claiming
// chunks freely cost 7-10%), and a worker that is descheduled or slower
// loses only its last chunks instead of holding the others up. The chunks
// depend only on n and the number of workers.
type shares struct {
	n, per, chunk, chunks int
	// spans[w] packs share w's unclaimed chunks [front, back): front in
	// the low 32 bits, back in the high 32.
	spans []atomic.Uint64
}

// shareChunks is how many chunks a share is cut into.
const shareChunks = 4

// reset prepares n items for workers workers.
func (s *shares) reset(n, workers int) {
	s.n, s.per = n, ceilDiv(n, workers)
	s.chunk = ceilDiv(s.per, shareChunks)
	s.chunks = ceilDiv(s.per, s.chunk)
	for len(s.spans) < workers {
		s.spans = append(s.spans, atomic.Uint64{})
	}
	for w := range workers {
		s.spans[w].Store(uint64(s.chunks) << 32)
	}
}

// claim takes chunk front (fromBack false) or back of share w's unclaimed
// chunks and returns its items, or ok false when none is left.
func (s *shares) claim(w int, fromBack bool) (lo, hi int, ok bool) {
	for {
		x := s.spans[w].Load()
		front, back := uint32(x), uint32(x>>32)
		if front >= back {
			return 0, 0, false
		}
		c, next := front, uint64(back)<<32|uint64(front+1)
		if fromBack {
			c, next = back-1, uint64(back-1)<<32|uint64(front)
		}
		if s.spans[w].CompareAndSwap(x, next) {
			lo = w*s.per + int(c)*s.chunk
			return lo, min(lo+s.chunk, (w+1)*s.per, s.n), true
		}
	}
}

// run is worker w's part of t over workers workers.
func (s *shares) run(w, workers int, t task) {
	for {
		lo, hi, ok := s.claim(w, false)
		if !ok {
			break
		}
		if lo < hi {
			t.run(lo, hi)
		}
	}
	for v := 1; v < workers; v++ {
		o := (w + v) % workers
		for {
			lo, hi, ok := s.claim(o, true)
			if !ok {
				break
			}
			if lo < hi {
				t.run(lo, hi)
			}
		}
	}
}

// forTask adapts parallelFor's chunked loop to workerTask.
type forTask struct {
	fn      func(lo, hi int)
	workers int
	shares  shares
	group   taskGroup
}

func (f *forTask) run(lo, hi int) { f.fn(lo, hi) }

func (f *forTask) runWorker(w int) { f.shares.run(w, f.workers, f) }

var forTasks = sync.Pool{New: func() any { return new(forTask) }}

// parallelFor runs fn over [0, n) on up to GOMAXPROCS workers, each with a
// contiguous share of at least grain items (see shares). Chunks are
// disjoint and depend only on n, grain and GOMAXPROCS, so a kernel whose
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
	f.fn, f.workers = fn, workers
	f.shares.reset(n, workers)
	runTask(workers, f, &f.group)
	f.fn = nil
	forTasks.Put(f)
}
