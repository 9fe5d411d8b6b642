package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/runs"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// resolvingKind has a "size" argument that may be "auto", which its
// Resolve hook turns into *auto (what "the machine" allows); "bad" makes
// Resolve fail. Run records the size it received.
func resolvingKind(auto *int64, got *atomic.Int64, runs *atomic.Int32) *stage.Kind {
	return &stage.Kind{
		Name:    "sized",
		Version: "1",
		Schema: hcldec.ObjectSpec{
			"size": &hcldec.AttrSpec{Name: "size", Type: cty.DynamicPseudoType, Required: true},
		},
		Outputs: stage.FixedOutputs(map[string]stage.Output{"size": {Type: cty.Number}}),
		Resolve: func(args cty.Value, _ stage.Machine) (cty.Value, string, error) {
			v := args.GetAttr("size")
			if v.Type() != cty.String {
				return args, "", nil
			}
			if v.AsString() == "bad" {
				return cty.NilVal, "", errors.New("cannot resolve bad")
			}
			return cty.ObjectVal(map[string]cty.Value{"size": cty.NumberIntVal(*auto)}), "size: auto → " + cty.NumberIntVal(*auto).AsBigFloat().String(), nil
		},
		Run: func(ctx context.Context, req *stage.Request) (*stage.Result, error) {
			runs.Add(1)
			var n int64
			if v := req.Args.GetAttr("size"); v.Type() == cty.Number {
				n, _ = v.AsBigFloat().Int64()
			}
			got.Store(n)
			return &stage.Result{Values: map[string]cty.Value{"size": cty.NumberIntVal(n)}}, nil
		},
	}
}

func loadResolving(t *testing.T, dir, src string, k *stage.Kind) *pipeline.Workspace {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "pipeline.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, diags := pipeline.Load(dir, stage.NewRegistry(k), config.Inputs{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := ws.OpenStore(""); err != nil {
		t.Fatal(err)
	}
	return ws
}

// TestResolveEntersKey checks the Resolve hook: the plan shows the note,
// Run receives the resolved value, the resolved value (not "auto") is in
// the key, so a rerun resolving the same is cached, one resolving
// differently reruns, and the explicit value it resolved to is a hit.
func TestResolveEntersKey(t *testing.T) {
	auto := int64(8)
	var got atomic.Int64
	var n atomic.Int32
	k := resolvingKind(&auto, &got, &n)
	dir := t.TempDir()
	ws := loadResolving(t, dir, `stage "sized" "a" { size = "auto" }`, k)
	ctx := context.Background()
	plan, err := ws.Plan(ctx, pipeline.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	step := plan.Step("sized.a")
	if step.Resolved != "size: auto → 8" || !strings.Contains(step.Reason, "size: auto → 8") {
		t.Errorf("plan step: resolved %q, reason %q", step.Resolved, step.Reason)
	}
	if !strings.Contains(step.Key.Text, "arg size = 8") || strings.Contains(step.Key.Text, "auto") {
		t.Errorf("key text holds the unresolved value:\n%s", step.Key.Text)
	}
	var logged []string
	res, err := ws.Run(ctx, pipeline.RunOptions{Observer: func(ev runs.Event) {
		if ev.Type == "log" {
			logged = append(logged, ev.Message)
		}
	}})
	if err != nil || res.Status != "succeeded" {
		t.Fatalf("run: %v %+v", err, res)
	}
	if got.Load() != 8 || n.Load() != 1 {
		t.Errorf("Run got size %d after %d runs, want 8 after 1", got.Load(), n.Load())
	}
	if !strings.Contains(strings.Join(logged, "\n"), "size: auto → 8") {
		t.Errorf("the run did not log the resolution: %q", logged)
	}
	// Same machine, same resolution: cached.
	if _, err := ws.Run(ctx, pipeline.RunOptions{}); err != nil || n.Load() != 1 {
		t.Fatalf("rerun: %v, %d runs", err, n.Load())
	}
	// The explicit value it resolved to is the same computation.
	ws = loadResolving(t, dir, `stage "sized" "a" { size = 8 }`, k)
	if plan, err = ws.Plan(ctx, pipeline.Selection{}); err != nil || plan.Step("sized.a").Action != pipeline.ActionCached {
		t.Fatalf("size = 8 after auto → 8: %v %+v", err, plan.Step("sized.a"))
	}
	// Another machine resolves differently: a different key.
	auto = 4
	ws = loadResolving(t, dir, `stage "sized" "a" { size = "auto" }`, k)
	if plan, err = ws.Plan(ctx, pipeline.Selection{}); err != nil {
		t.Fatal(err)
	}
	if s := plan.Step("sized.a"); s.Action != pipeline.ActionRun || !strings.Contains(s.Reason, "size") {
		t.Errorf("auto → 4 after auto → 8: %s (%s)", s.Action, s.Reason)
	}
}

// TestResolveError checks that a failing Resolve names the stage, in plan
// and in run.
func TestResolveError(t *testing.T) {
	auto := int64(1)
	var got atomic.Int64
	var n atomic.Int32
	ws := loadResolving(t, t.TempDir(), `stage "sized" "a" { size = "bad" }`, resolvingKind(&auto, &got, &n))
	if _, err := ws.Plan(context.Background(), pipeline.Selection{}); err == nil || !strings.Contains(err.Error(), "sized.a: cannot resolve bad") {
		t.Errorf("plan error %v", err)
	}
	res, err := ws.Run(context.Background(), pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "failed" || n.Load() != 0 || res.Stages[0].Err == nil || !strings.Contains(res.Stages[0].Err.Error(), "cannot resolve bad") {
		t.Errorf("run: status %s, %d runs, %+v", res.Status, n.Load(), res.Stages)
	}
}

// memoryGPUs is a GPU inventory that knows its devices' free memory.
type memoryGPUs struct {
	fakeGPUs
	free int64
}

func (g *memoryGPUs) DeviceMemory() (int64, error) { return g.free, nil }

// TestResolveSeesDeviceMemory: Resolve of a GPU stage is told the free
// memory of the GPUs; a CPU stage's is not.
func TestResolveSeesDeviceMemory(t *testing.T) {
	var seen sync.Map
	k := &stage.Kind{
		Name:    "sized",
		Version: "1",
		Schema: hcldec.ObjectSpec{
			"size": &hcldec.AttrSpec{Name: "size", Type: cty.String, Required: true},
		},
		Outputs: stage.FixedOutputs(map[string]stage.Output{"size": {Type: cty.String}}),
		Resolve: func(args cty.Value, m stage.Machine) (cty.Value, string, error) {
			seen.Store(args.GetAttr("size").AsString(), m.DeviceMemory)
			return args, "", nil
		},
		Run: func(ctx context.Context, req *stage.Request) (*stage.Result, error) {
			return &stage.Result{Values: map[string]cty.Value{"size": req.Args.GetAttr("size")}}, nil
		},
	}
	ws := loadResolving(t, t.TempDir(), `
stage "sized" "gpu" {
  size = "g"
  resources { gpus = 1 }
}
stage "sized" "cpu" { size = "c" }
`, k)
	ws.GPUs = &memoryGPUs{fakeGPUs: fakeGPUs{ids: []int{0}}, free: 40 << 30}
	if _, err := ws.Plan(context.Background(), pipeline.Selection{}); err != nil {
		t.Fatal(err)
	}
	g, _ := seen.Load("g")
	c, _ := seen.Load("c")
	if g != int64(40<<30) || c != int64(0) {
		t.Errorf("device memory seen: GPU stage %v, CPU stage %v; want 40 GiB and 0", g, c)
	}
}
