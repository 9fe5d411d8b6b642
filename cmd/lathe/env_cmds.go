package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/lathe-ml/lathe/internal/bytesize"
	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/gpu"
	"github.com/lathe-ml/lathe/internal/sysinfo"
	"github.com/lathe-ml/lathe/pipeline"
)

// envReport is what `lathe env` prints, and its -json form.
type envReport struct {
	Lathe struct {
		Version  string `json:"version"`
		Engine   string `json:"engine"`
		CacheKey string `json:"cache_key"`
	} `json:"lathe"`
	Go struct {
		Version string `json:"version"`
		OS      string `json:"os"`
		Arch    string `json:"arch"`
		Cgo     bool   `json:"cgo"`
	} `json:"go"`
	CPU struct {
		Model       string   `json:"model,omitempty"`
		Cores       int      `json:"cores"`
		GOMAXPROCS  int      `json:"gomaxprocs"`
		Features    []string `json:"features"`
		SgemmKernel string   `json:"sgemm_kernel"`
	} `json:"cpu"`
	Memory      sysinfo.Memory `json:"memory"`
	MemoryError string         `json:"memory_error,omitempty"`
	Backends    []envBackend   `json:"backends"`
	GPUs        gpu.Info       `json:"gpus"`
}

// envBackend is one compute backend and whether stages can use it here.
type envBackend struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	// Detail says what it runs with (the CPU's kernel, the worker's path).
	Detail string `json:"detail,omitempty"`
	// Reason says why it is not available.
	Reason string `json:"reason,omitempty"`
	// Worker is the CUDA worker's path, WorkerError why it was not found.
	Worker      string `json:"worker,omitempty"`
	WorkerError string `json:"worker_error,omitempty"`
}

func cmdEnv(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "env")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(rest) > 0 {
		return usageError(env, "env takes no arguments, got %s", strings.Join(rest, " "))
	}
	rep := buildEnvReport(env, "")
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
		return exitOK
	}
	printEnv(env.stdout, rep)
	return exitOK
}

// buildEnvReport gathers the report; exe is the running lathe's path ("":
// os.Executable), beside which the CUDA worker is looked for.
func buildEnvReport(env *cliEnv, exe string) *envReport {
	rep := &envReport{}
	rep.Lathe.Version, rep.Lathe.Engine, rep.Lathe.CacheKey = version, pipeline.EngineVersion, pipeline.KeySchema
	rep.Go.Version, rep.Go.OS, rep.Go.Arch = runtime.Version(), runtime.GOOS, runtime.GOARCH
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "CGO_ENABLED" {
				rep.Go.Cgo = s.Value == "1"
			}
		}
	}
	rep.CPU.Model = sysinfo.CPUModel()
	rep.CPU.Cores, rep.CPU.GOMAXPROCS = runtime.NumCPU(), runtime.GOMAXPROCS(0)
	rep.CPU.Features = sysinfo.CPUFeatures()
	if rep.CPU.Features == nil {
		rep.CPU.Features = []string{}
	}
	rep.CPU.SgemmKernel = cpu.SgemmKernel()
	mem, err := sysinfo.ReadMemory()
	rep.Memory = mem
	if err != nil {
		rep.MemoryError = err.Error()
	}

	gpus := &localGPUs{environ: env.environ, exe: exe}
	gpus.discover()
	rep.GPUs = gpus.info
	if rep.GPUs.Devices == nil {
		rep.GPUs.Devices = []gpu.Device{}
	}
	rep.Backends = append(rep.Backends, envBackend{Name: pipeline.BackendCPU, Available: true,
		Detail: fmt.Sprintf("pure Go, %s matrix kernel, %d threads", rep.CPU.SgemmKernel, rep.CPU.GOMAXPROCS)})
	cuda := envBackend{Name: pipeline.BackendCUDA, Worker: gpus.worker}
	if gpus.errW != nil {
		cuda.WorkerError = gpus.errW.Error()
	}
	if _, err := gpus.Devices(); err != nil {
		cuda.Reason = err.Error()
	} else {
		cuda.Available = true
		n := len(gpus.info.Usable())
		cuda.Detail = fmt.Sprintf("%d GPU", n)
		if n != 1 {
			cuda.Detail += "s"
		}
	}
	rep.Backends = append(rep.Backends, cuda)
	return rep
}

func printEnv(w io.Writer, rep *envReport) {
	row := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	more := func(format string, args ...any) { row("", format, args...) }
	row("lathe", "%s (engine %s, cache %s)", rep.Lathe.Version, rep.Lathe.Engine, rep.Lathe.CacheKey)
	cgo := "cgo off"
	if rep.Go.Cgo {
		cgo = "cgo on"
	}
	row("go", "%s %s/%s (%s)", rep.Go.Version, rep.Go.OS, rep.Go.Arch, cgo)
	model := rep.CPU.Model
	if model == "" {
		model = "unknown model"
	}
	row("cpu", "%s, %d cores, GOMAXPROCS %d", model, rep.CPU.Cores, rep.CPU.GOMAXPROCS)
	features := strings.Join(rep.CPU.Features, " ")
	if features == "" {
		features = "none of those the CPU backend uses"
	}
	row("features", "%s", features)
	m := rep.Memory
	memLine := fmt.Sprintf("%s total, %s available", bytesize.Format(m.Total), bytesize.Format(m.Available))
	if m.Total == 0 {
		memLine = "unknown"
	}
	if m.CgroupLimit > 0 {
		memLine += ", cgroup limit " + bytesize.Format(m.CgroupLimit)
	} else {
		memLine += ", no cgroup limit"
	}
	if rep.MemoryError != "" {
		memLine += " (" + rep.MemoryError + ")"
	}
	row("memory", "%s", memLine)
	for i, b := range rep.Backends {
		label := ""
		if i == 0 {
			label = "backends"
		}
		if b.Available {
			row(label, "%-5s available: %s", b.Name, b.Detail)
		} else if b.Reason == rep.GPUs.Reason {
			row(label, "%-5s not available: no usable NVIDIA GPU (see gpus)", b.Name)
		} else {
			row(label, "%-5s not available: %s", b.Name, b.Reason)
		}
		if b.Name == pipeline.BackendCUDA {
			if b.Worker != "" {
				more("      worker: %s", b.Worker)
			} else if b.WorkerError != "" && b.WorkerError != b.Reason {
				more("      worker: %s", b.WorkerError)
			}
		}
	}
	lines := rep.GPUs.Lines()
	if len(lines) == 0 {
		lines = []string{"none"}
	}
	for i, l := range lines {
		label := ""
		if i == 0 {
			label = "gpus"
		}
		row(label, "%s", l)
	}
}
