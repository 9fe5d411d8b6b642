package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/remote"
	"github.com/lathe-ml/lathe/pipeline/runs"
)

func openRemote(t *testing.T, dir string) *remote.Remote {
	t.Helper()
	r, err := remote.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Machine A runs and pushes; machine B (another store, same remote) plans
// every stage as "pull" and runs nothing.
func TestRemoteSharesResults(t *testing.T) {
	ctx := context.Background()
	bucket := t.TempDir()
	var ranA, ranB atomic.Int32
	a := loadTest(t, chainSrc, &ranA)
	a.Remote = openRemote(t, bucket)
	if res, err := a.Run(ctx, pipeline.RunOptions{}); err != nil || res.Status != "succeeded" || ranA.Load() != 2 {
		t.Fatalf("machine A: %v, %d ran", err, ranA.Load())
	}

	b := loadTest(t, chainSrc, &ranB)
	b.Remote = openRemote(t, bucket)
	plan, err := b.Plan(ctx, pipeline.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range plan.Steps {
		if s.Action != pipeline.ActionPull || s.Reason != "in the remote cache" {
			t.Errorf("%s: %s (%s), want pull (in the remote cache)", s.Addr, s.Action, s.Reason)
		}
	}
	res, err := b.Run(ctx, pipeline.RunOptions{})
	if err != nil || res.Status != "succeeded" {
		t.Fatalf("machine B: %v %+v", err, res)
	}
	if ranB.Load() != 0 {
		t.Fatalf("machine B ran %d stages, want 0", ranB.Load())
	}
	for _, s := range res.Stages {
		if s.Status != pipeline.StatusCached || s.Note != "pulled from the remote cache" {
			t.Errorf("%s: %s (%s), want cached (pulled from the remote cache)", s.Addr, s.Status, s.Note)
		}
	}
	if got := res.Outputs["len_b"].AsBigFloat().String(); got != "3" {
		t.Errorf("len_b on B = %s, want 3", got)
	}
	// Now local on B: a plain plan says cached.
	plan, err = b.Plan(ctx, pipeline.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if c := plan.Counts(); c[pipeline.ActionCached] != 2 {
		t.Errorf("plan after pull: %v, want 2 cached", c)
	}
}

// A flipped byte in a remote artifact is detected; the stage is rebuilt on
// machine B, never used.
func TestRemoteCorruptObjectIsRebuilt(t *testing.T) {
	ctx := context.Background()
	bucket := t.TempDir()
	var ranA, ranB atomic.Int32
	a := loadTest(t, chainSrc, &ranA)
	a.Remote = openRemote(t, bucket)
	if _, err := a.Run(ctx, pipeline.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	// Find the tar that holds "a" (the text file content is exactly "a").
	tars, err := filepath.Glob(filepath.Join(bucket, "artifacts", "*.tar"))
	if err != nil || len(tars) != 2 {
		t.Fatalf("artifacts in bucket: %v %v", tars, err)
	}
	flipped := false
	for _, p := range tars {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// The content block follows the 512-byte header of "text".
		if len(data) > 513 && data[512] == 'a' && data[513] == 0 {
			data[512] = 'A'
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			flipped = true
		}
	}
	if !flipped {
		t.Fatal("did not find the artifact of write.a to corrupt")
	}
	b := loadTest(t, chainSrc, &ranB)
	b.Remote = openRemote(t, bucket)
	var warnings []string
	res, err := b.Run(ctx, pipeline.RunOptions{Observer: func(ev runs.Event) {
		if strings.Contains(ev.Message, "remote cache entry not used") {
			warnings = append(warnings, ev.Message)
		}
	}})
	if err != nil || res.Status != "succeeded" {
		t.Fatalf("machine B: %v", err)
	}
	if ranB.Load() != 1 {
		t.Errorf("machine B ran %d stages, want 1 (write.a rebuilt, write.b pulled)", ranB.Load())
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "corrupt") {
		t.Errorf("warnings = %q, want one naming the corrupt object", warnings)
	}
	if got := res.Outputs["len_b"].AsBigFloat().String(); got != "3" {
		t.Errorf("len_b on B = %s, want 3", got)
	}
}

// TestRemoteGetsWorkerResults: a GPU stage committed by the worker (which
// has no remote of its own) is pushed by the run, so another machine
// pulls it.
func TestRemoteGetsWorkerResults(t *testing.T) {
	ctx := context.Background()
	bucket := t.TempDir()
	src := `
stage "write" "g" {
  text = "gpu"
  resources { gpus = 1 }
}`
	var ranA, ranB atomic.Int32
	a := loadTest(t, src, &ranA)
	a.Remote = openRemote(t, bucket)
	a.GPUs = &fakeGPUs{ids: []int{0}, kinds: counterKinds(&ranA)}
	if res, err := a.Run(ctx, pipeline.RunOptions{}); err != nil || res.Status != "succeeded" || ranA.Load() != 1 {
		t.Fatalf("machine A: %v, %d ran", err, ranA.Load())
	}
	b := loadTest(t, src, &ranB)
	b.Remote = openRemote(t, bucket)
	plan, err := b.Plan(ctx, pipeline.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if s := plan.Step("write.g"); s.Action != pipeline.ActionPull {
		t.Errorf("machine B plans write.g as %s (%s), want pull", s.Action, s.Reason)
	}
}
