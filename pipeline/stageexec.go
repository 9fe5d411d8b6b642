package pipeline

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/runs"
)

// The one-stage contract. `lathe stage exec ADDRESS PIPELINE` runs exactly
// one stage instance against a store, the way a local run would run it:
// it reads the results of the instance's upstream stages from the store,
// computes the instance's cache key from them exactly as a local run
// does, reuses a cached result (a no-op), and otherwise takes the key's
// lock, runs the kind and commits the result, or records the failure. Its
// events go to an events file that the run which handed the stage out
// reads back (see Dispatcher). A cluster executor submits one such command
// per uncached stage; a worker binary (the CUDA worker) calls ExecStage
// itself.

// ExecOptions configures ExecStage.
type ExecOptions struct {
	// Rerun ignores a cached result and runs the stage anyway (the stage
	// was forced by lathe run -force or -from).
	Rerun bool
	// Force is handed to the stage as stage.Request.Force (lathe run
	// -force): the stage skips its own refusals, such as a memory guard.
	Force bool
	// Events, when set, is the events file (see runs.EventFile) the stage's
	// events are appended to, created if needed.
	Events string
	// Job, when set, is the cluster job running the stage (a Slurm job id),
	// recorded on every event in the events file.
	Job string
	// Observer, if set, receives every event as it is recorded.
	Observer func(runs.Event)
	// Resolutions, when set, is the run's directory of resolved arguments
	// (see Workspace.resolveArgs): the stage records what it resolved
	// there, and its upstream stages' keys use what their jobs recorded.
	Resolutions string
	// Key, when set, is the key the run handing the stage out computed:
	// the stage fails rather than run under another key.
	Key string
}

// ExecStage runs the one stage instance named by addr (an instance
// address, `sft.identity["r8"]`) against the workspace's store: its
// upstream stages must have their results in the store already. A cached
// result is reused without running anything. It returns an error when the
// stage cannot be set up (no such instance, an upstream result missing,
// the events file not writable); the stage's own outcome (ran, cached,
// failed, canceled) is in the result.
func (ws *Workspace) ExecStage(ctx context.Context, addr string, opt ExecOptions) (*StageResult, error) {
	inst, err := ws.instanceByAddr(addr)
	if err != nil {
		return nil, err
	}
	ws.resolutions, ws.execAddr = opt.Resolutions, inst.Addr
	defer func() { ws.resolutions, ws.execAddr = "", "" }()
	upstream, err := ws.upstreamOutputs(ctx, inst)
	if err != nil {
		return nil, err
	}
	var sink eventSink = discardEvents{}
	if opt.Events != "" {
		f, err := runs.CreateEventFile(opt.Events)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sink = f
	}
	if opt.Job != "" {
		sink = jobEvents{sink: sink, job: opt.Job}
	}
	e := &executor{
		ws:        ws,
		opt:       RunOptions{Selection: Selection{Force: opt.Force}, Jobs: 1, Observer: opt.Observer},
		sel:       &selection{selected: map[*config.Instance]bool{inst: true}, forced: map[*config.Instance]bool{inst: opt.Rerun}},
		rec:       sink,
		sem:       make(chan struct{}, 1),
		done:      map[*config.Instance]chan struct{}{},
		results:   map[*config.Instance]*StageResult{},
		outputs:   upstream,
		metrics:   map[string]map[string]float64{},
		stopping:  make(chan struct{}),
		expectKey: opt.Key,
	}
	defer e.cleanup()
	closed := make(chan struct{})
	close(closed)
	for _, d := range inst.Deps {
		e.done[d] = closed
		e.results[d] = &StageResult{Addr: d.Addr, Kind: d.Kind.Name, Status: StatusCached}
	}
	r := e.instance(ctx, inst)
	if m := e.metrics[inst.Addr]; len(m) > 0 {
		r.Metrics = m
	}
	return r, nil
}

// UpstreamMissingError says a stage handed out on its own cannot run
// because a stage it needs has no result in the store.
type UpstreamMissingError struct {
	Addr     string // the stage asked for
	Upstream string // the stage without a result
	Key      string // the upstream stage's current cache key
	Store    string
}

func (e *UpstreamMissingError) Error() string {
	return fmt.Sprintf("%s needs %s, which has no result in the store %s (key %.12s): it must run first", e.Addr, e.Upstream, e.Store, e.Key)
}

