// Package stagetest holds what the stage kinds' tests share: a Reporter
// that records what a stage reports, decoding a kind's arguments from HCL
// source, and a Request with fresh directories. It is for tests only.
package stagetest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/stage"
)

// Recorder is a stage.Reporter that keeps the log lines (their formats)
// and every metric value reported (Values, by name), and calls OnStep on
// step progress.
type Recorder struct {
	mu     sync.Mutex
	Logs   []string
	Values map[string][]float64
	OnStep func(step int64)
}

// Progress implements stage.Reporter.
func (r *Recorder) Progress(done, total int64, unit string) {
	if r.OnStep != nil && unit == "step" {
		r.OnStep(done)
	}
}

// Logf implements stage.Reporter.
func (r *Recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Logs = append(r.Logs, format)
}

// Metrics implements stage.Reporter.
func (r *Recorder) Metrics(step int64, v map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Values == nil {
		r.Values = map[string][]float64{}
	}
	for k, x := range v {
		r.Values[k] = append(r.Values[k], x)
	}
}

// Decode parses src as a stage body and decodes it with spec, the HCL
// variables given in scope; it returns the diagnostics for tests of bad
// arguments.
func Decode(t testing.TB, spec hcldec.Spec, src string, vars map[string]cty.Value) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return hcldec.Decode(f.Body, spec, &hcl.EvalContext{Variables: vars})
}

// MustDecode is Decode failing the test on any error.
func MustDecode(t testing.TB, spec hcldec.Spec, src string, vars map[string]cty.Value) cty.Value {
	t.Helper()
	v, diags := Decode(t, spec, src, vars)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return v
}

// NewRequest returns a request for args with fresh staging and scratch
// directories; ckpt "" gives a fresh checkpoint directory too.
func NewRequest(t testing.TB, args cty.Value, base, ckpt string, rep stage.Reporter) *stage.Request {
	t.Helper()
	dir := t.TempDir()
	if ckpt == "" {
		ckpt = filepath.Join(dir, "ckpt")
	}
	req := &stage.Request{Address: "test", Args: args, BaseDir: base,
		StagingDir: filepath.Join(dir, "staging"), ScratchDir: filepath.Join(dir, "scratch"),
		CheckpointDir: ckpt, Reporter: rep}
	for _, d := range []string{req.StagingDir, req.ScratchDir, req.CheckpointDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return req
}

// Artifact is an artifact value for the directory dir, with a digest made
// from its name (enough for kinds that read the path).
func Artifact(kind, dir string) cty.Value {
	return stage.ArtifactVal(stage.Artifact{Kind: kind, Digest: "sha256:" + filepath.Base(dir), Path: dir})
}
