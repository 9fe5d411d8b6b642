package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/lathe-ml/lathe/pipeline/cache"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/lockfile"
	"github.com/lathe-ml/lathe/pipeline/runs"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// DiagnosticsError carries HCL diagnostics that arose while running (an
// argument that evaluates to a bad value once upstream results are known).
type DiagnosticsError struct {
	Diags hcl.Diagnostics
}

func (e *DiagnosticsError) Error() string { return e.Diags.Error() }

// Status is the outcome of one stage instance in a run.
type Status string

const (
	StatusCached   Status = "cached"   // result reused from the store
	StatusRan      Status = "ran"      // ran and committed
	StatusFailed   Status = "failed"   // ran and failed
	StatusCanceled Status = "canceled" // interrupted
	StatusSkipped  Status = "skipped"  // not run: not targeted, or upstream failed
)

// StageResult is one line of a run's summary.
type StageResult struct {
	Addr     string
	Kind     string
	Status   Status
	Key      string
	Duration time.Duration
	Err      error
	Note     string // why skipped
	// Job is the cluster job the stage was handed to (a Slurm job id),
	// when the run had a Dispatcher.
	Job string
	// Artifacts maps each artifact output to its digest, Values each value
	// output to its JSON encoding; both set for cached and ran stages.
	Artifacts map[string]string
	Values    map[string]json.RawMessage
	// Metrics holds the last value of each metric the stage reported in
	// this run (none for a cached stage).
	Metrics map[string]float64
}

// RunOptions configures Run.
type RunOptions struct {
	Selection
	// Jobs bounds how many CPU stages run at once (default 1). GPU stages
	// are bounded by the devices instead (see devices.go).
	Jobs int
	// KeepGoing lets independent branches continue after a failure; without
	// it no new stage starts once one has failed (running ones finish).
	KeepGoing bool
	// Observer, if set, receives every event as it is recorded.
	Observer func(runs.Event)
	// CommandLine is recorded in the run's metadata.
	CommandLine []string
	// Dispatch, when set, hands every stage that is not cached to a
	// cluster as a job instead of running it here (see dispatch.go).
	Dispatch Dispatcher
}

// RunResult is what Run returns.
type RunResult struct {
	RunID   string
	Status  string // succeeded | failed | canceled
	Stages  []StageResult
	Outputs map[string]cty.Value
	// OutputDiags holds errors evaluating output blocks.
	OutputDiags hcl.Diagnostics
	// Published lists the publish targets written after a successful run
	// (and those that failed, with Err set).
	Published []Publication
}

// PublishFailed reports whether copying any published output failed.
func (r *RunResult) PublishFailed() bool {
	for _, p := range r.Published {
		if p.Err != nil {
			return true
		}
	}
	return false
}

// Failed returns the results of stages that failed.
func (r *RunResult) Failed() []StageResult {
	var out []StageResult
	for _, s := range r.Stages {
		if s.Status == StatusFailed {
			out = append(out, s)
		}
	}
	return out
}