// upstreamOutputs reads the outputs of every ancestor of inst from the
// store, computing their keys as a local run would.
func (ws *Workspace) upstreamOutputs(ctx context.Context, inst *config.Instance) (map[string]map[string]cty.Value, error) {
	return ws.walkStored(ctx, inst, false, func(in *config.Instance, st storedStage, _ map[string]map[string]cty.Value) error {
		if st.rec == nil {
			return &UpstreamMissingError{Addr: inst.Addr, Upstream: in.Addr, Key: st.key.Sum, Store: ws.Store.Root()}
		}
		return nil
	})
}

// eventSink is where an executor records events: the run record, or the
// events file of a stage run on its own.
type eventSink interface {
	Append(runs.Event) error
}

type discardEvents struct{}

func (discardEvents) Append(runs.Event) error { return nil }

// jobEvents stamps every event with the cluster job that runs the stage.
type jobEvents struct {
	sink eventSink
	job  string
}

func (j jobEvents) Append(ev runs.Event) error {
	ev.Job = j.job
	return j.sink.Append(ev)
}

// StageExec is the command line of `lathe stage exec` (after the binary's
// name): what a job on a cluster runs. cmd/lathe parses it with the same
// flag names.
type StageExec struct {
	// Addr is the instance address.
	Addr string
	// Pipeline is the pipeline file or directory, as an absolute path.
	Pipeline string
	// Store is the store directory.
	Store string
	// VarFile, when set, is a JSON variables file giving every variable
	// its value in the run that handed the stage out (see WriteVarFile).
	VarFile string
	// Events is the events file the stage records its events in.
	Events string
	// Rerun and Force are ExecOptions.Rerun and Force.
	Rerun, Force bool
	// Resolutions is ExecOptions.Resolutions.
	Resolutions string
	// Key is ExecOptions.Key.
	Key string
}

// Args returns the arguments of `lathe stage exec` after the binary.
func (s StageExec) Args() []string {
	args := []string{"stage", "exec", "-cache", s.Store}
	if s.VarFile != "" {
		args = append(args, "-var-file", s.VarFile)
	}
	if s.Events != "" {
		args = append(args, "-events", s.Events)
	}
	if s.Resolutions != "" {
		args = append(args, "-resolutions", s.Resolutions)
	}
	if s.Key != "" {
		args = append(args, "-key", s.Key)
	}
	if s.Rerun {
		args = append(args, "-rerun")
	}
	if s.Force {
		args = append(args, "-force")
	}
	return append(args, "--", s.Addr, s.Pipeline)
}

// WriteVarFile writes the value of every variable of the resolved
// pipeline to path as a JSON variables file (lathe's -var-file), so that
// a stage run elsewhere sees exactly the values of this run whatever
// -var, -var-file and LATHE_VAR_ options it was given. (lathe reads the
// strings of a variables file literally, so "${" needs no escaping.)
func (ws *Workspace) WriteVarFile(path string) error {
	names := make([]string, 0, len(ws.Resolved.Variables))
	for n := range ws.Resolved.Variables {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("{\n")
	for i, n := range names {
		v := ws.Resolved.Variables[n]
		raw, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			return fmt.Errorf("variable %s: %w", n, err)
		}
		key, _ := json.Marshal(n)
		fmt.Fprintf(&b, "  %s: %s", key, raw)
		if i < len(names)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// ParseStageExec reads the arguments Args produced (after "stage exec"):
// what a worker binary that is not cmd/lathe (the CUDA worker) parses.
func ParseStageExec(args []string) (StageExec, error) {
	var s StageExec
	fs := flag.NewFlagSet("stage exec", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&s.Store, "cache", "", "")
	fs.StringVar(&s.VarFile, "var-file", "", "")
	fs.StringVar(&s.Events, "events", "", "")
	fs.StringVar(&s.Resolutions, "resolutions", "", "")
	fs.StringVar(&s.Key, "key", "", "")
	fs.BoolVar(&s.Rerun, "rerun", false, "")
	fs.BoolVar(&s.Force, "force", false, "")
	if err := fs.Parse(args); err != nil {
		return StageExec{}, fmt.Errorf("stage exec: %w", err)
	}
	rest := fs.Args()
	if len(rest) != 2 {
		return StageExec{}, fmt.Errorf("stage exec: want ADDRESS PIPELINE after the flags, got %q", rest)
	}
	s.Addr, s.Pipeline = rest[0], rest[1]
	return s, nil
}
