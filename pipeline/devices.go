package pipeline

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/runs"
)

// GPU scheduling. A stage instance whose resources block asks for GPUs
// (resources { gpus = N }) is a GPU stage: it runs on the cuda backend, in
// a worker process, on N whole devices that no other running stage holds.
// The executor hands devices out from the inventory the caller gave the
// workspace (Workspace.GPUs):
//
//   - A GPU stage waits until N devices are free and takes them all at once
//     (never some now and more later, so two stages cannot deadlock each
//     holding half of what the other needs). Waiting stages are served in
//     the order they started waiting, so a stage asking for many devices is
//     not starved by a stream of stages asking for one.
//   - GPU stages do not take one of the -j slots: -j bounds the stages that
//     compute on the CPU, the devices bound the GPU stages, so CPU stages
//     run beside GPU stages whatever -j is.
//   - A stage asking for more GPUs than the inventory has fails before it
//     runs, with the reason; plan says so too. A GPU stage whose result is
//     cached needs no GPU at all: its cache hit is used on any machine.
//   - The backend enters the cache key ("backend cuda") of GPU stages only,
//     so CPU stages keep the keys they had.

// GPUs is what the executor knows of the machine's GPUs. cmd/lathe
// implements it with NVML discovery and the CUDA worker; tests use a fake.
// The pipeline package itself knows nothing of NVML or CUDA.
//
// Where the GPUs also implement GPUWorker (lathe itself), a GPU stage runs
// in a worker process that the executor starts on its devices; otherwise
// (the worker, running a stage handed to it) the stage runs in this
// process with stage.Request.Devices set.
type GPUs interface {
	// Devices returns the identifiers of the GPUs stages may be given
	// (NVML indices, as nvidia-smi numbers them). When there are none it
	// returns an error saying why ("no NVIDIA GPU: ..."). It is asked only
	// when a stage that needs GPUs is planned or about to run, at most once
	// per plan and once per run.
	Devices() ([]int, error)
}

// GPUWorker starts the worker process that runs a GPU stage (see
// worker.go).
type GPUWorker interface {
	GPUs
	// RunWorker runs the one-stage contract, `stage exec` with the
	// arguments job.Exec.Args(), in the worker binary on exactly
	// job.Devices (its CUDA_VISIBLE_DEVICES), and returns once the process
	// has exited: nil when it exited with status 0, else an error saying
	// how it ended, with the last lines of its output. When ctx ends it
	// interrupts the worker, which checkpoints and stops, and waits for it.
	RunWorker(ctx context.Context, job WorkerJob) error
}

// Backend names of the cache key's backend line.
const (
	BackendCPU  = "cpu"
	BackendCUDA = "cuda"
)

// BackendOf returns the backend an instance runs on: cuda when its
// resources block asks for GPUs, else cpu.
func BackendOf(inst *config.Instance) string {
	if inst.Resources.GPUs > 0 {
		return BackendCUDA
	}
	return BackendCPU
}

// backendKeyLine is the cache key's backend line: only GPU stages have one,
// so the keys of CPU stages stay what they were before GPUs existed.
func backendKeyLine(inst *config.Instance) (string, bool) {
	if b := BackendOf(inst); b != BackendCPU {
		return "backend " + b, true
	}
	return "", false
}

// inventory asks the workspace's GPUs for their devices once.
type inventory struct {
	ws   *Workspace
	once sync.Once
	ids  []int
	err  error
}

func (inv *inventory) devices() ([]int, error) {
	inv.once.Do(func() {
		if inv.ws.GPUs == nil {
			inv.err = fmt.Errorf("no GPUs were given to this executor")
			return
		}
		ids, err := inv.ws.GPUs.Devices()
		if err == nil && len(ids) == 0 {
			err = fmt.Errorf("no GPU is available")
		}
		inv.ids, inv.err = append([]int(nil), ids...), err
		sort.Ints(inv.ids)
	})
	return inv.ids, inv.err
}

// gpuProblem says why an instance cannot get the GPUs it asks for, or "".
func (inv *inventory) gpuProblem(inst *config.Instance) string {
	n := inst.Resources.GPUs
	if n == 0 {
		return ""
	}
	ids, err := inv.devices()
	if err != nil {
		return fmt.Sprintf("%s asks for %s but %v", inst.Addr, plural(n, "GPU"), err)
	}
	if n > len(ids) {
		return fmt.Sprintf("%s asks for %s but this machine has %s (%s)", inst.Addr, plural(n, "GPU"), plural(len(ids), "usable GPU"), deviceList(ids))
	}
	return ""
}

