package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
)

// Options configures an Executor.
type Options struct {
	// Partition, Account and QOS are passed as --partition, --account and
	// --qos when set.
	Partition, Account, QOS string
	// Time is the default time limit of a job; a stage's resources.time
	// overrides it. 0 leaves the partition's default.
	Time time.Duration
	// SbatchArgs are extra sbatch options for every job.
	SbatchArgs []string
	// Lathe is the lathe binary the jobs run: an absolute path on the
	// nodes, or a name looked up in the job's PATH. "" means the running
	// executable.
	Lathe string
	// Poll is how often job states are polled (default 1s).
	Poll time.Duration
	// Unreachable is how long Watch keeps retrying when squeue fails (the
	// controller is down) before it gives up on a job (default 5m).
	Unreachable time.Duration
	// Env is the environment of the Slurm commands (and, through sbatch's
	// default --export=ALL, of the jobs); nil means this process's.
	Env []string
}

// OptionsFrom returns the options an executor block sets.
func OptionsFrom(s *config.ExecutorSettings) Options {
	if s == nil {
		return Options{}
	}
	return Options{
		Partition:  s.Partition,
		Account:    s.Account,
		QOS:        s.QOS,
		Time:       s.Time,
		SbatchArgs: append([]string(nil), s.SbatchArgs...),
		Lathe:      s.Lathe,
	}
}

// Executor submits stage jobs with sbatch and follows them with squeue.
// It implements pipeline.Dispatcher.
type Executor struct {
	opt Options

	mu   sync.Mutex
	jobs map[string]*job

	snapMu  sync.Mutex
	snapAt  time.Time
	snap    map[string]queueEntry
	snapErr error
}

type job struct {
	id        string
	spec      pipeline.JobSpec
	out       string
	submitted time.Time

	mu    sync.Mutex
	ended bool
}

var _ pipeline.Dispatcher = (*Executor)(nil)

// New returns an executor. It fails when sbatch, squeue and scancel are
// not on the PATH.
func New(opt Options) (*Executor, error) {
	for _, tool := range []string{"sbatch", "squeue", "scancel", "scontrol"} {
		if _, err := lookPath(tool, opt.Env); err != nil {
			return nil, fmt.Errorf("slurm: %s is not on the PATH: lathe submits jobs with Slurm's command-line tools, so run it where they are installed and configured (a login node)", tool)
		}
	}
	if opt.Lathe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("slurm: the lathe binary for the jobs: %w", err)
		}
		opt.Lathe = exe
	}
	if opt.Poll <= 0 {
		opt.Poll = time.Second
	}
	if opt.Unreachable <= 0 {
		opt.Unreachable = 5 * time.Minute
	}
	return &Executor{opt: opt, jobs: map[string]*job{}}, nil
}

// lookPath finds a command in the PATH of env (or this process's).
func lookPath(name string, env []string) (string, error) {
	if env == nil {
		return exec.LookPath(name)
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Name implements pipeline.Dispatcher.
func (e *Executor) Name() string { return "Slurm" }

// command runs a Slurm tool and returns its standard output; an error
// carries what it printed on standard error.
func (e *Executor) command(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	path, err := lookPath(name, e.opt.Env)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = e.opt.Env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return stdout.String(), &commandError{name: name, msg: msg}
	}
	return stdout.String(), nil
}

type commandError struct{ name, msg string }

func (e *commandError) Error() string { return e.name + ": " + e.msg }

// Submit writes the job's batch script and submits it with sbatch.
func (e *Executor) Submit(ctx context.Context, spec pipeline.JobSpec) (string, error) {
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return "", fmt.Errorf("jobs directory: %w", err)
	}
	for _, a := range spec.After {
		if !validJobID(a) {
			return "", fmt.Errorf("bad dependency job id %q", a)
		}
	}
	args := sbatchArgs(e.opt, spec)
	script := scriptPath(spec)
	if err := os.WriteFile(script, []byte(batchScript(e.opt.Lathe, spec, append(args, script))), 0o755); err != nil {
		return "", fmt.Errorf("write batch script: %w", err)
	}
	out, err := e.command(ctx, "sbatch", append(args, script)...)
	if err != nil {
		return "", err
	}
	id, err := parseSubmit(out)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	e.jobs[id] = &job{id: id, spec: spec, out: outputPath(spec), submitted: time.Now()}
	e.mu.Unlock()
	return id, nil
}

