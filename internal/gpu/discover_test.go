package gpu

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
)

// fakeNVML answers like NVML from a fixed list.
type fakeNVML struct {
	initErr     error
	driver      string
	cuda        int
	countErr    error
	devices     []rawDevice
	initialized bool
	shutdowns   int
}

func (f *fakeNVML) init() error {
	if f.initErr != nil {
		return f.initErr
	}
	f.initialized = true
	return nil
}
func (f *fakeNVML) shutdown()                       { f.shutdowns++ }
func (f *fakeNVML) driverVersion() (string, error)  { return f.driver, nil }
func (f *fakeNVML) cudaDriverVersion() (int, error) { return f.cuda, nil }
func (f *fakeNVML) deviceCount() (int, error)       { return len(f.devices), f.countErr }
func (f *fakeNVML) device(i int) rawDevice {
	if !f.initialized {
		panic("device queried before init")
	}
	return f.devices[i]
}

func nvErr(op string, c code, text string) error { return &nvmlError{op: op, code: c, text: text} }

func h200(uuid string) rawDevice {
	return rawDevice{uuid: uuid, name: "NVIDIA H200", memTotal: 150 << 30, memFree: 149 << 30, ccMajor: 9, ccMinor: 0, util: 3, memUtil: 1}
}

func TestDiscover(t *testing.T) {
	lost := nvErr("nvmlDeviceGetHandleByIndex", codeGPUIsLost, "GPU is lost")
	tests := []struct {
		name       string
		api        *fakeNVML
		wantReason string // substring; "" means at least one usable device
		wantUsable []int
		check      func(t *testing.T, info Info)
	}{
		{
			name:       "no library",
			api:        &fakeNVML{initErr: nvErr("nvmlInit", codeLibraryNotFound, "ERROR_LIBRARY_NOT_FOUND")},
			wantReason: "no NVIDIA GPU: the NVML library (libnvidia-ml.so.1) could not be loaded",
		},
		{
			name:       "driver not loaded",
			api:        &fakeNVML{initErr: nvErr("nvmlInit", codeDriverNotLoaded, "Driver Not Loaded")},
			wantReason: "no NVIDIA GPU: the NVML library is installed but the NVIDIA kernel driver is not loaded",
		},
		{
			name:       "version mismatch",
			api:        &fakeNVML{initErr: nvErr("nvmlInit", codeVersionMismatch, "RM has detected an NVML/RM version mismatch")},
			wantReason: "different versions",
		},
		{
			name:       "no permission",
			api:        &fakeNVML{initErr: nvErr("nvmlInit", codeNoPermission, "Insufficient Permissions")},
			wantReason: "no permission to open the NVIDIA devices",
		},
		{
			name:       "other init failure",
			api:        &fakeNVML{initErr: nvErr("nvmlInit", codeOther, "Unknown Error")},
			wantReason: "no NVIDIA GPU: NVML could not start: nvmlInit: Unknown Error",
		},
		{
			name:       "build without nvml",
			api:        &fakeNVML{initErr: nvErr("nvmlInit", codeUnsupportedBuild, "built without cgo")},
			wantReason: "no NVIDIA GPU: built without cgo",
		},
		{
			name:       "no devices",
			api:        &fakeNVML{driver: "550.54.15", cuda: 12040},
			wantReason: "no NVIDIA GPU: the NVIDIA driver is loaded but reports no device",
			check: func(t *testing.T, info Info) {
				if info.DriverVersion != "550.54.15" || info.CUDAVersion != "12.4" {
					t.Errorf("versions = %q, %q", info.DriverVersion, info.CUDAVersion)
				}
			},
		},
		{
			name:       "count fails",
			api:        &fakeNVML{countErr: nvErr("nvmlDeviceGetCount", codeOther, "Unknown Error"), devices: []rawDevice{h200("GPU-a")}},
			wantReason: "listing its devices failed: nvmlDeviceGetCount: Unknown Error",
		},
		{
			name:       "two good devices",
			api:        &fakeNVML{driver: "570.86.15", cuda: 12080, devices: []rawDevice{h200("GPU-a"), h200("GPU-b")}},
			wantUsable: []int{0, 1},
			check: func(t *testing.T, info Info) {
				d := info.Devices[1]
				want := Device{Index: 1, UUID: "GPU-b", Name: "NVIDIA H200", MemoryTotal: 150 << 30, MemoryFree: 149 << 30, ComputeMajor: 9, Utilization: 3, MemoryUtilization: 1}
				if d != want {
					t.Errorf("device 1 = %+v, want %+v", d, want)
				}
				if info.CUDAVersion != "12.8" {
					t.Errorf("CUDA version %q, want 12.8", info.CUDAVersion)
				}
			},
		},
		{
			name:       "a lost device is listed but not used",
			api:        &fakeNVML{devices: []rawDevice{{handleErr: lost}, h200("GPU-b")}},
			wantUsable: []int{1},
			check: func(t *testing.T, info Info) {
				if got := info.Devices[0].Unusable; !strings.Contains(got, "fallen off the bus") {
					t.Errorf("lost device: %q", got)
				}
			},
		},
		{
			name: "utilisation not supported",
			api: &fakeNVML{devices: []rawDevice{func() rawDevice {
				d := h200("GPU-a")
				d.utilErr = nvErr("nvmlDeviceGetUtilizationRates", codeNotSupported, "Not Supported")
				return d
			}()}},
			wantUsable: []int{0},
			check: func(t *testing.T, info Info) {
				if d := info.Devices[0]; d.Utilization != -1 || d.MemoryUtilization != -1 {
					t.Errorf("utilisation %d/%d, want -1/-1", d.Utilization, d.MemoryUtilization)
				}
			},
		},
		{
			name:       "too old",
			api:        &fakeNVML{devices: []rawDevice{{uuid: "GPU-t4", name: "Tesla T4", memTotal: 16 << 30, ccMajor: 7, ccMinor: 5}}},
			wantReason: "no NVIDIA GPU: no usable device (GPU 0: compute capability 7.5 is below the 8.0 lathe's CUDA kernels need)",
		},
		{
			name: "no uuid, no memory",
			api: &fakeNVML{devices: []rawDevice{{name: "x", ccMajor: 8,
				uuidErr: nvErr("nvmlDeviceGetUUID", codeNoPermission, "Insufficient Permissions"),
				memErr:  nvErr("nvmlDeviceGetMemoryInfo", codeOther, "Unknown Error")}}},
			wantReason: "GPU 0: no UUID (no permission (nvmlDeviceGetUUID: Insufficient Permissions)); memory unknown (nvmlDeviceGetMemoryInfo: Unknown Error)",
		},
		{
			name: "compute capability unknown",
			api: &fakeNVML{devices: []rawDevice{{uuid: "GPU-a", name: "x",
				ccErr: nvErr("nvmlDeviceGetCudaComputeCapability", codeOther, "Unknown Error")}}},
			wantReason: "GPU 0: compute capability unknown (nvmlDeviceGetCudaComputeCapability: Unknown Error)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := discover(tt.api)
			if tt.wantReason == "" {
				if err := info.Err(); err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
			} else {
				err := info.Err()
				if err == nil || !strings.Contains(err.Error(), tt.wantReason) {
					t.Fatalf("Err() = %v, want it to contain %q", err, tt.wantReason)
				}
				if !strings.HasPrefix(err.Error(), "no NVIDIA GPU: ") {
					t.Errorf("reason %q lacks the prefix", err)
				}
			}
			var usable []int
			for _, d := range info.Usable() {
				usable = append(usable, d.Index)
			}
			if !equalInts(usable, tt.wantUsable) {
				t.Errorf("usable = %v, want %v", usable, tt.wantUsable)
			}
			if tt.api.initialized && tt.api.shutdowns != 1 {
				t.Errorf("shutdown called %d times, want 1", tt.api.shutdowns)
			}
			if tt.check != nil {
				tt.check(t, info)
			}
		})
	}
}

