package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/cache"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/runs"
)

// The GPU worker. lathe itself never computes on a GPU: the CUDA backend
// lives in a separate binary (the worker, cmd/lathe-cuda), because the
// CUDA library it is built on ends the process when there is no GPU. When
// the workspace's GPUs implement GPUWorker, a GPU stage that is not cached
// is handed to that worker through the one-stage contract, as a cluster
// job would be (see stageexec.go):
//
//   - The executor takes the stage's devices, then starts `WORKER stage
//     exec -key KEY ...` on them (CUDA_VISIBLE_DEVICES). It does not take
//     the key's lock: the worker does, runs the stage, commits the result
//     to the store and records its events in an events file, which the
//     executor relays into the run as they come (progress, metrics, logs
//     show live).
//   - The worker computes the stage's key itself, from the store; what the
//     run resolved for "auto" arguments (stage.Kind.Resolve) is handed to
//     it, so it cannot resolve differently, and -key makes it refuse to run
//     under any other key (a worker of another lathe version).
//   - When the worker has exited the executor reads the committed result
//     from the store by the key the worker reported. A worker that exits
//     without recording an outcome (a crash in the driver) fails the stage
//     with its exit status and the last lines of its output.
//   - Canceling the run interrupts the worker, which checkpoints like any
//     training stage and stops; the executor waits for it.

// WorkerJob is one GPU stage handed to the worker.
type WorkerJob struct {
	// Addr is the instance address, for messages.
	Addr string
	// Devices are the GPUs given to the stage (NVML indices).
	Devices []int
	// Exec is the command line the worker runs after its binary name.
	Exec StageExec
	// WorkDir is the directory the worker runs in: the pipeline's.
	WorkDir string
}

// workerFiles are the files of the run's workers, in the run's jobs
// directory (a temporary directory for a stage run on its own).
type workerFiles struct {
	dir     string
	varFile string
	err     error
	cleanup func()
}

// workerDir returns the directory for the run's worker files, writing the
// run's variables file on first use.
func (e *executor) workerDir() (*workerFiles, error) {
	e.workerOnce.Do(func() {
		wf := &workerFiles{dir: e.jobsDir, cleanup: func() {}}
		if wf.dir == "" {
			st, err := e.ws.Store.NewStaging()
			if err != nil {
				wf.err = err
				e.worker = wf
				return
			}
			wf.dir, wf.cleanup = st.Dir, func() { _ = st.Discard() }
		}
		if err := os.MkdirAll(wf.dir, 0o755); err != nil {
			wf.err = err
		}
		wf.varFile = filepath.Join(wf.dir, "vars.json")
		if wf.err == nil {
			if err := e.ws.WriteVarFile(wf.varFile); err != nil {
				wf.err = fmt.Errorf("write the run's variables for the GPU worker: %w", err)
			}
		}
		e.worker = wf
	})
	return e.worker, e.worker.err
}

// recordResolved remembers what an instance's "auto" arguments resolved to
// in this run, for the workers of its downstream stages.
func (e *executor) recordResolved(inst *config.Instance, raw, resolved cty.Value) {
	if inst.Kind.Resolve == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.resolved == nil {
		e.resolved = map[*config.Instance][2]cty.Value{}
	}
	e.resolved[inst] = [2]cty.Value{raw, resolved}
}

