package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/gpu"
	"github.com/lathe-ml/lathe/pipeline"
)

// twoH200 is what NVML would report on a machine with two H200s.
func twoH200() gpu.Info {
	d := func(i int, uuid string) gpu.Device {
		return gpu.Device{Index: i, UUID: uuid, Name: "NVIDIA H200", MemoryTotal: 150 << 30, MemoryFree: 149 << 30,
			ComputeMajor: 9, Utilization: 0, MemoryUtilization: 0}
	}
	return gpu.Info{DriverVersion: "570.86.15", CUDAVersion: "12.8", Devices: []gpu.Device{d(0, "GPU-aaaa"), d(1, "GPU-bbbb")}}
}

func withDiscovery(t *testing.T, info gpu.Info) {
	t.Helper()
	old := discoverGPUs
	discoverGPUs = func() gpu.Info { return info }
	t.Cleanup(func() { discoverGPUs = old })
}

// fakeLathe returns the path of a "lathe" in a new directory, with an
// executable lathe-cuda beside it when withWorker.
func fakeLathe(t *testing.T, withWorker bool) string {
	t.Helper()
	dir := t.TempDir()
	exe := filepath.Join(dir, "lathe")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if withWorker {
		if err := os.WriteFile(filepath.Join(dir, "lathe-cuda"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return exe
}

func TestEnvReportBackends(t *testing.T) {
	tests := []struct {
		name       string
		info       gpu.Info
		worker     bool
		environ    []string
		wantCUDA   bool
		wantDetail string
		wantReason string
		wantText   []string
	}{
		{
			name: "GPUs and worker", info: twoH200(), worker: true, wantCUDA: true, wantDetail: "2 GPUs",
			wantText: []string{
				"cuda  available: 2 GPUs",
				"worker: ", "lathe-cuda",
				"gpus       driver 570.86.15, CUDA 12.8",
				"           0: NVIDIA H200 (GPU-aaaa), 150.0 GiB memory (149.0 GiB free), compute 9.0, 0% busy (memory 0%)",
				"           1: NVIDIA H200 (GPU-bbbb)",
			},
		},
		{
			name: "GPUs without worker", info: twoH200(),
			wantReason: "the CUDA worker binary lathe-cuda was not found",
			wantText:   []string{"cuda  not available: the CUDA worker binary lathe-cuda was not found", "go build -tags cuda -o "},
		},
		{
			name: "one GPU visible", info: twoH200(), worker: true, environ: []string{"CUDA_VISIBLE_DEVICES=GPU-bbbb"},
			wantCUDA: true, wantDetail: "1 GPU",
			wantText: []string{`0: NVIDIA H200 (GPU-aaaa), 150.0 GiB memory (149.0 GiB free), compute 9.0, 0% busy (memory 0%) — not used: hidden by CUDA_VISIBLE_DEVICES="GPU-bbbb"`},
		},
		{
			name: "no GPU", info: gpu.Info{Reason: "no NVIDIA GPU: the NVML library (libnvidia-ml.so.1) could not be loaded"}, worker: true,
			wantReason: "no NVIDIA GPU: the NVML library",
			wantText:   []string{"cuda  not available: no usable NVIDIA GPU (see gpus)", "gpus       no NVIDIA GPU: the NVML library (libnvidia-ml.so.1) could not be loaded"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withDiscovery(t, tt.info)
			env := &cliEnv{environ: tt.environ}
			rep := buildEnvReport(env, fakeLathe(t, tt.worker))
			if len(rep.Backends) != 2 || rep.Backends[0].Name != "cpu" || !rep.Backends[0].Available {
				t.Fatalf("backends: %+v", rep.Backends)
			}
			cuda := rep.Backends[1]
			if cuda.Name != "cuda" || cuda.Available != tt.wantCUDA || cuda.Detail != tt.wantDetail || !strings.Contains(cuda.Reason, tt.wantReason) {
				t.Errorf("cuda backend: %+v", cuda)
			}
			var out bytes.Buffer
			printEnv(&out, rep)
			for _, w := range tt.wantText {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			b, err := json.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			var back envReport
			if err := json.Unmarshal(b, &back); err != nil || back.Backends[1].Available != tt.wantCUDA || len(back.GPUs.Devices) != len(tt.info.Devices) {
				t.Errorf("JSON round trip: %v\n%s", err, b)
			}
		})
	}
}

func TestLocalGPUs(t *testing.T) {
	job := pipeline.WorkerJob{Addr: `sft.x["r8"]`, Devices: []int{1},
		Exec: pipeline.StageExec{Addr: `sft.x["r8"]`, Pipeline: "/p", Store: "/s", Key: "k1"}}
	t.Run("no worker", func(t *testing.T) {
		withDiscovery(t, twoH200())
		g := &localGPUs{exe: fakeLathe(t, false)}
		if _, err := g.Devices(); err == nil || !strings.Contains(err.Error(), "lathe-cuda was not found") || !strings.Contains(err.Error(), "go build -tags cuda") {
			t.Errorf("Devices: %v", err)
		}
		if err := g.RunWorker(context.Background(), job); err == nil || !strings.Contains(err.Error(), "lathe-cuda was not found") {
			t.Errorf("RunWorker: %v", err)
		}
	})
	t.Run("worker", func(t *testing.T) {
		withDiscovery(t, twoH200())
		exe := fakeLathe(t, true)
		// The worker records how it was started, then fails.
		record := filepath.Join(t.TempDir(), "started")
		script := "#!/bin/sh\necho \"$CUDA_VISIBLE_DEVICES $*\" > " + record + "\necho line1\necho CUDA_ERROR_OUT_OF_MEMORY >&2\nexit 3\n"
		if err := os.WriteFile(filepath.Join(filepath.Dir(exe), "lathe-cuda"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		g := &localGPUs{exe: exe, environ: []string{"CUDA_VISIBLE_DEVICES=0,1", "PATH=/usr/bin:/bin"}}
		ids, err := g.Devices()
		if err != nil || len(ids) != 2 || ids[0] != 0 || ids[1] != 1 {
			t.Fatalf("Devices = %v, %v", ids, err)
		}
		if free, err := g.DeviceMemory(); err != nil || free != 149<<30 {
			t.Errorf("DeviceMemory = %d, %v; want 149 GiB", free, err)
		}
		err = g.RunWorker(context.Background(), job)
		if err == nil || !strings.Contains(err.Error(), "CUDA_VISIBLE_DEVICES=GPU-bbbb): exit status 3") || !strings.Contains(err.Error(), "output:\n  line1\n  CUDA_ERROR_OUT_OF_MEMORY") {
			t.Errorf("RunWorker: %v", err)
		}
		got, err := os.ReadFile(record)
		if want := "GPU-bbbb stage exec -cache /s -key k1 -- sft.x[\"r8\"] /p\n"; err != nil || string(got) != want {
			t.Errorf("worker started as %q (%v), want %q", got, err, want)
		}
	})
	t.Run("no GPU", func(t *testing.T) {
		withDiscovery(t, gpu.Info{Reason: "no NVIDIA GPU: none"})
		g := &localGPUs{exe: fakeLathe(t, true)}
		if _, err := g.Devices(); err == nil || err.Error() != "no NVIDIA GPU: none" {
			t.Errorf("Devices: %v", err)
		}
	})
	t.Run("all hidden", func(t *testing.T) {
		withDiscovery(t, twoH200())
		g := &localGPUs{exe: fakeLathe(t, true), environ: []string{"CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES="}}
		if _, err := g.Devices(); err == nil || !strings.Contains(err.Error(), `CUDA_VISIBLE_DEVICES="" hides all 2 devices`) {
			t.Errorf("Devices: %v", err)
		}
	})
}