// ScriptPath is where Submit writes a job's batch script.
func ScriptPath(spec pipeline.JobSpec) string { return scriptPath(spec) }

// queue returns the queue entries of the jobs being followed, from the
// last poll when it is recent (half the poll interval), else from a new
// one, and when that poll started. Jobs unknown to Slurm are absent.
func (e *Executor) queue(ctx context.Context) (map[string]queueEntry, time.Time, error) {
	e.snapMu.Lock()
	defer e.snapMu.Unlock()
	if !e.snapAt.IsZero() && time.Since(e.snapAt) < e.opt.Poll/2 {
		return e.snap, e.snapAt, e.snapErr
	}
	at := time.Now()
	e.mu.Lock()
	var ids []string
	for id, j := range e.jobs {
		j.mu.Lock()
		if !j.ended {
			ids = append(ids, id)
		}
		j.mu.Unlock()
	}
	e.mu.Unlock()
	sort.Strings(ids)
	e.snap, e.snapErr = e.list(ctx, ids)
	e.snapAt = at
	return e.snap, at, e.snapErr
}

// list runs squeue for the given jobs.
func (e *Executor) list(ctx context.Context, ids []string) (map[string]queueEntry, error) {
	if len(ids) == 0 {
		return map[string]queueEntry{}, nil
	}
	out, err := e.command(ctx, "squeue", "-h", "-t", "all", "-j", strings.Join(ids, ","), "-o", squeueFormat)
	if err != nil {
		// squeue fails when none of the ids is known any more.
		var ce *commandError
		if errors.As(err, &ce) && strings.Contains(ce.msg, "Invalid job id") {
			return map[string]queueEntry{}, nil
		}
		return nil, err
	}
	return parseQueue(out)
}

// Watch implements pipeline.Dispatcher: it polls the job's state and
// streams its output file until the job ends.
func (e *Executor) Watch(ctx context.Context, id string, report func(pipeline.JobUpdate)) (pipeline.JobEnd, error) {
	e.mu.Lock()
	j := e.jobs[id]
	e.mu.Unlock()
	if j == nil {
		return pipeline.JobEnd{}, fmt.Errorf("job %s was not submitted by this executor", id)
	}
	tail := newTailer(j.out, 20)
	line := func(s string) { report(pipeline.JobUpdate{Line: s}) }
	var last queueEntry
	missing := 0
	lastOK := time.Now()
	warned := false
	t := time.NewTicker(e.opt.Poll)
	defer t.Stop()
	for {
		q, at, err := e.queue(ctx)
		if err := tail.read(line); err != nil && !warned {
			line("lathe: warning: cannot read the job's output: " + err.Error())
			warned = true
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return pipeline.JobEnd{}, ctx.Err()
		case err != nil:
			if time.Since(lastOK) > e.opt.Unreachable {
				return pipeline.JobEnd{}, fmt.Errorf("cannot follow the job: squeue has failed for %s: %w", e.opt.Unreachable, err)
			}
		default:
			lastOK = time.Now()
			entry, ok := q[id]
			if !ok && at.Before(j.submitted) {
				break // polled before the job was submitted
			}
			if !ok {
				// Absent: purged after it ended, or lost. Give squeue a
				// second look before asking accounting.
				if missing++; missing >= 2 {
					end := e.vanished(ctx, j)
					return e.finish(j, tail, line, end), nil
				}
				break
			}
			missing = 0
			if entry.State != last.State || entry.Reason != last.Reason || entry.Node != last.Node {
				last = entry
				if active(entry.State) {
					detail := entry.Reason
					if entry.State == "RUNNING" && entry.Node != "" {
						detail = "on " + entry.Node
					}
					report(pipeline.JobUpdate{State: entry.State, Detail: detail})
				}
			}
			if !active(entry.State) {
				return e.finish(j, tail, line, e.ended(ctx, entry)), nil
			}
		}
		select {
		case <-ctx.Done():
			return pipeline.JobEnd{}, ctx.Err()
		case <-t.C:
		}
	}
}

