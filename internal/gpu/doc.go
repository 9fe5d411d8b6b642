// Package gpu finds the machine's NVIDIA GPUs through NVML
// (github.com/NVIDIA/go-nvml): each device's index, UUID, name, memory
// (total and free), compute capability and utilisation, and the driver's
// and CUDA driver API's versions. It also locates the CUDA worker binary
// (lathe-cuda) that runs GPU stages.
//
// Discovery never fails loudly: no NVML library, no loaded driver, no
// device, a build without cgo — each gives an Info whose Reason says why
// ("no NVIDIA GPU: ..."), never a panic or an exit. go-nvml loads
// libnvidia-ml.so.1 with dlopen at run time, so no NVIDIA library is needed
// to build or link lathe. go-nvml itself uses cgo (for dlopen), so the NVML
// code is compiled only when cgo is on (`linux && cgo`, the default where a
// C compiler is installed); a CGO_ENABLED=0 build is still a working lathe
// whose Info says discovery needs a cgo build.
//
// A limit of go-nvml v0.13: its bindings leave every nvml* symbol
// undefined in the binary and rely on lazy binding, so a cgo build of lathe
// does not start at all where symbols are bound at load time (LD_BIND_NOW=1
// in the environment, a toolchain that links with -z now, musl libc). There,
// build with the nonvml tag (`go build -tags nonvml ./cmd/lathe`) or with
// CGO_ENABLED=0: lathe then runs without GPU discovery.
//
// This package does not start CUDA, allocate device memory or schedule
// anything: the executor (pipeline) hands out the devices it lists, and the
// worker binary does the CUDA work. It reads NVML's view of the devices,
// which ignores CUDA_VISIBLE_DEVICES; Visible applies that variable the way
// the CUDA runtime does. MIG instances are not listed separately.
package gpu
