//go:build linux && cgo && !nonvml

package gpu

import (
	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlCompiled reports whether this build can load NVML.
const nvmlCompiled = true

// realNVML is nvmlAPI over go-nvml, which dlopens libnvidia-ml.so.1 in
// init: nothing NVIDIA is linked into the binary.
type realNVML struct {
	lib nvml.Interface
}

// newNVML returns the NVML wrapper; path overrides the library's file name
// (tests use a path that does not exist).
func newNVML(path string) nvmlAPI {
	if path == "" {
		return realNVML{lib: nvml.New()}
	}
	return realNVML{lib: nvml.New(nvml.WithLibraryPath(path))}
}

func wrap(op string, r nvml.Return) error {
	if r == nvml.SUCCESS {
		return nil
	}
	c := codeOther
	switch r {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		c = codeLibraryNotFound
	case nvml.ERROR_DRIVER_NOT_LOADED:
		c = codeDriverNotLoaded
	case nvml.ERROR_LIB_RM_VERSION_MISMATCH:
		c = codeVersionMismatch
	case nvml.ERROR_NO_PERMISSION:
		c = codeNoPermission
	case nvml.ERROR_NOT_SUPPORTED:
		c = codeNotSupported
	case nvml.ERROR_GPU_IS_LOST:
		c = codeGPUIsLost
	}
	return &nvmlError{op: op, code: c, text: r.Error()}
}

func (n realNVML) init() error { return wrap("nvmlInit", n.lib.Init()) }
func (n realNVML) shutdown()   { _ = n.lib.Shutdown() }

func (n realNVML) driverVersion() (string, error) {
	v, r := n.lib.SystemGetDriverVersion()
	return v, wrap("nvmlSystemGetDriverVersion", r)
}

func (n realNVML) cudaDriverVersion() (int, error) {
	v, r := n.lib.SystemGetCudaDriverVersion()
	return v, wrap("nvmlSystemGetCudaDriverVersion", r)
}

func (n realNVML) deviceCount() (int, error) {
	c, r := n.lib.DeviceGetCount()
	return c, wrap("nvmlDeviceGetCount", r)
}

func (n realNVML) device(i int) rawDevice {
	var d rawDevice
	h, r := n.lib.DeviceGetHandleByIndex(i)
	if d.handleErr = wrap("nvmlDeviceGetHandleByIndex", r); d.handleErr != nil {
		return d
	}
	d.uuid, r = h.GetUUID()
	d.uuidErr = wrap("nvmlDeviceGetUUID", r)
	d.name, r = h.GetName()
	d.nameErr = wrap("nvmlDeviceGetName", r)
	mem, r := h.GetMemoryInfo()
	d.memTotal, d.memFree, d.memErr = mem.Total, mem.Free, wrap("nvmlDeviceGetMemoryInfo", r)
	d.ccMajor, d.ccMinor, r = h.GetCudaComputeCapability()
	d.ccErr = wrap("nvmlDeviceGetCudaComputeCapability", r)
	u, r := h.GetUtilizationRates()
	d.util, d.memUtil, d.utilErr = int(u.Gpu), int(u.Memory), wrap("nvmlDeviceGetUtilizationRates", r)
	return d
}
