package cuda

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestKernelsOnHostEmulator compiles the CUDA kernels for the host with
// kernels/emu/cuda_emu.h (g++, C++20, no CUDA needed) and runs
// kernels/emu/emu_test.cpp, which checks attention (forward, both backward
// passes, decode; GQA, segments, soft-cap, ALiBi, windows; every head-dim
// instantiation), the cross-entropy rows, RMSNorm, RoPE, the embedding
// scatter, the column and norm reductions and NF4 against double-precision
// references, with the launch shapes of kernels.go. g++ is a peer tool:
// under LATHE_REQUIRE_PEERS=1 its absence fails the test.
func TestKernelsOnHostEmulator(t *testing.T) {
	gxx, err := exec.LookPath("g++")
	if err != nil {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatalf("g++ is required (LATHE_REQUIRE_PEERS=1): %v", err)
		}
		t.Skipf("no g++: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "emu_test")
	build := exec.CommandContext(ctx, gxx, "-std=c++20", "-O1", "-pthread", "-Wall", "-Werror", "-Wno-unknown-pragmas",
		"-DLATHE_EMU", "-o", bin, "kernels/emu/emu_test.cpp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("g++: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin).CombinedOutput()
	if err != nil {
		t.Fatalf("kernel emulation: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
