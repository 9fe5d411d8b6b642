package gpu

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lathe-ml/lathe/internal/bytesize"
)

// MinComputeMajor and MinComputeMinor are the lowest compute capability
// lathe's CUDA backend runs on: its kernels are PTX for compute_80 and its
// GEMMs are bf16, both of which need Ampere (8.0) or newer. Older devices
// are listed but not usable.
const (
	MinComputeMajor = 8
	MinComputeMinor = 0
)

// Device is one NVIDIA GPU as NVML reports it.
type Device struct {
	// Index is NVML's index, the number nvidia-smi shows (PCI bus order).
	Index int `json:"index"`
	// UUID is the device's stable identity ("GPU-5f3c...").
	UUID string `json:"uuid,omitempty"`
	// Name is the product name ("NVIDIA H200").
	Name string `json:"name,omitempty"`
	// MemoryTotal and MemoryFree are the device memory in bytes.
	MemoryTotal uint64 `json:"memory_total"`
	MemoryFree  uint64 `json:"memory_free"`
	// ComputeMajor and ComputeMinor are the CUDA compute capability (9.0
	// for Hopper); zero when unknown.
	ComputeMajor int `json:"compute_major"`
	ComputeMinor int `json:"compute_minor"`
	// Utilization is the percentage of the last sample period in which a
	// kernel was running, and MemoryUtilization the same for device memory
	// reads and writes; -1 when the device does not report them.
	Utilization       int `json:"utilization"`
	MemoryUtilization int `json:"memory_utilization"`
	// Unusable says why lathe will not schedule work on the device (it
	// could not be queried, its compute capability is too old, or
	// CUDA_VISIBLE_DEVICES hides it); "" when it is usable.
	Unusable string `json:"unusable,omitempty"`
}

// ComputeCapability renders the compute capability as "9.0", or "?" when
// unknown.
func (d Device) ComputeCapability() string {
	if d.ComputeMajor == 0 {
		return "?"
	}
	return fmt.Sprintf("%d.%d", d.ComputeMajor, d.ComputeMinor)
}

// Usable reports whether work may be scheduled on the device.
func (d Device) Usable() bool { return d.Unusable == "" }

// Info is the result of discovery: the driver and its devices, or why
// there are none.
type Info struct {
	// DriverVersion is the NVIDIA driver's version ("550.54.15").
	DriverVersion string `json:"driver_version,omitempty"`
	// CUDAVersion is the newest CUDA driver API the driver supports
	// ("12.4"): a CUDA runtime newer than this will not run.
	CUDAVersion string `json:"cuda_driver_version,omitempty"`
	// Devices lists every device NVML reports, usable or not.
	Devices []Device `json:"devices"`
	// Reason is set when no device is usable: "no NVIDIA GPU: <why>".
	Reason string `json:"reason,omitempty"`
}

// Usable returns the devices work may be scheduled on, in NVML order.
func (i Info) Usable() []Device {
	var out []Device
	for _, d := range i.Devices {
		if d.Usable() {
			out = append(out, d)
		}
	}
	return out
}

// Err returns nil when at least one device is usable, else an error whose
// text is Reason ("no NVIDIA GPU: ...").
func (i Info) Err() error {
	if len(i.Usable()) > 0 {
		return nil
	}
	if i.Reason == "" {
		return errors.New(noGPU + "no device is usable")
	}
	return errors.New(i.Reason)
}

// Device returns the device with NVML index idx.
func (i Info) Device(idx int) (Device, bool) {
	for _, d := range i.Devices {
		if d.Index == idx {
			return d, true
		}
	}
	return Device{}, false
}

// VisibleDevices returns the value of CUDA_VISIBLE_DEVICES that shows a
// CUDA process exactly the devices with these NVML indices, in this order:
// their UUIDs, which mean the same device whatever order CUDA enumerates
// devices in.
func (i Info) VisibleDevices(indices []int) (string, error) {
	ids := make([]string, 0, len(indices))
	for _, idx := range indices {
		d, ok := i.Device(idx)
		if !ok {
			return "", fmt.Errorf("no GPU with index %d", idx)
		}
		if d.UUID == "" {
			return "", fmt.Errorf("GPU %d has no known UUID", idx)
		}
		ids = append(ids, d.UUID)
	}
	return strings.Join(ids, ","), nil
}

// Lines renders the information for people, one line per item: the
// driver, then each device with its memory, compute capability and
// utilisation; or the reason there is none.
func (i Info) Lines() []string {
	var out []string
	if i.DriverVersion != "" || i.CUDAVersion != "" {
		out = append(out, fmt.Sprintf("driver %s, CUDA %s", orUnknown(i.DriverVersion), orUnknown(i.CUDAVersion)))
	}
	for _, d := range i.Devices {
		var b strings.Builder
		fmt.Fprintf(&b, "%d: %s", d.Index, orUnknown(d.Name))
		if d.UUID != "" {
			fmt.Fprintf(&b, " (%s)", d.UUID)
		}
		if d.MemoryTotal > 0 {
			fmt.Fprintf(&b, ", %s memory (%s free)", bytesize.Format(int64(d.MemoryTotal)), bytesize.Format(int64(d.MemoryFree)))
		}
		fmt.Fprintf(&b, ", compute %s", d.ComputeCapability())
		if d.Utilization >= 0 {
			fmt.Fprintf(&b, ", %d%% busy", d.Utilization)
			if d.MemoryUtilization >= 0 {
				fmt.Fprintf(&b, " (memory %d%%)", d.MemoryUtilization)
			}
		}
		if !d.Usable() {
			fmt.Fprintf(&b, " — not used: %s", d.Unusable)
		}
		out = append(out, b.String())
	}
	if len(i.Usable()) == 0 && i.Reason != "" {
		out = append(out, i.Reason)
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// formatCUDAVersion renders NVML's CUDA driver version number (1000*major
// + 10*minor, e.g. 12040) as "12.4".
func formatCUDAVersion(v int) string {
	if v <= 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
}
