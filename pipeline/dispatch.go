package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/cache"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/runs"
)

// Cluster execution. With RunOptions.Dispatch set, Run hands every stage
// that is not cached to a cluster (Slurm) as a job running `lathe stage
// exec` (see StageExec), instead of running it in this process:
//
//   - All of them are submitted when the run starts, in topological order,
//     each job depending on the jobs of its upstream stages (afterok), so
//     the cluster starts a job only once its upstream jobs succeeded. A
//     stage that is cached, or pulled from the remote cache, never reaches
//     the cluster.
//   - A job computes its stage's key from the store exactly as a local run
//     would; a stage whose upstream result came out identical is then a
//     cache hit and the job a no-op.
//   - The run follows each job: its state (through the Dispatcher), its
//     events (the events file `lathe stage exec` writes in the run's jobs
//     directory, recorded in the run as they come) and its output log
//     (streamed into the run's log events). When the job ends, the run
//     reads the committed result from the store.
//   - A failed job fails its stage with the job id, the reason and the
//     tail of its log. Without KeepGoing the jobs that have not started are
//     canceled (running ones finish); a canceled run (ctx) cancels every
//     job and waits until none is left.

// Dispatcher submits stage jobs to a cluster and follows them. pipeline/slurm
// implements it with sbatch, squeue and scancel.
type Dispatcher interface {
	// Name names the cluster in messages ("Slurm").
	Name() string
	// Submit queues a job and returns its id. The job must not start
	// before the jobs in spec.After have succeeded, and must be dropped if
	// one of them fails.
	Submit(ctx context.Context, spec JobSpec) (id string, err error)
	// Watch follows a submitted job until it ends and returns how it
	// ended, calling report (from one goroutine) for each change of state
	// and each line the job writes to its output. It returns ctx.Err() as
	// soon as ctx is done, leaving the job alone.
	Watch(ctx context.Context, id string, report func(JobUpdate)) (JobEnd, error)
	// Cancel cancels the jobs (only those still waiting to start, with
	// pendingOnly) and returns once none of them is left running, or with
	// an error saying which are.
	Cancel(ctx context.Context, ids []string, pendingOnly bool) error
}

// JobSpec is one stage instance to run as a job.
type JobSpec struct {
	// Addr is the instance address.
	Addr string
	// Name is a short name, unique in the run and safe in file names
	// ("03-sft.identity_r8"); Dir/Name.* are the job's files.
	Name string
	// Dir is the run's jobs directory, on the store's filesystem, where
	// the job's files go (the events file, and the executor's batch script
	// and output log).
	Dir string
	// Exec is the command the job runs (after the lathe binary).
	Exec StageExec
	// WorkDir is the directory the job runs in: the pipeline's.
	WorkDir string
	// After lists the ids of the jobs that must succeed first.
	After []string
	// Resources is what the stage's resources block asks for.
	Resources config.Resources
}

// JobUpdate is a change in a job as Watch sees it: a new state, or a line
// of its output.
type JobUpdate struct {
	// State is the cluster's name of the job's new state ("PENDING",
	// "RUNNING"); "" for a line of output.
	State string
	// Detail says more about the state: why the job waits, where it runs.
	Detail string
	// Line is one line of the job's output.
	Line string
}

// JobEnd is how a job ended.
type JobEnd struct {
	// OK reports that the job completed successfully (exit code 0).
	OK bool
	// State is the cluster's final state ("COMPLETED", "FAILED",
	// "TIMEOUT", "NODE_FAIL", "CANCELLED", ...), or "VANISHED" when the
	// job left the queue without one.
	State string
	// Reason says what happened, as the end of a sentence beginning with
	// the job: "failed with exit code 1", "hit its time limit".
	Reason string
	// Canceled reports that the job was canceled.
	Canceled bool
	// Log is the job's output file and LogTail its last lines.
	Log     string
	LogTail []string
}

// dispatchRun is the cluster side of one run.
type dispatchRun struct {
	d    Dispatcher
	jobs map[*config.Instance]*dispatchedJob

	mu         sync.Mutex
	stopped    bool // the run stopped after a failure: pending jobs were canceled
	cancelOnce sync.Once
	cancelErr  error
	runDone    chan struct{}
}