func TestDiscoverRecoversPanic(t *testing.T) {
	info := discover(panicky{})
	if err := info.Err(); err == nil || !strings.Contains(err.Error(), "NVML discovery failed: boom") {
		t.Errorf("Err() = %v", err)
	}
}

type panicky struct{}

func (panicky) init() error                     { return nil }
func (panicky) shutdown()                       {}
func (panicky) driverVersion() (string, error)  { panic("boom") }
func (panicky) cudaDriverVersion() (int, error) { return 0, nil }
func (panicky) deviceCount() (int, error)       { return 0, nil }
func (panicky) device(int) rawDevice            { return rawDevice{} }

// TestDiscoverReal runs discovery against this machine's real NVML: with
// a GPU it must list it sanely, without one it must say why, never crash.
func TestDiscoverReal(t *testing.T) {
	info := Discover()
	t.Logf("discovery: %s", strings.Join(info.Lines(), " | "))
	if len(info.Usable()) == 0 {
		if !strings.HasPrefix(info.Reason, "no NVIDIA GPU: ") {
			t.Fatalf("no usable GPU and no reason: %+v", info)
		}
		return
	}
	for _, d := range info.Usable() {
		if !strings.HasPrefix(d.UUID, "GPU-") || d.Name == "" || d.MemoryTotal == 0 || d.MemoryFree > d.MemoryTotal || d.ComputeMajor < MinComputeMajor {
			t.Errorf("implausible device: %+v", d)
		}
	}
	if info.DriverVersion == "" || info.CUDAVersion == "" {
		t.Errorf("versions missing: %+v", info)
	}
}

