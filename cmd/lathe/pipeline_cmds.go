package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/remote"
	"github.com/lathe-ml/lathe/stages"
)

// pipelineFlags are the flags shared by every command that loads a pipeline.
type pipelineFlags struct {
	vars     stringList
	varFiles stringList
	cacheDir string
}

func (pf *pipelineFlags) register(fs *flag.FlagSet) {
	fs.Var(&pf.vars, "var", "set a variable: -var 'name=value' (repeatable)")
	fs.Var(&pf.varFiles, "var-file", "read variables from an HCL or JSON file (repeatable)")
	fs.StringVar(&pf.cacheDir, "cache", "", "artifact store directory (default $LATHE_CACHE, else .lathe beside the pipeline)")
}

// remoteFlags configure the shared remote cache of plan and run.
type remoteFlags struct {
	url      string
	readOnly bool
}

func (rf *remoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&rf.url, "remote-cache", "", "shared remote cache `URL` behind the local store: s3://bucket/prefix, gs://bucket/prefix, azblob://container/prefix, file:///dir, or none (default $"+remote.EnvVar+", else the pipeline's cache block)")
	fs.BoolVar(&rf.readOnly, "remote-read-only", false, "pull from the remote cache but never push to it")
}

// noRemote, as -remote-cache or $LATHE_REMOTE_CACHE, turns off the remote
// cache of a pipeline's cache block.
const noRemote = "none"

// attach opens the remote cache, if one is configured, as ws.Remote. The
// URL comes from -remote-cache, else $LATHE_REMOTE_CACHE, else the
// pipeline's cache block; the block's read_only goes with the block's URL,
// while -remote-read-only applies whatever the source. The returned
// function closes it.
func (rf *remoteFlags) attach(ctx context.Context, env *cliEnv, ws *pipeline.Workspace) (func(), error) {
	url, source, readOnly := rf.url, "-remote-cache", rf.readOnly
	if url == "" {
		for _, kv := range env.environ {
			if v, ok := strings.CutPrefix(kv, remote.EnvVar+"="); ok {
				url, source = v, "$"+remote.EnvVar
			}
		}
	}
	if url == "" && ws.Resolved != nil && ws.Resolved.Cache != nil {
		c := ws.Resolved.Cache
		url = c.Remote
		source = fmt.Sprintf("the cache block at %s:%d", c.DeclRange.Filename, c.DeclRange.Start.Line)
		readOnly = readOnly || c.ReadOnly
	}
	if url == "" || url == noRemote {
		return func() {}, nil
	}
	r, err := remote.Open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("%w (the URL comes from %s)", err, source)
	}
	r.ReadOnly = readOnly
	ws.Remote = r
	return func() { r.Close() }, nil
}

// load parses and validates the pipeline named by the positional arguments
// (default: the current directory), printing diagnostics. It returns nil and
// an exit code when the pipeline is not usable.
func (pf *pipelineFlags) load(env *cliEnv, positional []string, withStore bool) (*pipeline.Workspace, int) {
	path := "."
	switch len(positional) {
	case 0:
	case 1:
		path = positional[0]
	default:
		return nil, usageError(env, "expected one pipeline file or directory, got %d arguments: %s", len(positional), strings.Join(positional, " "))
	}
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return nil, exitFailed
	}
	ws, diags := pipeline.Load(path, stages.Registry(), config.Inputs{
		Vars:     pf.vars,
		VarFiles: pf.varFiles,
		Env:      env.environ,
	})
	if len(diags) > 0 {
		writeDiagnostics(env, ws, diags)
	}
	if diags.HasErrors() {
		if pipeline.ValidationFailed(diags) {
			return nil, exitValidation
		}
		return nil, exitFailed
	}
	ws.GPUs = newLocalGPUs(env) // asked only when a stage needs GPUs
	if withStore {
		if err := ws.OpenStore(pf.cacheDir); err != nil {
			fmt.Fprintf(env.stderr, "lathe: open store: %v\n", err)
			return nil, exitFailed
		}
	}
	return ws, exitOK
}

