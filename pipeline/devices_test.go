package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/runs"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// fakeGPUs is a GPU inventory with fixed devices whose worker runs the
// stage through the one-stage contract in this process, as the GPU worker
// would run it in another (a workspace of its own loaded from the
// pipeline, `stage exec` options parsed from the command line the
// executor wrote), checking that no device is ever given to two running
// stages.
type fakeGPUs struct {
	ids   []int
	err   error
	kinds func() *stage.Registry // the worker's kinds

	mu       sync.Mutex
	inUse    map[int]string
	maxInUse int
	runs     []string // "addr:devices" in start order
	hold     func(job pipeline.WorkerJob)
	overlap  error
	asked    atomic.Int32
	execs    []pipeline.StageExec
}

func (f *fakeGPUs) Devices() ([]int, error) {
	f.asked.Add(1)
	return f.ids, f.err
}

func (f *fakeGPUs) RunWorker(ctx context.Context, job pipeline.WorkerJob) error {
	f.mu.Lock()
	if f.inUse == nil {
		f.inUse = map[int]string{}
	}
	for _, d := range job.Devices {
		if other, busy := f.inUse[d]; busy && f.overlap == nil {
			f.overlap = fmt.Errorf("GPU %d given to %s while %s holds it", d, job.Addr, other)
		}
		f.inUse[d] = job.Addr
	}
	if len(f.inUse) > f.maxInUse {
		f.maxInUse = len(f.inUse)
	}
	f.runs = append(f.runs, fmt.Sprintf("%s:%v", job.Addr, job.Devices))
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		for _, d := range job.Devices {
			delete(f.inUse, d)
		}
		f.mu.Unlock()
	}()
	if f.hold != nil {
		f.hold(job)
	}
	args := job.Exec.Args()
	if len(args) < 2 || args[0] != "stage" || args[1] != "exec" {
		return fmt.Errorf("worker command line %q", args)
	}
	x, err := pipeline.ParseStageExec(args[2:])
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.execs = append(f.execs, x)
	f.mu.Unlock()
	ws, diags := pipeline.Load(x.Pipeline, f.kinds(), config.Inputs{VarFiles: []string{x.VarFile}})
	if diags.HasErrors() {
		return diags
	}
	if err := ws.OpenStore(x.Store); err != nil {
		return err
	}
	visible := make(workerDevices, len(job.Devices))
	for i := range visible {
		visible[i] = i
	}
	ws.GPUs = visible
	r, err := ws.ExecStage(ctx, x.Addr, pipeline.ExecOptions{Rerun: x.Rerun, Force: x.Force, Events: x.Events, Resolutions: x.Resolutions, Key: x.Key})
	if err != nil {
		return err
	}
	if r.Status != pipeline.StatusRan && r.Status != pipeline.StatusCached {
		return fmt.Errorf("exit status 1")
	}
	return nil
}

// counterKinds is the registry of loadTest's kinds, for the worker.
func counterKinds(runs *atomic.Int32) func() *stage.Registry {
	return func() *stage.Registry { return stage.NewRegistry(counterKind(runs)) }
}

// workerDevices are the devices a worker sees: the stage runs in-process.
type workerDevices []int

func (w workerDevices) Devices() ([]int, error) { return w, nil }

