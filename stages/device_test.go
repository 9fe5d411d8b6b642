package stages_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/stages/evaluate"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
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

// TestEvaluateOnDevices: evaluate given a device scores (loss) and
// generates on the device backend, with the same metrics as on the CPU.
func TestEvaluateOnDevices(t *testing.T) {
	vars := setup(t)
	examples, _ := filepath.Abs("../examples")
	src := `
model = base
data  = sft_val
generate {
  path           = "` + examples + `/self-cognition/data/identity.json"
  format         = "alpaca"
  max_new_tokens = 4
  limit          = 2
}
`
	args := decode(t, evaluate.Kind().Schema, src, vars)
	metrics := func(devices []int) map[string]float64 {
		t.Helper()
		req := newReq(t, args, ".", "", &recorder{})
		req.Devices = devices
		res, err := evaluate.Kind().Run(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for name, v := range res.Values["metrics"].AsValueMap() {
			out[name], _ = v.AsBigFloat().Float64()
		}
		return out
	}
	onCPU := metrics(nil)

	var gemms atomic.Int64
	var closed atomic.Bool
	tensor.RegisterDevices("test", func(devices []int) (tensor.Backend, error) {
		return countingBackend{cpu.New(), &gemms, &closed}, nil
	})
	defer tensor.RegisterDevices("", nil)
	onDevice := metrics([]int{0})
	if gemms.Load() == 0 || !closed.Load() {
		t.Errorf("device backend: %d GEMMs, closed %v", gemms.Load(), closed.Load())
	}
	if len(onCPU) < 3 || !maps.Equal(onCPU, onDevice) {
		t.Errorf("metrics on the CPU %v, on the device %v", onCPU, onDevice)
	}
}

// TestSFTComputeTypeBF16: compute_type = "bf16" trains LoRA over a base held
// in bfloat16 (the loss falls), and its result differs from fp32's.
func TestSFTComputeTypeBF16(t *testing.T) {
	vars := setup(t)
	run := func(computeType string) trainstage.Report {
		src := `
model         = base
data          = sft_data
method        = "lora"
learning_rate = 5e-3
max_steps     = 6
batch_size    = 4
compute_type  = "` + computeType + `"
`
		return report(t, runKind(t, sft.Kind(), src, vars, "", nil))
	}
	half, full := run("bf16"), run("fp32")
	if !(half.FinalLoss < half.FirstLoss) {
		t.Errorf("bf16: loss %v -> %v, want it to fall", half.FirstLoss, half.FinalLoss)
	}
	if half.FinalLoss == full.FinalLoss {
		t.Errorf("bf16 and fp32 end at the same loss %v: the weights were not rounded", half.FinalLoss)
	}
}