func writeDiagnostics(env *cliEnv, ws *pipeline.Workspace, diags hcl.Diagnostics) {
	if ws != nil && ws.Pipeline != nil {
		if err := ws.Pipeline.WriteDiagnostics(env.stderr, diags, 100, env.isTTY); err == nil {
			return
		}
	}
	for _, d := range diags {
		fmt.Fprintf(env.stderr, "%s\n", d.Error())
	}
}

// reportError prints an error from planning or running, rendering HCL
// diagnostics with their source when there are any.
func reportError(env *cliEnv, ws *pipeline.Workspace, err error) int {
	var de *pipeline.DiagnosticsError
	if errors.As(err, &de) {
		writeDiagnostics(env, ws, de.Diags)
		return exitFailed
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(env.stderr, "lathe: interrupted")
		return exitCanceled
	}
	fmt.Fprintf(env.stderr, "lathe: %v\n", err)
	return exitFailed
}

func cmdValidate(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "validate")
	var pf pipelineFlags
	pf.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	ws, code := pf.load(env, pos, false)
	if ws == nil {
		return code
	}
	fmt.Fprintf(env.stdout, "The pipeline is valid: %d stages.\n", len(ws.Resolved.Instances))
	return exitOK
}

type selectionFlags struct {
	targets, from stringList
	force         bool
}

func (sf *selectionFlags) register(fs *flag.FlagSet) {
	fs.Var(&sf.targets, "target", "limit to this stage and what it depends on (repeatable; a block address selects all its instances)")
	fs.Var(&sf.from, "from", "rerun this stage and everything downstream of it, ignoring cached results (repeatable)")
	fs.BoolVar(&sf.force, "force", false, "rerun every selected stage, ignoring cached results")
}

func (sf *selectionFlags) selection() pipeline.Selection {
	return pipeline.Selection{Targets: sf.targets, From: sf.from, Force: sf.force}
}

func cmdPlan(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "plan")
	var pf pipelineFlags
	var sf selectionFlags
	pf.register(fs)
	sf.register(fs)
	var rf remoteFlags
	rf.register(fs)
	explain := fs.String("explain", "", "show the cache key behind STAGE's decision, as a diff against its last result")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	fs.Bool("ci", false, "CI mode: plain output, no colour (also when CI=true)")
	detailed := fs.Bool("detailed-exitcode", false, "exit 0 when nothing would run, 2 when stages would run, 1 on error")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		code := flagError(err)
		if code == exitUsage && slices.ContainsFunc(args, func(a string) bool {
			return strings.TrimLeft(a, "-") == "detailed-exitcode" || strings.TrimLeft(a, "-") == "detailed-exitcode=true"
		}) {
			return exitFailed // 2 means "work to do" with -detailed-exitcode
		}
		return code
	}
	if ciMode(env, fs) {
		env.isTTY = false
	}
	ws, code := pf.load(env, pos, true)
	if ws == nil {
		if *detailed && code == exitUsage {
			return exitFailed // 2 means "work to do" with -detailed-exitcode
		}
		return code
	}
	closeRemote, err := rf.attach(ctx, env, ws)
	if err != nil {
		return reportError(env, ws, err)
	}
	defer closeRemote()
	plan, err := ws.Plan(ctx, sf.selection())
	if err != nil {
		return reportError(env, ws, err)
	}

	if *explain != "" {
		text, err := ws.Explain(plan, *explain)
		if err != nil {
			return reportError(env, ws, err)
		}
		fmt.Fprint(env.stdout, text)
		return exitOK
	}
	if *asJSON {
		if code := writeJSON(env, plan); code != exitOK {
			return code
		}
	} else {
		printPlan(env.stdout, plan)
	}
	if *detailed {
		c := plan.Counts()
		if c[pipeline.ActionRun]+c[pipeline.ActionPending] > 0 {
			return exitPlanChanges
		}
	}
	return exitOK
}

