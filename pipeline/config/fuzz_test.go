package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/zclconf/go-cty/cty"
)

// FuzzLoad feeds arbitrary bytes as a pipeline file through Load, Resolve,
// Args and OutputValues: they must only ever return diagnostics.
func FuzzLoad(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*/*.hcl")
	if err != nil {
		f.Fatal(err)
	}
	more, err := filepath.Glob("testdata/diagnostics/*/main.hcl")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range append(seeds, more...) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, seed := range edgeSeeds {
		f.Add([]byte(seed))
	}
	reg := testRegistry()
	f.Fuzz(func(t *testing.T, src []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "main.hcl")
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		p, diags := Load(path)
		if p == nil {
			if !diags.HasErrors() {
				t.Fatal("nil pipeline without an error")
			}
			return
		}
		if !diags.HasErrors() {
			r, rdiags := p.Resolve(reg, Inputs{Vars: []string{"x=1"}, Env: []string{"LATHE_VAR_y=2"}})
			diags = append(diags, rdiags...)
			if r == nil && !rdiags.HasErrors() {
				t.Fatal("nil result without an error")
			}
			if r != nil {
				results := fakeResults(r)
				for _, inst := range r.Instances {
					r.Args(inst, results)
				}
				r.OutputValues(results)
			}
		}
		if err := p.WriteDiagnostics(io.Discard, diags, 80, false); err != nil {
			t.Fatal(err)
		}
	})
}

// fakeResults gives every artifact output a distinct artifact and leaves
// other outputs unknown.
func fakeResults(r *Resolved) map[string]map[string]cty.Value {
	results := map[string]map[string]cty.Value{}
	for _, inst := range r.Instances {
		m := map[string]cty.Value{}
		for name, o := range inst.Outputs {
			if kind, ok := stage.ArtifactKindOf(o.Type); ok {
				m[name] = stage.ArtifactVal(stage.Artifact{Kind: kind, Digest: "sha256:" + inst.Addr + "." + name})
			} else {
				m[name] = cty.UnknownVal(o.Type)
			}
		}
		results[inst.Addr] = m
	}
	return results
}

// edgeSeeds reach corners that the testdata pipelines do not.
var edgeSeeds = []string{
	`variable "o" {
  type    = object({ a = optional(number, 1), b = optional(list(object({ c = optional(string, "x") }))) })
  default = { b = [{}, null] }
}
variable "n" { default = null }
variable "m" {
  type    = map(any)
  default = {}
}
locals { x = [for k, v in var.o : k] }
stage "exec" "e" {
  for_each = var.m
  command  = [each.key]
}
output "x" { value = local.x }`,
	`variable "o" {
  type    = object({ a = optional(number, 1) })
  default = "str"
}`,
	`variable "x" { type = list(string) }`,
	`stage "exec" "a" {
  for_each = {}
  command  = []
}
stage "exec" "b" {
  for_each = null
  command  = []
}
stage "exec" "c" {
  for_each = [null]
  command  = []
}
stage "exec" "d" {
  for_each = { a = null }
  command  = [each.value]
}
stage "exec" "e" {
  for_each = exec.d
  command  = [each.key]
  outputs  = [each.key]
}
output "o" { value = exec.e["a"].a }`,
	`locals { t = templatefile("main.hcl", {}) }
locals { f = file("main.hcl") }
stage "exec" "e" {
  command = [local.f, templatefile("main.hcl", { x = 1 })]
  outputs = split(",", "a,b")
}
output "o" { value = exec.e.a }`,
	`stage "exec" "e" {
  command = ["x"]
  outputs = [exec.e.out]
}`,
	`stage "exec" "e" {
  command = ["x"]
  outputs = ["out"]
}
stage "exec" "f" {
  command = [exec.e[0], exec.e["x"], exec.e.out, exec]
}`,
	`variable "x" {
  validation {
    condition     = var.y
    error_message = var.x
  }
}`,
}
