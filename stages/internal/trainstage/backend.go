package trainstage

import (
	"fmt"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// Backend returns the backend a training stage computes on: the CPU
// backend, or, for a stage given devices (resources { gpus = N }), the
// device backend registered in this binary (the CUDA worker's). release
// frees a device backend; call it when the stage is done.
func Backend(req *stage.Request) (be tensor.Backend, release func(), err error) {
	if len(req.Devices) == 0 {
		return cpu.New(), func() {}, nil
	}
	if len(req.Devices) > 1 {
		return nil, nil, fmt.Errorf("%d GPUs given: a training stage uses one device for now (resources { gpus = 1 })", len(req.Devices))
	}
	be, err = tensor.OpenDevices(req.Devices)
	if err != nil {
		return nil, nil, err
	}
	release = func() {}
	if c, ok := be.(interface{ Close() }); ok {
		release = c.Close
	}
	return be, release, nil
}