// exitPlanChanges is plan -detailed-exitcode's "stages would run"
// (Terraform's convention).
const exitPlanChanges = 2

// ciMode reports whether CI mode is on: the -ci flag, or CI=true (or 1) in
// the environment.
func ciMode(env *cliEnv, fs *flag.FlagSet) bool {
	if f := fs.Lookup("ci"); f != nil && f.Value.String() == "true" {
		return true
	}
	for _, kv := range env.environ {
		if v, ok := strings.CutPrefix(kv, "CI="); ok {
			return v == "true" || v == "1"
		}
	}
	return false
}

func printPlan(w io.Writer, plan *pipeline.Plan) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range plan.Steps {
		if s.Action == pipeline.ActionSkip {
			continue
		}
		reason := s.Reason
		if s.Estimate != "" {
			reason += "; " + s.Estimate
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Addr, s.Action, reason)
	}
	tw.Flush()
	c := plan.Counts()
	fmt.Fprintf(w, "\nPlan: %d to run, %d pending on upstream results, %d cached", c[pipeline.ActionRun], c[pipeline.ActionPending], c[pipeline.ActionCached])
	if n := c[pipeline.ActionPull]; n > 0 {
		fmt.Fprintf(w, ", %d to pull from the remote cache", n)
	}
	if c[pipeline.ActionSkip] > 0 {
		fmt.Fprintf(w, ", %d not targeted", c[pipeline.ActionSkip])
	}
	fmt.Fprintln(w, ".")
}

func cmdRun(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "run")
	var pf pipelineFlags
	var sf selectionFlags
	pf.register(fs)
	sf.register(fs)
	var rf remoteFlags
	rf.register(fs)
	jobs := fs.Int("j", 2, "how many stages may run at once")
	keepGoing := fs.Bool("keep-going", false, "after a failure, keep running stages that do not depend on it")
	fs.Bool("ci", false, "CI mode: plain log lines, no live progress or colour (also when CI=true)")
	asJSON := fs.Bool("json", false, "print the run summary as JSON on stdout (the table goes to stderr)")
	summaryFile := fs.String("summary", "", "write the run summary as JSON to `FILE`")
	verify := fs.String("verify", "", "rerun the cached `STAGE` into a scratch store and compare its outputs byte for byte")
	executor := fs.String("executor", "", executorFlagUsage)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if *jobs < 1 {
		return usageError(env, "-j must be at least 1")
	}
	if *verify != "" && (len(sf.targets) > 0 || len(sf.from) > 0 || sf.force || *asJSON || *summaryFile != "") {
		return usageError(env, "-verify runs one cached stage on its own; it does not combine with -target, -from, -force, -json or -summary")
	}
	ci := ciMode(env, fs)
	if ci {
		env.isTTY = false
	}
	ws, code := pf.load(env, pos, true)
	if ws == nil {
		return code
	}
	if *verify != "" {
		return runVerify(ctx, env, ws, *verify, ci)
	}
	closeRemote, err := rf.attach(ctx, env, ws)
	if err != nil {
		return reportError(env, ws, err)
	}
	defer closeRemote()
	disp, err := dispatcher(env, ws, *executor)
	if err != nil {
		return reportError(env, ws, err)
	}
	view := newRunView(env, ci)
	res, err := ws.Run(ctx, pipeline.RunOptions{
		Selection:   sf.selection(),
		Jobs:        *jobs,
		KeepGoing:   *keepGoing,
		Observer:    view.observe,
		CommandLine: append([]string{"lathe", "run"}, args...),
		Dispatch:    disp,
	})
	view.stop()
	if err != nil {
		return reportError(env, ws, err)
	}
	human := env.stdout
	if *asJSON {
		human = env.stderr
	}
	printSummary(human, res)
	for _, s := range res.Failed() {
		fmt.Fprintf(env.stderr, "\nError in %s:\n", s.Addr)
		var de *pipeline.DiagnosticsError
		if errors.As(s.Err, &de) {
			writeDiagnostics(env, ws, de.Diags)
		} else {
			fmt.Fprintf(env.stderr, "  %v\n", s.Err)
		}
	}
	if len(res.OutputDiags) > 0 {
		writeDiagnostics(env, ws, res.OutputDiags)
	}
	if len(res.Outputs) > 0 {
		fmt.Fprintln(human, "\nOutputs:")
		for _, name := range sortedKeys(res.Outputs) {
			fmt.Fprintf(human, "  %s = %s\n", name, formatValue(res.Outputs[name]))
		}
	}
	for _, p := range res.Published {
		if p.Err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", p.Err)
		} else {
			fmt.Fprintf(human, "Published %s.%s to %s\n", p.Stage, p.Output, p.Path)
		}
	}
	code = exitOK
	switch res.Status {
	case "succeeded":
		if res.OutputDiags.HasErrors() || res.PublishFailed() {
			code = exitFailed
		}
	case "canceled":
		fmt.Fprintln(env.stderr, "lathe: interrupted; committed results are kept, rerun to continue")
		code = exitCanceled
	default:
		code = exitFailed
	}
	if *asJSON || *summaryFile != "" {
		sum := newRunSummary(res, code)
		if *summaryFile != "" {
			if err := writeSummaryFile(*summaryFile, sum); err != nil {
				fmt.Fprintf(env.stderr, "lathe: write summary: %v\n", err)
				if code == exitOK {
					code = exitFailed
				}
			}
		}
		if *asJSON {
			if c := writeJSON(env, sum); c != exitOK && code == exitOK {
				code = c
			}
		}
	}
	return code
}

