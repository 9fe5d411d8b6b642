package pipeline

import (
	"context"
	"fmt"

	"github.com/lathe-ml/lathe/internal/bytesize"
	"github.com/lathe-ml/lathe/internal/sysinfo"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/runs"
)

// Host memory scheduling. A stage whose resources block asks for memory
// (resources { memory = "32GiB" }) reserves that much of the machine for
// as long as it runs:
//
//   - Stages whose reservations together would exceed the machine's
//     memory (Workspace.HostMemory: the cgroup limit, else MemTotal) do
//     not run at once: a stage waits until its reservation fits, and
//     waiting stages are served in the order they asked.
//   - A stage asking for more than the machine has fails before it runs,
//     with the reason; plan says so too.
//   - Stages without a memory figure reserve nothing: the training kinds'
//     own guard checks their estimate against what is free when they
//     start.
//
// The reservation is taken before the stage's -j slot or devices, so a
// stage waiting for memory holds nothing scarcer.

// hostMemory is the memory the executor schedules reservations against.
func (ws *Workspace) hostMemory() (int64, error) {
	if ws.HostMemory != nil {
		return ws.HostMemory()
	}
	m, err := sysinfo.ReadMemory()
	if err != nil {
		return 0, err
	}
	if m.CgroupLimit > 0 && (m.Total == 0 || m.CgroupLimit < m.Total) {
		return m.CgroupLimit, nil
	}
	if m.Total == 0 {
		return 0, fmt.Errorf("the machine's memory is unknown")
	}
	return m.Total, nil
}

// memoryProblem says why an instance's memory reservation cannot be met
// on a machine with total bytes (or the error finding out), or "".
func memoryProblem(inst *config.Instance, total int64, err error) string {
	n := inst.Resources.Memory
	switch {
	case n == 0:
		return ""
	case err != nil:
		return fmt.Sprintf("%s asks for %s of memory but %v", inst.Addr, bytesize.Format(n), err)
	case n > total:
		return fmt.Sprintf("%s asks for %s of memory but this machine has %s", inst.Addr, bytesize.Format(n), bytesize.Format(total))
	}
	return ""
}

// memoryPool hands out byte reservations, to waiting requests in arrival
// order.
type memoryPool struct {
	q     fifo[int64, int64]
	total int64
	used  int64 // guarded by q's lock
}

func newMemoryPool(total int64) *memoryPool {
	p := &memoryPool{total: total}
	p.q.take = func(n int64) (int64, bool) {
		if p.used+n > p.total {
			return 0, false
		}
		p.used += n
		return n, true
	}
	p.q.give = func(n int64) { p.used -= n }
	return p
}

// acquire reserves n bytes (n <= total), waiting until they fit. waiting
// is called, without the pool's lock, with the bytes in use, when the
// request has to wait.
func (p *memoryPool) acquire(ctx context.Context, n int64, waiting func(used int64)) error {
	_, err := p.q.acquire(ctx, n, func() {
		if waiting != nil {
			var used int64
			p.q.locked(func() { used = p.used })
			waiting(used)
		}
	})
	return err
}

// release returns n bytes and serves the waiters that fit.
func (p *memoryPool) release(n int64) { p.q.release(n) }

// acquireMemory reserves the instance's memory for its run. ok is false
// when it will not run; r then says why.
func (e *executor) acquireMemory(ctx context.Context, inst *config.Instance, r *StageResult) (release func(), ok bool) {
	n := inst.Resources.Memory
	if n == 0 {
		return func() {}, true
	}
	e.memOnce.Do(func() {
		total, err := e.ws.hostMemory()
		e.memTotal, e.memErr = total, err
		e.memPool = newMemoryPool(total)
	})
	if p := memoryProblem(inst, e.memTotal, e.memErr); p != "" {
		e.fail(r, fmt.Errorf("%s", p))
		return nil, false
	}
	err := e.memPool.acquire(ctx, n, func(used int64) {
		e.emit(runs.Event{Type: "log", Stage: inst.Addr, Message: fmt.Sprintf("waiting for %s of memory (%s of %s reserved)", bytesize.Format(n), bytesize.Format(used), bytesize.Format(e.memTotal))})
	})
	if err != nil {
		r.Status, r.Note = StatusCanceled, "interrupted while waiting for memory"
		return nil, false
	}
	return func() { e.memPool.release(n) }, true
}
