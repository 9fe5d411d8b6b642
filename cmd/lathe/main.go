// Command lathe runs machine-learning pipelines written in HCL: it plans which
// stages are cached and which must run, runs them as a DAG, and keeps every
// result in a content-addressed store.
//
// This package is deliberately thin: it parses flags, renders diagnostics and
// progress, and calls the pipeline and stages packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/lathe-ml/lathe/internal/suggest"
)

// Exit codes, documented in the README.
const (
	exitOK     = 0 // success
	exitFailed = 1 // invalid pipeline, failed stage, or other error
	exitUsage  = 2 // bad command line
	// exitValidation: a variable's validation rule failed (and nothing else
	// was wrong), so a CI job can tell bad inputs from a broken pipeline.
	exitValidation = 3
	exitCanceled   = 130 // interrupted (Ctrl-C / SIGTERM)
)

type command struct {
	name    string
	usage   string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) int
}

var commands []*command

func init() {
	commands = []*command{
		{"validate", "validate [flags] [PIPELINE]", "check a pipeline without running anything", cmdValidate},
		{"fmt", "fmt [-check] [-diff] [PATH...]", "rewrite pipeline files in canonical format", cmdFmt},
		{"plan", "plan [flags] [PIPELINE]", "show what a run would do, and why", cmdPlan},
		{"run", "run [flags] [PIPELINE]", "run the pipeline, reusing cached results", cmdRun},
		{"lock", "lock [-update] [-p PIPELINE] [STAGE...]", "pin Hub branches and tags to commits in pipeline.lock.hcl", cmdLock},
		{"artifacts", "artifacts get ADDRESS DIR [PIPELINE]", "copy a cached artifact of the current plan into DIR", cmdArtifacts},
		{"graph", "graph [flags] [PIPELINE]", "print the stage graph in Graphviz DOT", cmdGraph},
		{"cache", "cache ls|verify|gc [flags]", "inspect, check and trim the artifact store", cmdCache},
		{"runs", "runs [show RUN] [flags]", "list past runs, or show one run's events", cmdRuns},
		{"stage", stageUsage, "run one stage instance against a store (what a cluster job runs)", cmdStage},
		{"chat", "chat [flags] MODEL [PIPELINE]", "chat with a model (or adapter) in the terminal", cmdChat},
		{"serve", "serve [flags] MODEL [PIPELINE]", "serve a model over an OpenAI-compatible HTTP API", cmdServe},
		{"ui", uiUsage, uiSummary, cmdUI},
		{"tokenizer", "tokenizer encode|decode|train [flags]", "encode, decode or train a tokenizer", cmdTokenizer},
		{"data", "data preview [flags] FILE", "show dataset samples as the model sees them", cmdData},
		{"env", "env [-json]", "show the system: CPU, memory, backends and GPUs", cmdEnv},
		{"version", "version", "print lathe's version", cmdVersion},
	}
}

// cliEnv is what commands write to and read from; tests substitute it.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string
	isTTY          bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ(), isTTY: isTerminal(os.Stderr)}
	os.Exit(runCLI(ctx, env, os.Args[1:]))
}

func runCLI(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 {
			if c := findCommand(args[1]); c != nil {
				fmt.Fprintf(env.stdout, "usage: lathe %s\n\n%s\n", c.usage, c.summary)
				return exitOK
			}
		}
		printUsage(env.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c := findCommand(args[0])
	if c == nil {
		fmt.Fprintf(env.stderr, "lathe: unknown command %q%s\nRun 'lathe help' for the list of commands.\n", args[0], suggestCommand(args[0]))
		return exitUsage
	}
	return c.run(ctx, env, args[1:])
}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func suggestCommand(name string) string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	if best := suggest.Closest(name, names); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "lathe turns an HCL pipeline into trained, evaluated and exported models.\n\nUsage: lathe <command> [flags] [args]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'lathe <command> -h' for a command's flags.\n")
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parseInterleaved parses flags that may come before or after positional
// arguments (`lathe run dir -j 4` and `lathe run -j 4 dir` both work).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if rest[0] == "--" {
			return append(positional, rest[1:]...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func newFlagSet(env *cliEnv, c string) *flag.FlagSet {
	fs := flag.NewFlagSet("lathe "+c, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	cmd := findCommand(c)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: lathe %s\n\n%s\n\nFlags:\n", cmd.usage, cmd.summary)
		fs.PrintDefaults()
	}
	return fs
}

// usageError reports a bad command line and returns exitUsage.
func usageError(env *cliEnv, format string, args ...any) int {
	fmt.Fprintf(env.stderr, "lathe: "+format+"\n", args...)
	return exitUsage
}

// flagError maps a flag parsing error to an exit code (-h is success).
func flagError(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
