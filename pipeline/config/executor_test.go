package config

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

const executorStages = `
stage "exec" "prep" {
  command = ["true"]
  outputs = ["out"]
}
`

func TestExecutorBlockSettings(t *testing.T) {
	tests := []struct {
		name string
		hcl  string
		in   Inputs
		want *ExecutorSettings // nil: no block; Store relative to the pipeline directory
	}{
		{"no block", "", Inputs{}, nil},
		{"empty block", `executor "slurm" {}`, Inputs{}, &ExecutorSettings{Type: "slurm"}},
		{"everything", `
executor "slurm" {
  partition   = "gpu,gpu-long"
  account     = "ml-team"
  qos         = "normal"
  time        = "2h30m"
  sbatch_args = ["--constraint=a100", "--exclusive", "-Cvolta"]
  store       = "/shared/lathe"
  lathe       = "/opt/lathe/bin/lathe"
}`, Inputs{}, &ExecutorSettings{Type: "slurm", Partition: "gpu,gpu-long", Account: "ml-team", QOS: "normal",
			Time: 150 * time.Minute, SbatchArgs: []string{"--constraint=a100", "--exclusive", "-Cvolta"},
			Store: "/shared/lathe", Lathe: "/opt/lathe/bin/lathe"}},
		{"variables, locals and nulls", `
variable "account" { default = "ml" }
locals { part = "debug" }
executor "slurm" {
  account   = var.account
  partition = local.part
  qos       = null
  lathe     = "lathe"
}`, Inputs{Vars: []string{"account=research"}}, &ExecutorSettings{Type: "slurm", Account: "research", Partition: "debug", Lathe: "lathe"}},
		{"relative store", `
executor "slurm" { store = "../shared/.lathe" }`, Inputs{}, &ExecutorSettings{Type: "slurm", Store: "../shared/.lathe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"main.hcl": executorStages + tt.hcl})
			r := mustResolve(t, dir, Inputs{Vars: tt.in.Vars})
			got := r.Executor
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("Executor = %+v, want %+v", got, tt.want)
			}
			if got == nil {
				return
			}
			want := *tt.want
			if want.Store != "" && !filepath.IsAbs(want.Store) {
				want.Store = filepath.Join(r.Pipeline.Dir, want.Store)
			}
			if got.DeclRange.Filename == "" || got.DeclRange.Start.Line == 0 {
				t.Errorf("DeclRange %v not set", got.DeclRange)
			}
			if got.Type != want.Type || got.Partition != want.Partition || got.Account != want.Account || got.QOS != want.QOS ||
				got.Time != want.Time || !slices.Equal(got.SbatchArgs, want.SbatchArgs) || got.Store != want.Store || got.Lathe != want.Lathe {
				t.Errorf("Executor = %+v\nwant       %+v", *got, want)
			}
		})
	}
}

// TestExecutorBlockLeavesStagesAlone checks that an executor block changes
// nothing a cache key is made of.
func TestExecutorBlockLeavesStagesAlone(t *testing.T) {
	plain := mustResolve(t, writeFiles(t, map[string]string{"main.hcl": executorStages}), Inputs{})
	with := mustResolve(t, writeFiles(t, map[string]string{"main.hcl": executorStages + `executor "slurm" { partition = "gpu" }`}), Inputs{})
	for i, a := range plain.Instances {
		b := with.Instances[i]
		if a.Addr != b.Addr || !a.StaticArgs.RawEquals(b.StaticArgs) || len(a.Deps) != len(b.Deps) || a.Resources != b.Resources {
			t.Errorf("instance %s differs with an executor block", a.Addr)
		}
	}
}