// writeResolutions writes the recorded resolution of inst and of every
// ancestor into dir, so that the worker computes the keys the run did.
func (e *executor) writeResolutions(inst *config.Instance, dir string) error {
	seen := map[*config.Instance]bool{}
	var walk func(*config.Instance) error
	walk = func(in *config.Instance) error {
		if seen[in] {
			return nil
		}
		seen[in] = true
		e.mu.Lock()
		rv, ok := e.resolved[in]
		e.mu.Unlock()
		if ok {
			if err := writeResolution(dir, in.Addr, rv[0], rv[1]); err != nil {
				return fmt.Errorf("%s: record the resolved arguments for the GPU worker: %w", in.Addr, err)
			}
		}
		for _, d := range in.Deps {
			if err := walk(d); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(inst)
}

// onWorker runs a GPU stage in the worker on devices and records its
// outcome. Called without the key's lock: the worker takes it.
func (e *executor) onWorker(ctx context.Context, w GPUWorker, inst *config.Instance, key cache.Key, devices []int, r *StageResult) *StageResult {
	wf, err := e.workerDir()
	if err != nil {
		return e.fail(r, err)
	}
	resolutions := e.ws.resolutions
	if resolutions == "" {
		resolutions = filepath.Join(wf.dir, "resolved")
	}
	if err := e.writeResolutions(inst, resolutions); err != nil {
		return e.fail(r, err)
	}
	name := inst.Addr
	for i, in := range e.ws.Resolved.Instances {
		if in == inst {
			name = jobName(i, inst.Addr)
		}
	}
	events := filepath.Join(wf.dir, name+".gpu.events.jsonl")
	if err := os.Remove(events); err != nil && !errors.Is(err, os.ErrNotExist) {
		return e.fail(r, err)
	}
	job := WorkerJob{
		Addr:    inst.Addr,
		Devices: devices,
		WorkDir: e.ws.Pipeline.Dir,
		Exec: StageExec{
			Addr:        inst.Addr,
			Pipeline:    e.ws.Path,
			Store:       e.ws.Store.Root(),
			VarFile:     wf.varFile,
			Events:      events,
			Rerun:       e.sel.forced[inst],
			Force:       e.opt.Force,
			Resolutions: resolutions,
			Key:         key.Sum,
		},
	}
	if job.Exec.Pipeline == "" {
		return e.fail(r, fmt.Errorf("%s: the workspace does not know its pipeline's path, which the GPU worker needs", inst.Addr))
	}
	e.emit(runs.Event{Type: "log", Stage: inst.Addr, Message: "on " + plural(len(devices), "GPU") + " (" + deviceList(devices) + "), in the GPU worker"})
	rl := &eventRelay{e: e, inst: inst, path: events}
	rl.follow()
	start := time.Now()
	err = w.RunWorker(ctx, job)
	final, _ := rl.finish()
	r.Duration = time.Since(start)
	if final != nil && final.Duration > 0 {
		r.Duration = final.Duration
	}
	const who = "the GPU worker"
	switch {
	case final != nil && (final.Type == "stage-finished" || final.Type == "stage-cached"):
		if err != nil {
			e.emit(runs.Event{Type: "log", Stage: inst.Addr, Message: fmt.Sprintf("warning: %s: %v, but its stage had committed its result", who, err)})
		}
		r = e.committedResult(ctx, inst, who, "", final, r)
		if r.Status == StatusRan && e.ws.Remote != nil {
			e.pushCommitted(ctx, inst, r.Key)
		}
		return r
	case ctx.Err() != nil || (final != nil && final.Type == "stage-canceled"):
		r.Status, r.Err = StatusCanceled, ctx.Err()
		if r.Err == nil {
			r.Err = errors.New("the GPU worker was interrupted")
		}
		e.emit(runs.Event{Type: "stage-canceled", Stage: inst.Addr, Key: key.Sum, Duration: r.Duration})
		return r
	case final != nil && final.Type == "stage-failed":
		return e.fail(r, errors.New(final.Message))
	case err != nil:
		return e.fail(r, fmt.Errorf("%s: %w", who, err))
	}
	return e.fail(r, fmt.Errorf("%s exited without recording the stage's outcome in %s", who, events))
}

// pushCommitted writes a result the worker committed back to the remote
// cache, as a stage run here is (best effort: the local result stands
// either way). The worker itself has no remote cache attached.
func (e *executor) pushCommitted(ctx context.Context, inst *config.Instance, key string) {
	rec, err := e.ws.Store.Lookup(key)
	if err == nil && rec != nil {
		_, err = e.ws.Remote.Push(ctx, e.ws.Store, rec)
	}
	if err != nil {
		e.emit(runs.Event{Type: "log", Stage: inst.Addr, Key: key, Message: "warning: remote cache push failed: " + err.Error()})
	}
}
