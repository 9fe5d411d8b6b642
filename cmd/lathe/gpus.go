package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/lathe-ml/lathe/internal/gpu"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// discoverGPUs is NVML discovery; tests replace it with a fixed answer.
var discoverGPUs = gpu.Discover

// localGPUs is the executor's GPU inventory on this machine (it implements
// pipeline.GPUs): the NVML devices that CUDA_VISIBLE_DEVICES leaves
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

// Run would start the CUDA worker on req.Devices (CUDA_VISIBLE_DEVICES set
// to their UUIDs). The worker speaks the one-stage contract (`lathe-cuda
// stage exec`), but a local run does not start it yet: the executor holds
// the stage's key lock here, and the worker takes it itself. So Run fails
// with what to do rather than running a GPU stage on the CPU under a cuda
// key.
func (l *localGPUs) Run(ctx context.Context, kind *stage.Kind, req *stage.Request) (*stage.Result, error) {
	if _, err := l.Devices(); err != nil {
		return nil, err
	}
	visible, err := l.info.VisibleDevices(req.Devices)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", req.Address, err)
	}
	return nil, fmt.Errorf("%s runs on the cuda backend (%s=%s) in the worker %s, which lathe run does not start yet; run it with `%s=%s %s stage exec -cache STORE %s PIPELINE` once its upstream stages are done",
		req.Address, gpu.VisibleDevicesEnv, visible, l.worker, gpu.VisibleDevicesEnv, visible, l.worker, req.Address)
}
