package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

func TestParseOutputAddr(t *testing.T) {
	tests := []struct {
		in, addr, output string
		bad              bool
	}{
		{in: "exec.a.out", addr: "exec.a", output: "out"},
		{in: `exec.b["x"].model`, addr: `exec.b["x"]`, output: "model"},
		{in: `exec.b["v1.2"].model`, addr: `exec.b["v1.2"]`, output: "model"},
		{in: `exec.b["x"]`, bad: true},
		{in: "exec", bad: true},
		{in: "exec.a.", bad: true},
		{in: ".out", bad: true},
	}
	for _, tt := range tests {
		addr, output, err := pipeline.ParseOutputAddr(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseOutputAddr(%q) = %q, %q; want an error", tt.in, addr, output)
			}
			continue
		}
		if err != nil || addr != tt.addr || output != tt.output {
			t.Errorf("ParseOutputAddr(%q) = %q, %q, %v; want %q, %q", tt.in, addr, output, err, tt.addr, tt.output)
		}
	}
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o444); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReplaceTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFiles(t, src, map[string]string{"a.txt": "a", "sub/b.txt": "b"})
	if err := os.Chmod(filepath.Join(src, "sub", "b.txt"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		existing map[string]string // files in dst before; nil: no dst
	}{
		{name: "new", existing: nil},
		{name: "empty", existing: map[string]string{}},
		{name: "replace", existing: map[string]string{"stale.txt": "old", "a.txt": "old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "dist", "model")
			if tt.existing != nil {
				if err := os.MkdirAll(dst, 0o755); err != nil {
					t.Fatal(err)
				}
				writeFiles(t, dst, tt.existing)
			}
			if err := pipeline.ReplaceTree(src, dst); err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]string{"a.txt": "a", "sub/b.txt": "b", "link": "a"} {
				got, err := os.ReadFile(filepath.Join(dst, name))
				if err != nil || string(got) != want {
					t.Errorf("%s = %q, %v; want %q", name, got, err, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dst, "stale.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("stale.txt survived the replacement: %v", err)
			}
			if link, err := os.Readlink(filepath.Join(dst, "link")); err != nil || link != "a.txt" {
				t.Errorf("link = %q, %v; want a symbolic link to a.txt", link, err)
			}
			fi, err := os.Stat(filepath.Join(dst, "sub", "b.txt"))
			if err != nil || fi.Mode().Perm()&0o200 == 0 || fi.Mode().Perm()&0o100 == 0 {
				t.Errorf("sub/b.txt mode = %v, %v; want writable and executable", fi.Mode(), err)
			}
			entries, err := os.ReadDir(filepath.Dir(dst))
			if err != nil || len(entries) != 1 {
				t.Errorf("beside the target: %v, %v; want only the target (no temporary directory left)", entries, err)
			}
		})
	}
	t.Run("failed copy keeps the target", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "model")
		writeFiles(t, dst, map[string]string{"keep.txt": "k"})
		if err := pipeline.ReplaceTree(filepath.Join(t.TempDir(), "missing"), dst); err == nil {
			t.Fatal("copying a missing tree succeeded")
		}
		if got, err := os.ReadFile(filepath.Join(dst, "keep.txt")); err != nil || string(got) != "k" {
			t.Errorf("keep.txt = %q, %v after a failed copy", got, err)
		}
		entries, _ := os.ReadDir(filepath.Dir(dst))
		if len(entries) != 1 {
			t.Errorf("temporary directory left beside the target: %v", entries)
		}
	})
}

const publishSrc = `
variable "mode" {
  default = "ok"
}
stage "write" "a" {
  text    = "hello"
  publish = { "dist/a" = "out" }
}
stage "write" "b" {
  text  = "b"
  after = write.a.out
  mode  = var.mode
}
`

