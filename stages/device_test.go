package stages_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/stages/sft"
)

// countingBackend is a device backend for the test: the CPU backend,
// counting the GEMMs run on it.
type countingBackend struct {
	*cpu.Backend
	gemms  *atomic.Int64
	closed *atomic.Bool
}

func (b countingBackend) Gemm(g tensor.Gemm) { b.gemms.Add(1); b.Backend.Gemm(g) }
func (b countingBackend) Close()             { b.closed.Store(true) }

// TestStageOnDevices: a training stage given devices (a GPU stage)
// computes on the device backend the binary registered (in the CUDA
// worker, cuda), closes it afterwards, and without one fails saying so.
func TestStageOnDevices(t *testing.T) {
	vars := setup(t)
	src := `
model         = base
data          = sft_data
method        = "lora"
learning_rate = 5e-3
max_steps     = 2
batch_size    = 4
`
	args := decode(t, sft.Kind().Schema, src, vars)

	req := newReq(t, args, ".", "", &recorder{})
	req.Devices = []int{0}
	_, err := sft.Kind().Run(context.Background(), req)
	if !errors.Is(err, tensor.ErrNoDeviceBackend) {
		t.Fatalf("no device backend registered: err %v, want ErrNoDeviceBackend", err)
	}

	var gemms atomic.Int64
	var closed atomic.Bool
	var opened []int
	tensor.RegisterDevices("test", func(devices []int) (tensor.Backend, error) {
		opened = devices
		return countingBackend{cpu.New(), &gemms, &closed}, nil
	})
	defer tensor.RegisterDevices("", nil)
	req = newReq(t, args, ".", "", &recorder{})
	req.Devices = []int{0}
	if _, err := sft.Kind().Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if len(opened) != 1 || opened[0] != 0 || gemms.Load() == 0 || !closed.Load() {
		t.Errorf("device backend: opened on %v, %d GEMMs, closed %v", opened, gemms.Load(), closed.Load())
	}

	req = newReq(t, args, ".", "", &recorder{})
	req.Devices = []int{0, 1}
	if _, err := sft.Kind().Run(context.Background(), req); err == nil {
		t.Error("two devices: no error")
	}
}
