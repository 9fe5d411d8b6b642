package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/lathe-ml/lathe/internal/bytesize"
	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/cache"
	"github.com/lathe-ml/lathe/pipeline/runs"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func cmdVersion(ctx context.Context, env *cliEnv, args []string) int {
	fmt.Fprintf(env.stdout, "lathe %s (engine %s, cache %s)\n", version, pipeline.EngineVersion, pipeline.KeySchema)
	return exitOK
}

func cmdFmt(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "fmt")
	check := fs.Bool("check", false, "do not write; exit 1 if any file is not formatted")
	diff := fs.Bool("diff", false, "print the names of files that would change")
	paths, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(paths) == 0 {
		paths = []string{"."}
	}
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(p, "*.hcl"))
		files = append(files, matches...)
	}
	unformatted := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
		// Refuse to format what does not parse: hclwrite would keep the
		// broken text and the user would not learn about it.
		if _, diags := hclwrite.ParseConfig(src, f, hcl.InitialPos); diags.HasErrors() {
			for _, d := range diags {
				fmt.Fprintf(env.stderr, "%s\n", d.Error())
			}
			return exitFailed
		}
		out := hclwrite.Format(src)
		if bytes.Equal(src, out) {
			continue
		}
		unformatted++
		if *diff || *check {
			fmt.Fprintln(env.stdout, f)
		}
		if !*check {
			if err := writeFileAtomic(f, out); err != nil {
				fmt.Fprintf(env.stderr, "lathe: %v\n", err)
				return exitFailed
			}
		}
	}
	if *check && unformatted > 0 {
		return exitFailed
	}
	return exitOK
}