// checkGPUs notes, on each step that would run, when its instance asks for
// more GPUs or memory than the machine has: the run would fail it before
// it starts.
func (ws *Workspace) checkGPUs(plan *Plan) {
	inv := &inventory{ws: ws}
	for i, inst := range ws.Resolved.Instances {
		step := plan.Steps[i]
		if step.Addr != inst.Addr || (step.Action != ActionRun && step.Action != ActionPending) {
			continue
		}
		p := inv.gpuProblem(inst)
		if p == "" && inst.Resources.Memory > 0 {
			total, err := ws.hostMemory()
			p = memoryProblem(inst, total, err)
		}
		if p != "" {
			step.Problem = "cannot run here: " + p
			step.Reason += "; " + step.Problem
		}
	}
}

// acquire waits for what the instance needs to start: its memory
// reservation (memory.go), then a -j slot for a CPU stage or its devices
// for a GPU stage. It returns the release and the
// devices given; ok is false when the instance will not run, r then says
// why (failed for a stage asking for more GPUs than there are, canceled
// when ctx ended the wait).
func (e *executor) acquire(ctx context.Context, inst *config.Instance, r *StageResult) (release func(), devices []int, ok bool) {
	releaseMemory, ok := e.acquireMemory(ctx, inst, r)
	if !ok {
		return nil, nil, false
	}
	releaseSlot, devices, ok := e.acquireSlot(ctx, inst, r)
	if !ok {
		releaseMemory()
		return nil, nil, false
	}
	return func() { releaseSlot(); releaseMemory() }, devices, true
}

// acquireSlot waits for a -j slot (a CPU stage) or the stage's devices.
func (e *executor) acquireSlot(ctx context.Context, inst *config.Instance, r *StageResult) (release func(), devices []int, ok bool) {
	n := inst.Resources.GPUs
	if n == 0 {
		select {
		case e.sem <- struct{}{}:
			return func() { <-e.sem }, nil, true
		case <-ctx.Done():
			r.Status, r.Note = StatusCanceled, "interrupted before it started"
			return nil, nil, false
		}
	}
	e.gpuOnce.Do(func() {
		e.gpuInv = &inventory{ws: e.ws}
		if ids, err := e.gpuInv.devices(); err == nil {
			e.gpuPool = newDevicePool(ids)
		}
	})
	if p := e.gpuInv.gpuProblem(inst); p != "" {
		e.fail(r, fmt.Errorf("%s", p))
		return nil, nil, false
	}
	devices, err := e.gpuPool.acquire(ctx, n, func(inUse int) {
		e.emit(runs.Event{Type: "log", Stage: inst.Addr, Message: fmt.Sprintf("waiting for %s (%d of %d in use)", plural(n, "GPU"), inUse, e.gpuPool.size())})
	})
	if err != nil {
		r.Status, r.Note = StatusCanceled, "interrupted while waiting for GPUs"
		return nil, nil, false
	}
	return func() { e.gpuPool.release(devices) }, devices, true
}

// devicePool hands out whole devices: all of a request at once, to waiting
// requests in arrival order, lowest identifiers first.
type devicePool struct {
	q    fifo[int, []int]
	ids  []int        // sorted
	busy map[int]bool // guarded by q's lock
}

func newDevicePool(ids []int) *devicePool {
	p := &devicePool{ids: ids, busy: map[int]bool{}}
	p.q.take = p.take
	p.q.give = func(ids []int) {
		for _, id := range ids {
			delete(p.busy, id)
		}
	}
	return p
}

func (p *devicePool) size() int { return len(p.ids) }

// acquire returns n free devices, waiting until there are (n must not
// exceed the pool's size). waiting is called, without the pool's lock,
// with the number of devices in use, when the request has to wait.
func (p *devicePool) acquire(ctx context.Context, n int, waiting func(inUse int)) ([]int, error) {
	return p.q.acquire(ctx, n, func() {
		if waiting != nil {
			var inUse int
			p.q.locked(func() { inUse = len(p.busy) })
			waiting(inUse)
		}
	})
}

// release returns devices to the pool and serves the waiters that fit.
func (p *devicePool) release(ids []int) { p.q.release(ids) }

// take marks the n lowest free devices busy and returns them (false when
// fewer than n are free). Called with the lock held.
func (p *devicePool) take(n int) ([]int, bool) {
	if len(p.ids)-len(p.busy) < n {
		return nil, false
	}
	got := make([]int, 0, n)
	for _, id := range p.ids {
		if len(got) == n {
			break
		}
		if !p.busy[id] {
			got = append(got, id)
		}
	}
	for _, id := range got {
		p.busy[id] = true
	}
	return got, true
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func deviceList(ids []int) string {
	if len(ids) == 0 {
		return "none"
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprint(id)
	}
	return "GPU " + strings.Join(parts, ", ")
}
