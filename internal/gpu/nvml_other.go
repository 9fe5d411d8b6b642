//go:build !(linux && cgo) || nonvml

package gpu

import "runtime"

// nvmlCompiled reports whether this build can load NVML.
const nvmlCompiled = false

// noNVML is the nvmlAPI of a build without NVML: go-nvml needs cgo (for
// dlopen) and Linux, and the nonvml build tag leaves it out on purpose.
// Its init fails with the reason, so Discover reports "no NVIDIA GPU: ..."
// like any other machine without one.
type noNVML struct{}

func newNVML(string) nvmlAPI { return noNVML{} }

func (noNVML) init() error {
	text := "this lathe was built without cgo (CGO_ENABLED=0), and NVML discovery needs cgo; rebuild with CGO_ENABLED=1 to use GPUs"
	switch {
	case runtime.GOOS != "linux":
		text = "NVML discovery is supported on Linux only (this is " + runtime.GOOS + ")"
	case nonvmlTag:
		text = "this lathe was built with the nonvml tag, which leaves NVML discovery out; rebuild without it to use GPUs"
	}
	return &nvmlError{op: "nvmlInit", code: codeUnsupportedBuild, text: text}
}

func (noNVML) shutdown()                       {}
func (noNVML) driverVersion() (string, error)  { return "", nil }
func (noNVML) cudaDriverVersion() (int, error) { return 0, nil }
func (noNVML) deviceCount() (int, error)       { return 0, nil }
func (noNVML) device(int) rawDevice            { return rawDevice{} }
