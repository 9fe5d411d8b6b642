package config

import (
	"testing"
	"time"
)

func TestResources(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
variable "gpus" { default = 2 }

stage "exec" "train" {
  for_each = { small = "8GiB", big = "64GiB" }
  command  = ["true"]
  outputs  = ["out"]
  resources {
    gpus   = var.gpus
    cpus   = 4
    memory = each.value
    time   = "2h30m"
  }
}

stage "exec" "plain" {
  command = ["true"]
  outputs = ["out"]
}
`})
	r := mustResolve(t, dir, Inputs{})
	for _, c := range []struct {
		addr string
		want Resources
	}{
		{`exec.train["small"]`, Resources{GPUs: 2, CPUs: 4, Memory: 8 << 30, Time: 150 * time.Minute}},
		{`exec.train["big"]`, Resources{GPUs: 2, CPUs: 4, Memory: 64 << 30, Time: 150 * time.Minute}},
		{"exec.plain", Resources{}},
	} {
		inst := r.Instance(c.addr)
		if inst == nil {
			t.Fatalf("no instance %s", c.addr)
		}
		got := inst.Resources
		if got.IsZero() != c.want.IsZero() || (!got.IsZero() && got.Range.Filename == "") {
			t.Errorf("%s: range %v for %+v", c.addr, got.Range, got)
		}
		got.Range = c.want.Range
		if got != c.want {
			t.Errorf("%s: resources %+v, want %+v", c.addr, got, c.want)
		}
	}
}
