//go:build cuda

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/lathe-ml/lathe/internal/cuda"
	"github.com/lathe-ml/lathe/internal/llama"
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  lathe-cuda selftest [-device N] [-seed S] [-only NAME]
  lathe-cuda stage exec [-cache DIR] [-var-file F] [-events F] [-resolutions DIR] [-key KEY] [-rerun] [-force] ADDRESS PIPELINE
  lathe-cuda bench [-device N] [-method lora,full,lora-bf16,full-bf16] [-batch B] [-seq T] [-warmup W] [-steps N] [-gemm bf16|tf32|f32] [-peak-tflops X] [-json]`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "selftest":
		os.Exit(selftestCmd(os.Args[2:]))
	case "bench":
		os.Exit(benchCmd(os.Args[2:]))
	case "stage":
		if len(os.Args) < 3 || os.Args[2] != "exec" {
			usage()
		}
		os.Exit(stageExecCmd(os.Args[3:]))
	default:
		usage()
	}
}

func describe(be *cuda.Backend) cuda.DeviceInfo {
	d := be.Info()
	fmt.Printf("device %s: %s, compute capability %d.%d, %d SMs at %d MHz, %.1f GiB, driver %d, cuBLAS %d (%s)\n",
		be.Name(), d.Name, d.Major, d.Minor, d.SMs, d.ClockKHz/1000, float64(d.MemBytes)/(1<<30), d.DriverVersion, d.CublasVersion, d.CublasLibrary)
	return d
}

func selftestCmd(args []string) int {
	fs := flag.NewFlagSet("selftest", flag.ExitOnError)
	dev := fs.Int("device", 0, "CUDA device ordinal")
	seed := fs.Uint64("seed", 1, "random seed of the inputs")
	only := fs.String("only", "", "run only the kernels whose name contains this")
	fs.Parse(args)
	be, err := cuda.New(cuda.Options{Device: *dev, F32Compute: cuda.ComputeF32})
	if err != nil {
		fmt.Fprintln(os.Stderr, "lathe-cuda:", err)
		return 1
	}
	defer be.Close()
	describe(be)
	if !selftestMain(os.Stdout, be, *seed, *only) {
		return 1
	}
	return 0
}

func benchCmd(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	dev := fs.Int("device", 0, "CUDA device ordinal")
	methods := fs.String("method", "lora,full", "comma-separated methods: lora, full, and either with -bf16 (bfloat16 weights)")
	batch := fs.Int("batch", 8, "rows per step")
	seq := fs.Int("seq", 1024, "tokens per row")
	warm := fs.Int("warmup", 2, "untimed steps first")
	steps := fs.Int("steps", 5, "timed steps")
	gemm := fs.String("gemm", "bf16", "F32 GEMM compute: bf16 (tensor cores, fp32 accumulation), tf32 or f32")
	peakFlag := fs.Float64("peak-tflops", 0, "the device's peak dense bf16 TFLOP/s (default: from its name or architecture)")
	asJSON := fs.Bool("json", false, "print one JSON object per method")
	fs.Parse(args)
	compute, err := cuda.ParseGemmCompute(*gemm)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lathe-cuda:", err)
		return 2
	}
	cfg, err := llama.ParseConfig(qwenConfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lathe-cuda: benchmark config:", err)
		return 1
	}
	be, err := cuda.New(cuda.Options{Device: *dev, F32Compute: compute})
	if err != nil {
		fmt.Fprintln(os.Stderr, "lathe-cuda:", err)
		return 1
	}
	defer be.Close()
	d := describe(be)
	peak, source := peakBF16(d.Name, d.Major, d.Minor, d.SMs, d.ClockKHz)
	if *peakFlag > 0 {
		peak, source = *peakFlag*1e12, "-peak-tflops"
	}
	fmt.Printf("Qwen2.5-0.5B shape, random weights, batch %d × seq %d, GEMM compute %s, peak bf16 %.0f TFLOP/s (%s)\n",
		*batch, *seq, compute, peak/1e12, source)
	status := 0
	for _, method := range strings.Split(*methods, ",") {
		r, err := benchMethod(be, cfg, strings.TrimSpace(method), *batch, *seq, *warm, *steps)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lathe-cuda: bench %s: %v\n", method, err)
			status = 1
			continue
		}
		mfu := 0.0
		if peak > 0 {
			mfu = r.TokensPerSec * r.FlopsPerToken / peak
		}
		if *asJSON {
			out, _ := json.Marshal(struct {
				Side string `json:"side"`
				benchResult
				PeakFlops float64 `json:"peak_flops"`
				MFU       float64 `json:"mfu"`
				Device    string  `json:"device"`
				Gemm      string  `json:"gemm"`
			}{"lathe", r, peak, mfu, d.Name, compute.String()})
			fmt.Println(string(out))
			continue
		}
		fmt.Printf("%-5s %10.0f tokens/s  %8.1f ms/step  MFU %5.1f%%  (%d trainable, loss %.3f)\n",
			r.Method, r.TokensPerSec, 1e3*r.StepSeconds, 100*mfu, r.Trainable, r.Loss)
	}
	return status
}