// Run executes the pipeline: cached stages are reused, the others run as
// soon as their upstream stages are done, at most opt.Jobs at a time. Each
// stage's result is committed to the store the moment it succeeds, so an
// interrupted run keeps everything that finished. The run is recorded under
// the store's runs/ directory.
func (ws *Workspace) Run(ctx context.Context, opt RunOptions) (*RunResult, error) {
	sel, err := ws.resolveSelection(opt.Selection)
	if err != nil {
		return nil, err
	}
	if opt.Jobs < 1 {
		opt.Jobs = 1
	}
	rec, err := runs.Create(ws.Store.Root(), runs.Meta{Pipeline: ws.Pipeline.Dir, Args: opt.CommandLine, Started: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("create run record: %w", err)
	}
	defer rec.Close()
	plan, planErr := ws.Plan(ctx, opt.Selection)
	if planErr == nil {
		_ = rec.WritePlan(plan)
	}

	e := &executor{
		ws:       ws,
		opt:      opt,
		sel:      sel,
		rec:      rec,
		sem:      make(chan struct{}, opt.Jobs),
		done:     map[*config.Instance]chan struct{}{},
		results:  map[*config.Instance]*StageResult{},
		outputs:  map[string]map[string]cty.Value{},
		metrics:  map[string]map[string]float64{},
		stopping: make(chan struct{}),
		jobsDir:  rec.JobsDir(),
	}
	defer e.cleanup()
	e.emit(runs.Event{Type: "run-started", Message: strings.Join(opt.CommandLine, " ")})
	start := time.Now()
	for _, inst := range ws.Resolved.Instances {
		e.done[inst] = make(chan struct{})
	}
	if opt.Dispatch != nil {
		if err := e.startDispatch(ctx, plan, planErr, rec.JobsDir()); err != nil {
			e.emit(runs.Event{Type: "run-finished", Status: "failed", Message: err.Error(), Duration: time.Since(start)})
			return nil, err
		}
	}
	var wg sync.WaitGroup
	for _, inst := range ws.Resolved.Instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(e.done[inst])
			r := e.instance(ctx, inst)
			e.mu.Lock()
			e.results[inst] = r
			e.mu.Unlock()
			if r.Status == StatusFailed && !opt.KeepGoing {
				e.stopOnce.Do(func() { close(e.stopping) })
			}
		}()
	}
	wg.Wait()
	e.finishDispatch(ctx)

	res := &RunResult{RunID: rec.ID(), Status: "succeeded"}
	for _, inst := range ws.Resolved.Instances {
		r := e.results[inst]
		if m := e.metrics[inst.Addr]; len(m) > 0 {
			r.Metrics = m
		}
		res.Stages = append(res.Stages, *r)
		switch r.Status {
		case StatusFailed:
			res.Status = "failed"
		case StatusCanceled:
			if res.Status != "failed" {
				res.Status = "canceled"
			}
		}
	}
	if ctx.Err() != nil && res.Status == "succeeded" {
		res.Status = "canceled"
	}
	if res.Status == "succeeded" && len(opt.Targets) == 0 {
		res.Outputs, res.OutputDiags = ws.Resolved.OutputValues(e.outputs)
	}
	if res.Status == "succeeded" {
		res.Published = ws.publish(res, e.emit)
	}
	e.emit(runs.Event{Type: "run-finished", Status: res.Status, Duration: time.Since(start)})
	return res, nil
}

type executor struct {
	ws  *Workspace
	opt RunOptions
	sel *selection
	rec eventSink // the run record (the events file of a stage run alone)
	sem chan struct{}

	done     map[*config.Instance]chan struct{}
	mu       sync.Mutex
	results  map[*config.Instance]*StageResult
	outputs  map[string]map[string]cty.Value
	metrics  map[string]map[string]float64 // last value per stage and metric
	stopOnce sync.Once
	stopping chan struct{}
	// disp is the cluster side of a run with RunOptions.Dispatch (see
	// dispatch.go); nil when every stage runs here.
	disp *dispatchRun

	// GPU stages' devices (see devices.go), set up by the first of them.
	gpuOnce sync.Once
	gpuInv  *inventory
	gpuPool *devicePool
	// Memory reservations (memory.go), set up by the first stage asking.
	memOnce  sync.Once
	memTotal int64
	memErr   error
	memPool  *memoryPool

	// The GPU worker's side (see worker.go): the run's jobs directory ("":
	// a temporary one), its files, and what "auto" arguments resolved to.
	jobsDir    string
	workerOnce sync.Once
	worker     *workerFiles
	resolved   map[*config.Instance][2]cty.Value
	// expectKey, when set, is the key the run handing this stage out
	// computed for it (stage exec -key): any other key is an error.
	expectKey string
}

// cleanup removes the temporary files the executor made.
func (e *executor) cleanup() {
	if e.worker != nil && e.worker.cleanup != nil {
		e.worker.cleanup()
	}
}

func (e *executor) emit(ev runs.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if err := e.rec.Append(ev); err != nil && e.opt.Observer != nil {
		e.opt.Observer(runs.Event{Time: ev.Time, Type: "log", Message: "warning: cannot record event: " + err.Error()})
	}
	if e.opt.Observer != nil {
		e.opt.Observer(ev)
	}
}

