package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/lockfile"
)

// cmdLock is `lathe lock [-update] [-p PIPELINE] [STAGE...]`: resolve the
// moving references of the pipeline's stages (Hub branches and tags) and pin
// them in pipeline.lock.hcl. Without -update existing valid pins are kept;
// with it the named stages (or all) are resolved again.
func cmdLock(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "lock")
	var pf pipelineFlags // -cache does not apply: the lock lives beside the pipeline
	fs.Var(&pf.vars, "var", "set a variable: -var 'name=value' (repeatable)")
	fs.Var(&pf.varFiles, "var-file", "read variables from an HCL or JSON file (repeatable)")
	update := fs.Bool("update", false, "resolve the named stages' pins again (all stages when none is named), moving them to what their references point to now")
	path := fs.String("p", ".", "the pipeline file or directory")
	stages, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	ws, code := pf.load(env, []string{*path}, false)
	if ws == nil {
		return code
	}
	changes, err := ws.UpdateLock(ctx, pipeline.LockOptions{Update: *update, Stages: stages})
	if err != nil {
		return reportError(env, ws, err)
	}
	if len(changes) == 0 {
		fmt.Fprintln(env.stdout, "No stage of this pipeline has anything to pin.")
		return exitOK
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	counts := map[string]int{}
	for _, c := range changes {
		counts[c.Action]++
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Addr, c.Action, c.Detail)
	}
	tw.Flush()
	fmt.Fprintf(env.stdout, "\n%s: %d pinned, %d moved, %d kept, %d removed", lockfile.FileName,
		counts["pinned"], counts["moved"], counts["kept"], counts["removed"])
	if counts["skipped"] > 0 {
		fmt.Fprintf(env.stdout, ", %d skipped", counts["skipped"])
	}
	fmt.Fprintln(env.stdout, ".")
	return exitOK
}
