package slurm

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
)

func TestParseQueue(t *testing.T) {
	got, err := parseQueue("12|RUNNING|None|node1\n13|PENDING|Dependency|\n14|CANCELLED|DependencyNeverSatisfied|(null)\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]queueEntry{
		"12": {ID: "12", State: "RUNNING", Node: "node1"},
		"13": {ID: "13", State: "PENDING", Reason: "Dependency"},
		"14": {ID: "14", State: "CANCELLED", Reason: "DependencyNeverSatisfied"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %+v, want %+v", id, got[id], w)
		}
	}
	for _, bad := range []string{
		"12 RUNNING None node1",       // wrong separator
		"12|RUNNING|None",             // too few fields
		"abc|RUNNING|None|n",          // not a job id
		"12|running|None|n",           // not a state
		"12|RUNNING|None|n|extra",     // too many fields
		"squeue: error: Invalid user", // an error message on stdout
	} {
		if _, err := parseQueue(bad); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err %v, want one naming line 1", bad, err)
		}
	}
}

func TestParseSubmit(t *testing.T) {
	for _, tt := range []struct {
		out, id string
	}{
		{"42\n", "42"},
		{"42;cluster2\n", "42"},
		{"sbatch: warning: some warning\n7\n", "7"},
	} {
		id, err := parseSubmit(tt.out)
		if err != nil || id != tt.id {
			t.Errorf("%q: %q %v, want %q", tt.out, id, err, tt.id)
		}
	}
	for _, bad := range []string{"", "\n", "Submitted batch job 42\n", "42abc", "-1"} {
		if id, err := parseSubmit(bad); err == nil {
			t.Errorf("%q: accepted as %q", bad, id)
		}
	}
}

func TestSbatchArgs(t *testing.T) {
	spec := pipeline.JobSpec{
		Addr: `sft.x["a"]`, Name: "03-sft.x_a", Dir: "/store/runs/r1/jobs", WorkDir: "/work/pipe",
		After:     []string{"11", "12"},
		Resources: config.Resources{GPUs: 2, CPUs: 8, Memory: 16<<30 + 1, Time: 90 * time.Minute},
	}
	opt := Options{Partition: "gpu", Account: "ml", QOS: "high", Time: 10 * time.Hour, SbatchArgs: []string{"--exclusive", "--mem=1G"}}
	got := sbatchArgs(opt, spec)
	want := []string{
		"--parsable", "--job-name=lathe-03-sft.x_a", "--output=/store/runs/r1/jobs/03-sft.x_a.out", "--open-mode=append",
		"--chdir=/work/pipe", "--nodes=1", "--ntasks=1",
		"--dependency=afterok:11:12", "--kill-on-invalid-dep=yes",
		"--partition=gpu", "--account=ml", "--qos=high",
		"--exclusive", "--mem=1G",
		"--gres=gpu:2", "--cpus-per-task=8", "--mem=16385M", "--time=0-01:30:00",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sbatch args\n got %q\nwant %q", got, want)
	}
	// Without a resources time the executor's applies; nothing else is set.
	got = sbatchArgs(Options{Time: 49*time.Hour + 30*time.Second}, pipeline.JobSpec{Name: "01-a", Dir: "/d", WorkDir: "/w"})
	if !slices.Contains(got, "--time=2-01:00:30") || slices.ContainsFunc(got, func(s string) bool {
		return strings.HasPrefix(s, "--dependency") || strings.HasPrefix(s, "--partition") || strings.HasPrefix(s, "--gres")
	}) {
		t.Errorf("plain job: %q", got)
	}
}

func TestBatchScriptQuoting(t *testing.T) {
	spec := pipeline.JobSpec{
		Addr: `sft.x["it's"]`, Name: "01-x", Dir: "/d", WorkDir: "/w",
		Exec: pipeline.StageExec{Addr: `sft.x["it's"]`, Pipeline: "/p/my pipeline", Store: "/s", Events: "/d/01-x.events.jsonl", Rerun: true},
	}
	script := batchScript("/opt/lathe bin/lathe", spec, []string{"--parsable", "/d/01-x.sbatch"})
	lines := strings.Split(strings.TrimSpace(script), "\n")
	if lines[0] != "#!/bin/sh" || !strings.HasPrefix(lines[len(lines)-1], "exec ") {
		t.Fatalf("script:\n%s", script)
	}
	// The exec line, given to sh, yields exactly the command's words.
	printf := "printf '%s\\n' " + strings.TrimPrefix(lines[len(lines)-1], "exec ")
	out, err := exec.Command("sh", "-c", printf).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{"/opt/lathe bin/lathe"}, spec.Exec.Args()...)
	if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); !slices.Equal(got, want) {
		t.Errorf("words\n got %q\nwant %q", got, want)
	}
}

