package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lathe-ml/lathe/internal/gpu"
	"github.com/lathe-ml/lathe/pipeline"
)

// discoverGPUs is NVML discovery; tests replace it with a fixed answer.
var discoverGPUs = gpu.Discover

// localGPUs is the executor's GPU inventory on this machine (it implements
// pipeline.GPUWorker): the NVML devices that CUDA_VISIBLE_DEVICES leaves
// visible, usable only when the CUDA worker binary is there to run stages
// on them. Discovery runs once, the first time a GPU stage asks.
type localGPUs struct {
	environ []string
	exe     string // the running lathe; "" means os.Executable

	once   sync.Once
	info   gpu.Info
	worker string
	errW   error
}

func newLocalGPUs(env *cliEnv) *localGPUs { return &localGPUs{environ: env.environ} }

func environLookup(environ []string, name string) (string, bool) {
	v, ok := "", false
	for _, kv := range environ {
		if rest, found := strings.CutPrefix(kv, name+"="); found {
			v, ok = rest, true // the last one wins, as in os.Getenv
		}
	}
	return v, ok
}

func (l *localGPUs) discover() {
	l.once.Do(func() {
		value, set := environLookup(l.environ, gpu.VisibleDevicesEnv)
		l.info = discoverGPUs().Visible(value, set)
		workerEnv, _ := environLookup(l.environ, gpu.WorkerEnv)
		l.worker, l.errW = gpu.FindWorker(workerEnv, l.exe)
	})
}

// Devices returns the usable GPUs' NVML indices. Without a GPU it returns
// the discovery's reason; with GPUs but no worker, the worker's absence
// and how to build it: either way a GPU stage fails before it starts.
func (l *localGPUs) Devices() ([]int, error) {
	l.discover()
	if err := l.info.Err(); err != nil {
		return nil, err
	}
	if l.errW != nil {
		return nil, l.errW
	}
	var ids []int
	for _, d := range l.info.Usable() {
		ids = append(ids, d.Index)
	}
	return ids, nil
}

// DeviceMemory returns the free memory of the smallest usable GPU
// (pipeline.GPUMemory): what batch_size = "auto" of a GPU stage fits.
func (l *localGPUs) DeviceMemory() (int64, error) {
	if _, err := l.Devices(); err != nil {
		return 0, err
	}
	var least int64
	for i, d := range l.info.Usable() {
		if free := int64(d.MemoryFree); i == 0 || free < least {
			least = free
		}
	}
	return least, nil
}

// RunWorker runs a GPU stage in the CUDA worker (pipeline.GPUWorker):
// `lathe-cuda stage exec ...` on the stage's devices, which it sees
// through CUDA_VISIBLE_DEVICES (their UUIDs, so CUDA's own numbering does
// not matter). Canceling ctx sends the worker an interrupt (it
// checkpoints and stops) and, if it has not exited a minute later, kills
// it.
func (l *localGPUs) RunWorker(ctx context.Context, job pipeline.WorkerJob) error {
	if _, err := l.Devices(); err != nil {
		return err
	}
	visible, err := l.info.VisibleDevices(job.Devices)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, l.worker, job.Exec.Args()...)
	cmd.Dir = job.WorkDir
	cmd.Env = append(slices.Clip(l.environ), gpu.VisibleDevicesEnv+"="+visible)
	out := &tailLines{max: 20}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	err = cmd.Run()
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf("%s (%s=%s): %v", l.worker, gpu.VisibleDevicesEnv, visible, err)
	if tail := out.String(); tail != "" {
		msg += "; the last lines of its output:\n  " + strings.ReplaceAll(tail, "\n", "\n  ")
	}
	return errors.New(msg)
}

// tailLines keeps the last max lines written to it.
type tailLines struct {
	mu      sync.Mutex
	max     int
	lines   []string
	partial []byte
}

func (t *tailLines) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.partial[:i]))
		t.partial = t.partial[i+1:]
		if len(t.lines) > t.max {
			t.lines = t.lines[len(t.lines)-t.max:]
		}
	}
	return len(p), nil
}

// String returns the kept lines (and an unfinished last one).
func (t *tailLines) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(slices.Clip(lines), string(t.partial))
	}
	return strings.Join(lines, "\n")
}
