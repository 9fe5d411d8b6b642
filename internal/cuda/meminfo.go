//go:build cuda

package cuda

import (
	"fmt"

	"gorgonia.org/cu"

	"github.com/lathe-ml/lathe/internal/tensor"
)

var _ tensor.MemoryReporter = (*Backend)(nil)

// DeviceMemory returns the device's free and total memory (cuMemGetInfo in
// the backend's context): what a training stage's memory estimate is
// checked against.
func (be *Backend) DeviceMemory() (free, total int64, err error) {
	defer be.enter()()
	free, total, err = cu.MemInfo()
	if err != nil {
		return 0, 0, fmt.Errorf("cuda: memory info: %w", err)
	}
	return free, total, nil
}
