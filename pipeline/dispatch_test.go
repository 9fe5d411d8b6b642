package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/runs"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// fakeCluster is a Dispatcher that runs each job in a goroutine once the
// jobs it depends on have succeeded, the way a node would: it loads the
// pipeline from the job's command line and calls ExecStage. It drops a job
// whose dependency failed, as Slurm does with --kill-on-invalid-dep.
type fakeCluster struct {
	reg func() *stage.Registry
	// onCancel, if set, runs after each Cancel.
	onCancel func(ids []string, pendingOnly bool)

	mu    sync.Mutex
	next  int
	jobs  map[string]*fakeJob
	specs []pipeline.JobSpec
}

type fakeJob struct {
	spec    pipeline.JobSpec
	cancel  context.CancelFunc
	done    chan struct{}
	end     pipeline.JobEnd
	started atomic.Bool
}

func newFakeCluster(reg func() *stage.Registry) *fakeCluster {
	return &fakeCluster{reg: reg, jobs: map[string]*fakeJob{}}
}

func (c *fakeCluster) Name() string { return "Fake" }

func (c *fakeCluster) Submit(ctx context.Context, spec pipeline.JobSpec) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	id := fmt.Sprint(100 + c.next)
	jctx, cancel := context.WithCancel(context.Background())
	j := &fakeJob{spec: spec, cancel: cancel, done: make(chan struct{})}
	var after []*fakeJob
	for _, a := range spec.After {
		if c.jobs[a] == nil {
			return "", fmt.Errorf("unknown dependency %s", a)
		}
		after = append(after, c.jobs[a])
	}
	c.jobs[id] = j
	c.specs = append(c.specs, spec)
	go func() {
		defer close(j.done)
		for _, a := range after {
			select {
			case <-a.done:
			case <-jctx.Done():
				j.end = pipeline.JobEnd{State: "CANCELLED", Reason: "was canceled", Canceled: true}
				return
			}
			if !a.end.OK {
				j.end = pipeline.JobEnd{State: "CANCELLED", Reason: "was canceled: a dependency failed", Canceled: true}
				return
			}
		}
		c.mu.Lock() // Cancel(pendingOnly) decides under the lock
		if jctx.Err() != nil {
			c.mu.Unlock()
			j.end = pipeline.JobEnd{State: "CANCELLED", Reason: "was canceled", Canceled: true}
			return
		}
		j.started.Store(true)
		c.mu.Unlock()
		j.end = c.run(jctx, id, spec)
	}()
	return id, nil
}

// run is `lathe stage exec` on a node.
func (c *fakeCluster) run(ctx context.Context, id string, spec pipeline.JobSpec) pipeline.JobEnd {
	x := spec.Exec
	ws, diags := pipeline.Load(x.Pipeline, c.reg(), config.Inputs{VarFiles: []string{x.VarFile}})
	if diags.HasErrors() {
		return pipeline.JobEnd{State: "FAILED", Reason: "failed with exit code 1", LogTail: []string{diags.Error()}}
	}
	if err := ws.OpenStore(x.Store); err != nil {
		return pipeline.JobEnd{State: "FAILED", Reason: "failed with exit code 1", LogTail: []string{err.Error()}}
	}
	r, err := ws.ExecStage(ctx, x.Addr, pipeline.ExecOptions{Rerun: x.Rerun, Force: x.Force, Events: x.Events, Job: id, Resolutions: x.Resolutions})
	switch {
	case err != nil:
		return pipeline.JobEnd{State: "FAILED", Reason: "failed with exit code 1", LogTail: []string{err.Error()}}
	case r.Status == pipeline.StatusCanceled:
		return pipeline.JobEnd{State: "CANCELLED", Reason: "was canceled", Canceled: true}
	case r.Status != pipeline.StatusRan && r.Status != pipeline.StatusCached:
		return pipeline.JobEnd{State: "FAILED", Reason: "failed with exit code 1", LogTail: []string{"lathe: " + fmt.Sprint(r.Err)}}
	}
	return pipeline.JobEnd{OK: true, State: "COMPLETED", Reason: "completed"}
}