// TestDiscoverMissingLibrary takes go-nvml's real load path with a library
// that does not exist: the answer is a reason, not a crash.
func TestDiscoverMissingLibrary(t *testing.T) {
	info := discover(newNVML("/nonexistent/libnvidia-ml.so.1"))
	want := "could not be loaded"
	if runtime.GOOS != "linux" {
		want = "Linux only"
	} else if nonvmlTag {
		want = "built with the nonvml tag"
	} else if !nvmlCompiled {
		want = "built without cgo"
	}
	if err := info.Err(); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Err() = %v, want it to contain %q", err, want)
	}
	if len(info.Devices) != 0 {
		t.Errorf("devices without a library: %+v", info.Devices)
	}
}

func TestLines(t *testing.T) {
	tests := []struct {
		name string
		info Info
		want []string
	}{
		{"none", Info{Reason: "no NVIDIA GPU: x"}, []string{"no NVIDIA GPU: x"}},
		{
			"devices",
			discover(&fakeNVML{driver: "550.54.15", cuda: 12040, devices: []rawDevice{
				h200("GPU-a"),
				{uuid: "GPU-t", name: "Tesla T4", memTotal: 16 << 30, memFree: 15 << 30, ccMajor: 7, ccMinor: 5, utilErr: nvErr("u", codeNotSupported, "Not Supported")},
			}}),
			[]string{
				"driver 550.54.15, CUDA 12.4",
				"0: NVIDIA H200 (GPU-a), 150.0 GiB memory (149.0 GiB free), compute 9.0, 3% busy (memory 1%)",
				"1: Tesla T4 (GPU-t), 16.0 GiB memory (15.0 GiB free), compute 7.5 — not used: compute capability 7.5 is below the 8.0 lathe's CUDA kernels need",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.info.Lines()
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestInfoJSON(t *testing.T) {
	info := discover(&fakeNVML{driver: "550.54.15", cuda: 12040, devices: []rawDevice{h200("GPU-a")}})
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"driver_version":"550.54.15","cuda_driver_version":"12.4","devices":[{"index":0,"uuid":"GPU-a","name":"NVIDIA H200","memory_total":161061273600,"memory_free":159987531776,"compute_major":9,"compute_minor":0,"utilization":3,"memory_utilization":1}]}`
	if string(b) != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", b, want)
	}
}

func TestFormatCUDAVersion(t *testing.T) {
	for v, want := range map[int]string{12040: "12.4", 11080: "11.8", 13000: "13.0", 12090: "12.9", 0: "", -1: ""} {
		if got := formatCUDAVersion(v); got != want {
			t.Errorf("formatCUDAVersion(%d) = %q, want %q", v, got, want)
		}
	}
}

func TestVisibleDevicesValue(t *testing.T) {
	info := discover(&fakeNVML{devices: []rawDevice{h200("GPU-a"), h200("GPU-b"), {handleErr: nvErr("h", codeOther, "x")}}})
	got, err := info.VisibleDevices([]int{1, 0})
	if err != nil || got != "GPU-b,GPU-a" {
		t.Errorf("VisibleDevices = %q, %v", got, err)
	}
	if _, err := info.VisibleDevices([]int{5}); err == nil || !strings.Contains(err.Error(), "no GPU with index 5") {
		t.Errorf("unknown index: %v", err)
	}
	if _, err := info.VisibleDevices([]int{2}); err == nil || !strings.Contains(err.Error(), "no known UUID") {
		t.Errorf("device without uuid: %v", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