// runVerify reruns one cached stage and compares its outputs.
func runVerify(ctx context.Context, env *cliEnv, ws *pipeline.Workspace, addr string, ci bool) int {
	view := newRunView(env, ci)
	res, err := ws.Verify(ctx, addr, view.observe)
	view.stop()
	if err != nil {
		return reportError(env, ws, err)
	}
	for _, o := range res.Outputs {
		switch {
		case o.Same:
			fmt.Fprintf(env.stdout, "  %s: identical (%s)\n", o.Name, o.Cached)
		case o.Diff != nil:
			fmt.Fprintf(env.stdout, "  %s: DIFFERS: first differing file %s: cached %s, rerun %s\n", o.Name, o.Diff.Path, orAbsent(o.Diff.Cached), orAbsent(o.Diff.Rerun))
		default:
			fmt.Fprintf(env.stdout, "  %s: DIFFERS: cached %s, rerun %s\n", o.Name, o.Cached, o.Rerun)
		}
	}
	if res.Reproducible() {
		fmt.Fprintf(env.stdout, "%s is reproducible: every output is byte-identical to the cached result (rerun took %s).\n", res.Addr, res.Duration.Round(time.Millisecond))
		return exitOK
	}
	fmt.Fprintf(env.stdout, "%s is NOT reproducible: the rerun's outputs differ from the cached result.\n", res.Addr)
	return exitFailed
}

func orAbsent(d string) string {
	if d == "" {
		return "(absent)"
	}
	return d
}

// runSummary is the machine-readable account of a run (lathe run -json,
// -summary FILE).
type runSummary struct {
	RunID     string                     `json:"run_id"`
	Status    string                     `json:"status"`
	ExitCode  int                        `json:"exit_code"`
	Stages    []stageSummary             `json:"stages"`
	Outputs   map[string]json.RawMessage `json:"outputs,omitempty"`
	Published []publishSummary           `json:"published,omitempty"`
}