func stageResult(t *testing.T, res *pipeline.RunResult, addr string) pipeline.StageResult {
	t.Helper()
	for _, s := range res.Stages {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("no result for %s", addr)
	return pipeline.StageResult{}
}

func TestGPUStagesNeverShareADevice(t *testing.T) {
	var n atomic.Int32
	src := `
stage "write" "one" {
  for_each = toset(["a", "b", "c", "d"])
  text = each.key
  resources { gpus = 1 }
}
stage "write" "two" {
  for_each = toset(["x", "y"])
  text = each.key
  resources { gpus = 2 }
}
`
	ws := loadTest(t, src, &n)
	gpus := &fakeGPUs{ids: []int{0, 1}, kinds: counterKinds(&n), hold: func(pipeline.WorkerJob) { time.Sleep(10 * time.Millisecond) }}
	ws.GPUs = gpus
	res, err := ws.Run(context.Background(), pipeline.RunOptions{Jobs: 8})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "succeeded" {
		t.Fatalf("status %s: %+v", res.Status, res.Stages)
	}
	if gpus.overlap != nil {
		t.Error(gpus.overlap)
	}
	if gpus.maxInUse > 2 {
		t.Errorf("%d devices in use at once, the machine has 2", gpus.maxInUse)
	}
	if len(gpus.runs) != 6 || n.Load() != 6 {
		t.Fatalf("GPU runs %v (%d kind runs), want all 6 through the GPU runner", gpus.runs, n.Load())
	}
	for _, r := range gpus.runs {
		addr, devs, _ := strings.Cut(r, ":")
		want := 1
		if strings.HasPrefix(addr, "write.two") {
			want = 2
		}
		if got := len(strings.Fields(strings.Trim(devs, "[]"))); got != want {
			t.Errorf("%s ran on %s, want %d devices", addr, devs, want)
		}
	}
	if got := gpus.asked.Load(); got > 2 {
		t.Errorf("inventory asked %d times (plan + run), want at most 2", got)
	}
}

// TestCPUStagesRunBesideGPUStages: with -j 1 a CPU stage still runs while
// a GPU stage holds its device.
func TestCPUStagesRunBesideGPUStages(t *testing.T) {
	var n atomic.Int32
	src := `
stage "write" "gpu" {
  text = "g"
  resources { gpus = 1 }
}
stage "write" "cpu" { text = "c" }
`
	ws := loadTest(t, src, &n)
	var cpuRan atomic.Bool
	ws.GPUs = &fakeGPUs{ids: []int{0}, kinds: counterKinds(&n), hold: func(pipeline.WorkerJob) {
		deadline := time.Now().Add(10 * time.Second)
		for !cpuRan.Load() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}}
	var events []string
	var mu sync.Mutex
	res, err := ws.Run(context.Background(), pipeline.RunOptions{Jobs: 1, Observer: func(ev runs.Event) {
		if ev.Stage == "write.cpu" && ev.Type == "stage-finished" {
			cpuRan.Store(true)
		}
		mu.Lock()
		events = append(events, ev.Type+" "+ev.Stage)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "succeeded" || !cpuRan.Load() {
		t.Fatalf("status %s, cpu ran %v: %v", res.Status, cpuRan.Load(), events)
	}
	// The GPU stage finished after the CPU stage: they overlapped.
	mu.Lock()
	defer mu.Unlock()
	cpuDone, gpuDone := -1, -1
	for i, e := range events {
		switch e {
		case "stage-finished write.cpu":
			cpuDone = i
		case "stage-finished write.gpu":
			gpuDone = i
		}
	}
	if cpuDone < 0 || gpuDone < cpuDone {
		t.Errorf("the CPU stage did not finish while the GPU stage ran: %v", events)
	}
}

func TestGPUStageAsksTooMuch(t *testing.T) {
	src := `
stage "write" "big" {
  text = "b"
  resources { gpus = 3 }
}
stage "write" "cpu" { text = "c" }
`
	tests := []struct {
		name    string
		gpus    pipeline.GPUs
		wantErr string
	}{
		{"more than the machine has", &fakeGPUs{ids: []int{0, 1}}, "write.big asks for 3 GPUs but this machine has 2 usable GPUs (GPU 0, 1)"},
		{"no GPU", &fakeGPUs{err: errors.New("no NVIDIA GPU: the NVML library (libnvidia-ml.so.1) could not be loaded")}, "write.big asks for 3 GPUs but no NVIDIA GPU: the NVML library (libnvidia-ml.so.1) could not be loaded"},
		{"empty inventory", &fakeGPUs{}, "write.big asks for 3 GPUs but no GPU is available"},
		{"no inventory", nil, "write.big asks for 3 GPUs but no GPUs were given to this executor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			ws := loadTest(t, src, &n)
			if tt.gpus != nil {
				ws.GPUs = tt.gpus
			}
			plan, err := ws.Plan(context.Background(), pipeline.Selection{})
			if err != nil {
				t.Fatal(err)
			}
			step := plan.Step("write.big")
			if step.Problem != "cannot run here: "+tt.wantErr || !strings.Contains(step.Reason, tt.wantErr) {
				t.Errorf("plan: problem %q, reason %q; want %q", step.Problem, step.Reason, tt.wantErr)
			}
			if p := plan.Step("write.cpu").Problem; p != "" {
				t.Errorf("CPU step has a problem: %q", p)
			}
			res, err := ws.Run(context.Background(), pipeline.RunOptions{Jobs: 2, KeepGoing: true})
			if err != nil {
				t.Fatal(err)
			}
			big := stageResult(t, res, "write.big")
			if big.Status != pipeline.StatusFailed || big.Err == nil || big.Err.Error() != tt.wantErr {
				t.Errorf("write.big: %s, %v; want failed with %q", big.Status, big.Err, tt.wantErr)
			}
			if s := stageResult(t, res, "write.cpu").Status; s != pipeline.StatusRan {
				t.Errorf("write.cpu: %s, want ran", s)
			}
			if n.Load() != 1 {
				t.Errorf("%d kind runs, want 1 (the CPU stage only)", n.Load())
			}
		})
	}
}

// TestCachedGPUStageNeedsNoGPU: a GPU stage's result, once committed, is
// reused on a machine without GPUs; the inventory is not even asked.
func TestCachedGPUStageNeedsNoGPU(t *testing.T) {
	var n atomic.Int32
	src := `
stage "write" "g" {
  text = "g"
  resources { gpus = 1 }
}
`
	ws := loadTest(t, src, &n)
	ws.GPUs = &fakeGPUs{ids: []int{3}, kinds: counterKinds(&n)}
	if res, err := ws.Run(context.Background(), pipeline.RunOptions{}); err != nil || res.Status != "succeeded" {
		t.Fatalf("first run: %v %+v", err, res)
	}
	none := &fakeGPUs{err: errors.New("no NVIDIA GPU: none here")}
	ws.GPUs = none
	plan, err := ws.Plan(context.Background(), pipeline.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if s := plan.Step("write.g"); s.Action != pipeline.ActionCached || s.Problem != "" {
		t.Errorf("plan: %s %q", s.Action, s.Problem)
	}
	res, err := ws.Run(context.Background(), pipeline.RunOptions{})
	if err != nil || res.Status != "succeeded" || res.Stages[0].Status != pipeline.StatusCached {
		t.Fatalf("second run: %v %+v", err, res)
	}
	if none.asked.Load() != 0 {
		t.Errorf("inventory asked %d times for cached work", none.asked.Load())
	}
}

// TestGPUStageKeyDiffers: the same stage on the CPU and on GPUs has two
// keys, so neither reuses the other's result.
func TestGPUStageKeyDiffers(t *testing.T) {
	var n atomic.Int32
	src := `
variable "gpus" {
  type    = number
  default = 0
}
stage "write" "s" {
  text = "s"
  resources { gpus = var.gpus }
}
`
	ws := loadTest(t, src, &n)
	cpuPlan, err := ws.Plan(context.Background(), pipeline.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	ws2 := loadTest(t, src, &n, "gpus=1")
	ws2.GPUs = &fakeGPUs{ids: []int{0}}
	gpuPlan, err := ws2.Plan(context.Background(), pipeline.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	c, g := cpuPlan.Step("write.s").Key, gpuPlan.Step("write.s").Key
	if c.Sum == g.Sum {
		t.Fatal("CPU and GPU runs share a key")
	}
	if strings.Contains(c.Text, "backend") || !strings.Contains(g.Text, "\nbackend cuda\n") {
		t.Errorf("key texts:\n%s\n%s", c.Text, g.Text)
	}
}
