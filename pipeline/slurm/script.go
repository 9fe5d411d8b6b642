package slurm

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
)

// scriptPath and outputPath are a job's batch script and output file.
func scriptPath(spec pipeline.JobSpec) string {
	return filepath.Join(spec.Dir, spec.Name+".sbatch")
}

func outputPath(spec pipeline.JobSpec) string {
	return filepath.Join(spec.Dir, spec.Name+".out")
}

// sbatchArgs returns the options sbatch is given for a job, before the
// script's path: the executor's settings, then its extra arguments, then
// what the stage's resources ask for (so they win over sbatch_args).
func sbatchArgs(opt Options, spec pipeline.JobSpec) []string {
	args := []string{
		"--parsable",
		"--job-name=lathe-" + spec.Name,
		"--output=" + outputPath(spec),
		"--open-mode=append",
		"--chdir=" + spec.WorkDir,
		"--nodes=1",
		"--ntasks=1",
	}
	if len(spec.After) > 0 {
		args = append(args, "--dependency=afterok:"+strings.Join(spec.After, ":"), "--kill-on-invalid-dep=yes")
	}
	if opt.Partition != "" {
		args = append(args, "--partition="+opt.Partition)
	}
	if opt.Account != "" {
		args = append(args, "--account="+opt.Account)
	}
	if opt.QOS != "" {
		args = append(args, "--qos="+opt.QOS)
	}
	if opt.Time > 0 && spec.Resources.Time == 0 {
		args = append(args, "--time="+formatTime(opt.Time))
	}
	args = append(args, opt.SbatchArgs...)
	return append(args, resourceArgs(spec.Resources)...)
}

// resourceArgs maps a stage's resources block to sbatch options.
func resourceArgs(r config.Resources) []string {
	var args []string
	if r.GPUs > 0 {
		args = append(args, fmt.Sprintf("--gres=gpu:%d", r.GPUs))
	}
	if r.CPUs > 0 {
		args = append(args, fmt.Sprintf("--cpus-per-task=%d", r.CPUs))
	}
	if r.Memory > 0 {
		const mib = 1 << 20
		args = append(args, fmt.Sprintf("--mem=%dM", (r.Memory+mib-1)/mib))
	}
	if r.Time > 0 {
		args = append(args, "--time="+formatTime(r.Time))
	}
	return args
}

// formatTime writes a time limit as Slurm's days-hours:minutes:seconds,
// rounded up to whole seconds.
func formatTime(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return fmt.Sprintf("%d-%02d:%02d:%02d", s/86400, s%86400/3600, s%3600/60, s%60)
}

// batchScript is the script a job runs: exec the lathe binary on the
// stage, so that the signals Slurm sends on cancellation or at the time
// limit reach lathe, which stops the stage and records it.
func batchScript(lathe string, spec pipeline.JobSpec, sbatch []string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "# lathe: stage %s\n", oneLine(spec.Addr))
	fmt.Fprintf(&b, "# pipeline: %s\n", oneLine(spec.Exec.Pipeline))
	fmt.Fprintf(&b, "# store: %s\n", oneLine(spec.Exec.Store))
	if len(spec.After) > 0 {
		fmt.Fprintf(&b, "# after jobs: %s\n", strings.Join(spec.After, " "))
	}
	fmt.Fprintf(&b, "# submitted with: sbatch %s\n", oneLine(shellJoin(sbatch)))
	fmt.Fprintf(&b, "exec %s\n", shellJoin(append([]string{lathe}, spec.Exec.Args()...)))
	return b.String()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", `\n`) }

// shellJoin quotes each word for sh where it needs it.
func shellJoin(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = shellQuote(w)
	}
	return strings.Join(out, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
