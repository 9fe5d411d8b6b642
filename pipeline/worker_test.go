package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/runs"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// TestGPUStageRunsInWorker: a GPU stage is handed to the worker through
// the one-stage contract: the worker commits the result (the run reads it
// back and passes it downstream), its metrics reach the run as they come,
// and a rerun is a cache hit that starts no worker.
func TestGPUStageRunsInWorker(t *testing.T) {
	var n atomic.Int32
	src := `
stage "write" "g" {
  text = "gpu"
  resources { gpus = 1 }
}
stage "write" "after" {
  text  = "cpu"
  after = write.g.out
}
output "len" { value = write.after.length }
`
	ws := loadTest(t, src, &n)
	gpus := &fakeGPUs{ids: []int{4, 7}, kinds: counterKinds(&n)}
	ws.GPUs = gpus
	var mu sync.Mutex
	var events []runs.Event
	res, err := ws.Run(context.Background(), pipeline.RunOptions{Jobs: 1, Observer: func(ev runs.Event) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "succeeded" {
		t.Fatalf("status %s: %+v", res.Status, res.Stages)
	}
	if len(gpus.runs) != 1 || gpus.runs[0] != "write.g:[4]" {
		t.Fatalf("worker runs %v, want write.g on GPU 4", gpus.runs)
	}
	g := stageResult(t, res, "write.g")
	if g.Status != pipeline.StatusRan || g.Metrics["len"] != 3 || g.Key == "" {
		t.Errorf("write.g: %s, metrics %v, key %q", g.Status, g.Metrics, g.Key)
	}
	x := gpus.execs[0]
	if x.Key != g.Key || x.Addr != "write.g" || x.VarFile == "" || x.Events == "" {
		t.Errorf("worker command %+v: want key %s", x, g.Key)
	}
	// The downstream CPU stage read the worker's artifact.
	if got := res.Outputs["len"]; got.AsBigFloat().String() != "7" {
		t.Errorf("len = %v, want 7 (gpu+cpu)", got)
	}
	var sawMetrics, sawWorkerLog bool
	for _, ev := range events {
		if ev.Stage == "write.g" && ev.Type == "metrics" {
			sawMetrics = true
		}
		if ev.Stage == "write.g" && ev.Type == "log" && strings.Contains(ev.Message, "in the GPU worker") {
			sawWorkerLog = true
		}
	}
	if !sawMetrics || !sawWorkerLog {
		t.Errorf("metrics relayed %v, worker log %v: %v", sawMetrics, sawWorkerLog, events)
	}

	res, err = ws.Run(context.Background(), pipeline.RunOptions{})
	if err != nil || res.Status != "succeeded" {
		t.Fatalf("rerun: %v %+v", err, res)
	}
	if s := stageResult(t, res, "write.g").Status; s != pipeline.StatusCached || len(gpus.runs) != 1 {
		t.Errorf("rerun: write.g %s after %d worker runs, want cached and no new worker", s, len(gpus.runs))
	}
}

// TestWorkerFailures: a stage failing in the worker fails with its own
// message; a worker that dies without recording an outcome fails the
// stage with what the worker runner said; a canceled run cancels it
// before it runs.
func TestWorkerFailures(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		gpus       func(n *atomic.Int32, cancel func()) pipeline.GPUs
		status     pipeline.Status
		err        string
	}{
		{"stage fails", "fail", func(n *atomic.Int32, _ func()) pipeline.GPUs {
			return &fakeGPUs{ids: []int{0}, kinds: counterKinds(n)}
		}, pipeline.StatusFailed, "asked to fail"},
		{"worker dies", "", func(*atomic.Int32, func()) pipeline.GPUs { return dyingWorker{} },
			pipeline.StatusFailed, "the GPU worker: exit status 2: CUDA_ERROR_ILLEGAL_ADDRESS"},
		{"canceled", "", func(n *atomic.Int32, cancel func()) pipeline.GPUs {
			return &fakeGPUs{ids: []int{0}, kinds: counterKinds(n), hold: func(pipeline.WorkerJob) { cancel() }}
		}, pipeline.StatusCanceled, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			ws := loadTest(t, `
stage "write" "g" {
  text = "x"
  mode = "`+tc.mode+`"
  resources { gpus = 1 }
}`, &n)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ws.GPUs = tc.gpus(&n, cancel)
			res, err := ws.Run(ctx, pipeline.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			g := stageResult(t, res, "write.g")
			if g.Status != tc.status || (tc.err != "" && (g.Err == nil || g.Err.Error() != tc.err)) {
				t.Errorf("write.g: %s %v; want %s %q", g.Status, g.Err, tc.status, tc.err)
			}
			if tc.status == pipeline.StatusCanceled && n.Load() != 0 {
				t.Errorf("the canceled stage ran %d times", n.Load())
			}
		})
	}
}

// dyingWorker is a worker runner whose worker crashes at once.
type dyingWorker struct{}

func (dyingWorker) Devices() ([]int, error) { return []int{0}, nil }
func (dyingWorker) RunWorker(context.Context, pipeline.WorkerJob) error {
	return errors.New("exit status 2: CUDA_ERROR_ILLEGAL_ADDRESS")
}

// TestWorkerUsesTheRunsResolution: what the run resolved an "auto"
// argument to is what the worker uses, even where the worker's machine
// would resolve it differently, so both compute one key.
func TestWorkerUsesTheRunsResolution(t *testing.T) {
	auto := int64(8)
	var got atomic.Int64
	var n atomic.Int32
	k := resolvingKind(&auto, &got, &n)
	dir := t.TempDir()
	ws := loadResolving(t, dir, `
stage "sized" "a" {
  size = "auto"
  resources { gpus = 1 }
}`, k)
	ws.GPUs = &fakeGPUs{ids: []int{0}, kinds: func() *stage.Registry { return stage.NewRegistry(k) },
		// The worker's machine would resolve to 2.
		hold: func(pipeline.WorkerJob) { auto = 2 }}
	res, err := ws.Run(context.Background(), pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := stageResult(t, res, "sized.a"); a.Status != pipeline.StatusRan || got.Load() != 8 {
		t.Errorf("sized.a: %s %v, ran with size %d; want ran with 8", a.Status, a.Err, got.Load())
	}
}

// TestStageExecRefusesAnotherKey: a worker computing another key than the
// run that handed the stage out does not run it.
func TestStageExecRefusesAnotherKey(t *testing.T) {
	var n atomic.Int32
	ws := loadTest(t, `stage "write" "a" { text = "a" }`, &n)
	r, err := ws.ExecStage(context.Background(), "write.a", pipeline.ExecOptions{Key: strings.Repeat("ab", 32)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != pipeline.StatusFailed || r.Err == nil || !strings.Contains(r.Err.Error(), "computed its key as abababababab, this process computes") || n.Load() != 0 {
		t.Errorf("%s %v after %d runs", r.Status, r.Err, n.Load())
	}
}