func (c *fakeCluster) Watch(ctx context.Context, id string, report func(pipeline.JobUpdate)) (pipeline.JobEnd, error) {
	c.mu.Lock()
	j := c.jobs[id]
	c.mu.Unlock()
	report(pipeline.JobUpdate{State: "PENDING", Detail: "Dependency"})
	select {
	case <-j.done:
		return j.end, nil
	case <-ctx.Done():
		return pipeline.JobEnd{}, ctx.Err()
	}
}

func (c *fakeCluster) Cancel(ctx context.Context, ids []string, pendingOnly bool) error {
	for _, id := range ids {
		c.mu.Lock()
		j := c.jobs[id]
		if pendingOnly && j.started.Load() {
			c.mu.Unlock()
			continue
		}
		j.cancel()
		c.mu.Unlock()
		select {
		case <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.onCancel != nil {
		c.onCancel(ids, pendingOnly)
	}
	return nil
}

func (c *fakeCluster) submitted() []pipeline.JobSpec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.specs)
}

// blockKind waits until its context ends, after creating the file named
// by its "started" argument.
func blockKind() *stage.Kind {
	return &stage.Kind{
		Name:    "block",
		Version: "1",
		Schema:  hcldec.ObjectSpec{"started": &hcldec.AttrSpec{Name: "started", Type: cty.String, Required: true}},
		Outputs: stage.FixedOutputs(map[string]stage.Output{"out": {Type: stage.ArtifactType(stage.FilesArtifact)}}),
		Run: func(ctx context.Context, req *stage.Request) (*stage.Result, error) {
			os.WriteFile(req.Args.GetAttr("started").AsString(), nil, 0o644)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
}

// gateKind waits until the file named by its "release" argument exists.
func gateKind() *stage.Kind {
	return &stage.Kind{
		Name:    "gate",
		Version: "1",
		Schema:  hcldec.ObjectSpec{"release": &hcldec.AttrSpec{Name: "release", Type: cty.String, Required: true}},
		Outputs: stage.FixedOutputs(map[string]stage.Output{"out": {Type: stage.ArtifactType(stage.FilesArtifact)}}),
		Run: func(ctx context.Context, req *stage.Request) (*stage.Result, error) {
			for {
				if _, err := os.Stat(req.Args.GetAttr("release").AsString()); err == nil {
					return nil, os.MkdirAll(req.OutputDir("out"), 0o755)
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(5 * time.Millisecond):
				}
			}
		},
	}
}

const diamondSrc = `
variable "greeting" { default = "hi" }
stage "write" "a" { text = var.greeting }
stage "write" "b" {
  text  = "b"
  after = write.a.out
}
stage "write" "c" {
  text  = "c"
  after = write.a.out
}
stage "write" "d" {
  text  = "d"
  after = write.b.out
}
output "len_d" { value = write.d.length }
`

func TestDispatchedRunMatchesLocal(t *testing.T) {
	var n atomic.Int32
	reg := func() *stage.Registry { return stage.NewRegistry(counterKind(&n)) }
	// A value with template introducers must reach the jobs unchanged.
	greeting := "greeting=${not} %{a template}"
	local := loadTest(t, diamondSrc, &n, greeting)
	lres, err := local.Run(context.Background(), pipeline.RunOptions{Jobs: 2})
	if err != nil || lres.Status != "succeeded" {
		t.Fatalf("local run: %v %+v", err, lres)
	}

	ws := loadTest(t, diamondSrc, &n, greeting)
	cl := newFakeCluster(reg)
	var events []runs.Event
	var evMu sync.Mutex
	res, err := ws.Run(context.Background(), pipeline.RunOptions{Dispatch: cl, Observer: func(ev runs.Event) {
		evMu.Lock()
		events = append(events, ev)
		evMu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "succeeded" {
		t.Fatalf("status %s: %+v", res.Status, res.Stages)
	}
	// Every stage went to the cluster, each after its upstream's job.
	specs := cl.submitted()
	ids := map[string]string{}
	for i, s := range specs {
		ids[s.Addr] = fmt.Sprint(101 + i)
	}
	wantAfter := map[string][]string{"write.a": nil, "write.b": {ids["write.a"]}, "write.c": {ids["write.a"]}, "write.d": {ids["write.b"]}}
	if len(specs) != 4 {
		t.Fatalf("%d jobs submitted, want 4", len(specs))
	}
	for _, s := range specs {
		if !slices.Equal(s.After, wantAfter[s.Addr]) {
			t.Errorf("%s after %v, want %v", s.Addr, s.After, wantAfter[s.Addr])
		}
		if s.Exec.Pipeline != ws.Path || s.Exec.Store != ws.Store.Root() || !strings.HasPrefix(s.Exec.Events, s.Dir) {
			t.Errorf("%s: command %+v", s.Addr, s.Exec)
		}
	}
	// Same keys, same artifacts, same outputs as the local run.
	for i, s := range res.Stages {
		l := lres.Stages[i]
		if s.Status != pipeline.StatusRan || s.Key != l.Key || fmt.Sprint(s.Artifacts) != fmt.Sprint(l.Artifacts) || fmt.Sprint(s.Values) != fmt.Sprint(l.Values) {
			t.Errorf("%s: %s key %.12s artifacts %v, local key %.12s artifacts %v", s.Addr, s.Status, s.Key, s.Artifacts, l.Key, l.Artifacts)
		}
		if s.Metrics["len"] == 0 {
			t.Errorf("%s: metrics %v not relayed", s.Addr, s.Metrics)
		}
	}
	if !res.Outputs["len_d"].RawEquals(lres.Outputs["len_d"]) {
		t.Errorf("len_d %#v, local %#v", res.Outputs["len_d"], lres.Outputs["len_d"])
	}
	// The run record holds the jobs' events, with their job ids.
	seen := map[string]bool{}
	for _, ev := range events {
		if ev.Job != "" && ev.Job == ids[ev.Stage] {
			seen[ev.Stage+" "+ev.Type] = true
		}
	}
	for _, addr := range []string{"write.a", "write.b", "write.c", "write.d"} {
		for _, typ := range []string{"stage-started", "stage-finished", "log"} {
			if !seen[addr+" "+typ] {
				t.Errorf("no %s event with its job id for %s", typ, addr)
			}
		}
	}

	// A rerun is all cache hits: nothing reaches the cluster.
	cl2 := newFakeCluster(reg)
	res, err = ws.Run(context.Background(), pipeline.RunOptions{Dispatch: cl2})
	if err != nil || res.Status != "succeeded" {
		t.Fatalf("rerun: %v %+v", err, res)
	}
	if len(cl2.submitted()) != 0 {
		t.Errorf("rerun submitted %d jobs", len(cl2.submitted()))
	}
	for _, s := range res.Stages {
		if s.Status != pipeline.StatusCached {
			t.Errorf("rerun: %s %s", s.Addr, s.Status)
		}
	}

	// -from reruns downstream stages through the cluster; their results
	// come out identical, so the keys are unchanged.
	cl3 := newFakeCluster(reg)
	res, err = ws.Run(context.Background(), pipeline.RunOptions{Dispatch: cl3, Selection: pipeline.Selection{From: []string{"write.b"}}})
	if err != nil || res.Status != "succeeded" {
		t.Fatalf("-from run: %v %+v", err, res)
	}
	var got []string
	for _, s := range cl3.submitted() {
		got = append(got, fmt.Sprintf("%s rerun=%v", s.Addr, s.Exec.Rerun))
	}
	if want := []string{"write.b rerun=true", "write.d rerun=true"}; !slices.Equal(got, want) {
		t.Errorf("-from submitted %v, want %v", got, want)
	}
}

func TestDispatchedFailure(t *testing.T) {
	var n atomic.Int32
	reg := func() *stage.Registry { return stage.NewRegistry(counterKind(&n)) }
	src := `
stage "write" "bad" {
  text = "x"
  mode = "fail"
}
stage "write" "after" {
  text  = "y"
  after = write.bad.out
}
stage "write" "fine" { text = "ok" }
`
	ws := loadTest(t, src, &n)
	cl := newFakeCluster(reg)
	res, err := ws.Run(context.Background(), pipeline.RunOptions{Dispatch: cl, KeepGoing: true})
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]pipeline.StageResult{}
	for _, s := range res.Stages {
		st[s.Addr] = s
	}
	if res.Status != "failed" || st["write.bad"].Status != pipeline.StatusFailed || st["write.after"].Status != pipeline.StatusSkipped || st["write.fine"].Status != pipeline.StatusRan {
		t.Fatalf("status %s, stages %+v", res.Status, res.Stages)
	}
	msg := st["write.bad"].Err.Error()
	for _, want := range []string{"Fake job 101 failed with exit code 1", "asked to fail", "last lines of its log"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure message %q lacks %q", msg, want)
		}
	}
}

func TestDispatchedCancel(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	src := fmt.Sprintf(`
stage "block" "slow" { started = %q }
stage "write" "after" {
  text  = "y"
  after = block.slow.out
}
`, started)
	var n atomic.Int32
	reg := func() *stage.Registry { return stage.NewRegistry(counterKind(&n), blockKind()) }
	ws := loadDispatchTest(t, dir, src, reg)
	cl := newFakeCluster(reg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if _, err := os.Stat(started); err == nil {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	res, err := ws.Run(ctx, pipeline.RunOptions{Dispatch: cl})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "canceled" {
		t.Errorf("status %s, want canceled", res.Status)
	}
	for _, s := range cl.submitted() {
		cl.mu.Lock()
		j := cl.jobs[map[string]string{"block.slow": "101", "write.after": "102"}[s.Addr]]
		cl.mu.Unlock()
		select {
		case <-j.done:
			if !j.end.Canceled {
				t.Errorf("%s: job ended %+v, want canceled", s.Addr, j.end)
			}
		default:
			t.Errorf("%s: job still running after the run returned", s.Addr)
		}
	}
	if n.Load() != 0 {
		t.Errorf("the downstream stage ran")
	}
}

func TestExecStageNeedsUpstream(t *testing.T) {
	var n atomic.Int32
	ws := loadTest(t, chainSrc, &n)
	_, err := ws.ExecStage(context.Background(), "write.b", pipeline.ExecOptions{})
	var miss *pipeline.UpstreamMissingError
	if !errors.As(err, &miss) || miss.Upstream != "write.a" {
		t.Fatalf("err %v, want an UpstreamMissingError for write.a", err)
	}
	if _, err := ws.ExecStage(context.Background(), "write.zz", pipeline.ExecOptions{}); err == nil || !strings.Contains(err.Error(), "no stage write.zz") {
		t.Errorf("unknown address: %v", err)
	}
	// Upstream first, then the stage; a second exec is a cache hit.
	for _, addr := range []string{"write.a", "write.b", "write.b"} {
		r, err := ws.ExecStage(context.Background(), addr, pipeline.ExecOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != pipeline.StatusRan && r.Status != pipeline.StatusCached {
			t.Fatalf("%s: %s %v", addr, r.Status, r.Err)
		}
	}
	if n.Load() != 2 {
		t.Errorf("%d runs, want 2", n.Load())
	}
}

// TestDispatchedStopAfterFailure: without KeepGoing, a failure cancels the
// jobs that have not started; the running one finishes.
func TestDispatchedStopAfterFailure(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	src := fmt.Sprintf(`
stage "write" "bad" {
  text = "x"
  mode = "fail"
}
stage "gate" "running" { release = %q }
stage "write" "waiting" {
  text  = "y"
  after = gate.running.out
}
`, release)
	var n atomic.Int32
	reg := func() *stage.Registry { return stage.NewRegistry(counterKind(&n), gateKind()) }
	ws := loadDispatchTest(t, dir, src, reg)
	cl := newFakeCluster(reg)
	var canceled []string
	cl.onCancel = func(ids []string, pendingOnly bool) {
		if pendingOnly {
			canceled = append(canceled, ids...)
			os.WriteFile(release, nil, 0o644) // the running stage may finish now
		}
	}
	res, err := ws.Run(context.Background(), pipeline.RunOptions{Dispatch: cl})
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]pipeline.StageResult{}
	for _, s := range res.Stages {
		st[s.Addr] = s
	}
	if res.Status != "failed" || st["write.bad"].Status != pipeline.StatusFailed || st["gate.running"].Status != pipeline.StatusRan ||
		st["write.waiting"].Status != pipeline.StatusSkipped || st["write.waiting"].Note != "the run stopped after a failure" {
		t.Errorf("status %s, stages %+v", res.Status, res.Stages)
	}
	if len(canceled) == 0 {
		t.Error("no pending jobs were canceled")
	}
	if st["write.waiting"].Job == "" || st["gate.running"].Job == "" {
		t.Errorf("job ids missing from the results: %+v", res.Stages)
	}
}

// TestDispatchedResolvedArguments: a stage whose arguments resolve
// differently on every machine (here: on every call, like batch_size =
// "auto" against each node's free memory) still chains through the
// cluster: a downstream job computes its upstream's key from what the
// upstream's own job resolved, not from a fresh resolution.
func TestDispatchedResolvedArguments(t *testing.T) {
	var n, machine atomic.Int32
	reg := func() *stage.Registry {
		k := counterKind(&n)
		k.Resolve = func(args cty.Value, _ stage.Machine) (cty.Value, string, error) {
			if args.GetAttr("text").AsString() != "auto" {
				return args, "", nil
			}
			m := args.AsValueMap()
			m["text"] = cty.StringVal(fmt.Sprintf("machine-%d", machine.Add(1)))
			return cty.ObjectVal(m), "text: auto → " + m["text"].AsString(), nil
		}
		return stage.NewRegistry(k)
	}
	src := `
stage "write" "a" { text = "auto" }
stage "write" "b" {
  text  = "b"
  after = write.a.out
}
stage "write" "c" {
  text  = "c"
  after = write.b.out
}
`
	dir := t.TempDir()
	ws := loadDispatchTest(t, dir, src, reg)
	res, err := ws.Run(context.Background(), pipeline.RunOptions{Dispatch: newFakeCluster(reg)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "succeeded" {
		for _, s := range res.Stages {
			t.Logf("%s %s %v", s.Addr, s.Status, s.Err)
		}
		t.Fatalf("status %s", res.Status)
	}
	for _, s := range res.Stages {
		if s.Status != pipeline.StatusRan {
			t.Errorf("%s: %s", s.Addr, s.Status)
		}
	}
}

func TestParseStageExec(t *testing.T) {
	for _, x := range []pipeline.StageExec{
		{Addr: `sft.x["r8"]`, Pipeline: "/p", Store: "/s", VarFile: "/v.json", Events: "/e", Resolutions: "/r", Rerun: true, Force: true},
		{Addr: "exec.a", Pipeline: "/p", Store: "/s"},
	} {
		args := x.Args()
		got, err := pipeline.ParseStageExec(args[2:])
		if err != nil || got != x {
			t.Errorf("ParseStageExec(%q) = %+v, %v; want %+v", args[2:], got, err, x)
		}
	}
	for _, bad := range [][]string{{"-cache"}, {"-nope", "a", "p"}, {"-cache", "s", "a"}, {"a", "p", "extra"}} {
		if _, err := pipeline.ParseStageExec(bad); err == nil {
			t.Errorf("ParseStageExec(%q): no error", bad)
		}
	}
}

// loadDispatchTest writes src as dir's pipeline and loads it with the
// kinds of reg, its store beside it.
func loadDispatchTest(t *testing.T, dir, src string, reg func() *stage.Registry) *pipeline.Workspace {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "pipeline.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, diags := pipeline.Load(dir, reg(), config.Inputs{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := ws.OpenStore(""); err != nil {
		t.Fatal(err)
	}
	return ws
}
