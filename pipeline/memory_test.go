package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/runs"
)

// TestMemoryReservations: stages asking for memory never run together
// beyond the machine's memory, stages without a figure are not held back,
// and the waiting is logged.
func TestMemoryReservations(t *testing.T) {
	var n atomic.Int32
	src := `
stage "write" "big" {
  for_each = toset(["a", "b", "c"])
  text     = each.key
  resources { memory = "6GiB" }
}
stage "write" "small" {
  for_each = toset(["x", "y"])
  text     = each.key
  resources { memory = "3GiB" }
}
stage "write" "free" { text = "f" }
`
	ws := loadTest(t, src, &n)
	ws.HostMemory = func() (int64, error) { return 10 << 30, nil }
	var mu sync.Mutex
	running, peak := map[string]int64{}, int64(0)
	need := map[string]int64{"write.big": 6 << 30, "write.small": 3 << 30}
	var waited atomic.Bool
	res, err := ws.Run(context.Background(), pipeline.RunOptions{Jobs: 6, Observer: func(ev runs.Event) {
		mu.Lock()
		defer mu.Unlock()
		base, _, _ := strings.Cut(ev.Stage, "[")
		switch ev.Type {
		case "stage-started":
			running[ev.Stage] = need[base]
			var sum int64
			for _, v := range running {
				sum += v
			}
			peak = max(peak, sum)
			time.Sleep(5 * time.Millisecond) // let others try to start meanwhile
		case "stage-finished", "stage-failed":
			delete(running, ev.Stage)
		case "log":
			if strings.Contains(ev.Message, "waiting for") && strings.Contains(ev.Message, "of memory") {
				waited.Store(true)
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "succeeded" || n.Load() != 6 {
		t.Fatalf("status %s after %d runs: %+v", res.Status, n.Load(), res.Stages)
	}
	if peak > 10<<30 {
		t.Errorf("%d GiB reserved at once on a 10 GiB machine", peak>>30)
	}
	if !waited.Load() {
		t.Error("no stage waited for memory")
	}
}

func TestMemoryAsksTooMuch(t *testing.T) {
	src := `
stage "write" "huge" {
  text = "h"
  resources { memory = "64GiB" }
}
stage "write" "ok" { text = "o" }
`
	for _, tc := range []struct {
		name    string
		memory  func() (int64, error)
		wantErr string
	}{
		{"more than the machine has", func() (int64, error) { return 16 << 30, nil }, "write.huge asks for 64.0 GiB of memory but this machine has 16.0 GiB"},
		{"unknown", func() (int64, error) { return 0, errors.New("the machine's memory is unknown") }, "write.huge asks for 64.0 GiB of memory but the machine's memory is unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			ws := loadTest(t, src, &n)
			ws.HostMemory = tc.memory
			plan, err := ws.Plan(context.Background(), pipeline.Selection{})
			if err != nil {
				t.Fatal(err)
			}
			if p := plan.Step("write.huge").Problem; p != "cannot run here: "+tc.wantErr {
				t.Errorf("plan: problem %q, want %q", p, tc.wantErr)
			}
			res, err := ws.Run(context.Background(), pipeline.RunOptions{Jobs: 2, KeepGoing: true})
			if err != nil {
				t.Fatal(err)
			}
			if h := stageResult(t, res, "write.huge"); h.Status != pipeline.StatusFailed || h.Err == nil || h.Err.Error() != tc.wantErr {
				t.Errorf("write.huge: %s %v; want failed with %q", h.Status, h.Err, tc.wantErr)
			}
			if s := stageResult(t, res, "write.ok").Status; s != pipeline.StatusRan || n.Load() != 1 {
				t.Errorf("write.ok: %s after %d runs", s, n.Load())
			}
		})
	}
}
