// Package slurm runs pipeline stages as Slurm jobs: it implements
// pipeline.Dispatcher with Slurm's command-line tools.
//
// Submit writes a batch script per stage instance into the run's jobs
// directory (kept there for debugging, with the full sbatch command line
// in a comment) and submits it with `sbatch --parsable`: the stage's
// resources block maps to --gres=gpu:N, --cpus-per-task, --mem (MiB) and
// --time; the pipeline's graph to --dependency=afterok:<upstream job ids>
// with --kill-on-invalid-dep=yes; the executor block to --partition,
// --account, --qos, --time and any extra sbatch_args. The job runs
// `lathe stage exec` (see pipeline.StageExec) in the pipeline's directory,
// its output going to a file beside the script.
//
// Watch polls the job's state with one squeue call per interval for all
// the jobs being watched (states are read while Slurm keeps finished jobs,
// MinJobAge; a job gone from the queue is looked up with sacct when the
// cluster has accounting, else reported as vanished), and streams the
// job's output file back line by line. Cancel runs scancel and polls until
// none of the jobs is left.
//
// It does not talk to slurmrestd (sbatch, squeue, scancel and scontrol
// must be on the PATH of the machine that runs lathe), does not manage
// job arrays, heterogeneous jobs or job steps, and does not move files:
// the pipeline's directory, the store and the lathe binary must be at the
// same paths on the nodes (a shared filesystem).
package slurm
