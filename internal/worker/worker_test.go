package worker_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/internal/worker"
)

func options(stderr *bytes.Buffer) worker.Options {
	return worker.Options{
		Name:    "worker-test",
		Backend: "test",
		Open:    func([]int) (tensor.Backend, error) { return cpu.New(), nil },
		Devices: func() ([]int, error) { return []int{0}, nil },
		Stderr:  stderr,
	}
}

// TestStageExec: the exit statuses and messages of the worker's stage
// exec. (The hand-off itself is tested end to end in cmd/lathe's
// gpu_worker script.)
func TestStageExec(t *testing.T) {
	dir := t.TempDir()
	pipe := filepath.Join(dir, "pipeline.hcl")
	src := "stage \"exec\" \"a\" {\n  command = [\"sh\", \"-c\", \"echo a > $OUT_out/a.txt\"]\n  outputs = [\"out\"]\n  resources { gpus = 1 }\n}\n" +
		"stage \"exec\" \"bad\" {\n  command = [\"sh\", \"-c\", \"exit 4\"]\n  outputs = [\"out\"]\n  resources { gpus = 1 }\n}\n"
	if err := os.WriteFile(pipe, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		stderr string
	}{
		{"ran", []string{"-cache", store, "exec.a", pipe}, worker.ExitOK, ""},
		{"cached", []string{"-cache", store, "exec.a", pipe}, worker.ExitOK, ""},
		{"stage fails", []string{"-cache", store, "exec.bad", pipe}, worker.ExitFailed, "worker-test: exec.bad failed: "},
		{"no such stage", []string{"-cache", store, "exec.nope", pipe}, worker.ExitFailed, "worker-test: "},
		{"another key", []string{"-cache", store, "-key", strings.Repeat("0", 64), "exec.a", pipe}, worker.ExitFailed, "computed its key as 000000000000"},
		{"bad pipeline", []string{"-cache", store, "exec.a", filepath.Join(dir, "missing.hcl")}, worker.ExitFailed, "worker-test: "},
		{"usage", []string{"-cache"}, worker.ExitUsage, "worker-test: stage exec: "},
		{"no address", []string{"-cache", store}, worker.ExitUsage, "want ADDRESS PIPELINE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			status := worker.StageExec(context.Background(), tc.args, options(&stderr))
			if status != tc.status || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("status %d, stderr %q; want %d and %q", status, stderr.String(), tc.status, tc.stderr)
			}
		})
	}
	// A canceled context: the stage does not run.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stderr bytes.Buffer
	if status := worker.StageExec(ctx, []string{"-cache", store, "-rerun", "exec.a", pipe}, options(&stderr)); status != worker.ExitCanceled {
		t.Errorf("canceled: status %d (%s)", status, stderr.String())
	}
}