func writeFileAtomic(path string, data []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".lathe-fmt-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// storeDir finds the store for the cache and runs commands: --cache, else
// $LATHE_CACHE, else .lathe beside the pipeline directory given (default .).
func storeDir(flagDir string, positional []string) (string, error) {
	if flagDir != "" {
		return flagDir, nil
	}
	dir := "."
	if len(positional) > 0 {
		dir = positional[0]
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		dir = filepath.Dir(dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return pipeline.DefaultCacheDir(abs), nil
}

func cmdCache(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 {
		return usageError(env, "usage: lathe cache ls|verify|gc [flags] [PIPELINE_DIR]")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet(env, "cache")
	dirFlag := fs.String("cache", "", "artifact store directory (default $LATHE_CACHE, else .lathe beside the pipeline)")
	var olderThan, keepRuns time.Duration
	var maxSize string
	var dryRun, remove, asJSON bool
	switch sub {
	case "ls":
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	case "verify":
		fs.BoolVar(&remove, "remove", false, "remove the entries found broken")
	case "gc":
		fs.DurationVar(&olderThan, "older-than", 0, "remove results not used for this long (e.g. 720h)")
		fs.StringVar(&maxSize, "max-size", "", "evict least recently used results until the store is under this size (e.g. 20GiB)")
		fs.DurationVar(&keepRuns, "keep-runs", 7*24*time.Hour, "always keep results referenced by runs started within this period")
		fs.BoolVar(&dryRun, "dry-run", false, "only report what would be removed")
	default:
		return usageError(env, "unknown cache command %q (want ls, verify or gc)", sub)
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	dir, err := storeDir(*dirFlag, pos)
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintf(env.stderr, "lathe: no store at %s\n", dir)
		return exitFailed
	}
	store, err := cache.Open(dir)
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	switch sub {
	case "ls":
		recs, err := store.List()
		if err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
		if asJSON {
			return writeJSON(env, recs)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tSTAGE\tKIND\tSIZE\tCREATED\tLAST USED")
		var total int64
		for _, r := range recs {
			total += r.Size
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", short(r.Key), r.Address, r.Kind, bytesize.Format(r.Size), r.Created.Local().Format("2006-01-02 15:04"), r.LastUsed.Local().Format("2006-01-02 15:04"))
		}
		tw.Flush()
		fmt.Fprintf(env.stdout, "\n%d results, %s.\n", len(recs), bytesize.Format(total))
	case "verify":
		problems, err := store.Verify(ctx)
		if err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
		for _, p := range problems {
			fmt.Fprintf(env.stdout, "%s\n", p)
		}
		if len(problems) == 0 {
			fmt.Fprintln(env.stdout, "The store is intact.")
			return exitOK
		}
		if remove {
			if err := store.Remove(problems); err != nil {
				fmt.Fprintf(env.stderr, "lathe: %v\n", err)
				return exitFailed
			}
			fmt.Fprintf(env.stdout, "Removed the broken entries; the stages that produced them will rerun.\n")
		}
		fmt.Fprintf(env.stdout, "%d problems found.\n", len(problems))
		return exitFailed
	case "gc":
		var max int64
		if maxSize != "" {
			if max, err = bytesize.Parse(maxSize); err != nil {
				return usageError(env, "-max-size: %v", err)
			}
		}
		if olderThan == 0 && max == 0 {
			return usageError(env, "gc needs -older-than and/or -max-size")
		}
		keep, err := runs.ReferencedKeys(dir, time.Now().Add(-keepRuns))
		if err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
		rep, err := store.GC(ctx, cache.GCOptions{OlderThan: olderThan, MaxSize: max, Keep: keep, DryRun: dryRun})
		if err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(env.stdout, "%s\n", rep)
	}
	return exitOK
}

func cmdRuns(ctx context.Context, env *cliEnv, args []string) int {
	show := len(args) > 0 && args[0] == "show"
	if show {
		args = args[1:]
	}
	fs := newFlagSet(env, "runs")
	dirFlag := fs.String("cache", "", "artifact store directory (default $LATHE_CACHE, else .lathe beside the pipeline)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	var id string
	if show {
		if len(pos) == 0 {
			return usageError(env, "usage: lathe runs show RUN_ID [PIPELINE_DIR]")
		}
		id, pos = pos[0], pos[1:]
	}
	dir, err := storeDir(*dirFlag, pos)
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	if !show {
		list, err := runs.List(dir)
		if err != nil {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			return exitFailed
		}
		if *asJSON {
			return writeJSON(env, list)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tSTATUS\tSTARTED\tDURATION\tSTAGES")
		for _, s := range list {
			dur := "-"
			if !s.Finished.IsZero() {
				dur = s.Finished.Sub(s.Started).Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Status, s.Started.Local().Format("2006-01-02 15:04:05"), dur, s.StagesText())
		}
		tw.Flush()
		return exitOK
	}
	run, err := runs.Open(dir, id)
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	events, err := run.Events()
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	if *asJSON {
		return writeJSON(env, events)
	}
	for _, ev := range events {
		fmt.Fprintln(env.stdout, formatEvent(ev))
	}
	return exitOK
}

func formatEvent(ev runs.Event) string {
	var b strings.Builder
	b.WriteString(ev.Time.Local().Format("15:04:05.000") + " " + ev.Type)
	if ev.Stage != "" {
		b.WriteString(" " + ev.Stage)
	}
	if ev.Job != "" {
		b.WriteString(" [job " + ev.Job + "]")
	}
	switch ev.Type {
	case "progress":
		fmt.Fprintf(&b, " %d/%d %s", ev.Done, ev.Total, ev.Unit)
	case "metrics":
		fmt.Fprintf(&b, " step %d", ev.Step)
		for _, k := range sortedKeys(ev.Metrics) {
			fmt.Fprintf(&b, " %s=%g", k, ev.Metrics[k])
		}
	case "run-finished":
		fmt.Fprintf(&b, " %s", ev.Status)
	}
	if ev.Duration > 0 {
		fmt.Fprintf(&b, " (%s)", ev.Duration.Round(time.Millisecond))
	}
	if ev.Message != "" {
		b.WriteString(": " + ev.Message)
	}
	return b.String()
}

func writeJSON(env *cliEnv, v any) int {
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	return exitOK
}

func short(key string) string {
	if len(key) > 12 {
		return key[:12]
	}
	return key
}