type dispatchedJob struct {
	spec JobSpec
	id   string

	mu    sync.Mutex
	ended bool
}

func (j *dispatchedJob) setEnded() {
	j.mu.Lock()
	j.ended = true
	j.mu.Unlock()
}

func (j *dispatchedJob) isEnded() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ended
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// jobName is a file-safe name for the i-th instance of the run.
func jobName(i int, addr string) string {
	name := strings.Trim(unsafeName.ReplaceAllString(addr, "_"), "_")
	if len(name) > 60 {
		name = name[:60]
	}
	return fmt.Sprintf("%02d-%s", i+1, name)
}

// startDispatch submits a job for every step of the plan that would run.
// On an error it cancels what it submitted.
func (e *executor) startDispatch(ctx context.Context, plan *Plan, planErr error, jobsDir string) error {
	d := e.opt.Dispatch
	dr := &dispatchRun{d: d, jobs: map[*config.Instance]*dispatchedJob{}, runDone: make(chan struct{})}
	e.disp = dr
	if planErr != nil {
		return planErr
	}
	if e.ws.Path == "" {
		return fmt.Errorf("%s: the workspace does not know its pipeline's path", d.Name())
	}
	varFile := filepath.Join(jobsDir, "vars.json")
	if err := e.ws.WriteVarFile(varFile); err != nil {
		return fmt.Errorf("write the run's variables for the jobs: %w", err)
	}
	if err := e.ws.savePlannedPins(ctx, e.sel); err != nil {
		return err
	}
	for i, inst := range e.ws.Resolved.Instances {
		step := plan.Step(inst.Addr)
		if step == nil || (step.Action != ActionRun && step.Action != ActionPending) {
			continue
		}
		spec := JobSpec{
			Addr:      inst.Addr,
			Name:      jobName(i, inst.Addr),
			Dir:       jobsDir,
			WorkDir:   e.ws.Pipeline.Dir,
			Resources: inst.Resources,
		}
		spec.Exec = StageExec{
			Addr:     inst.Addr,
			Pipeline: e.ws.Path,
			Store:    e.ws.Store.Root(),
			VarFile:  varFile,
			Events:   filepath.Join(jobsDir, spec.Name+".events.jsonl"),
			Rerun:    e.sel.forced[inst],
			Force:    e.opt.Force,
			// What "auto" arguments resolve to on the node that runs a
			// stage is what every later job uses for its key.
			Resolutions: filepath.Join(jobsDir, "resolved"),
		}
		for _, dep := range inst.Deps {
			if dj := dr.jobs[dep]; dj != nil {
				spec.After = append(spec.After, dj.id)
			}
		}
		id, err := d.Submit(ctx, spec)
		if err != nil {
			e.cancelAll()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: submit %s: %w", d.Name(), inst.Addr, err)
		}
		dr.jobs[inst] = &dispatchedJob{spec: spec, id: id}
		msg := fmt.Sprintf("submitted as %s job %s", d.Name(), id)
		switch len(spec.After) {
		case 0:
		case 1:
			msg += " (after job " + spec.After[0] + ")"
		default:
			msg += " (after jobs " + strings.Join(spec.After, ", ") + ")"
		}
		e.emit(runs.Event{Type: "log", Stage: inst.Addr, Job: id, Message: msg})
	}
	// Without KeepGoing, a failure cancels the jobs that have not started.
	if !e.opt.KeepGoing {
		go func() {
			select {
			case <-e.stopping:
			case <-dr.runDone:
				return
			}
			dr.mu.Lock()
			dr.stopped = true
			dr.mu.Unlock()
			if ids := dr.unended(); len(ids) > 0 {
				cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				if err := d.Cancel(cctx, ids, true); err != nil {
					e.emit(runs.Event{Type: "log", Message: fmt.Sprintf("warning: canceling the %s jobs that had not started: %v", d.Name(), err)})
				}
			}
		}()
	}
	return nil
}