func (e *executor) instance(ctx context.Context, inst *config.Instance) *StageResult {
	r := &StageResult{Addr: inst.Addr, Kind: inst.Kind.Name}
	if !e.sel.selected[inst] {
		r.Status, r.Note = StatusSkipped, "not targeted"
		return r
	}
	if e.disp != nil && e.disp.jobs[inst] != nil {
		return e.dispatched(ctx, inst, r)
	}
	for _, d := range inst.Deps {
		select {
		case <-e.done[d]:
		case <-ctx.Done():
			r.Status, r.Note = StatusCanceled, "interrupted before it started"
			return r
		}
	}
	e.mu.Lock()
	upstream := map[string]map[string]cty.Value{}
	var failedDeps []string
	for _, d := range inst.Deps {
		dr := e.results[d]
		if dr.Status != StatusCached && dr.Status != StatusRan {
			failedDeps = append(failedDeps, d.Addr)
			continue
		}
		upstream[d.Addr] = e.outputs[d.Addr]
	}
	e.mu.Unlock()
	if len(failedDeps) > 0 {
		r.Status, r.Note = StatusSkipped, "upstream "+strings.Join(failedDeps, ", ")+" did not succeed"
		return r
	}
	if ctx.Err() != nil {
		r.Status, r.Note = StatusCanceled, "interrupted before it started"
		return r
	}

	args, key, pin, resolved, err := e.ws.instanceKey(ctx, inst, upstream)
	if err != nil {
		return e.fail(r, err)
	}
	if resolved != "" {
		e.emit(runs.Event{Type: "log", Stage: inst.Addr, Message: resolved})
	}
	if inst.Kind.Resolve != nil {
		if raw, diags := e.ws.Resolved.Args(inst, upstream); !diags.HasErrors() {
			e.recordResolved(inst, raw, args)
		}
	}
	if e.expectKey != "" && key.Sum != e.expectKey {
		return e.fail(r, fmt.Errorf("%s: the run that handed this stage out computed its key as %.12s, this process computes %.12s: are both the same lathe version? (key here:\n%s)", inst.Addr, e.expectKey, key.Sum, key.Text))
	}
	if err := e.ws.savePin(pin); err != nil {
		return e.fail(r, err)
	}
	if pin != nil && pin.note != "" {
		e.emit(runs.Event{Type: "log", Stage: inst.Addr, Message: pin.note + " (written to " + lockfile.FileName + ")"})
	}
	r.Key = key.Sum
	forced := e.sel.forced[inst]
	if !forced {
		if hit, err := e.reuse(ctx, inst, key, false, r); hit || err != nil {
			if err != nil {
				return e.fail(r, err)
			}
			return r
		}
	}
	select {
	case <-e.stopping:
		r.Status, r.Note = StatusSkipped, "the run stopped after a failure"
		return r
	default:
	}
	// Wait for a slot (a GPU stage: for its devices), then for the key's
	// lock: another process may be computing the same result, in which
	// case we reuse it.
	release, devices, ok := e.acquire(ctx, inst, r)
	if !ok {
		return r
	}
	defer release()
	if w, ok := e.ws.GPUs.(GPUWorker); ok && len(devices) > 0 {
		return e.onWorker(ctx, w, inst, key, devices, r)
	}
	unlock, err := e.ws.Store.Lock(ctx, key.Sum)
	if err != nil {
		if ctx.Err() != nil {
			r.Status, r.Note = StatusCanceled, "interrupted while waiting for another run of the same stage"
			return r
		}
		return e.fail(r, err)
	}
	defer unlock()
	if !forced {
		if hit, err := e.reuse(ctx, inst, key, true, r); hit || err != nil {
			if err != nil {
				return e.fail(r, err)
			}
			return r
		}
	}
	var pins map[string]string
	if pin != nil {
		pins = pin.values
	}
	return e.execute(ctx, inst, key, args, pins, devices, r)
}

