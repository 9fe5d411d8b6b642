// Package worker is the device worker's side of the one-stage contract:
// `WORKER stage exec [flags] ADDRESS PIPELINE` (pipeline.StageExec) run
// with a device backend registered, so that the stage's training computes
// on the devices this process sees (CUDA_VISIBLE_DEVICES, set by the lathe
// run that started it). cmd/lathe-cuda runs it with the CUDA backend; the
// tests run it with the CPU backend standing in for a device, which is how
// the whole hand-off (lathe run → worker → store → run) is tested on
// machines without a GPU.
//
// It does not discover GPUs (lathe did, with NVML, before starting the
// worker), choose devices (the run gave them), or start processes; a GPU
// stage runs here in-process, never handed on again.
package worker

import (
	"context"
	"fmt"
	"io"

	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/stages"
)

// Options configure StageExec.
type Options struct {
	// Name is the worker's name in messages ("lathe-cuda").
	Name string
	// Backend names the device backend ("cuda") and Open opens it on the
	// devices a stage is given (ordinals among those this process sees).
	Backend string
	Open    tensor.DeviceOpener
	// Devices returns the ordinals of the devices this process sees.
	Devices func() ([]int, error)
	// Stderr receives the worker's own messages.
	Stderr io.Writer
}

// Exit statuses of StageExec.
const (
	ExitOK       = 0
	ExitFailed   = 1
	ExitUsage    = 2
	ExitCanceled = 130
)

// StageExec runs `stage exec` with args (what follows "stage exec") and
// returns the process's exit status: 0 when the stage ran or was cached,
// 130 when ctx ended it, 1 when it failed (its events file says how), 2
// for a bad command line.
func StageExec(ctx context.Context, args []string, opt Options) int {
	x, err := pipeline.ParseStageExec(args)
	if err != nil {
		fmt.Fprintf(opt.Stderr, "%s: %v\n", opt.Name, err)
		return ExitUsage
	}
	tensor.RegisterDevices(opt.Backend, opt.Open)
	var in config.Inputs
	if x.VarFile != "" {
		in.VarFiles = []string{x.VarFile}
	}
	ws, diags := pipeline.Load(x.Pipeline, stages.Registry(), in)
	if diags.HasErrors() {
		fmt.Fprintf(opt.Stderr, "%s: %s\n", opt.Name, diags.Error())
		return ExitFailed
	}
	if err := ws.OpenStore(x.Store); err != nil {
		fmt.Fprintf(opt.Stderr, "%s: %v\n", opt.Name, err)
		return ExitFailed
	}
	ws.GPUs = devices(opt.Devices)
	r, err := ws.ExecStage(ctx, x.Addr, pipeline.ExecOptions{
		Rerun: x.Rerun, Force: x.Force, Events: x.Events, Resolutions: x.Resolutions, Key: x.Key,
	})
	if err != nil {
		fmt.Fprintf(opt.Stderr, "%s: %v\n", opt.Name, err)
		return ExitFailed
	}
	switch r.Status {
	case pipeline.StatusRan, pipeline.StatusCached:
		return ExitOK
	case pipeline.StatusCanceled:
		return ExitCanceled
	}
	fmt.Fprintf(opt.Stderr, "%s: %s %s: %v\n", opt.Name, x.Addr, r.Status, r.Err)
	return ExitFailed
}

// devices are the devices this process sees, as the workspace's GPUs: not
// a pipeline.GPUWorker, so GPU stages run in this process.
type devices func() ([]int, error)

func (d devices) Devices() ([]int, error) { return d() }
