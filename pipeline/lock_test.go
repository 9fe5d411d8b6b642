package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/lockfile"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// fakeRemote is a moving reference store: ref -> value, with a call count.
type fakeRemote struct {
	refs     map[string]string
	resolves atomic.Int32
}

// pinKind pins its "ref" argument through remote; its key holds the pinned
// value and Run writes the pin it received.
func pinKind(remote *fakeRemote) *stage.Kind {
	return &stage.Kind{
		Name:    "fetch",
		Version: "1",
		Schema: hcldec.ObjectSpec{
			"ref": &hcldec.AttrSpec{Name: "ref", Type: cty.String, Required: true},
		},
		Outputs: stage.FixedOutputs(map[string]stage.Output{"got": {Type: cty.String}}),
		Pin: &stage.Pinner{
			Inputs: func(args cty.Value) (map[string]string, error) {
				ref := args.GetAttr("ref").AsString()
				if strings.HasPrefix(ref, "fixed-") {
					return nil, nil
				}
				return map[string]string{"ref": ref}, nil
			},
			Resolve: func(_ context.Context, args cty.Value) (map[string]string, error) {
				remote.resolves.Add(1)
				return map[string]string{"value": remote.refs[args.GetAttr("ref").AsString()]}, nil
			},
		},
		KeyLines: func(kc stage.KeyContext, args cty.Value) ([]stage.KeyLine, error) {
			return []stage.KeyLine{{Label: "value", Value: stage.PinsOf(kc)["value"]}}, nil
		},
		Run: func(_ context.Context, req *stage.Request) (*stage.Result, error) {
			return &stage.Result{Values: map[string]cty.Value{"got": cty.StringVal(req.Pins["value"])}}, nil
		},
	}
}

func loadPinned(t *testing.T, dir string, remote *fakeRemote) *pipeline.Workspace {
	t.Helper()
	ws, diags := pipeline.Load(dir, stage.NewRegistry(pinKind(remote)), config.Inputs{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := ws.OpenStore(filepath.Join(dir, ".lathe")); err != nil {
		t.Fatal(err)
	}
	return ws
}

func writeFile(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPinsResolvedOncePerProcessAndWrittenByRun(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.hcl"), `
stage "fetch" "a" { ref = "main" }
stage "fetch" "b" { ref = "fixed-1" }
output "got" { value = fetch.a.got }
`)
	remote := &fakeRemote{refs: map[string]string{"main": "v1"}}
	ws := loadPinned(t, dir, remote)
	res, err := ws.Run(context.Background(), pipeline.RunOptions{})
	if err != nil || res.Status != "succeeded" {
		t.Fatalf("run: %v %+v", err, res)
	}
	if n := remote.resolves.Load(); n != 1 {
		t.Errorf("plan+run resolved %d times, want once", n)
	}
	if got := res.Outputs["got"]; got.AsString() != "v1" {
		t.Errorf("Run received pin %q, want v1", got.AsString())
	}
	f, diags := lockfile.Read(filepath.Join(dir, lockfile.FileName))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := strings.Join(f.Addrs(), ","); got != "fetch.a" {
		t.Fatalf("lock pins %q, want only fetch.a (fetch.b needs no pin)", got)
	}

	// The reference moves; a new process uses the lock and does not resolve.
	remote.refs["main"] = "v2"
	ws = loadPinned(t, dir, remote)
	plan, err := ws.Plan(context.Background(), pipeline.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if s := plan.Step("fetch.a"); s.Action != pipeline.ActionCached || remote.resolves.Load() != 1 {
		t.Fatalf("pinned plan: %s (%s), %d resolves", s.Action, s.Reason, remote.resolves.Load())
	}
}

func TestUpdateLock(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.hcl"), `
stage "fetch" "a" { ref = "main" }
stage "fetch" "b" {
  for_each = toset(["x"])
  ref      = "dev"
}
`)
	writeFile(t, filepath.Join(dir, lockfile.FileName), `
pin "fetch.gone" {
  kind   = "fetch"
  inputs = { ref = "main" }
  values = { value = "old" }
}
pin "fetch.a" {
  kind   = "fetch"
  inputs = { ref = "main" }
  values = { value = "v0" }
}
`)
	remote := &fakeRemote{refs: map[string]string{"main": "v1", "dev": "d1"}}
	ws := loadPinned(t, dir, remote)
	ctx := context.Background()

	changes, err := ws.UpdateLock(ctx, pipeline.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := describe(changes)
	want := `fetch.a kept (value v0); fetch.b["x"] pinned (value d1); fetch.gone removed (no such stage in the pipeline)`
	if got != want {
		t.Fatalf("lock:\n got %s\nwant %s", got, want)
	}
	changes, err = ws.UpdateLock(ctx, pipeline.LockOptions{Update: true, Stages: []string{"fetch.a"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(changes); got != "fetch.a moved (value v0 -> v1)" {
		t.Fatalf("lock -update fetch.a: %s", got)
	}
	if _, err := ws.UpdateLock(ctx, pipeline.LockOptions{Stages: []string{"fetch.nope"}}); err == nil {
		t.Fatal("lock of an unknown stage succeeded")
	}
	src, err := os.ReadFile(filepath.Join(dir, lockfile.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(src), "fetch.gone") || !strings.Contains(string(src), `value = "v1"`) {
		t.Fatalf("lock file after update:\n%s", src)
	}
}

func describe(changes []pipeline.LockChange) string {
	var parts []string
	for _, c := range changes {
		parts = append(parts, c.Addr+" "+c.Action+" ("+c.Detail+")")
	}
	return strings.Join(parts, "; ")
}

func TestMalformedLockIsADiagnostic(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.hcl"), `stage "fetch" "a" { ref = "main" }`)
	writeFile(t, filepath.Join(dir, lockfile.FileName), "pin \"fetch.a\" {\n  kind = \"fetch\"\n  inputs = {}\n  values = [1]\n}\n")
	ws, diags := pipeline.Load(dir, stage.NewRegistry(pinKind(&fakeRemote{})), config.Inputs{})
	if !diags.HasErrors() {
		t.Fatal("a malformed lock loaded without error")
	}
	if want := lockfile.FileName + ":4,12-15: Invalid pin values"; !strings.Contains(diags.Error(), want) {
		t.Fatalf("diagnostics %q lack %q", diags.Error(), want)
	}
	var b strings.Builder
	if err := ws.Pipeline.WriteDiagnostics(&b, diags, 80, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "values = [1]") {
		t.Errorf("rendered diagnostic lacks the source line:\n%s", b.String())
	}
}
