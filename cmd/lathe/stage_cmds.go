package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/runs"
	"github.com/lathe-ml/lathe/pipeline/slurm"
)

const stageUsage = "stage exec [flags] ADDRESS [PIPELINE]"

// cmdStage is `lathe stage exec`: the one-stage contract a cluster job
// runs (see pipeline.StageExec, which writes its command line).
func cmdStage(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] != "exec" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprintf(env.stderr, "usage: lathe %s\n", stageUsage)
			return exitOK
		}
		return usageError(env, "usage: lathe %s", stageUsage)
	}
	fs := newFlagSet(env, "stage")
	var pf pipelineFlags
	pf.register(fs)
	var rf remoteFlags
	rf.register(fs)
	events := fs.String("events", "", "append the stage's events to `FILE` (JSON lines), for the run that handed the stage out")
	rerun := fs.Bool("rerun", false, "run the stage even if its result is cached")
	force := fs.Bool("force", false, "tell the stage to skip its own refusals (as lathe run -force does)")
	key := fs.String("key", "", "fail rather than run the stage under a cache key other than `KEY` (the one the run handing it out computed)")
	resolutions := fs.String("resolutions", "", "record the stage's resolved arguments (batch_size = \"auto\") in `DIR`, and use those recorded there for its upstream stages' keys")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return flagError(err)
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageError(env, "stage exec needs one instance address, and optionally a pipeline: lathe %s", stageUsage)
	}
	ws, code := pf.load(env, pos[1:], true)
	if ws == nil {
		return code
	}
	closeRemote, err := rf.attach(ctx, env, ws)
	if err != nil {
		return reportError(env, ws, err)
	}
	defer closeRemote()
	job := ""
	for _, kv := range env.environ {
		if v, ok := strings.CutPrefix(kv, "SLURM_JOB_ID="); ok {
			job = v
		}
	}
	addr := pos[0]
	r, err := ws.ExecStage(ctx, addr, pipeline.ExecOptions{
		Rerun:       *rerun,
		Force:       *force,
		Resolutions: *resolutions,
		Key:         *key,
		Events:      *events,
		Job:         job,
		Observer: func(ev runs.Event) {
			// The stage's log is the command's output (a cluster job's
			// output file, streamed back by the run); statuses go to
			// stderr, unless the events file carries them to a run.
			switch {
			case ev.Type == "log":
				fmt.Fprintln(env.stdout, ev.Message)
			case ev.Type == "stage-started" && *events == "":
				fmt.Fprintf(env.stderr, "lathe: %s: started (key %.12s)\n", ev.Stage, ev.Key)
			}
		},
	})
	if err != nil {
		return reportError(env, ws, err)
	}
	switch r.Status {
	case pipeline.StatusRan:
		if *events == "" {
			fmt.Fprintf(env.stderr, "lathe: %s: done in %s (key %.12s)\n", addr, r.Duration.Round(time.Millisecond), r.Key)
		}
		return exitOK
	case pipeline.StatusCached:
		if *events == "" {
			fmt.Fprintf(env.stderr, "lathe: %s: cached (key %.12s)\n", addr, r.Key)
		}
		return exitOK
	case pipeline.StatusCanceled:
		fmt.Fprintf(env.stderr, "lathe: %s: interrupted\n", addr)
		return exitCanceled
	}
	var de *pipeline.DiagnosticsError
	if errors.As(r.Err, &de) {
		writeDiagnostics(env, ws, de.Diags)
	} else {
		fmt.Fprintf(env.stderr, "lathe: %s failed: %v\n", addr, r.Err)
	}
	return exitFailed
}

// executorFlag is lathe run's -executor.
const executorFlagUsage = "where the stages run: local, or slurm (default: the pipeline's executor block, else local)"

// dispatcher returns what hands the run's stages to a cluster: nil to
// run them here. name is the -executor flag ("" when not given).
func dispatcher(env *cliEnv, ws *pipeline.Workspace, name string) (pipeline.Dispatcher, error) {
	var settings *config.ExecutorSettings
	if ws.Resolved != nil {
		settings = ws.Resolved.Executor
	}
	if name == "" && settings != nil {
		name = settings.Type
	}
	switch name {
	case "", "local":
		return nil, nil
	case "slurm":
		opt := slurm.Options{}
		if settings != nil && settings.Type == "slurm" {
			opt = slurm.OptionsFrom(settings)
		}
		opt.Env = env.environ
		return slurm.New(opt)
	}
	return nil, fmt.Errorf("unknown executor %q: use local or slurm", name)
}