// reuse looks the key up and, on a hit, records the instance as cached.
// With pull (only under the key's lock) a local miss is tried on the
// remote cache.
func (e *executor) reuse(ctx context.Context, inst *config.Instance, key cache.Key, pull bool, r *StageResult) (bool, error) {
	rec, err := e.ws.Store.Lookup(key.Sum)
	if err != nil {
		return false, err
	}
	note := ""
	if rec == nil && pull && e.ws.Remote != nil {
		// A remote entry is fetched and verified before use; any failure
		// (a corrupt or missing object) is reported and the stage runs.
		rec, err = e.ws.Remote.Pull(ctx, e.ws.Store, key.Sum)
		if err != nil {
			e.emit(runs.Event{Type: "log", Stage: inst.Addr, Key: key.Sum, Message: "warning: remote cache entry not used, running the stage: " + err.Error()})
			rec = nil
		}
		note = "pulled from the remote cache"
	}
	if rec == nil {
		return false, nil
	}
	outs, err := e.ws.outputsFromRecord(inst, rec)
	if err != nil {
		return false, err
	}
	e.mu.Lock()
	e.outputs[inst.Addr] = outs
	e.mu.Unlock()
	_ = e.ws.state.record(inst.Addr, key.Sum)
	r.Status, r.Note = StatusCached, note
	r.Artifacts, r.Values = recordOutputs(rec)
	// A pulled result is a cache hit like any other (the run record and its
	// counts stay as they were); the message says where it came from.
	e.emit(runs.Event{Type: "stage-cached", Stage: inst.Addr, Key: key.Sum, Message: note})
	return true, nil
}

func (e *executor) fail(r *StageResult, err error) *StageResult {
	r.Status, r.Err = StatusFailed, err
	e.emit(runs.Event{Type: "stage-failed", Stage: r.Addr, Key: r.Key, Message: err.Error(), Duration: r.Duration})
	return r
}

func (e *executor) execute(ctx context.Context, inst *config.Instance, key cache.Key, args cty.Value, pins map[string]string, devices []int, r *StageResult) *StageResult {
	store := e.ws.Store
	staging, err := store.NewStaging()
	if err != nil {
		return e.fail(r, err)
	}
	scratch, err := store.NewStaging()
	if err != nil {
		_ = staging.Discard()
		return e.fail(r, err)
	}
	defer scratch.Discard()
	ckpt, err := store.CheckpointDir(key.Sum)
	if err != nil {
		_ = staging.Discard()
		return e.fail(r, err)
	}
	rep := &reporter{e: e, addr: inst.Addr}
	req := &stage.Request{
		Address:       inst.Addr,
		Args:          args,
		BaseDir:       e.ws.Pipeline.Dir,
		StagingDir:    staging.Dir,
		ScratchDir:    scratch.Dir,
		CheckpointDir: ckpt,
		Reporter:      rep,
		Pins:          pins,
		Force:         e.opt.Force,
		Devices:       devices,
	}
	e.emit(runs.Event{Type: "stage-started", Stage: inst.Addr, Key: key.Sum})
	start := time.Now()
	result, err := runKind(ctx, inst.Kind, req)
	r.Duration = time.Since(start)
	if err != nil {
		_ = staging.Discard()
		if ctx.Err() != nil {
			r.Status, r.Err = StatusCanceled, ctx.Err()
			e.emit(runs.Event{Type: "stage-canceled", Stage: inst.Addr, Key: key.Sum, Duration: r.Duration})
			return r
		}
		return e.fail(r, err)
	}
	values, artifactNames, err := checkOutputs(inst, result, staging.Dir)
	if err != nil {
		_ = staging.Discard()
		return e.fail(r, err)
	}
	committed, err := store.Commit(staging, artifactNames, cache.Record{
		Key:      key.Sum,
		KeyText:  key.Text,
		Kind:     inst.Kind.Name,
		Address:  inst.Addr,
		Values:   values,
		Created:  time.Now().UTC(),
		Duration: r.Duration,
	})
	if err != nil {
		return e.fail(r, fmt.Errorf("commit result: %w", err))
	}
	_ = store.RemoveCheckpoint(key.Sum)
	if e.ws.Remote != nil {
		// Write-back is best effort: the local result stands either way.
		if _, err := e.ws.Remote.Push(ctx, store, committed); err != nil {
			e.emit(runs.Event{Type: "log", Stage: inst.Addr, Key: key.Sum, Message: "warning: remote cache push failed: " + err.Error()})
		}
	}
	outs, err := e.ws.outputsFromRecord(inst, committed)
	if err != nil {
		return e.fail(r, err)
	}
	e.mu.Lock()
	e.outputs[inst.Addr] = outs
	e.mu.Unlock()
	_ = e.ws.state.record(inst.Addr, key.Sum)
	r.Status = StatusRan
	r.Artifacts, r.Values = recordOutputs(committed)
	e.emit(runs.Event{Type: "stage-finished", Stage: inst.Addr, Key: key.Sum, Duration: r.Duration})
	return r
}

