package main

import (
	"context"
	"fmt"
	"os"

	"github.com/lathe-ml/lathe/pipeline"
)

// cmdArtifacts is `lathe artifacts get ADDRESS DIR [PIPELINE]`.
func cmdArtifacts(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] != "get" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprintln(env.stderr, "usage: lathe artifacts get [flags] <kind>.<name>[\"key\"].<output> DIR [PIPELINE]")
			return exitOK
		}
		return usageError(env, "usage: lathe artifacts get [flags] <kind>.<name>[\"key\"].<output> DIR [PIPELINE]")
	}
	fs := newFlagSet(env, "artifacts")
	var pf pipelineFlags
	pf.register(fs)
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return flagError(err)
	}
	if len(pos) < 2 || len(pos) > 3 {
		return usageError(env, "artifacts get needs an output address and a directory, and optionally a pipeline: lathe artifacts get exec.prep.data out/ [PIPELINE]")
	}
	addr, output, err := pipeline.ParseOutputAddr(pos[0])
	if err != nil {
		return usageError(env, "%v", err)
	}
	dir := pos[1]
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		fmt.Fprintf(env.stderr, "lathe: %s exists and is not empty; give a new or empty directory\n", dir)
		return exitFailed
	} else if err != nil && !os.IsNotExist(err) {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	ws, code := pf.load(env, pos[2:], true)
	if ws == nil {
		return code
	}
	a, err := ws.CachedArtifact(ctx, addr, output)
	if err != nil {
		return reportError(env, ws, err)
	}
	if err := pipeline.ReplaceTree(a.Path, dir); err != nil {
		fmt.Fprintf(env.stderr, "lathe: copy %s.%s to %s: %v\n", addr, output, dir, err)
		return exitFailed
	}
	fmt.Fprintf(env.stdout, "%s.%s (%s %s) copied to %s\n", addr, output, a.Kind, a.Digest, dir)
	return exitOK
}
