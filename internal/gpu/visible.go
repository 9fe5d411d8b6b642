package gpu

import (
	"fmt"
	"strconv"
	"strings"
)

// VisibleDevicesEnv is the CUDA runtime's device filter.
const VisibleDevicesEnv = "CUDA_VISIBLE_DEVICES"

// Visible applies CUDA_VISIBLE_DEVICES (value, and whether it is set at
// all) the way the CUDA runtime reads it: unset shows every device; set,
// it is a comma-separated list of device indices or UUIDs ("GPU-5f3c...",
// or an unambiguous prefix of one), and the list ends at the first entry
// that names no device, repeats one, or is not understood (so "" and "-1"
// hide every device). Hidden devices stay in the list, marked unusable.
//
// Limits: an index is read as NVML's index (PCI bus order), which is the
// CUDA runtime's too when CUDA_DEVICE_ORDER=PCI_BUS_ID or the devices are
// all of one model; MIG instances ("MIG-...") are not supported and end
// the list like any entry that names no device.
func (i Info) Visible(value string, set bool) Info {
	if !set || len(i.Devices) == 0 {
		return i
	}
	shown := map[int]bool{}
	var stop string
	for _, entry := range strings.Split(value, ",") {
		entry = strings.TrimSpace(entry)
		idx, err := i.lookupEntry(entry)
		if err == nil && shown[idx] {
			err = fmt.Errorf("device %d is listed twice", idx)
		}
		if err != nil {
			if value != "" && entry != "-1" {
				stop = err.Error()
			}
			break
		}
		shown[idx] = true
	}
	out := i
	out.Devices = make([]Device, len(i.Devices))
	copy(out.Devices, i.Devices)
	hidden := 0
	for k := range out.Devices {
		d := &out.Devices[k]
		if shown[d.Index] {
			continue
		}
		hidden++
		if d.Usable() {
			d.Unusable = fmt.Sprintf("hidden by %s=%q", VisibleDevicesEnv, value)
		}
	}
	if len(out.Usable()) == 0 && out.Reason == "" {
		switch {
		case len(shown) == 0 && stop != "":
			out.Reason = fmt.Sprintf("%s%s=%q names no usable device: %s", noGPU, VisibleDevicesEnv, value, stop)
		case len(shown) == 0:
			out.Reason = fmt.Sprintf("%s%s=%q hides all %d devices", noGPU, VisibleDevicesEnv, value, hidden)
		default:
			out.Reason = noGPU + unusableReason(out.Devices)
		}
	}
	return out
}

// lookupEntry finds the NVML index one CUDA_VISIBLE_DEVICES entry names.
func (i Info) lookupEntry(entry string) (int, error) {
	switch {
	case entry == "":
		return 0, fmt.Errorf("empty entry")
	case strings.HasPrefix(entry, "MIG-"):
		return 0, fmt.Errorf("MIG instance %q: lathe does not schedule MIG instances", entry)
	case strings.HasPrefix(entry, "GPU-"):
		found := -1
		for _, d := range i.Devices {
			if d.UUID != "" && strings.HasPrefix(d.UUID, entry) {
				if found >= 0 {
					return 0, fmt.Errorf("%q matches more than one device", entry)
				}
				found = d.Index
			}
		}
		if found < 0 {
			return 0, fmt.Errorf("no device has UUID %q", entry)
		}
		return found, nil
	}
	n, err := strconv.Atoi(entry)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a device index nor a UUID", entry)
	}
	if _, ok := i.Device(n); !ok {
		return 0, fmt.Errorf("no device has index %d", n)
	}
	return n, nil
}
