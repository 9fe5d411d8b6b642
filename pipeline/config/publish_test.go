package config

import (
	"path/filepath"
	"testing"
)

func TestPublishTargets(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
variable "dist" { default = "dist" }
locals { out = "data" }

stage "exec" "prep" {
  command = ["true"]
  outputs = ["data", "report"]
  publish = { "${var.dist}/./data/" = local.out, "dist/report" = "report" }
}

stage "exec" "per" {
  for_each = toset(["x", "y"])
  command  = ["true"]
  outputs  = ["out"]
  publish  = { "out/${each.key}" = "out" }
}

stage "exec" "none" {
  command = ["true"]
  outputs = ["out"]
}
`})
	r := mustResolve(t, dir, Inputs{})
	tests := []struct {
		addr string
		want []PublishTarget
	}{
		{"exec.prep", []PublishTarget{{Path: filepath.Join("dist", "data"), Output: "data"}, {Path: filepath.Join("dist", "report"), Output: "report"}}},
		{`exec.per["x"]`, []PublishTarget{{Path: filepath.Join("out", "x"), Output: "out"}}},
		{`exec.per["y"]`, []PublishTarget{{Path: filepath.Join("out", "y"), Output: "out"}}},
		{"exec.none", nil},
	}
	for _, tt := range tests {
		inst := r.Instance(tt.addr)
		if inst == nil {
			t.Fatalf("no instance %s", tt.addr)
		}
		if len(inst.Publish) != len(tt.want) {
			t.Errorf("%s: publish %+v, want %+v", tt.addr, inst.Publish, tt.want)
			continue
		}
		for i, p := range inst.Publish {
			if p.Path != tt.want[i].Path || p.Output != tt.want[i].Output || p.Range.Filename == "" {
				t.Errorf("%s: publish[%d] = %+v, want %+v", tt.addr, i, p, tt.want[i])
			}
		}
	}
}
