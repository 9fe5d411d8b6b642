// Package exec is the "exec" stage kind: it runs a command with declared
// inputs and declared outputs, the escape hatch for user scripts.
//
//	stage "exec" "prep" {
//	  command = ["sh", "-c", "sort $IN_words > $OUT_sorted/words.txt"]
//	  inputs  = { words = "data/words.txt", model = download.base.model }
//	  outputs = ["sorted"]
//	  env     = { LC_ALL = "C" }
//	}
//
// Each input is a path relative to the pipeline directory (a file or a
// directory) or an artifact of another stage; the command sees it as
// $IN_<name> (an absolute path). Each declared output is a directory the
// command fills, $OUT_<name>, committed as a "files" artifact. The command runs
// in an empty scratch directory with the environment of lathe plus env.
//
// The cache key holds the command line, env, the output names and the content
// digest of every input, so editing a local input file reruns the stage. The
// command itself is trusted to be deterministic; anything it reads that is not
// a declared input (the network, the clock, files named in the script) is
// outside lathe's knowledge.
//
// Lines the command prints of the form
//
//	lathe:progress <done>/<total> [unit]
//	lathe:metrics <step> <name>=<value> ...
//
// are reported as progress and metrics; every other line becomes a log line.
//
// This package does not sandbox the command.
package exec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/stage"
)

// Version is the kind's cache-key salt.
const Version = "1"

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Kind returns the exec stage kind.
func Kind() *stage.Kind {
	return &stage.Kind{
		Name:    "exec",
		Version: Version,
		Summary: "run a command with declared inputs and output directories",
		Schema: hcldec.ObjectSpec{
			"command": &hcldec.ValidateSpec{
				Wrapped: &hcldec.AttrSpec{Name: "command", Type: cty.List(cty.String), Required: true},
				Func:    validateCommand,
			},
			"inputs": &hcldec.ValidateSpec{
				Wrapped: &hcldec.AttrSpec{Name: "inputs", Type: cty.DynamicPseudoType},
				Func:    validateInputs,
			},
			"outputs": &hcldec.ValidateSpec{
				Wrapped: &hcldec.AttrSpec{Name: "outputs", Type: cty.List(cty.String)},
				Func:    validateOutputNames,
			},
			"env": &hcldec.AttrSpec{Name: "env", Type: cty.Map(cty.String)},
		},
		Outputs:  outputs,
		KeyLines: keyLines,
		Run:      run,
	}
}

func validateCommand(v cty.Value) hcl.Diagnostics {
	if !v.IsKnown() || v.IsNull() {
		return nil
	}
	if v.LengthInt() == 0 {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Empty command",
			Detail:   `The command is a list whose first element is the program to run, e.g. ["sh", "-c", "..."].`,
		}}
	}
	return nil
}

func validateInputs(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	t := v.Type()
	if !t.IsObjectType() && !t.IsMapType() {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid inputs",
			Detail:   "inputs must be a map from names to local paths or artifacts, e.g. { data = \"data/x.txt\" }.",
		}}
	}
	var diags hcl.Diagnostics
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		name := k.AsString()
		if !nameRE.MatchString(name) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid input name",
				Detail:   fmt.Sprintf("Input %q must be a valid environment variable suffix (letters, digits, underscore): the command sees it as $IN_%s.", name, name),
			})
			continue
		}
		if _, ok := stage.ArtifactKindOf(e.Type()); ok {
			continue
		}
		if e.Type() == cty.DynamicPseudoType {
			continue // not known until the stage it comes from has run
		}
		if e.Type() != cty.String || e.IsNull() {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid input",
				Detail:   fmt.Sprintf("Input %q must be a path (string) or an artifact of another stage, not %s.", name, e.Type().FriendlyName()),
			})
		}
	}
	return diags
}

func validateOutputNames(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsWhollyKnown() {
		return nil
	}
	var diags hcl.Diagnostics
	seen := map[string]bool{}
	for _, e := range v.AsValueSlice() {
		name := e.AsString()
		switch {
		case !nameRE.MatchString(name):
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid output name",
				Detail:   fmt.Sprintf("Output %q must be letters, digits and underscores: the command sees it as $OUT_%s.", name, name),
			})
		case seen[name]:
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate output name",
				Detail:   fmt.Sprintf("Output %q is declared twice.", name),
			})
		}
		seen[name] = true
	}
	return diags
}

func outputs(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
	outs := map[string]stage.Output{}
	if args.IsNull() || !args.IsKnown() {
		return outs, nil
	}
	list := args.GetAttr("outputs")
	if list.IsNull() {
		return outs, nil
	}
	if !list.IsWhollyKnown() {
		return outs, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Outputs not known in advance",
			Detail:   "The outputs of an exec stage must be known before anything runs: write them as a list of literal names, not values computed from other stages.",
		}}
	}
	for _, e := range list.AsValueSlice() {
		outs[e.AsString()] = stage.Output{
			Type:    stage.ArtifactType(stage.FilesArtifact),
			Summary: "a directory written by the command",
		}
	}
	return outs, nil
}