// finishDispatch ends the run's cluster side: a canceled run cancels
// whatever is left.
func (e *executor) finishDispatch(ctx context.Context) {
	if e.disp == nil {
		return
	}
	if ctx.Err() != nil || len(e.disp.unended()) > 0 {
		e.cancelAll()
	}
	close(e.disp.runDone)
}

// unended lists the jobs not yet seen to end, in submission order.
func (dr *dispatchRun) unended() []string {
	var ids []string
	for _, j := range dr.jobs {
		if !j.isEnded() {
			ids = append(ids, j.id)
		}
	}
	sort.Slice(ids, func(a, b int) bool {
		if len(ids[a]) != len(ids[b]) {
			return len(ids[a]) < len(ids[b])
		}
		return ids[a] < ids[b]
	})
	return ids
}

// cancelAll cancels every job that has not ended and waits until none is
// left; concurrent callers wait for the first one's cancellation.
func (e *executor) cancelAll() error {
	dr := e.disp
	dr.cancelOnce.Do(func() {
		ids := dr.unended()
		if len(ids) == 0 {
			return
		}
		e.emit(runs.Event{Type: "log", Message: fmt.Sprintf("canceling %s: %s", plural(len(ids), dr.d.Name()+" job"), strings.Join(ids, ", "))})
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		dr.cancelErr = dr.d.Cancel(cctx, ids, false)
		if dr.cancelErr != nil {
			e.emit(runs.Event{Type: "log", Message: fmt.Sprintf("warning: %v", dr.cancelErr)})
		}
	})
	return dr.cancelErr
}

// savePlannedPins writes the lock entries of the selected instances whose
// arguments are known before anything runs, so that the jobs find them in
// the lock file instead of resolving them again, each on its own node.
func (ws *Workspace) savePlannedPins(ctx context.Context, sel *selection) error {
	outputs := map[string]map[string]cty.Value{}
	for _, inst := range ws.Resolved.Instances {
		if !sel.selected[inst] {
			continue
		}
		known := true
		for _, d := range inst.Deps {
			if outputs[d.Addr] == nil {
				known = false
			}
		}
		if !known {
			continue
		}
		_, key, pin, _, err := ws.instanceKey(ctx, inst, outputs)
		if err != nil {
			return err
		}
		if err := ws.savePin(pin); err != nil {
			return err
		}
		if rec, err := ws.Store.Lookup(key.Sum); err == nil && rec != nil {
			if outs, err := ws.outputsFromRecord(inst, rec); err == nil {
				outputs[inst.Addr] = outs
			}
		}
	}
	return nil
}

