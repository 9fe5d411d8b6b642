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
	"github.com/lathe-ml/lathe/internal/worker"
	"github.com/lathe-ml/lathe/pipeline"
)

// stageExecCmd is `lathe-cuda stage exec [flags] ADDRESS PIPELINE`: the
// one-stage contract (internal/worker) with the training kinds computing
// on the cuda backend, on the devices this process sees
// (CUDA_VISIBLE_DEVICES, set by the lathe run that started it). It never
// ran on a GPU in development: see the package comment.
func stageExecCmd(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return worker.StageExec(ctx, args, worker.Options{
		Name:    "lathe-cuda",
		Backend: pipeline.BackendCUDA,
		Open: func(devices []int) (tensor.Backend, error) {
			return cuda.New(cuda.Options{Device: devices[0], F32Compute: cuda.ComputeF32})
		},
		Devices: cudaDevices,
		Stderr:  os.Stderr,
	})
}

// cudaDevices lists the ordinals of the CUDA devices this process sees.
func cudaDevices() ([]int, error) {
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
