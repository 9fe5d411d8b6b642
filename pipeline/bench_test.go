package pipeline_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/exec"
)

// The benchmark pipeline: 200 exec stages in 20 chains of 10, each stage
// writing ~10 MiB of distinct bytes (2 GiB in all) and reading its
// predecessor. It is built and run once per benchmark process; the
// benchmarks then measure planning it and a no-op rerun, neither of which
// may rehash the artifacts already in the store.
const (
	benchChains = 20
	benchDepth  = 10
	benchBytes  = 10 << 20
)

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

func benchPipeline(b *testing.B) string {
	b.Helper()
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "lathe-bench-")
		if benchErr != nil {
			return
		}
		var src strings.Builder
		for c := 0; c < benchChains; c++ {
			for d := 0; d < benchDepth; d++ {
				fmt.Fprintf(&src, "stage \"exec\" \"s%d_%d\" {\n", c, d)
				// Distinct content per stage: a seeded stream from openssl-free tools.
				fmt.Fprintf(&src, "  command = [\"sh\", \"-c\", \"head -c %d /dev/urandom > $OUT_out/data; echo %d-%d >> $OUT_out/data\"]\n", benchBytes, c, d)
				if d > 0 {
					fmt.Fprintf(&src, "  inputs  = { prev = exec.s%d_%d.out }\n", c, d-1)
				}
				src.WriteString("  outputs = [\"out\"]\n}\n\n")
			}
		}
		if benchErr = os.WriteFile(filepath.Join(benchDir, "pipeline.hcl"), []byte(src.String()), 0o644); benchErr != nil {
			return
		}
		ws, err := openBench(benchDir)
		if err != nil {
			benchErr = err
			return
		}
		res, err := ws.Run(context.Background(), pipeline.RunOptions{Jobs: 2})
		if err != nil {
			benchErr = err
			return
		}
		if res.Status != "succeeded" {
			benchErr = fmt.Errorf("setup run %s: %v", res.Status, res.Failed())
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDir
}

func openBench(dir string) (*pipeline.Workspace, error) {
	ws, diags := pipeline.Load(dir, stage.NewRegistry(exec.Kind()), config.Inputs{})
	if diags.HasErrors() {
		return nil, diags
	}
	if err := ws.OpenStore(filepath.Join(dir, ".lathe")); err != nil {
		return nil, err
	}
	return ws, nil
}

// BenchmarkPlan200 loads, validates and plans the 200-stage pipeline whose
// results are all cached: what `lathe plan` does.
func BenchmarkPlan200(b *testing.B) {
	dir := benchPipeline(b)
	for b.Loop() {
		ws, err := openBench(dir)
		if err != nil {
			b.Fatal(err)
		}
		plan, err := ws.Plan(context.Background(), pipeline.Selection{})
		if err != nil {
			b.Fatal(err)
		}
		if n := plan.Counts()[pipeline.ActionCached]; n != benchChains*benchDepth {
			b.Fatalf("%d cached stages, want %d", n, benchChains*benchDepth)
		}
	}
}

// BenchmarkNoopRerun200 is `lathe run` on the same pipeline: load, plan,
// execute (all cache hits), record the run.
func BenchmarkNoopRerun200(b *testing.B) {
	dir := benchPipeline(b)
	for b.Loop() {
		ws, err := openBench(dir)
		if err != nil {
			b.Fatal(err)
		}
		res, err := ws.Run(context.Background(), pipeline.RunOptions{Jobs: 2})
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range res.Stages {
			if s.Status != pipeline.StatusCached {
				b.Fatalf("%s: %s, want cached", s.Addr, s.Status)
			}
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}