// dispatched follows the job of a submitted instance to its end.
func (e *executor) dispatched(ctx context.Context, inst *config.Instance, r *StageResult) *StageResult {
	j := e.disp.jobs[inst]
	d := e.disp.d
	defer j.setEnded()
	r.Job = j.id
	for _, dep := range inst.Deps {
		select {
		case <-e.done[dep]:
		case <-ctx.Done():
			e.cancelAll()
			r.Status, r.Note = StatusCanceled, "interrupted before its job started"
			return r
		}
	}
	e.mu.Lock()
	var failedDeps []string
	for _, dep := range inst.Deps {
		if dr := e.results[dep]; dr.Status != StatusCached && dr.Status != StatusRan {
			failedDeps = append(failedDeps, dep.Addr)
		}
	}
	e.mu.Unlock()
	if len(failedDeps) > 0 {
		// The cluster drops a job whose dependency failed; make sure.
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := d.Cancel(cctx, []string{j.id}, false)
		cancel()
		if err != nil {
			e.emit(runs.Event{Type: "log", Stage: inst.Addr, Job: j.id, Message: "warning: " + err.Error()})
		}
		r.Status, r.Note = StatusSkipped, "upstream "+strings.Join(failedDeps, ", ")+" did not succeed"
		return r
	}

	// Relay the job's events file into the run while the job is watched.
	rl := &eventRelay{e: e, inst: inst, path: j.spec.Exec.Events, job: j.id, skipLogs: true}
	rl.follow()
	lastState := ""
	end, err := d.Watch(ctx, j.id, func(u JobUpdate) {
		rl.poll() // the job's events so far come first
		if u.State == "" {
			e.emit(runs.Event{Type: "log", Stage: inst.Addr, Job: j.id, Message: u.Line})
			return
		}
		msg := fmt.Sprintf("%s job %s %s", d.Name(), j.id, strings.ToLower(u.State))
		if u.Detail != "" {
			msg += " (" + u.Detail + ")"
		}
		if msg != lastState {
			lastState = msg
			e.emit(runs.Event{Type: "log", Stage: inst.Addr, Job: j.id, Message: msg})
		}
	})
	if err != nil && ctx.Err() != nil {
		e.cancelAll()
	}
	final, started := rl.finish()
	if !started.IsZero() {
		r.Duration = time.Since(started)
	}
	if final != nil && final.Duration > 0 {
		r.Duration = final.Duration
	}

	switch {
	case err != nil && ctx.Err() != nil:
		r.Status, r.Err = StatusCanceled, ctx.Err()
		e.emit(runs.Event{Type: "stage-canceled", Stage: inst.Addr, Job: j.id, Duration: r.Duration, Message: fmt.Sprintf("%s job %s canceled", d.Name(), j.id)})
		return r
	case err != nil:
		return e.failJob(r, j, fmt.Errorf("%s job %s: %w", d.Name(), j.id, err))
	}
	if final != nil && (final.Type == "stage-finished" || final.Type == "stage-cached") && (end.OK || end.State == "VANISHED") {
		if !end.OK {
			e.emit(runs.Event{Type: "log", Stage: inst.Addr, Job: j.id, Message: fmt.Sprintf("warning: %s job %s %s, but its stage had committed its result", d.Name(), j.id, end.Reason)})
		}
		r = e.jobResult(ctx, inst, j, final, r)
		if r.Status == StatusRan && e.ws.Remote != nil {
			e.pushCommitted(ctx, inst, r.Key) // a no-op where the job pushed it
		}
		return r
	}
	e.disp.mu.Lock()
	stopped := e.disp.stopped
	e.disp.mu.Unlock()
	if end.Canceled && stopped && final == nil {
		r.Status, r.Note = StatusSkipped, "the run stopped after a failure"
		e.emit(runs.Event{Type: "log", Stage: inst.Addr, Job: j.id, Message: fmt.Sprintf("%s job %s canceled: the run stopped after a failure", d.Name(), j.id)})
		return r
	}
	var msg strings.Builder
	fmt.Fprintf(&msg, "%s job %s %s", d.Name(), j.id, end.Reason)
	switch {
	case final != nil && final.Type == "stage-failed":
		fmt.Fprintf(&msg, ": %s", final.Message)
	case end.OK && final == nil:
		fmt.Fprintf(&msg, ", but its stage recorded no outcome in %s", j.spec.Exec.Events)
	}
	if len(end.LogTail) > 0 {
		fmt.Fprintf(&msg, "\nlast lines of its log (%s):\n  %s", end.Log, strings.Join(end.LogTail, "\n  "))
	} else if end.Log != "" {
		fmt.Fprintf(&msg, "\n(its log %s is empty)", end.Log)
	}
	return e.failJob(r, j, fmt.Errorf("%s", msg.String()))
}

func (e *executor) failJob(r *StageResult, j *dispatchedJob, err error) *StageResult {
	return e.failAs(r, j.id, err)
}

// failAs fails r with err, the event stamped with the cluster job (or "").
func (e *executor) failAs(r *StageResult, job string, err error) *StageResult {
	r.Status, r.Err = StatusFailed, err
	e.emit(runs.Event{Type: "stage-failed", Stage: r.Addr, Key: r.Key, Job: job, Message: err.Error(), Duration: r.Duration})
	return r
}

// jobResult records the result a job committed, read from the store by
// the key the job reported.
func (e *executor) jobResult(ctx context.Context, inst *config.Instance, j *dispatchedJob, final *runs.Event, r *StageResult) *StageResult {
	return e.committedResult(ctx, inst, fmt.Sprintf("%s job %s", e.disp.d.Name(), j.id), j.id, final, r)
}