// finish reads the rest of the job's output and marks it ended.
func (e *Executor) finish(j *job, tail *tailer, line func(string), end pipeline.JobEnd) pipeline.JobEnd {
	_ = tail.read(line)
	tail.flush(line)
	j.mu.Lock()
	j.ended = true
	j.mu.Unlock()
	end.Log = j.out
	end.LogTail = append([]string(nil), tail.last...)
	return end
}

// ended describes a job squeue shows in a final state, with its exit code
// and time limit from scontrol.
func (e *Executor) ended(ctx context.Context, entry queueEntry) pipeline.JobEnd {
	var exitCode, limit string
	if out, err := e.command(ctx, "scontrol", "show", "job", "-o", entry.ID); err == nil {
		f := parseShowJob(out)
		exitCode, limit = f["ExitCode"], f["TimeLimit"]
	}
	end := pipeline.JobEnd{
		State:    entry.State,
		OK:       entry.State == "COMPLETED" && (exitCode == "" || exitCode == "0:0"),
		Canceled: entry.State == "CANCELLED",
		Reason:   endReason(entry.State, entry.Reason, exitCode, limit),
	}
	if entry.State == "COMPLETED" && !end.OK {
		end.Reason = endReason("FAILED", "", exitCode, "")
	}
	return end
}

// vanished describes a job that is no longer in the queue: from the
// accounting database when the cluster keeps one, else as lost.
func (e *Executor) vanished(ctx context.Context, j *job) pipeline.JobEnd {
	out, err := e.command(ctx, "sacct", "-n", "-X", "-P", "-j", j.id, "-o", "State,ExitCode")
	if err == nil {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			state, exitCode, ok := strings.Cut(strings.TrimSpace(line), "|")
			state, _, _ = strings.Cut(state, " ") // "CANCELLED by 0"
			if !ok || state == "" || active(state) {
				continue
			}
			return pipeline.JobEnd{
				State:    state,
				OK:       state == "COMPLETED" && exitCode == "0:0",
				Canceled: state == "CANCELLED",
				Reason:   endReason(state, "", exitCode, ""),
			}
		}
	}
	return pipeline.JobEnd{State: stateVanished, Reason: endReason(stateVanished, "", "", "")}
}

// Cancel implements pipeline.Dispatcher: scancel, then poll until none of
// the jobs is active (with pendingOnly: none is pending).
func (e *Executor) Cancel(ctx context.Context, ids []string, pendingOnly bool) error {
	var valid []string
	for _, id := range ids {
		if validJobID(id) {
			valid = append(valid, id)
		}
	}
	if len(valid) == 0 {
		return nil
	}
	args := []string{}
	if pendingOnly {
		args = append(args, "--state=PENDING")
	}
	// scancel complains about jobs that already ended; what counts is
	// what squeue shows afterwards.
	_, scancelErr := e.command(ctx, "scancel", append(args, valid...)...)
	t := time.NewTicker(e.opt.Poll / 2)
	defer t.Stop()
	for {
		q, err := e.list(ctx, valid)
		if err == nil {
			var left []string
			for _, id := range valid {
				if entry, ok := q[id]; ok && active(entry.State) && (!pendingOnly || entry.State == "PENDING") {
					left = append(left, id)
				}
			}
			if len(left) == 0 {
				return nil
			}
			err = fmt.Errorf("still in the queue: %s", strings.Join(left, ", "))
		}
		select {
		case <-ctx.Done():
			if scancelErr != nil {
				err = fmt.Errorf("%w (%v)", err, scancelErr)
			}
			return fmt.Errorf("cancel Slurm jobs: %w", err)
		case <-t.C:
		}
	}
}
