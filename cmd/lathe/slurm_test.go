package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/lathe-ml/lathe/pipeline/runs"
	"github.com/lathe-ml/lathe/pipeline/slurm/slurmtest"
)

// TestSlurm runs the scripts in testdata/slurm against a real single-node
// Slurm cluster that it starts (and stops) itself: lathe run -executor
// slurm submits each stage as a job running `lathe stage exec`.
func TestSlurm(t *testing.T) {
	c := slurmtest.Start(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/slurm",
		Setup: func(e *testscript.Env) error {
			e.Setenv("LATHE_CACHE", "")
			e.Setenv("CI", "")
			e.Setenv("SLURM_CONF", c.Conf)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfile":   cmdWaitFile,
			"slurmjobs":  slurmJobsCmd(c),
			"samestages": cmdSameStages,
		},
	})
}

// slurmJobsCmd is `slurmjobs STORE`: for the newest run in STORE it prints
// one line per stage that went to Slurm, "STAGE after STAGE..." with the
// dependencies its batch script gave sbatch, and checks with scontrol
// that each job started only after its dependencies ended. `slurmjobs
// -gone STORE` checks instead that none of the run's jobs is left in the
// queue.
func slurmJobsCmd(c *slurmtest.Cluster) func(ts *testscript.TestScript, neg bool, args []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
		gone := len(args) == 2 && args[0] == "-gone"
		if neg || (len(args) != 1 && !gone) {
			ts.Fatalf("usage: slurmjobs [-gone] STORE")
		}
		store := ts.MkAbs(args[len(args)-1])
		list, err := runs.List(store)
		ts.Check(err)
		if len(list) == 0 {
			ts.Fatalf("no runs in %s", store)
		}
		run, err := runs.Open(store, list[0].ID)
		ts.Check(err)
		events, err := run.Events()
		ts.Check(err)
		jobStage := map[string]string{} // job id -> stage
		stageJob := map[string]string{}
		submitted := regexp.MustCompile(`^submitted as Slurm job ([0-9]+)`)
		for _, ev := range events {
			if m := submitted.FindStringSubmatch(ev.Message); m != nil && ev.Job == m[1] {
				jobStage[m[1]], stageJob[ev.Stage] = ev.Stage, m[1]
			}
		}
		if gone {
			active, err := c.ActiveJobs()
			ts.Check(err)
			for _, a := range active {
				id, state, _ := strings.Cut(a, " ")
				if jobStage[id] != "" {
					ts.Fatalf("job %s of %s is still %s", id, jobStage[id], state)
				}
			}
			fmt.Fprintf(ts.Stdout(), "%d jobs, none left in the queue\n", len(jobStage))
			return
		}
		scripts, err := filepath.Glob(filepath.Join(run.JobsDir(), "*.sbatch"))
		ts.Check(err)
		dep := regexp.MustCompile(`--dependency=afterok:([0-9:]+)`)
		stageRE := regexp.MustCompile(`(?m)^# lathe: stage (.*)$`)
		var lines []string
		for _, s := range scripts {
			data, err := os.ReadFile(s)
			ts.Check(err)
			m := stageRE.FindSubmatch(data)
			if m == nil {
				ts.Fatalf("%s names no stage", s)
			}
			stage := string(m[1])
			line := stage
			var after []string
			if d := dep.FindSubmatch(data); d != nil {
				for _, id := range strings.Split(string(d[1]), ":") {
					if jobStage[id] == "" {
						ts.Fatalf("%s depends on job %s, which the run did not submit", stage, id)
					}
					after = append(after, jobStage[id])
					// The dependency held: started after it ended.
					me, err := c.Job(stageJob[stage])
					ts.Check(err)
					up, err := c.Job(id)
					ts.Check(err)
					if me["StartTime"] < up["EndTime"] && me["StartTime"] != "Unknown" && me["StartTime"] != "None" {
						ts.Fatalf("%s (job %s) started at %s, before %s (job %s) ended at %s", stage, stageJob[stage], me["StartTime"], jobStage[id], id, up["EndTime"])
					}
				}
				sort.Strings(after)
				line += " after " + strings.Join(after, " ")
			}
			lines = append(lines, line)
		}
		sort.Strings(lines)
		for _, l := range lines {
			fmt.Fprintln(ts.Stdout(), l)
		}
	}
}

// cmdSameStages is `samestages A.json B.json`: two run summaries (lathe
// run -summary) name the same stages with the same cache keys and
// artifact digests.
func cmdSameStages(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: samestages A.json B.json")
	}
	read := func(path string) map[string]string {
		var sum runSummary
		data, err := os.ReadFile(ts.MkAbs(path))
		ts.Check(err)
		ts.Check(json.Unmarshal(data, &sum))
		m := map[string]string{}
		for _, s := range sum.Stages {
			arts, _ := json.Marshal(s.Artifacts)
			m[s.Address] = s.Key + " " + string(arts)
		}
		return m
	}
	a, b := read(args[0]), read(args[1])
	if len(a) == 0 || len(a) != len(b) {
		ts.Fatalf("%d stages in %s, %d in %s", len(a), args[0], len(b), args[1])
	}
	for addr, x := range a {
		if b[addr] != x {
			ts.Fatalf("%s: %s in %s, %s in %s", addr, x, args[0], b[addr], args[1])
		}
	}
}