// committedResult records the result another process (who: "Slurm job
// 12", "the GPU worker") committed to the store, read by the key its final
// event reports; job is the cluster job id stamped on events, or "".
func (e *executor) committedResult(ctx context.Context, inst *config.Instance, who, job string, final *runs.Event, r *StageResult) *StageResult {
	if final.Key == "" {
		return e.failAs(r, job, fmt.Errorf("%s reported no cache key for its result", who))
	}
	r.Key = final.Key
	// On a network filesystem a file another node just wrote can take a
	// moment to show.
	var rec *cache.Record
	var err error
	for wait := 50 * time.Millisecond; ; wait *= 2 {
		rec, err = e.ws.Store.Lookup(final.Key)
		if err != nil || rec != nil || wait > 5*time.Second || ctx.Err() != nil {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		return e.failAs(r, job, fmt.Errorf("%s: read its result: %w", who, err))
	}
	if rec == nil {
		return e.failAs(r, job, fmt.Errorf("%s reported its result as key %.12s, but the store %s has no such result: is the store on a filesystem the nodes share?", who, final.Key, e.ws.Store.Root()))
	}
	outs, err := e.ws.outputsFromRecord(inst, rec)
	if err != nil {
		return e.failAs(r, job, err)
	}
	e.mu.Lock()
	e.outputs[inst.Addr] = outs
	e.mu.Unlock()
	_ = e.ws.state.record(inst.Addr, final.Key)
	r.Artifacts, r.Values = recordOutputs(rec)
	if final.Type == "stage-cached" {
		r.Status, r.Note = StatusCached, "found in the store by "+who
		r.Duration = 0
		e.emit(runs.Event{Type: "stage-cached", Stage: inst.Addr, Key: final.Key, Job: job, Message: r.Note})
		return r
	}
	r.Status = StatusRan
	e.emit(runs.Event{Type: "stage-finished", Stage: inst.Addr, Key: final.Key, Job: job, Duration: r.Duration})
	return r
}

// eventRelay records the events a stage run by another process (a cluster
// job, the GPU worker) appends to its events file in this run, as they
// come: the stage's final event is kept aside for the caller, which
// records the outcome itself.
type eventRelay struct {
	e    *executor
	inst *config.Instance
	path string
	job  string // the cluster job id stamped on the events, or ""
	// skipLogs drops the file's log events: a cluster job's output, which
	// carries the same lines, is relayed instead.
	skipLogs bool

	mu      sync.Mutex
	off     int64
	final   *runs.Event
	started time.Time
	failed  error
	stop    chan struct{}
	done    chan struct{}
}

// poll relays what was appended since the last poll.
func (rl *eventRelay) poll() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	e, addr := rl.e, rl.inst.Addr
	var err error
	rl.off, err = runs.ReadEventsFrom(rl.path, rl.off, func(ev runs.Event) error {
		ev.Stage, ev.Job = addr, rl.job
		switch ev.Type {
		case "stage-finished", "stage-cached", "stage-failed", "stage-canceled":
			f := ev
			rl.final = &f
			return nil
		case "log":
			if rl.skipLogs {
				return nil
			}
		case "stage-started":
			rl.started = ev.Time
		case "metrics":
			e.mu.Lock()
			m := e.metrics[addr]
			if m == nil {
				m = map[string]float64{}
				e.metrics[addr] = m
			}
			for k, v := range ev.Metrics {
				m[k] = v
			}
			e.mu.Unlock()
		}
		ev.Time = time.Time{} // recorded when relayed, so the log stays in order
		e.emit(ev)
		return nil
	})
	if err != nil && rl.failed == nil {
		rl.failed = err
		e.emit(runs.Event{Type: "log", Stage: addr, Job: rl.job, Message: "warning: " + err.Error()})
	}
}

// follow polls in the background until finish.
func (rl *eventRelay) follow() {
	rl.stop, rl.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(rl.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				rl.poll()
			case <-rl.stop:
				return
			}
		}
	}()
}

// finish stops following, relays what is left and returns the stage's
// final event (nil when it recorded none) and its start time.
func (rl *eventRelay) finish() (final *runs.Event, started time.Time) {
	if rl.stop != nil {
		close(rl.stop)
		<-rl.done
		rl.stop = nil
	}
	rl.poll()
	return rl.final, rl.started
}
