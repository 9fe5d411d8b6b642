package pipeline

import (
	"context"
	"sync"
)

// fifo hands out a shared resource (whole GPUs, bytes of memory) to
// requests in arrival order: a request that does not fit waits, and every
// later one waits behind it, so a large request is never starved by small
// ones. R is a request, G what a granted request holds.
type fifo[R, G any] struct {
	mu sync.Mutex
	// take grants r if it fits now (false: it does not); give returns a
	// grant. Both are called with mu held.
	take    func(r R) (G, bool)
	give    func(g G)
	waiters []*fifoWaiter[R, G]
}

type fifoWaiter[R, G any] struct {
	req   R
	ready chan G // receives the grant
}

// acquire grants r, waiting for it when it does not fit now or others
// wait. waiting is called, without the lock, when the request has to wait.
// When ctx ends first, acquire returns its error and holds nothing.
func (f *fifo[R, G]) acquire(ctx context.Context, r R, waiting func()) (G, error) {
	f.mu.Lock()
	if len(f.waiters) == 0 {
		if g, ok := f.take(r); ok {
			f.mu.Unlock()
			return g, nil
		}
	}
	w := &fifoWaiter[R, G]{req: r, ready: make(chan G, 1)}
	f.waiters = append(f.waiters, w)
	f.mu.Unlock()
	if waiting != nil {
		waiting()
	}
	select {
	case g := <-w.ready:
		return g, nil
	case <-ctx.Done():
	}
	var zero G
	f.mu.Lock()
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			f.grant() // the next in line may fit now
			f.mu.Unlock()
			return zero, ctx.Err()
		}
	}
	f.mu.Unlock()
	// Granted while ctx ended: give it back.
	f.release(<-w.ready)
	return zero, ctx.Err()
}

// release returns a grant and serves the waiters that fit.
func (f *fifo[R, G]) release(g G) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.give(g)
	f.grant()
}

// grant serves waiting requests in order while the first one fits. Called
// with the lock held.
func (f *fifo[R, G]) grant() {
	for len(f.waiters) > 0 {
		w := f.waiters[0]
		g, ok := f.take(w.req)
		if !ok {
			return
		}
		f.waiters = f.waiters[1:]
		w.ready <- g
	}
}

// locked runs fn with the lock held (a consistent look at the resource).
func (f *fifo[R, G]) locked(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}
