package slurm_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/slurm"
	"github.com/lathe-ml/lathe/pipeline/slurm/slurmtest"
)

// fakeLathe stands in for `lathe stage exec` on the nodes: it behaves by
// the stage address, the second to last argument.
const fakeLathe = `#!/bin/sh
eval addr=\${$(($# - 1))}
case "$addr" in
ok)    echo "hello from job $SLURM_JOB_ID"; echo "second line"; exit 0 ;;
fail)  echo "about to fail"; echo "lathe: the stage failed" >&2; exit 3 ;;
sleep) touch "$FAKE_DIR/started"; exec sleep 300 ;;
esac
echo "unknown stage $addr" >&2
exit 99
`

// TestClusterJobs runs jobs on a real single-node Slurm cluster: output
// streamed back, dependencies honoured, a failed job's exit code and log
// tail, a job dropped after its dependency failed, and cancellation that
// leaves nothing in the queue.
func TestClusterJobs(t *testing.T) {
	c := slurmtest.Start(t)
	dir := t.TempDir()
	lathe := filepath.Join(dir, "lathe")
	if err := os.WriteFile(lathe, []byte(fakeLathe), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(append([]string(nil), c.Env...), "FAKE_DIR="+dir)
	e, err := slurm.New(slurm.Options{Env: env, Lathe: lathe, Poll: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	jobs := filepath.Join(dir, "jobs")
	spec := func(name string, after ...string) pipeline.JobSpec {
		return pipeline.JobSpec{
			Addr: name, Name: name, Dir: jobs, WorkDir: dir, After: after,
			Exec: pipeline.StageExec{Addr: name, Pipeline: dir, Store: dir},
		}
	}
	submit := func(s pipeline.JobSpec) string {
		id, err := e.Submit(ctx, s)
		if err != nil {
			t.Fatalf("submit %s: %v", s.Name, err)
		}
		return id
	}
	ok := submit(spec("ok"))
	fail := submit(spec("fail", ok))
	never := submit(spec("never", fail)) // "never" is no stage: it must not run

	watch := func(id string) (pipeline.JobEnd, []pipeline.JobUpdate) {
		var ups []pipeline.JobUpdate
		end, err := e.Watch(ctx, id, func(u pipeline.JobUpdate) { ups = append(ups, u) })
		if err != nil {
			t.Fatalf("watch %s: %v", id, err)
		}
		return end, ups
	}
	end, ups := watch(ok)
	var lines []string
	for _, u := range ups {
		if u.State == "" {
			lines = append(lines, u.Line)
		}
	}
	if !end.OK || end.State != "COMPLETED" {
		t.Errorf("ok: end %+v, updates %+v", end, ups)
	}
	if strings.Join(lines, "|") != "hello from job "+ok+"|second line" {
		t.Errorf("ok: streamed lines %q", lines)
	}

	end, _ = watch(fail)
	if end.OK || end.State != "FAILED" || end.Reason != "failed with exit code 3" ||
		strings.Join(end.LogTail, "|") != "about to fail|lathe: the stage failed" {
		t.Errorf("fail: end %+v", end)
	}
	// The dependency held: fail started after ok ended.
	okJob, err1 := c.Job(ok)
	failJob, err2 := c.Job(fail)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if okJob["EndTime"] > failJob["StartTime"] {
		t.Errorf("fail started at %s, before ok ended at %s", failJob["StartTime"], okJob["EndTime"])
	}
	script, err := os.ReadFile(filepath.Join(jobs, "fail.sbatch"))
	if err != nil || !strings.Contains(string(script), "--dependency=afterok:"+ok+" --kill-on-invalid-dep=yes") {
		t.Errorf("fail's script does not record its dependency: %v\n%s", err, script)
	}

	end, _ = watch(never)
	if end.OK || !end.Canceled {
		t.Errorf("never: end %+v, want canceled after its dependency failed", end)
	}
	if _, err := os.Stat(filepath.Join(jobs, "never.out")); err == nil {
		out, _ := os.ReadFile(filepath.Join(jobs, "never.out"))
		t.Errorf("the job after a failed one ran: %s", out)
	}

	// Cancel a running job and one waiting for it; nothing is left.
	sleeper := submit(spec("sleep"))
	waiter := submit(spec("ok", sleeper))
	var wg sync.WaitGroup
	ends := make([]pipeline.JobEnd, 2)
	var sleeperStates []string
	var statesMu sync.Mutex
	seenRunning := make(chan struct{})
	var runningOnce sync.Once
	for i, id := range []string{sleeper, waiter} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ends[i], _ = e.Watch(ctx, id, func(u pipeline.JobUpdate) {
				if i == 0 && u.State != "" {
					statesMu.Lock()
					sleeperStates = append(sleeperStates, u.State+" "+u.Detail)
					statesMu.Unlock()
					if u.State+" "+u.Detail == "RUNNING on "+c.Node {
						runningOnce.Do(func() { close(seenRunning) })
					}
				}
			})
		}()
	}
	waitStarted(t, c, filepath.Join(dir, "started"))
	// The job has started; let the watcher's polling see it run before
	// canceling (a poll may fall between the start and the cancel).
	select {
	case <-seenRunning:
	case <-time.After(30 * time.Second):
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := e.Cancel(cctx, []string{sleeper, waiter}, false); err != nil {
		t.Fatal(err)
	}
	if left, err := c.ActiveJobs(); err != nil || len(left) > 0 {
		t.Errorf("after Cancel: %v in the queue (%v)", left, err)
	}
	wg.Wait()
	statesMu.Lock()
	defer statesMu.Unlock()
	if !slices.Contains(sleeperStates, "RUNNING on "+c.Node) {
		t.Errorf("sleeping job's states %q: never seen running on %s", sleeperStates, c.Node)
	}
	for i, end := range ends {
		if !end.Canceled || end.OK {
			t.Errorf("job %d: end %+v, want canceled", i, end)
		}
	}

	// A job whose node goes down is reported as lost.
	os.Remove(filepath.Join(dir, "started"))
	lost := submit(spec("sleep"))
	waitStarted(t, c, filepath.Join(dir, "started"))
	if out, err := c.Command("scontrol", "update", "NodeName="+c.Node, "State=DOWN", "Reason=lathe-test").CombinedOutput(); err != nil {
		t.Fatalf("scontrol update: %v: %s", err, out)
	}
	defer c.Command("scontrol", "update", "NodeName="+c.Node, "State=RESUME").Run()
	end, _ = watch(lost)
	if end.OK || end.State != "NODE_FAIL" || end.Reason != "was lost: its node failed" {
		t.Errorf("job on a failed node: end %+v", end)
	}
}

func waitStarted(t *testing.T, c *slurmtest.Cluster, file string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(file); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sleeping job did not start\n%s", c.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