// recordOutputs returns a record's artifact digests and value outputs.
func recordOutputs(rec *cache.Record) (map[string]string, map[string]json.RawMessage) {
	arts := make(map[string]string, len(rec.Artifacts))
	for name, a := range rec.Artifacts {
		arts[name] = a.Digest
	}
	return arts, rec.Values
}

// runKind calls the kind's Run, turning a panic into an error so one broken
// stage cannot take the whole run (and its other committed work) down.
func runKind(ctx context.Context, k *stage.Kind, req *stage.Request) (res *stage.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("stage kind %s panicked: %v", k.Name, p)
		}
	}()
	res, err = k.Run(ctx, req)
	if err == nil && res == nil {
		res = &stage.Result{}
	}
	return res, err
}

// checkOutputs verifies a finished stage produced every declared output and
// encodes the value outputs.
func checkOutputs(inst *config.Instance, res *stage.Result, stagingDir string) (map[string]json.RawMessage, []string, error) {
	values := map[string]json.RawMessage{}
	var artifacts []string
	names := make([]string, 0, len(inst.Outputs))
	for n := range inst.Outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		o := inst.Outputs[name]
		if o.IsArtifact() {
			fi, err := os.Stat(stagingDir + "/" + name)
			if err != nil || !fi.IsDir() {
				return nil, nil, fmt.Errorf("stage kind %s did not write its %q output", inst.Kind.Name, name)
			}
			artifacts = append(artifacts, name)
			continue
		}
		v, ok := res.Values[name]
		if !ok {
			return nil, nil, fmt.Errorf("stage kind %s returned no value for output %q", inst.Kind.Name, name)
		}
		v, err := convert.Convert(v, o.Type)
		if err != nil {
			return nil, nil, fmt.Errorf("output %q: %w", name, err)
		}
		b, err := ctyjson.Marshal(v, o.Type)
		if err != nil {
			return nil, nil, fmt.Errorf("output %q: %w", name, err)
		}
		values[name] = b
	}
	return values, artifacts, nil
}

// reporter records a running stage's progress, logs and metrics as events.
// Progress events are thinned to a few per second.
type reporter struct {
	e    *executor
	addr string

	mu           sync.Mutex
	lastProgress time.Time
}

func (r *reporter) Progress(done, total int64, unit string) {
	r.mu.Lock()
	now := time.Now()
	if done != total && now.Sub(r.lastProgress) < 200*time.Millisecond {
		r.mu.Unlock()
		return
	}
	r.lastProgress = now
	r.mu.Unlock()
	r.e.emit(runs.Event{Type: "progress", Stage: r.addr, Done: done, Total: total, Unit: unit})
}

func (r *reporter) Logf(format string, args ...any) {
	r.e.emit(runs.Event{Type: "log", Stage: r.addr, Message: fmt.Sprintf(format, args...)})
}

func (r *reporter) Metrics(step int64, values map[string]float64) {
	r.e.mu.Lock()
	m := r.e.metrics[r.addr]
	if m == nil {
		m = map[string]float64{}
		r.e.metrics[r.addr] = m
	}
	for k, v := range values {
		m[k] = v
	}
	r.e.mu.Unlock()
	r.e.emit(runs.Event{Type: "metrics", Stage: r.addr, Step: step, Metrics: values})
}