func TestTailer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "job.out")
	tl := newTailer(path, 2)
	var got []string
	add := func(s string) { got = append(got, s) }
	if err := tl.read(add); err != nil || len(got) != 0 {
		t.Fatalf("missing file: %v %v", got, err)
	}
	os.WriteFile(path, []byte("one\ntwo\r\nthr"), 0o644)
	tl.read(add)
	if !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("got %q", got)
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("ee\nfour")
	f.Close()
	tl.read(add)
	tl.flush(add)
	if !slices.Equal(got, []string{"one", "two", "three", "four"}) || !slices.Equal(tl.last, []string{"three", "four"}) {
		t.Errorf("got %q, last %q", got, tl.last)
	}
	// A line longer than maxLine is cut.
	os.WriteFile(path, []byte(strings.Repeat("x", 3*maxLine)+"\n"), 0o644)
	tl2 := newTailer(path, 1)
	var long []string
	tl2.read(func(s string) { long = append(long, s) })
	for _, l := range long {
		if len(l) > maxLine+len("…") {
			t.Errorf("line of %d bytes passed on", len(l))
		}
	}
}

func TestEndReason(t *testing.T) {
	for _, tt := range []struct {
		state, reason, exit, limit, want string
	}{
		{"COMPLETED", "", "0:0", "", "completed"},
		{"FAILED", "NonZeroExitCode", "3:0", "", "failed with exit code 3"},
		{"FAILED", "", "0:9", "", "was killed by signal 9"},
		{"CANCELLED", "", "0:15", "", "was canceled"},
		{"CANCELLED", "DependencyNeverSatisfied", "", "", "was canceled"},
		{"TIMEOUT", "TimeLimit", "0:0", "00:01:00", "hit its time limit (00:01:00)"},
		{"NODE_FAIL", "", "", "", "was lost: its node failed"},
		{"OUT_OF_MEMORY", "", "0:125", "", "ran out of memory"},
		{"VANISHED", "", "", "", "vanished from the Slurm queue without a final state (the cluster lost it)"},
		{"SPECIAL_EXIT", "", "", "", "ended in state SPECIAL_EXIT"},
	} {
		if got := endReason(tt.state, tt.reason, tt.exit, tt.limit); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.state, got, tt.want)
		}
	}
	for _, s := range []string{"PENDING", "RUNNING", "COMPLETING", "REQUEUED"} {
		if !active(s) {
			t.Errorf("%s not active", s)
		}
	}
	for _, s := range []string{"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"} {
		if active(s) {
			t.Errorf("%s active", s)
		}
	}
}

// fakeTools writes stand-ins for the Slurm commands into a directory and
// returns an environment whose PATH starts there.
func fakeTools(t *testing.T, scripts map[string]string) []string {
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
}

func TestNewNeedsTheTools(t *testing.T) {
	env := []string{"PATH=" + t.TempDir()}
	if _, err := New(Options{Env: env}); err == nil || !strings.Contains(err.Error(), "sbatch is not on the PATH") {
		t.Errorf("err %v", err)
	}
}

// TestVanishedJob: a job that leaves the queue without a final state, on
// a cluster without accounting, is reported as lost.
func TestVanishedJob(t *testing.T) {
	env := fakeTools(t, map[string]string{
		"sbatch":   `echo 77`,
		"squeue":   `exit 0`, // the job is nowhere
		"scancel":  `exit 0`,
		"scontrol": `exit 1`,
		"sacct":    `echo "sacct: error: Slurm accounting storage is disabled" >&2; exit 1`,
	})
	e, err := New(Options{Env: env, Lathe: "/bin/true", Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := pipeline.JobSpec{Addr: "exec.a", Name: "01-exec.a", Dir: dir, WorkDir: dir}
	id, err := e.Submit(t.Context(), spec)
	if err != nil || id != "77" {
		t.Fatalf("submit: %q %v", id, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "01-exec.a.sbatch")); err != nil {
		t.Errorf("no batch script kept: %v", err)
	}
	end, err := e.Watch(t.Context(), id, func(pipeline.JobUpdate) {})
	if err != nil {
		t.Fatal(err)
	}
	if end.OK || end.State != "VANISHED" || !strings.Contains(end.Reason, "vanished") {
		t.Errorf("end %+v", end)
	}
}

// TestSubmitErrors: sbatch's complaint reaches the caller.
func TestSubmitErrors(t *testing.T) {
	env := fakeTools(t, map[string]string{
		"sbatch":   `echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2; exit 1`,
		"squeue":   `exit 0`,
		"scancel":  `exit 0`,
		"scontrol": `exit 0`,
	})
	e, err := New(Options{Env: env, Lathe: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = e.Submit(t.Context(), pipeline.JobSpec{Addr: "exec.a", Name: "01-exec.a", Dir: dir, WorkDir: dir})
	if err == nil || !strings.Contains(err.Error(), "Invalid partition name specified") {
		t.Errorf("err %v", err)
	}
	_, err = e.Submit(t.Context(), pipeline.JobSpec{Addr: "exec.a", Name: "01-exec.a", Dir: dir, WorkDir: dir, After: []string{"1;rm"}})
	if err == nil || !strings.Contains(err.Error(), "bad dependency") {
		t.Errorf("bad dependency: %v", err)
	}
}
