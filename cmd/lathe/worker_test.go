package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/gpu"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/internal/worker"
	"github.com/lathe-ml/lathe/pipeline"
)

// fakeGPUsFromEnv makes NVML discovery report two H200s when a script sets
// LATHE_TEST_GPUS=2 (the script tests' lathe is a separate process, so
// the fake has to come through the environment).
func fakeGPUsFromEnv() {
	if os.Getenv("LATHE_TEST_GPUS") == "2" {
		discoverGPUs = twoH200
	}
}

// fakeWorkerMain is the stand-in CUDA worker of the script tests: the
// worker's `stage exec` with the CPU backend registered as the device
// backend, seeing the devices CUDA_VISIBLE_DEVICES lists (UUIDs, as lathe
// sets it), and the real worker's signal handling.
func fakeWorkerMain() {
	args := os.Args[1:]
	if len(args) < 2 || args[0] != "stage" || args[1] != "exec" {
		fmt.Fprintln(os.Stderr, "usage: lathe-cuda stage exec ...")
		os.Exit(worker.ExitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(worker.StageExec(ctx, args[2:], worker.Options{
		Name:    "lathe-cuda",
		Backend: pipeline.BackendCUDA,
		Open:    func([]int) (tensor.Backend, error) { return cpu.New(), nil },
		Devices: func() ([]int, error) {
			var ids []int
			for i, uuid := range strings.Split(os.Getenv(gpu.VisibleDevicesEnv), ",") {
				if strings.HasPrefix(uuid, "GPU-") {
					ids = append(ids, i)
				}
			}
			if len(ids) == 0 {
				return nil, fmt.Errorf("no CUDA device: %s=%q", gpu.VisibleDevicesEnv, os.Getenv(gpu.VisibleDevicesEnv))
			}
			return ids, nil
		},
		Stderr: os.Stderr,
	}))
}