func TestRunPublishesAndSummarises(t *testing.T) {
	var n atomic.Int32
	ws := loadTest(t, publishSrc, &n)
	res, err := ws.Run(context.Background(), pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "succeeded" || len(res.Published) != 1 || res.PublishFailed() {
		t.Fatalf("status %s, published %+v", res.Status, res.Published)
	}
	a := res.Stages[0]
	if a.Addr != "write.a" || a.Artifacts["out"] == "" || string(a.Values["length"]) != "5" || a.Metrics["len"] != 5 {
		t.Errorf("write.a result: %+v", a)
	}
	if p := res.Published[0]; p.Stage != "write.a" || p.Path != "dist/a" || p.Digest != a.Artifacts["out"] {
		t.Errorf("publication %+v", p)
	}
	published := filepath.Join(ws.Pipeline.Dir, "dist", "a", "text")
	if got, err := os.ReadFile(published); err != nil || string(got) != "hello" {
		t.Fatalf("published file = %q, %v", got, err)
	}

	// A failed run publishes nothing, even for the stage that succeeded.
	if err := os.RemoveAll(filepath.Join(ws.Pipeline.Dir, "dist")); err != nil {
		t.Fatal(err)
	}
	ws = reload(t, ws, "mode=fail")
	res, err = ws.Run(context.Background(), pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "failed" || len(res.Published) != 0 {
		t.Fatalf("status %s, published %+v", res.Status, res.Published)
	}
	if _, err := os.Stat(published); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed run published: %v", err)
	}
}

// reload loads the workspace's pipeline again with other variables, on the
// same store.
func reload(t *testing.T, ws *pipeline.Workspace, vars ...string) *pipeline.Workspace {
	t.Helper()
	nws, diags := pipeline.Load(ws.Pipeline.Dir, ws.Registry, config.Inputs{Vars: vars})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := nws.OpenStore(ws.Store.Root()); err != nil {
		t.Fatal(err)
	}
	return nws
}

// stampKind writes the number of times it ran: deterministic across runs
// only when told to ignore the count.
func stampKind(runs *atomic.Int32) *stage.Kind {
	return &stage.Kind{
		Name:    "stamp",
		Version: "1",
		Schema: hcldec.ObjectSpec{
			"stable": &hcldec.AttrSpec{Name: "stable", Type: cty.Bool, Required: true},
		},
		Outputs: stage.FixedOutputs(map[string]stage.Output{
			"out": {Type: stage.ArtifactType(stage.FilesArtifact)},
		}),
		Run: func(ctx context.Context, req *stage.Request) (*stage.Result, error) {
			n := runs.Add(1)
			if req.Args.GetAttr("stable").True() {
				n = 0
			}
			out := req.OutputDir("out")
			if err := os.MkdirAll(filepath.Join(out, "z"), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(out, "a.txt"), []byte("same"), 0o644); err != nil {
				return nil, err
			}
			return &stage.Result{}, os.WriteFile(filepath.Join(out, "z", "count.txt"), []byte(fmt.Sprint(n)), 0o644)
		},
	}
}

func TestVerify(t *testing.T) {
	var n atomic.Int32
	dir := t.TempDir()
	src := `
stage "stamp" "stable" { stable = true }
stage "stamp" "unstable" { stable = false }
`
	if err := os.WriteFile(filepath.Join(dir, "pipeline.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, diags := pipeline.Load(dir, stage.NewRegistry(stampKind(&n)), config.Inputs{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := ws.OpenStore(""); err != nil {
		t.Fatal(err)
	}
	var nce *pipeline.NotCachedError
	if _, err := ws.Verify(context.Background(), "stamp.stable", nil); !errors.As(err, &nce) {
		t.Fatalf("verify before any run: %v; want a NotCachedError", err)
	}
	if _, err := ws.Run(context.Background(), pipeline.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err := ws.Verify(context.Background(), "stamp.stable", nil)
	if err != nil || !v.Reproducible() {
		t.Fatalf("stable: %+v, %v; want reproducible", v, err)
	}
	v, err = ws.Verify(context.Background(), "stamp.unstable", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Reproducible() || len(v.Outputs) != 1 || v.Outputs[0].Diff == nil || v.Outputs[0].Diff.Path != "z/count.txt" {
		t.Fatalf("unstable: %+v; want a difference in z/count.txt", v.Outputs)
	}
	if d := v.Outputs[0].Diff; d.Cached == d.Rerun || d.Cached == "" || d.Rerun == "" {
		t.Errorf("diff digests %q, %q", d.Cached, d.Rerun)
	}
	// The store still holds the first run's result, untouched.
	a, err := ws.CachedArtifact(context.Background(), "stamp.unstable", "out")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(a.Path, "z", "count.txt")); err != nil || string(got) == fmt.Sprint(n.Load()) {
		t.Errorf("cached count.txt = %q, %v: the verification wrote into the real store", got, err)
	}
}

func TestValidationFailed(t *testing.T) {
	src := `
variable "steps" {
  type    = number
  default = 1
  validation {
    condition     = var.steps > 0
    error_message = "steps must be positive."
  }
}
stage "write" "a" { text = "x" }
`
	bad := src + `stage "write" "b" { txt = "x" }` + "\n"
	tests := []struct {
		name, src string
		vars      []string
		want      bool
	}{
		{"rule fails", src, []string{"steps=0"}, true},
		{"wrong type", src, []string{"steps=x"}, false},
		{"rule fails and another error", bad, []string{"steps=0"}, false},
		{"valid", src, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "pipeline.hcl"), []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			var n atomic.Int32
			_, diags := pipeline.Load(dir, stage.NewRegistry(counterKind(&n)), config.Inputs{Vars: tt.vars})
			if got := pipeline.ValidationFailed(diags); got != tt.want {
				t.Errorf("ValidationFailed = %v, want %v; diagnostics: %v", got, tt.want, diags)
			}
		})
	}
}
