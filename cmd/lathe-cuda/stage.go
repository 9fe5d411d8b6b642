//go:build cuda

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"gorgonia.org/cu"

	"github.com/lathe-ml/lathe/internal/cuda"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages"
)

// stageExecCmd is `lathe-cuda stage exec [flags] ADDRESS PIPELINE`: the
// one-stage contract (pipeline.ExecStage) with the training kinds
// computing on the cuda backend. The devices a stage is given are the
// ones this process sees (CUDA_VISIBLE_DEVICES, set by whoever started
// it). It never ran on a GPU in development: see the package comment.
func stageExecCmd(args []string) int {
	x, err := pipeline.ParseStageExec(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lathe-cuda:", err)
		return 2
	}
	tensor.RegisterDevices(pipeline.BackendCUDA, func(devices []int) (tensor.Backend, error) {
		return cuda.New(cuda.Options{Device: devices[0], F32Compute: cuda.ComputeF32})
	})
	var in config.Inputs
	if x.VarFile != "" {
		in.VarFiles = []string{x.VarFile}
	}
	ws, diags := pipeline.Load(x.Pipeline, stages.Registry(), in)
	if diags.HasErrors() {
		fmt.Fprintln(os.Stderr, "lathe-cuda:", diags.Error())
		return 1
	}
	if err := ws.OpenStore(x.Store); err != nil {
		fmt.Fprintln(os.Stderr, "lathe-cuda:", err)
		return 1
	}
	ws.GPUs = workerGPUs{}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := ws.ExecStage(ctx, x.Addr, pipeline.ExecOptions{Rerun: x.Rerun, Force: x.Force, Events: x.Events, Resolutions: x.Resolutions})
	if err != nil {
		fmt.Fprintln(os.Stderr, "lathe-cuda:", err)
		return 1
	}
	switch r.Status {
	case pipeline.StatusRan, pipeline.StatusCached:
		return 0
	case pipeline.StatusCanceled:
		return 130
	}
	fmt.Fprintf(os.Stderr, "lathe-cuda: %s %s: %v\n", x.Addr, r.Status, r.Err)
	return 1
}

// workerGPUs are the devices this process sees; stages run in-process.
type workerGPUs struct{}

func (workerGPUs) Devices() ([]int, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("no CUDA device: %w", err)
	}
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	return ids, nil
}

func (workerGPUs) Run(ctx context.Context, kind *stage.Kind, req *stage.Request) (*stage.Result, error) {
	return kind.Run(ctx, req)
}