type stageSummary struct {
	Address   string                     `json:"address"`
	Kind      string                     `json:"kind"`
	Status    string                     `json:"status"`
	Note      string                     `json:"note,omitempty"`
	Duration  float64                    `json:"duration_s"`
	Key       string                     `json:"cache_key,omitempty"`
	Job       string                     `json:"job,omitempty"`
	Artifacts map[string]string          `json:"artifacts,omitempty"`
	Values    map[string]json.RawMessage `json:"values,omitempty"`
	Metrics   map[string]float64         `json:"metrics,omitempty"`
	Error     string                     `json:"error,omitempty"`
}

type publishSummary struct {
	Stage  string `json:"stage"`
	Output string `json:"output"`
	Path   string `json:"path"`
	Digest string `json:"digest"`
	Error  string `json:"error,omitempty"`
}

func newRunSummary(res *pipeline.RunResult, code int) *runSummary {
	sum := &runSummary{RunID: res.RunID, Status: res.Status, ExitCode: code, Stages: []stageSummary{}}
	for _, s := range res.Stages {
		ss := stageSummary{
			Address: s.Addr, Kind: s.Kind, Status: string(s.Status), Note: s.Note,
			Duration: s.Duration.Seconds(), Key: s.Key, Job: s.Job,
			Artifacts: s.Artifacts, Values: s.Values, Metrics: s.Metrics,
		}
		if s.Err != nil {
			ss.Error = s.Err.Error()
		}
		sum.Stages = append(sum.Stages, ss)
	}
	if len(res.Outputs) > 0 {
		sum.Outputs = map[string]json.RawMessage{}
		for name, v := range res.Outputs {
			b, err := json.Marshal(pipeline.JSONValue(v))
			if err != nil {
				b, _ = json.Marshal(formatValue(v))
			}
			sum.Outputs[name] = b
		}
	}
	for _, p := range res.Published {
		ps := publishSummary{Stage: p.Stage, Output: p.Output, Path: p.Path, Digest: p.Digest}
		if p.Err != nil {
			ps.Error = p.Err.Error()
		}
		sum.Published = append(sum.Published, ps)
	}
	return sum
}

func writeSummaryFile(path string, sum *runSummary) error {
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func printSummary(w io.Writer, res *pipeline.RunResult) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tKIND\tSTATUS\tCACHED\tDURATION")
	counts := map[pipeline.Status]int{}
	for _, s := range res.Stages {
		counts[s.Status]++
		if s.Status == pipeline.StatusSkipped && s.Note == "not targeted" {
			continue
		}
		cached, dur := "no", "-"
		switch s.Status {
		case pipeline.StatusCached:
			cached = "yes"
		case pipeline.StatusRan, pipeline.StatusFailed, pipeline.StatusCanceled:
			dur = s.Duration.Round(time.Millisecond).String()
		}
		status := string(s.Status)
		if s.Note != "" {
			status += " (" + s.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Addr, s.Kind, status, cached, dur)
	}
	tw.Flush()
	canceled := ""
	if n := counts[pipeline.StatusCanceled]; n > 0 {
		canceled = fmt.Sprintf(", %d canceled", n)
	}
	fmt.Fprintf(w, "\nRun %s %s: %d ran, %d cached, %d failed, %d skipped%s.\n", res.RunID, res.Status,
		counts[pipeline.StatusRan], counts[pipeline.StatusCached], counts[pipeline.StatusFailed], counts[pipeline.StatusSkipped], canceled)
}

// formatValue prints an output value: artifacts by digest and path, other
// values as JSON.
func formatValue(v cty.Value) string {
	if s, ok := pipeline.FormatArtifacts(v); ok {
		return s
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return v.GoString()
	}
	return string(b)
}

func cmdGraph(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "graph")
	var pf pipelineFlags
	pf.register(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	ws, code := pf.load(env, pos, false)
	if ws == nil {
		return code
	}
	ws.WriteDOT(env.stdout)
	return exitOK
}
