package tensor

import (
	"errors"
	"sync"
)

// DeviceOpener opens a Backend on the given accelerator devices (indices
// among the devices the process may see).
type DeviceOpener func(devices []int) (Backend, error)

var (
	deviceMu     sync.Mutex
	deviceName   string
	deviceOpener DeviceOpener
)

// ErrNoDeviceBackend is OpenDevices' error in a binary without a device
// backend (lathe itself: GPU stages run in the CUDA worker, which
// registers one).
var ErrNoDeviceBackend = errors.New("tensor: this binary has no device backend (GPU stages run in the CUDA worker, lathe-cuda)")

// RegisterDevices makes open the backend OpenDevices returns. A worker
// binary that has a device backend (cmd/lathe-cuda: "cuda") calls it once
// at start-up; the default build registers none.
func RegisterDevices(name string, open DeviceOpener) {
	deviceMu.Lock()
	defer deviceMu.Unlock()
	deviceName, deviceOpener = name, open
}

// OpenDevices opens the registered device backend on devices.
func OpenDevices(devices []int) (Backend, error) {
	deviceMu.Lock()
	open := deviceOpener
	deviceMu.Unlock()
	if open == nil {
		return nil, ErrNoDeviceBackend
	}
	return open(devices)
}

// DeviceBackendName is the registered device backend's name ("" when
// none is).
func DeviceBackendName() string {
	deviceMu.Lock()
	defer deviceMu.Unlock()
	return deviceName
}

// MemoryReporter is a device Backend that can say how much memory its
// device has: a training stage on a device checks its memory estimate
// against the device's free memory, not the host's.
type MemoryReporter interface {
	// DeviceMemory returns the device's free and total memory in bytes.
	DeviceMemory() (free, total int64, err error)
}
