package gpu

import (
	"errors"
	"fmt"
	"strings"
)

const noGPU = "no NVIDIA GPU: "

// Discover asks NVML for the driver and its devices. It never panics or
// exits: every failure becomes Info.Reason. It takes from milliseconds (no
// driver) to a few seconds (many GPUs without the persistence daemon);
// callers that ask more than once should keep the result.
//
// NVML lists every device on the machine; apply Visible to honour
// CUDA_VISIBLE_DEVICES.
func Discover() Info {
	return discover(newNVML(""))
}

// code classifies an NVML failure by what the user can do about it.
type code int

const (
	codeOther            code = iota
	codeLibraryNotFound       // libnvidia-ml.so.1 cannot be loaded
	codeDriverNotLoaded       // the library loads, the kernel driver is absent
	codeVersionMismatch       // library and kernel driver disagree
	codeNoPermission          // /dev/nvidia* not accessible
	codeNotSupported          // the device does not report this value
	codeGPUIsLost             // the device fell off the bus
	codeUnsupportedBuild      // this build has no NVML (no cgo, not Linux)
)

// nvmlError is a failed NVML call: the call, the class of failure and
// NVML's own text for it.
type nvmlError struct {
	op   string
	code code
	text string
}

func (e *nvmlError) Error() string { return e.op + ": " + e.text }

func codeOf(err error) code {
	var ne *nvmlError
	if errors.As(err, &ne) {
		return ne.code
	}
	return codeOther
}

// nvmlAPI is the part of NVML discovery uses. The real implementation
// wraps go-nvml (nvml_cgo.go); tests use a fake device list.
type nvmlAPI interface {
	init() error
	shutdown()
	driverVersion() (string, error)
	cudaDriverVersion() (int, error)
	deviceCount() (int, error)
	// device queries device i; a failed query leaves its field's error set.
	device(i int) rawDevice
}

// rawDevice is what NVML answered for one device, each value with its
// own error.
type rawDevice struct {
	handleErr         error
	uuid              string
	uuidErr           error
	name              string
	nameErr           error
	memTotal, memFree uint64
	memErr            error
	ccMajor, ccMinor  int
	ccErr             error
	util, memUtil     int
	utilErr           error
}

func discover(api nvmlAPI) (info Info) {
	defer func() {
		if p := recover(); p != nil {
			info = Info{Reason: fmt.Sprintf("%sNVML discovery failed: %v", noGPU, p)}
		}
	}()
	if err := api.init(); err != nil {
		return Info{Reason: noGPU + initReason(err)}
	}
	defer api.shutdown()
	if v, err := api.driverVersion(); err == nil {
		info.DriverVersion = v
	}
	if v, err := api.cudaDriverVersion(); err == nil {
		info.CUDAVersion = formatCUDAVersion(v)
	}
	n, err := api.deviceCount()
	if err != nil {
		info.Reason = noGPU + "the NVIDIA driver is loaded but listing its devices failed: " + err.Error()
		return info
	}
	if n == 0 {
		info.Reason = noGPU + "the NVIDIA driver is loaded but reports no device"
		return info
	}
	info.Devices = make([]Device, 0, n)
	for i := 0; i < n; i++ {
		info.Devices = append(info.Devices, deviceFrom(i, api.device(i)))
	}
	if len(info.Usable()) == 0 {
		info.Reason = noGPU + unusableReason(info.Devices)
	}
	return info
}

// initReason explains a failed nvmlInit in the user's terms.
func initReason(err error) string {
	switch codeOf(err) {
	case codeLibraryNotFound:
		return "the NVML library (libnvidia-ml.so.1) could not be loaded: no NVIDIA driver is installed, or its libraries are not on the loader's path"
	case codeDriverNotLoaded:
		return "the NVML library is installed but the NVIDIA kernel driver is not loaded (nvidia-smi should say the same)"
	case codeVersionMismatch:
		return "the NVML library and the loaded NVIDIA kernel driver have different versions (reload the driver or reboot after a driver upgrade)"
	case codeNoPermission:
		return "no permission to open the NVIDIA devices (/dev/nvidia*)"
	case codeUnsupportedBuild:
		var ne *nvmlError
		errors.As(err, &ne)
		return ne.text
	}
	return "NVML could not start: " + err.Error()
}

// deviceFrom turns NVML's answers about device i into a Device, marking it
// unusable when what scheduling needs is missing or too old.
func deviceFrom(i int, r rawDevice) Device {
	d := Device{Index: i, Utilization: -1, MemoryUtilization: -1}
	if r.handleErr != nil {
		d.Unusable = "cannot open the device: " + deviceErr(r.handleErr)
		return d
	}
	var problems []string
	if r.nameErr == nil {
		d.Name = r.name
	}
	if r.uuidErr == nil && r.uuid != "" {
		d.UUID = r.uuid
	} else {
		problems = append(problems, "no UUID ("+deviceErr(orErr(r.uuidErr))+")")
	}
	if r.memErr == nil {
		d.MemoryTotal, d.MemoryFree = r.memTotal, r.memFree
	} else {
		problems = append(problems, "memory unknown ("+deviceErr(r.memErr)+")")
	}
	if r.ccErr == nil {
		d.ComputeMajor, d.ComputeMinor = r.ccMajor, r.ccMinor
	} else {
		problems = append(problems, "compute capability unknown ("+deviceErr(r.ccErr)+")")
	}
	if r.utilErr == nil {
		d.Utilization, d.MemoryUtilization = r.util, r.memUtil
	}
	if r.ccErr == nil && (d.ComputeMajor < MinComputeMajor || d.ComputeMajor == MinComputeMajor && d.ComputeMinor < MinComputeMinor) {
		problems = append(problems, fmt.Sprintf("compute capability %s is below the %d.%d lathe's CUDA kernels need", d.ComputeCapability(), MinComputeMajor, MinComputeMinor))
	}
	d.Unusable = strings.Join(problems, "; ")
	return d
}

func orErr(err error) error {
	if err == nil {
		return errors.New("empty")
	}
	return err
}

func deviceErr(err error) string {
	switch codeOf(err) {
	case codeGPUIsLost:
		return "the GPU has fallen off the bus (" + err.Error() + ")"
	case codeNoPermission:
		return "no permission (" + err.Error() + ")"
	}
	return err.Error()
}

// unusableReason summarises why none of the devices can be used.
func unusableReason(devs []Device) string {
	parts := make([]string, 0, len(devs))
	for _, d := range devs {
		parts = append(parts, fmt.Sprintf("GPU %d: %s", d.Index, d.Unusable))
	}
	return "no usable device (" + strings.Join(parts, "; ") + ")"
}