type input struct {
	name     string
	path     string // absolute
	artifact bool
}

func inputsOf(args cty.Value, baseDir string) []input {
	v := args.GetAttr("inputs")
	if v.IsNull() {
		return nil
	}
	var ins []input
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		in := input{name: k.AsString()}
		if a, ok := stage.ArtifactOf(e); ok {
			in.path, in.artifact = a.Path, true
		} else {
			in.path = e.AsString()
			if !filepath.IsAbs(in.path) {
				in.path = filepath.Join(baseDir, in.path)
			}
		}
		ins = append(ins, in)
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].name < ins[j].name })
	return ins
}

// keyLines adds the content digest of every local input; artifacts are
// already in the key through the arguments.
func keyLines(kc stage.KeyContext, args cty.Value) ([]stage.KeyLine, error) {
	var lines []stage.KeyLine
	for _, in := range inputsOf(args, kc.BaseDir()) {
		if in.artifact {
			continue
		}
		digest, err := kc.HashPath(in.path)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", in.name, err)
		}
		lines = append(lines, stage.KeyLine{Label: "input " + in.name, Value: digest})
	}
	return lines, nil
}

func run(ctx context.Context, req *stage.Request) (*stage.Result, error) {
	argv := []string{}
	for _, e := range req.Args.GetAttr("command").AsValueSlice() {
		argv = append(argv, e.AsString())
	}
	env := os.Environ()
	if e := req.Args.GetAttr("env"); !e.IsNull() {
		m := e.AsValueMap()
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			env = append(env, k+"="+m[k].AsString())
		}
	}
	for _, in := range inputsOf(req.Args, req.BaseDir) {
		if _, err := os.Stat(in.path); err != nil {
			return nil, fmt.Errorf("input %q: %w", in.name, err)
		}
		env = append(env, "IN_"+in.name+"="+in.path)
	}
	outs, _ := outputs(req.Args)
	names := make([]string, 0, len(outs))
	for name := range outs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		dir := req.OutputDir(name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		env = append(env, "OUT_"+name+"="+dir)
	}

	cmd := osexec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = req.ScratchDir
	cmd.Env = env
	// The command gets its own process group so that cancelling the stage
	// stops everything it started, and dies with lathe if lathe is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second

	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	tail := &tailBuffer{max: 20}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); scanOutput(stdout, req.Reporter, tail) }()
	go func() { defer wg.Done(); scanOutput(stderr, req.Reporter, tail) }()
	wg.Wait()
	err = cmd.Wait()
	if ctx.Err() != nil {
		// Make sure nothing the command started is left behind.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return nil, ctx.Err()
	}
	if err != nil {
		var exit *osexec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("command %q exited with status %d; last output:\n%s", strings.Join(argv, " "), exit.ExitCode(), tail.String())
		}
		return nil, fmt.Errorf("command %q: %w", strings.Join(argv, " "), err)
	}
	for _, name := range names {
		if _, err := os.Stat(req.OutputDir(name)); err != nil {
			return nil, fmt.Errorf("output %q: the command removed its output directory", name)
		}
	}
	return &stage.Result{}, nil
}

// scanOutput turns the command's output lines into log lines, progress and
// metrics.
func scanOutput(r io.Reader, rep stage.Reporter, tail *tailBuffer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if handleDirective(line, rep) {
			continue
		}
		tail.add(line)
		rep.Logf("%s", line)
	}
	// Drain whatever a too-long line left, so the command never blocks.
	_, _ = io.Copy(io.Discard, r)
}

func handleDirective(line string, rep stage.Reporter) bool {
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return false
	}
	switch fields[0] {
	case "lathe:progress":
		done, total, ok := strings.Cut(fields[1], "/")
		if !ok {
			return false
		}
		d, err1 := strconv.ParseInt(done, 10, 64)
		t, err2 := strconv.ParseInt(total, 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		unit := ""
		if len(fields) > 2 {
			unit = fields[2]
		}
		rep.Progress(d, t, unit)
		return true
	case "lathe:metrics":
		step, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return false
		}
		values := map[string]float64{}
		for _, f := range fields[2:] {
			k, v, ok := strings.Cut(f, "=")
			x, err := strconv.ParseFloat(v, 64)
			if !ok || err != nil {
				return false
			}
			values[k] = x
		}
		rep.Metrics(step, values)
		return true
	}
	return false
}

// tailBuffer keeps the last max lines for error messages.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return "  " + strings.Join(t.lines, "\n  ")
}
