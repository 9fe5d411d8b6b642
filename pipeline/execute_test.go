package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// counterKind is a test kind: it writes its "text" argument into a "files"
// artifact and returns len(text) as a value output; "fail" makes it fail and
// "panic" makes it panic.
func counterKind(runs *atomic.Int32) *stage.Kind {
	return &stage.Kind{
		Name:    "write",
		Version: "1",
		Schema: hcldec.ObjectSpec{
			"text":  &hcldec.AttrSpec{Name: "text", Type: cty.String, Required: true},
			"after": &hcldec.AttrSpec{Name: "after", Type: stage.ArtifactType(stage.FilesArtifact)},
			"mode":  &hcldec.AttrSpec{Name: "mode", Type: cty.String},
			"log":   &hcldec.AttrSpec{Name: "log", Type: cty.Bool},
		},
		NonSemantic: []string{"log"},
		Outputs: stage.FixedOutputs(map[string]stage.Output{
			"out":    {Type: stage.ArtifactType(stage.FilesArtifact)},
			"length": {Type: cty.Number},
		}),
		Run: func(ctx context.Context, req *stage.Request) (*stage.Result, error) {
			runs.Add(1)
			switch m := req.Args.GetAttr("mode"); {
			case !m.IsNull() && m.AsString() == "fail":
				return nil, errors.New("asked to fail")
			case !m.IsNull() && m.AsString() == "panic":
				panic("asked to panic")
			}
			text := req.Args.GetAttr("text").AsString()
			if a, ok := stage.ArtifactOf(req.Args.GetAttr("after")); ok {
				prev, err := os.ReadFile(filepath.Join(a.Path, "text"))
				if err != nil {
					return nil, err
				}
				text = string(prev) + "+" + text
			}
			if err := os.MkdirAll(req.OutputDir("out"), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(req.OutputDir("out"), "text"), []byte(text), 0o644); err != nil {
				return nil, err
			}
			req.Reporter.Metrics(1, map[string]float64{"len": float64(len(text))})
			return &stage.Result{Values: map[string]cty.Value{"length": cty.NumberIntVal(int64(len(text)))}}, nil
		},
	}
}

func loadTest(t *testing.T, src string, runs *atomic.Int32, vars ...string) *pipeline.Workspace {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pipeline.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, diags := pipeline.Load(dir, stage.NewRegistry(counterKind(runs)), config.Inputs{Vars: vars})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := ws.OpenStore(""); err != nil {
		t.Fatal(err)
	}
	return ws
}

const chainSrc = `
variable "b" { default = "b" }
stage "write" "a" { text = "a" }
stage "write" "b" {
  text  = var.b
  after = write.a.out
}
output "len_b" { value = write.b.length }
`

func TestRunValuesAndOutputs(t *testing.T) {
	var n atomic.Int32
	ws := loadTest(t, chainSrc, &n)
	res, err := ws.Run(context.Background(), pipeline.RunOptions{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "succeeded" || n.Load() != 2 {
		t.Fatalf("status %s after %d runs: %+v", res.Status, n.Load(), res.Stages)
	}
	if got := res.Outputs["len_b"]; !got.RawEquals(cty.NumberIntVal(3)) {
		t.Errorf("len_b = %#v, want 3", got)
	}
	// The value output survives the round trip through the store.
	res, err = ws.Run(context.Background(), pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != 2 {
		t.Errorf("second run executed stages: %d runs in all", n.Load())
	}
	if got := res.Outputs["len_b"]; !got.RawEquals(cty.NumberIntVal(3)) {
		t.Errorf("cached len_b = %#v, want 3", got)
	}
}

func TestNonSemanticArgumentKeepsCache(t *testing.T) {
	var n atomic.Int32
	src := `stage "write" "a" {
  text = "a"
  log  = true
}`
	ws := loadTest(t, src, &n)
	if _, err := ws.Run(context.Background(), pipeline.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := ws.Pipeline.Dir
	if err := os.WriteFile(filepath.Join(dir, "pipeline.hcl"), []byte(strings.Replace(src, "true", "false", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ws2, diags := pipeline.Load(dir, stage.NewRegistry(counterKind(&n)), config.Inputs{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := ws2.OpenStore(""); err != nil {
		t.Fatal(err)
	}
	plan, err := ws2.Plan(context.Background(), pipeline.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if a := plan.Step("write.a").Action; a != pipeline.ActionCached {
		t.Errorf("changing a logging option: %s, want cached", a)
	}
}

func TestFailureAndKeepGoing(t *testing.T) {
	src := `
stage "write" "bad" {
  text = "x"
  mode = "fail"
}
stage "write" "after" {
  text  = "y"
  after = write.bad.out
}
stage "write" "boom" {
  text = "z"
  mode = "panic"
}
stage "write" "fine" { text = "ok" }
`
	var n atomic.Int32
	ws := loadTest(t, src, &n)
	res, err := ws.Run(context.Background(), pipeline.RunOptions{KeepGoing: true, Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]pipeline.Status{}
	for _, s := range res.Stages {
		status[s.Addr] = s.Status
	}
	want := map[string]pipeline.Status{
		"write.bad":   pipeline.StatusFailed,
		"write.after": pipeline.StatusSkipped,
		"write.boom":  pipeline.StatusFailed,
		"write.fine":  pipeline.StatusRan,
	}
	for addr, s := range want {
		if status[addr] != s {
			t.Errorf("%s: %s, want %s", addr, status[addr], s)
		}
	}
	if res.Status != "failed" {
		t.Errorf("run status %s, want failed", res.Status)
	}
	for _, f := range res.Failed() {
		if f.Addr == "write.boom" && !strings.Contains(f.Err.Error(), "panicked: asked to panic") {
			t.Errorf("panic error: %v", f.Err)
		}
	}
}

func TestCanceledRunCommitsNothingPartial(t *testing.T) {
	var n atomic.Int32
	ws := loadTest(t, chainSrc, &n)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := ws.Run(ctx, pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "canceled" {
		t.Errorf("status %s, want canceled", res.Status)
	}
	if n.Load() != 0 {
		t.Errorf("%d stages ran after cancellation", n.Load())
	}
}
